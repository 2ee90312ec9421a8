"""The index's tables, typed (SQLAlchemy 2 `Mapped[...]`)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    pass


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
    plan_key: Mapped[str] = mapped_column(String(71), default="")
    requires: Mapped[str] = mapped_column(Text, default="")  # runtime, one a line
    state: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str] = mapped_column(Text, default="")
    worker: Mapped[str | None] = mapped_column(String(100))
    build_url: Mapped[str | None] = mapped_column(String(300))
    log_url: Mapped[str | None] = mapped_column(String(300))
    updated: Mapped[datetime]
    plan: Mapped[Plan] = relationship(back_populates="packages")


class Publication(Base):
    """A package the farm published: its FileSet, its build and its provenance."""

    __tablename__ = "publications"
    __table_args__ = (Index("publications_by_name", "name", "published"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    version: Mapped[str] = mapped_column(String(100))
    fileset: Mapped[str] = mapped_column(String(71))
    archive: Mapped[str] = mapped_column(String(71))
    manifest: Mapped[str] = mapped_column(String(71), index=True)
    reference: Mapped[str] = mapped_column(String(400))
    recipe_commit: Mapped[str] = mapped_column(String(40))
    recipe_path: Mapped[str] = mapped_column(String(300))
    build_key: Mapped[str] = mapped_column(String(71), index=True)
    plan_id: Mapped[int | None] = mapped_column(ForeignKey("plans.id"))
    worker: Mapped[str] = mapped_column(String(100), default="")
    build_url: Mapped[str] = mapped_column(String(300), default="")
    log_url: Mapped[str] = mapped_column(String(300), default="")
    published: Mapped[datetime]
    signer: Mapped[str] = mapped_column(String(300))
    requires: Mapped[str] = mapped_column(Text, default="")
    record: Mapped[str] = mapped_column(Text)  # the build record, canonical JSON
    verified: Mapped[bool | None]  # the provenance verified when last checked
    verified_at: Mapped[datetime | None]
    verify_problem: Mapped[str] = mapped_column(Text, default="")
