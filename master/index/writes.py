"""What the master writes to the index, each in one transaction: a plan with its
packages queued, a package's build starting and ending, a publication, a
verification. Called from threads (steps) and the index service; no Buildbot here."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from kiln.record import BuildRecord, Output
from master.index.models import (
    Build,
    BuildInput,
    Package,
    Plan,
    PlanPackage,
    Provenance,
    Publication,
)
from provenance.statement import Reproduction, repository_uri

# What a package of a plan can be: on its way, or where it ended.
QUEUED, BUILDING, RETRYING = "queued", "building", "retrying"
PUBLISHED, FAILED, SKIPPED, STOPPED, BROKEN = "published", "failed", "skipped", "stopped", "broken"


@dataclass(frozen=True)
class PlannedPackage:
    """A recipe's place in a plan: its wave and plan key."""

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


@dataclass(frozen=True)
class Published:
    """Where a package landed in the registry, and the bundle attached to it."""

    repository: str  # HOST/REPOSITORY
    tag: str
    manifest: str
    bundle: str  # the bundle blob's digest
    signer: str = ""
    verified: bool | None = None
    problem: str = ""


def record_publication(engine: Engine, record: BuildRecord, published: Published, *,
                       plan_id: int | None, place: BuildPlace, builder: str = "",
                       reproduction: Reproduction | None = None,
                       output: Output | None = None) -> int:
    """A package the farm published (the record's, or `output`, another package of a
    split build), its build (record, inputs, worker), its provenance and its plan
    package marked published: one transaction. Written again (a retry after a commit
    whose answer was lost), it changes nothing."""
    output = output or record.output
    with Session(engine) as session, session.begin():
        package = package_row(session, output.name, output.version, output.digest,
                              output.archive)
        build = session.scalars(select(Build).where(
            Build.package_id == package.id, Build.build_key == record.build_key,
            Build.started == record.started)).one_or_none()
        if build is None:
            build = Build(package_id=package.id, build_key=record.build_key,
                          recipe_repo=repository_uri(record.recipe.repo),
                          recipe_commit=record.recipe.commit, recipe_path=record.recipe.path,
                          builder=builder, started=record.started, finished=record.finished)
            build.inputs = [BuildInput(name=d.name, version=d.version, digest=d.digest)
                            for d in record.build_requires]
            session.add(build)
        build.worker, build.plan_id = place.worker, plan_id
        build.build_url, build.log_url = place.build_url, place.log_url
        build.record = record.to_bytes().decode()
        if reproduction is not None:
            build.reproduced, build.gate, build.not_reproducible = reproduced_columns(
                reproduction)
        planned = None
        if plan_id is not None:
            planned = session.scalars(select(PlanPackage).where(
                PlanPackage.plan_id == plan_id,
                PlanPackage.name == output.name)).one_or_none()
        session.flush()
        publication = publication_row(session, package, published, build_id=build.id,
                                      requires=planned.requires if planned else None)
        provenance_row(session, published)
        if planned is not None:
            planned.state, planned.reason, planned.updated = PUBLISHED, "", now()
            if reproduction is not None:
                planned.gate = gate_summary(reproduction)
        session.flush()
        return publication.id


def reproduced_columns(reproduction: Reproduction) -> tuple[str, str, str]:
    """The builds table's reproducibility columns: agreeing builds, the rule, a reason."""
    return ("\n".join(f"{b.worker} {b.record}" for b in reproduction.agreed),
            f"{reproduction.agree} of {reproduction.builds}", reproduction.unreproducible)


def gate_summary(reproduction: Reproduction) -> str:
    if reproduction.unreproducible:
        return f"declared not reproducible, built once: {reproduction.unreproducible}"
    workers = ", ".join(b.worker for b in reproduction.agreed)
    return (f"reproduced by {len(reproduction.agreed)} builds ({workers}); the gate asked"
            f" {reproduction.agree} of {reproduction.builds}")


def package_gate(engine: Engine, plan_id: int, name: str, summary: str,
                 report: str | None = None) -> None:
    """What the gate says of `name` in a plan (and, on a refusal, why the builds differ)."""
    with Session(engine) as session, session.begin():
        session.execute(update(PlanPackage)
                        .where(PlanPackage.plan_id == plan_id, PlanPackage.name == name)
                        .values(gate=summary, report=report, updated=now()))


def package_row(session: Session, name: str, version: str, fileset: str,
                archive: str) -> Package:
    found = session.scalars(select(Package).where(
        Package.name == name, Package.version == version,
        Package.fileset == fileset)).one_or_none()
    if found is None:
        found = Package(name=name, version=version, fileset=fileset, archive=archive)
        session.add(found)
        session.flush()
    return found


def publication_row(session: Session, package: Package, published: Published, *,
                    build_id: int | None, requires: str | None) -> Publication:
    """The repository's tag now names this package (a rebuild moves the tag)."""
    found = session.scalars(select(Publication).where(
        Publication.repository == published.repository,
        Publication.tag == published.tag)).one_or_none()
    if found is None:
        found = Publication(repository=published.repository, tag=published.tag)
        session.add(found)
    if found.manifest != published.manifest or found.package_id != package.id:
        found.published = now()
    found.package_id, found.manifest = package.id, published.manifest
    if build_id is not None:
        found.build_id = build_id
    if requires is not None:
        found.requires = requires
    return found


def provenance_row(session: Session, published: Published) -> Provenance:
    found = session.scalars(select(Provenance).where(
        Provenance.subject == published.manifest,
        Provenance.bundle == published.bundle)).one_or_none()
    if found is None:
        found = Provenance(subject=published.manifest, bundle=published.bundle)
        session.add(found)
    found.signer, found.verified, found.problem = (published.signer, published.verified,
                                                   published.problem)
    found.verified_at = now() if published.verified is not None else None
    return found


def record_verification(engine: Engine, manifest: str, verified: bool, problem: str,
                        signer: str = "") -> None:
    """What checking a manifest's provenance again found."""
    with Session(engine) as session, session.begin():
        values: dict[str, object] = {"verified": verified, "verified_at": now(),
                                     "problem": problem}
        if signer:
            values["signer"] = signer
        session.execute(update(Provenance).where(Provenance.subject == manifest)
                        .values(**values))


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
