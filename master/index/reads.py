"""What the console asks the index: a few queries a page, whatever the farm's size."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, selectinload

from master.index.models import Plan, PlanPackage, Publication


@dataclass(frozen=True)
class PackageLine:
    """A package as the overview shows it: its latest publication, and what its
    latest plan is doing with it now."""

    name: str
    latest: Publication | None
    state: str  # of the newest plan that had it
    reason: str
    build_url: str | None


def package_lines(engine: Engine) -> list[PackageLine]:
    with Session(engine) as session:
        newest_publication = (select(func.max(Publication.id))
                              .group_by(Publication.name).scalar_subquery())
        latest = {p.name: p for p in session.scalars(
            select(Publication).where(Publication.id.in_(newest_publication)))}
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
    name: str
    publications: list[Publication]  # newest first
    planned: list[PlanPackage]  # newest first, with their plans


def package_history(engine: Engine, name: str, limit: int = 50) -> PackageHistory | None:
    with Session(engine) as session:
        publications = list(session.scalars(
            select(Publication).where(Publication.name == name)
            .order_by(Publication.id.desc()).limit(limit)))
        planned = list(session.scalars(
            select(PlanPackage).where(PlanPackage.name == name)
            .options(selectinload(PlanPackage.plan))
            .order_by(PlanPackage.id.desc()).limit(limit)))
        session.expunge_all()
    if not publications and not planned:
        return None
    return PackageHistory(name, publications, planned)


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


def publication(engine: Engine, manifest: str) -> Publication | None:
    with Session(engine) as session:
        found = session.scalars(select(Publication).where(Publication.manifest == manifest)
                                .order_by(Publication.id.desc()).limit(1)).one_or_none()
        session.expunge_all()
    return found


def publication_by_id(engine: Engine, publication_id: int) -> Publication | None:
    with Session(engine) as session:
        found = session.get(Publication, publication_id)
        session.expunge_all()
    return found
