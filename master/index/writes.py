"""What the master writes to the index, each in one transaction: a plan with its
packages queued, a package's build starting and ending, a publication, a
verification. Called from threads (steps) and the index service; no Buildbot here."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from kiln.record import BuildRecord
from master.index.models import Plan, PlanPackage, Publication

# What a package of a plan can be; the last four are final.
QUEUED, BUILDING, RETRYING = "queued", "building", "retrying"
PUBLISHED, FAILED, SKIPPED, STOPPED, BROKEN = "published", "failed", "skipped", "stopped", "broken"
FINAL = frozenset({PUBLISHED, FAILED, SKIPPED, STOPPED, BROKEN})


@dataclass(frozen=True)
class PlannedPackage:
    name: str
    wave: int  # 0: not built
    plan_key: str = ""
    requires: Sequence[str] = ()
    state: str = QUEUED
    reason: str = ""


@dataclass(frozen=True)
class BuildPlace:
    """Where a build ran and where the console links to."""

    worker: str
    build_url: str
    log_url: str


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)  # stored as UTC, naive on every dialect


def record_plan(engine: Engine, commit: str, packages: Sequence[PlannedPackage], *,
                forced: str | None = None, dependents: bool = False, build_url: str = "",
                summary: str = "") -> int:
    """A new plan and its packages; its id (the package builds carry it)."""
    with Session(engine) as session, session.begin():
        plan = Plan(commit=commit, started=now(), forced=forced, dependents=dependents,
                    build_url=build_url, summary=summary)
        session.add(plan)
        for package in packages:
            plan.packages.append(PlanPackage(
                name=package.name, wave=package.wave, plan_key=package.plan_key,
                requires="\n".join(package.requires), state=package.state,
                reason=package.reason, updated=now()))
        session.flush()
        return plan.id


def package_building(engine: Engine, plan_id: int, name: str, place: BuildPlace) -> None:
    """A build of `name` started (again, after a lost worker)."""
    with Session(engine) as session, session.begin():
        session.execute(update(PlanPackage)
                        .where(PlanPackage.plan_id == plan_id, PlanPackage.name == name)
                        .values(state=BUILDING, reason="", worker=place.worker,
                                build_url=place.build_url, log_url=place.log_url,
                                updated=now()))


def package_finished(engine: Engine, plan_id: int, name: str, state: str,
                     reason: str = "") -> None:
    """A build of `name` ended; a published package stays published."""
    with Session(engine) as session, session.begin():
        session.execute(update(PlanPackage)
                        .where(PlanPackage.plan_id == plan_id, PlanPackage.name == name,
                               PlanPackage.state != PUBLISHED)
                        .values(state=state, reason=reason, updated=now()))


def record_publication(engine: Engine, record: BuildRecord, *, reference: str, manifest: str,
                       signer: str, plan_id: int | None, place: BuildPlace,
                       verified: bool = True, problem: str = "") -> int:
    """A published package, and its plan package marked published, together."""
    with Session(engine) as session, session.begin():
        planned = None
        if plan_id is not None:
            planned = session.scalars(select(PlanPackage).where(
                PlanPackage.plan_id == plan_id,
                PlanPackage.name == record.output.name)).one_or_none()
        publication = Publication(
            name=record.output.name, version=record.output.version,
            fileset=record.output.digest, archive=record.output.archive, manifest=manifest,
            reference=reference, recipe_commit=record.recipe.commit,
            recipe_path=record.recipe.path, build_key=record.build_key,
            plan_id=plan_id, worker=place.worker, build_url=place.build_url,
            log_url=place.log_url, published=now(), signer=signer,
            requires=planned.requires if planned is not None else "",
            record=record.to_bytes().decode(), verified=verified, verified_at=now(),
            verify_problem=problem)
        session.add(publication)
        if planned is not None:
            planned.state, planned.reason, planned.updated = PUBLISHED, "", now()
        session.flush()
        return publication.id


def record_verification(engine: Engine, manifest: str, verified: bool, problem: str) -> None:
    """What checking a publication's provenance again found."""
    with Session(engine) as session, session.begin():
        session.execute(update(Publication).where(Publication.manifest == manifest)
                        .values(verified=verified, verified_at=now(), verify_problem=problem))


def plan_packages(waves: Sequence[Sequence[str]], keys: Mapping[str, str],
                  requires: Mapping[str, Sequence[str]], broken: Mapping[str, str],
                  skipped: Mapping[str, str]) -> list[PlannedPackage]:
    """A plan's packages as the index keeps them: queued by wave, the rest not built."""
    packages = [PlannedPackage(name, index, keys.get(name, ""), requires.get(name, ()))
                for index, wave in enumerate(waves, start=1) for name in wave]
    packages += [PlannedPackage(name, 0, state=BROKEN, reason=why)
                 for name, why in sorted(broken.items())]
    packages += [PlannedPackage(name, 0, state=SKIPPED, reason=f"needs {below}, which is broken")
                 for name, below in sorted(skipped.items())]
    return packages
