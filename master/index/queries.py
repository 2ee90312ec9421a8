"""The questions the index answers (`kiln query ...`): which images carry a package
below a version, what is known of a package or an image, and what a toolchain package
built. Versions compare as dpkg compares them (epochs, tildes), in Python, on the few
distinct versions SQL hands back; never on strings."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from kiln.errors import InputError, NotFound
from kiln.naming import validate_version, version_key
from master.index.models import (
    Build,
    BuildInput,
    Image,
    ImagePackage,
    Package,
    Provenance,
    Publication,
)


@dataclass(frozen=True)
class BuiltWith:
    """A package built with a toolchain package, and who built it."""

    name: str
    version: str
    fileset: str
    build_key: str
    input: str  # NAME@VERSION of the toolchain package
    builder: str
    worker: str
    recipe_commit: str


def affected(engine: Engine, name: str, below: str) -> dict[str, Any]:
    """Images that carry `name` below `below` (image: HOST/REPOSITORY:TAG, digest, name,
    version, the version it carries, whether an override put it there), and packages
    built with it below."""
    limit = version_key(validate_version(below))
    with Session(engine) as session:
        carried = session.scalars(select(ImagePackage.version).where(
            ImagePackage.name == name).distinct()).all()
        lower = [v for v in carried if _below(v, limit)]
        # Columns, not ORM objects: thousands of images may carry a common library.
        rows = session.execute(
            select(Image.repository, Image.tag, Image.digest, Image.name, Image.version,
                   ImagePackage.version, ImagePackage.overridden)
            .join(ImagePackage, ImagePackage.image_id == Image.id)
            .where(ImagePackage.name == name, ImagePackage.version.in_(lower))
            .order_by(Image.repository, Image.tag)).all() if lower else []
        images = [{"image": f"{repository}:{tag}", "digest": digest, "name": image_name,
                   "version": image_version, "carries": carries, "overridden": overridden}
                  for repository, tag, digest, image_name, image_version, carries, overridden
                  in rows]
        used = session.scalars(select(BuildInput.version).where(
            BuildInput.name == name).distinct()).all()
        packages = _built_with(session, name, [v for v in used if _below(v, limit)])
    return {"name": name, "below": below, "images": images,
            "packages": [asdict(b) for b in packages]}


def built_with(engine: Engine, name: str, version: str) -> dict[str, Any]:
    """Every package whose build had `name` at `version` among its inputs."""
    with Session(engine) as session:
        packages = _built_with(session, name, [version])
    return {"input": f"{name}@{version}", "packages": [asdict(b) for b in packages]}


def package(engine: Engine, name: str) -> dict[str, Any]:
    """Every version of a package: its builds, provenance, and the images carrying it."""
    with Session(engine) as session:
        versions = session.scalars(select(Package).where(Package.name == name)).all()
        if not versions:
            raise NotFound(f"the index knows no package {name}", reason="not-found")
        report = []
        for found in sorted(versions, key=lambda p: _sort_key(p.version), reverse=True):
            builds = session.scalars(select(Build).where(Build.package_id == found.id)).all()
            publications = session.scalars(select(Publication).where(
                Publication.package_id == found.id)).all()
            images = session.execute(select(Image, ImagePackage).join(ImagePackage).where(
                ImagePackage.name == name, ImagePackage.fileset == found.fileset)).all()
            report.append({
                "version": found.version, "fileset": found.fileset, "archive": found.archive,
                "publications": [{"reference": f"{p.repository}:{p.tag}",
                                  "manifest": p.manifest,
                                  "provenance": _provenance(session, p.manifest)}
                                 for p in publications],
                "builds": [{"build_key": b.build_key, "recipe_commit": b.recipe_commit,
                            "recipe_path": b.recipe_path, "builder": b.builder,
                            "worker": b.worker, "started": b.started, "finished": b.finished}
                           for b in builds],
                "images": [{"image": f"{i.repository}:{i.tag}", "digest": i.digest,
                            "overridden": p.overridden} for i, p in images],
            })
    return {"name": name, "versions": report}


def image(engine: Engine, ref: str) -> dict[str, Any]:
    """An image (HOST/REPOSITORY:TAG, or a digest) and every package it carries, with
    its provenance state as the index knows it."""
    with Session(engine) as session:
        query = select(Image)
        if ref.startswith("sha256:"):
            query = query.where(Image.digest == ref)
        else:
            repository, _, tag = ref.rpartition(":")
            if not repository or "/" in tag:
                repository, tag = ref, "latest"
            query = query.where(Image.repository == repository, Image.tag == tag)
        found = session.scalars(query.limit(1)).one_or_none()
        if found is None:
            raise NotFound(f"the index knows no image {ref}", reason="not-found")
        packages = []
        for carried in found.packages:
            manifests = session.scalars(select(Publication.manifest).join(Package).where(
                Package.name == carried.name, Package.fileset == carried.fileset)).all()
            states = [_provenance(session, m) for m in manifests]
            packages.append({"name": carried.name, "version": carried.version,
                             "fileset": carried.fileset, "overridden": carried.overridden,
                             "provenance": [s for state in states for s in state]})
        return {"image": f"{found.repository}:{found.tag}", "digest": found.digest,
                "name": found.name, "version": found.version,
                "provenance": _provenance(session, found.digest),
                "set": found.package_set.digest if found.package_set else None,
                "packages": packages}


def _built_with(session: Session, name: str, versions: list[str]) -> list[BuiltWith]:
    if not versions:
        return []
    rows = session.execute(
        select(Package, Build, BuildInput).join(Build, Build.package_id == Package.id)
        .join(BuildInput, BuildInput.build_id == Build.id)
        .where(BuildInput.name == name, BuildInput.version.in_(versions))
        .order_by(Package.name, Package.version)).all()
    return [BuiltWith(p.name, p.version, p.fileset, b.build_key, f"{i.name}@{i.version}",
                      b.builder, b.worker, b.recipe_commit) for p, b, i in rows]


def _provenance(session: Session, subject: str) -> list[dict[str, Any]]:
    return [{"bundle": p.bundle, "signer": p.signer, "verified": p.verified,
             "verified_at": p.verified_at.isoformat() if p.verified_at else None,
             "problem": p.problem}
            for p in session.scalars(select(Provenance).where(Provenance.subject == subject))]


def _below(version: str, limit: Any) -> bool:
    try:
        return bool(version_key(version) < limit)
    except (InputError, ValueError):  # not a Debian version: it cannot be said to be below
        return False


def _sort_key(version: str) -> Any:
    try:
        return (1, version_key(version))
    except (InputError, ValueError):
        return (0, version)
