"""What the console asks the index: a few queries a page, whatever the farm's size."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, selectinload

from master.index.models import (
    Build,
    BuildInput,
    Image,
    ImagePackage,
    Package,
    Plan,
    PlanPackage,
    Provenance,
    Publication,
)


@dataclass(frozen=True)
class PublicationView:
    """A publication with its package, its build and its newest provenance, flat."""

    id: int
    name: str
    version: str
    fileset: str
    archive: str
    manifest: str
    repository: str
    tag: str
    published: datetime
    requires: str
    build_key: str
    recipe_commit: str
    recipe_path: str
    worker: str
    build_url: str
    log_url: str
    record: str | None  # the build record, when the farm built it here
    build_id: int | None
    signer: str
    verified: bool | None
    verified_at: datetime | None
    problem: str
    reproduced: tuple[str, ...] = ()  # the workers whose builds the gate found to agree
    gate: str = ""  # what the gate asked ("2 of 2"); "": no gate saw the build
    not_reproducible: str = ""  # the recipe's reason, built once


@dataclass(frozen=True)
class PackageLine:
    """A package as the overview shows it: its latest publication, and what its
    latest plan is doing with it now."""

    name: str
    latest: PublicationView | None
    state: str  # of the newest plan that had it
    reason: str
    build_url: str | None


def package_lines(engine: Engine) -> list[PackageLine]:
    with Session(engine) as session:
        newest = (select(func.max(Publication.id)).join(Package)
                  .group_by(Package.name).scalar_subquery())
        latest = {view.name: view for view in _views(session, Publication.id.in_(newest))}
        newest_planned = (select(func.max(PlanPackage.id))
                          .group_by(PlanPackage.name).scalar_subquery())
        planned = {p.name: p for p in session.scalars(
            select(PlanPackage).where(PlanPackage.id.in_(newest_planned)))}
        session.expunge_all()
    return [PackageLine(name, latest.get(name),
                        planned[name].state if name in planned else "published",
                        planned[name].reason if name in planned else "",
                        planned[name].build_url if name in planned else None)
            for name in sorted(set(latest) | set(planned))]


@dataclass(frozen=True)
class PackageHistory:
    """A package's publications and plans, newest first."""

    name: str
    publications: list[PublicationView]  # newest first
    planned: list[PlanPackage]  # newest first, with their plans
    inputs: list[BuildInput]  # of the newest publication's build
    images: list[Image]  # that carry any version of it, newest first


def package_history(engine: Engine, name: str, limit: int = 50) -> PackageHistory | None:
    with Session(engine) as session:
        publications = _views(session, Package.name == name, limit)
        planned = list(session.scalars(
            select(PlanPackage).where(PlanPackage.name == name)
            .options(selectinload(PlanPackage.plan))
            .order_by(PlanPackage.id.desc()).limit(limit)))
        newest_build = publications[0].build_id if publications else None
        inputs = list(session.scalars(select(BuildInput).where(
            BuildInput.build_id == newest_build).order_by(BuildInput.name)))
        images = list(session.scalars(
            select(Image).join(ImagePackage).where(ImagePackage.name == name)
            .options(selectinload(Image.packages))
            .order_by(Image.indexed.desc()).limit(limit)).unique())
        session.expunge_all()
    if not publications and not planned:
        return None
    return PackageHistory(name, publications, planned, inputs, images)


def publication_view(engine: Engine, publication_id: int) -> PublicationView | None:
    with Session(engine) as session:
        found = _views(session, Publication.id == publication_id, 1)
    return found[0] if found else None


def _views(session: Session, where: Any, limit: int | None = None) -> list[PublicationView]:
    newest_proof = (select(func.max(Provenance.id)).group_by(Provenance.subject)
                    .scalar_subquery())
    query = (select(Publication, Package, Build, Provenance)
             .join(Package, Publication.package_id == Package.id)
             .outerjoin(Build, Publication.build_id == Build.id)
             .outerjoin(Provenance, (Provenance.subject == Publication.manifest)
                        & Provenance.id.in_(newest_proof))
             .where(where).order_by(Publication.id.desc()))
    if limit is not None:
        query = query.limit(limit)
    views = []
    for publication, package, build, proof in session.execute(query):
        views.append(PublicationView(
            id=publication.id, name=package.name, version=package.version,
            fileset=package.fileset, archive=package.archive, manifest=publication.manifest,
            repository=publication.repository, tag=publication.tag,
            published=publication.published, requires=publication.requires,
            build_key=build.build_key if build else "",
            recipe_commit=build.recipe_commit if build else "",
            recipe_path=build.recipe_path if build else "",
            worker=build.worker if build else "", build_url=build.build_url if build else "",
            log_url=build.log_url if build else "", record=build.record if build else None,
            build_id=build.id if build else None,
            signer=proof.signer if proof else "", verified=proof.verified if proof else None,
            verified_at=proof.verified_at if proof else None,
            problem=proof.problem if proof else "",
            reproduced=tuple(line.split(" ", 1)[0] for line in build.reproduced.splitlines())
            if build else (),
            gate=build.gate if build else "",
            not_reproducible=build.not_reproducible if build else ""))
    return views


def recent_plans(engine: Engine, limit: int = 15) -> list[tuple[Plan, dict[str, int]]]:
    """The newest plans, each with how many of its packages are in which state."""
    with Session(engine) as session:
        plans = list(session.scalars(select(Plan).order_by(Plan.id.desc()).limit(limit)))
        counts: dict[int, dict[str, int]] = {plan.id: {} for plan in plans}
        rows = session.execute(
            select(PlanPackage.plan_id, PlanPackage.state, func.count())
            .where(PlanPackage.plan_id.in_(list(counts)))
            .group_by(PlanPackage.plan_id, PlanPackage.state))
        for plan_id, state, count in rows:
            counts[plan_id][state] = count
        session.expunge_all()
    return [(plan, counts[plan.id]) for plan in plans]


def plan_with_packages(engine: Engine, plan_id: int) -> Plan | None:
    with Session(engine) as session:
        plan = session.scalars(select(Plan).where(Plan.id == plan_id)
                               .options(selectinload(Plan.packages))).one_or_none()
        session.expunge_all()
    return plan
