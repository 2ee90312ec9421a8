"""The index's tables, typed (SQLAlchemy 2 `Mapped[...]`); Alembic migrations in
master/index/migrations make and change them.

    packages          a name, version and FileSet (and its archive): what was published
    builds            the build that made a package: key, record, recipe commit, worker
    build_inputs      every build-time FileSet of a build (what `built-with` asks)
    publications      a package's manifest in a registry repository, and its tag
    provenance        a bundle attached to a manifest: who signed it, does it verify
    images            a Kiln image in a registry: digest, name, version, its set
    image_packages    each package an image carries, and whether an override put it there
    package_sets      the sets images were composed from
    plans, plan_packages   the farm's plans, their waves and each package's state
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

DIGEST = 71  # "sha256:" and 64 hex digits


class Base(DeclarativeBase):
    """The index's tables."""


class Package(Base):
    """A package version published, by its FileSet."""

    __tablename__ = "packages"
    __table_args__ = (UniqueConstraint("name", "version", "fileset"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), index=True)
    version: Mapped[str] = mapped_column(String(100))
    fileset: Mapped[str] = mapped_column(String(DIGEST), index=True)
    archive: Mapped[str] = mapped_column(String(DIGEST))


class Build(Base):
    """A build the farm ran (with its record and worker) or one a statement describes
    (an index synced from a registry knows no worker)."""

    __tablename__ = "builds"

    id: Mapped[int] = mapped_column(primary_key=True)
    package_id: Mapped[int] = mapped_column(ForeignKey("packages.id"), index=True)
    build_key: Mapped[str] = mapped_column(String(DIGEST), index=True)
    recipe_repo: Mapped[str] = mapped_column(String(400), default="")
    recipe_commit: Mapped[str] = mapped_column(String(40), default="")
    recipe_path: Mapped[str] = mapped_column(String(300), default="")
    builder: Mapped[str] = mapped_column(String(300), default="")
    worker: Mapped[str] = mapped_column(String(100), default="")
    started: Mapped[str] = mapped_column(String(40), default="")
    finished: Mapped[str] = mapped_column(String(40), default="")
    result: Mapped[str] = mapped_column(String(20), default="published")
    record: Mapped[str | None] = mapped_column(Text)  # canonical JSON, when handed back
    plan_id: Mapped[int | None] = mapped_column(ForeignKey("plans.id"))
    build_url: Mapped[str] = mapped_column(String(300), default="")
    log_url: Mapped[str] = mapped_column(String(300), default="")
    # The reproducibility gate: the agreeing builds, one "worker record-digest" a line;
    # what it asked ("2 of 2"; "" for a build no gate saw); a declared reason not to.
    reproduced: Mapped[str] = mapped_column(Text, default="", server_default="")
    gate: Mapped[str] = mapped_column(String(20), default="", server_default="")
    not_reproducible: Mapped[str] = mapped_column(Text, default="", server_default="")
    package: Mapped[Package] = relationship()
    inputs: Mapped[list[BuildInput]] = relationship(order_by="BuildInput.name")


class BuildInput(Base):
    """An input a published build read: a source, a lock entry, a toolchain."""

    __tablename__ = "build_inputs"
    __table_args__ = (Index("build_inputs_by_package", "name", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    build_id: Mapped[int] = mapped_column(ForeignKey("builds.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    version: Mapped[str] = mapped_column(String(100))
    digest: Mapped[str] = mapped_column(String(DIGEST))


class Publication(Base):
    """A package's manifest in a registry repository, under a tag."""

    __tablename__ = "publications"
    __table_args__ = (UniqueConstraint("repository", "tag"),
                      Index("publications_by_package", "package_id", "published"))

    id: Mapped[int] = mapped_column(primary_key=True)
    package_id: Mapped[int] = mapped_column(ForeignKey("packages.id"))
    build_id: Mapped[int | None] = mapped_column(ForeignKey("builds.id"))
    repository: Mapped[str] = mapped_column(String(300))  # HOST/REPOSITORY
    tag: Mapped[str] = mapped_column(String(128))
    manifest: Mapped[str] = mapped_column(String(DIGEST), index=True)
    published: Mapped[datetime]
    requires: Mapped[str] = mapped_column(Text, default="")  # runtime, one a line
    package: Mapped[Package] = relationship()
    build: Mapped[Build | None] = relationship()


class Provenance(Base):
    """A bundle attached to a manifest (a package's or an image's)."""

    __tablename__ = "provenance"
    __table_args__ = (UniqueConstraint("subject", "bundle"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    subject: Mapped[str] = mapped_column(String(DIGEST), index=True)  # the manifest
    bundle: Mapped[str] = mapped_column(String(DIGEST))  # the bundle blob's digest
    signer: Mapped[str] = mapped_column(String(300), default="")
    verified: Mapped[bool | None]
    verified_at: Mapped[datetime | None]
    problem: Mapped[str] = mapped_column(Text, default="")


class PackageSet(Base):
    """A package set published, by name and version."""

    __tablename__ = "package_sets"

    id: Mapped[int] = mapped_column(primary_key=True)
    digest: Mapped[str] = mapped_column(String(DIGEST), unique=True)


class Image(Base):
    """An image at a tag of a repository."""

    __tablename__ = "images"
    __table_args__ = (UniqueConstraint("repository", "tag"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    repository: Mapped[str] = mapped_column(String(300))  # HOST/REPOSITORY
    tag: Mapped[str] = mapped_column(String(128))
    digest: Mapped[str] = mapped_column(String(DIGEST), index=True)
    name: Mapped[str] = mapped_column(String(200))
    version: Mapped[str] = mapped_column(String(100))
    set_id: Mapped[int | None] = mapped_column(ForeignKey("package_sets.id"))
    previous: Mapped[str | None] = mapped_column(String(DIGEST))
    indexed: Mapped[datetime]
    packages: Mapped[list[ImagePackage]] = relationship(order_by="ImagePackage.name",
                                                        cascade="all, delete-orphan")
    package_set: Mapped[PackageSet | None] = relationship()


class ImagePackage(Base):
    """A package an image holds, at its version."""

    __tablename__ = "image_packages"
    __table_args__ = (Index("image_packages_by_name", "name", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"),
                                          index=True)
    name: Mapped[str] = mapped_column(String(200))
    version: Mapped[str] = mapped_column(String(100))
    fileset: Mapped[str] = mapped_column(String(DIGEST))
    overridden: Mapped[bool] = mapped_column(default=False)  # put there by an override


class Plan(Base):
    """One plan of one recipe commit: a push, or a maintainer's rebuild."""

    __tablename__ = "plans"

    id: Mapped[int] = mapped_column(primary_key=True)
    commit: Mapped[str] = mapped_column(String(40), index=True)
    started: Mapped[datetime]
    forced: Mapped[str | None] = mapped_column(String(200))  # the package rebuilt
    dependents: Mapped[bool] = mapped_column(default=False)
    build_url: Mapped[str] = mapped_column(String(300), default="")
    summary: Mapped[str] = mapped_column(Text, default="")
    packages: Mapped[list[PlanPackage]] = relationship(
        back_populates="plan", order_by="(PlanPackage.wave, PlanPackage.name)")


class PlanPackage(Base):
    """One package of a plan and where it stands: queued, building, published,
    failed, skipped (with the reason), retrying, stopped, broken."""

    __tablename__ = "plan_packages"
    __table_args__ = (UniqueConstraint("plan_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("plans.id"), index=True)
    name: Mapped[str] = mapped_column(String(200), index=True)
    wave: Mapped[int]  # 0: not built (broken, or needs a broken recipe)
    plan_key: Mapped[str] = mapped_column(String(DIGEST), default="")
    requires: Mapped[str] = mapped_column(Text, default="")  # runtime, one a line
    state: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str] = mapped_column(Text, default="")
    worker: Mapped[str | None] = mapped_column(String(100))
    build_url: Mapped[str | None] = mapped_column(String(300))
    log_url: Mapped[str | None] = mapped_column(String(300))
    gate: Mapped[str] = mapped_column(Text, default="", server_default="")  # its summary
    report: Mapped[str | None] = mapped_column(Text)  # why the builds differ, when they do
    updated: Mapped[datetime]
    plan: Mapped[Plan] = relationship(back_populates="packages")
