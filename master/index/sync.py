"""The index from what a registry holds: every repository, every tag, each manifest
read once. The registry is the truth; this rebuilds the index from it (`kiln index
sync REGISTRY`) and keeps a farm's index current with images anyone pushed (the
master runs it every few seconds).

What a manifest is decides what is written: a Kiln FileSet artifact is a package
and its publication, and the SLSA statement in its bundle is its build (key,
recipe commit, every toolchain input); a Kiln image is an image with the packages
its annotations list. Tags Kiln keeps for itself (`build-KEY`, `plan-KEY`, the
referrers fallback's `sha256-...`) name manifests indexed under their version tag.
What the registry does not hold (workers, build logs, plans) is not invented.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session

from kiln.canonical import Digest, sha256_digest
from kiln.errors import InputError, KilnError
from kiln.image.annotations import PACKAGES
from kiln.image.inspect import summarize
from kiln.registry.artifact import ARTIFACT_TYPE, parse_fileset_manifest
from kiln.registry.client import RegistryClient
from kiln.registry.reference import Reference
from master.index.models import (
    Build,
    BuildInput,
    Image,
    ImagePackage,
    Package,
    PackageSet,
    Provenance,
    Publication,
)
from master.index.writes import (
    Published,
    now,
    package_row,
    provenance_row,
    publication_row,
    reproduced_columns,
)
from provenance.bundle import BUNDLE_TYPE, parse_bundle
from provenance.registry import fetch_bundles
from provenance.statement import BUILD_TYPE, read_reproduction
from provenance.verify import Trust, verify_bundle

_OWN_TAGS = re.compile(r"(build|plan)-[0-9a-f]{64}|sha256-[0-9a-f]{64}(\..*)?")
_REFERRERS_TAG = re.compile(r"sha256-(?P<hex>[0-9a-f]{64})")
_PAGE = 200
_MANIFEST_LIMIT = 4 << 20
_INPUT = re.compile(r"kiln:(?P<name>[^@]+)@(?P<version>.+)")


@dataclass
class SyncReport:
    """What a sync of the index with the registry found."""

    repositories: int = 0
    packages: int = 0  # manifests indexed as packages
    images: int = 0
    unchanged: int = 0  # already indexed at the same digest
    skipped: list[str] = field(default_factory=list)  # not Kiln's, or unreadable: why

    def to_json(self) -> dict[str, Any]:
        return {"repositories": self.repositories, "packages": self.packages,
                "images": self.images, "unchanged": self.unchanged, "skipped": self.skipped}


def sync_registry(engine: Engine, client: RegistryClient, host: str,
                  trust: Trust | None = None,
                  settled: set[tuple[str, str, str]] | None = None) -> SyncReport:
    """Index every repository of the registry at `host`; what is indexed already at the
    same digest is not read again, nor (with `settled`, kept between syncs) what was
    found not to be Kiln's or a referrers tag whose bundles are indexed. With `trust`,
    bundles are verified; without, the signer is recorded as the bundle names it and
    `verified` stays unknown."""
    report = SyncReport()
    settled = set() if settled is None else settled
    for repository in catalog(client):
        report.repositories += 1
        for tag in tags(client, repository):
            try:
                if referrers := _REFERRERS_TAG.fullmatch(tag):
                    sync_late_bundles(engine, client, host, repository, tag,
                                      Digest(f"sha256:{referrers['hex']}"), trust, settled)
                    continue
                if _OWN_TAGS.fullmatch(tag):
                    continue
                sync_tag(engine, client, host, repository, tag, trust, report, settled)
            except KilnError as exc:
                if exc.temporary:
                    raise  # the registry went away: say so, index nothing half
                report.skipped.append(f"{host}/{repository}:{tag}: {exc.message}")
    return report


def sync_tag(engine: Engine, client: RegistryClient, host: str, repository: str, tag: str,
             trust: Trust | None, report: SyncReport,
             settled: set[tuple[str, str, str]]) -> None:
    digest = client.manifest_exists(repository, tag)
    where = f"{host}/{repository}"
    if digest is None or (where, tag, digest) in settled or \
            _indexed(engine, where, tag, digest):
        report.unchanged += digest is not None
        return
    manifest, _, digest = client.get_manifest(Reference(host, repository, tag=tag))
    if len(manifest) > _MANIFEST_LIMIT:
        raise InputError(f"{where}:{tag}: manifest too large", reason="bad-manifest")
    kind = _kind(manifest)
    if kind is None:
        settled.add((where, tag, digest))
        report.skipped.append(f"{where}:{tag}: not a Kiln package or image")
        return
    bundles = [(sha256_digest(raw), raw) for raw in fetch_bundles(client, repository, digest)]
    if kind == "package":
        index_package(engine, where, tag, digest, manifest, bundles, trust)
        report.packages += 1
    else:
        index_image(engine, where, tag, digest, manifest, bundles, trust)
        report.images += 1


def index_package(engine: Engine, repository: str, tag: str, digest: Digest, manifest: bytes,
                  bundles: list[tuple[Digest, bytes]], trust: Trust | None) -> None:
    """A package's manifest, its provenance, and the build its statement describes."""
    artifact = parse_fileset_manifest(manifest, f"{repository}:{tag}")
    with Session(engine) as session, session.begin():
        package = package_row(session, artifact.name, artifact.version,
                              artifact.config.digest, artifact.layer.digest)
        build_id = _index_bundles(session, f"{repository}:{tag}", digest, bundles, trust,
                                  package)
        publication_row(session, package, Published(repository, tag, digest, ""),
                        build_id=build_id, requires=None)


def index_image(engine: Engine, repository: str, tag: str, digest: Digest, manifest: bytes,
                bundles: list[tuple[Digest, bytes]], trust: Trust | None) -> None:
    """An image and the packages it carries, replacing what its tag named before."""
    summary = summarize(manifest, digest, f"{repository}:{tag}")
    with Session(engine) as session, session.begin():
        image = session.scalars(select(Image).where(Image.repository == repository,
                                                    Image.tag == tag)).one_or_none()
        if image is None:
            image = Image(repository=repository, tag=tag)
            session.add(image)
        image.digest, image.name, image.version = digest, summary.name, summary.version
        image.previous, image.indexed = summary.previous, now()
        image.package_set = _package_set(session, summary.set) if summary.set else None
        image.packages = [ImagePackage(name=p.name, version=p.version, fileset=p.digest,
                                       overridden=p.name in summary.overrides)
                          for p in summary.packages]
        _index_bundles(session, f"{repository}:{tag}", digest, bundles, trust, None)


def sync_late_bundles(engine: Engine, client: RegistryClient, host: str, repository: str,
                      tag: str, subject: Digest, trust: Trust | None,
                      settled: set[tuple[str, str, str]]) -> None:
    """The bundles of an indexed package or image, read again when its referrers tag
    lists more than the index holds; a subject not indexed yet is left to its own tag,
    whose sync reads its bundles."""
    where = f"{host}/{repository}"
    digest = client.manifest_exists(repository, tag)
    if digest is None or (where, tag, digest) in settled:
        return
    with Session(engine) as session:
        package = session.scalar(select(Package).join(
            Publication, Publication.package_id == Package.id).where(
            Publication.repository == where, Publication.manifest == subject).limit(1))
        image = session.scalar(select(Image.id).where(
            Image.repository == where, Image.digest == subject).limit(1))
        held = session.scalar(select(func.count()).select_from(Provenance).where(
            Provenance.subject == subject)) or 0
    if package is None and image is None:
        return
    listed, _, _ = client.get_manifest(Reference(host, repository, tag=tag))
    if len(listed) > _MANIFEST_LIMIT:
        raise InputError(f"{where}:{tag}: referrers index too large", reason="bad-manifest")
    try:
        entries = json.loads(listed).get("manifests") or []
        attached = sum(1 for entry in entries if entry.get("artifactType") == BUNDLE_TYPE)
    except (ValueError, AttributeError, TypeError) as exc:
        raise InputError(f"{where}:{tag}: the referrers index is malformed",
                         reason="bad-manifest") from exc
    if attached > held:
        bundles = [(sha256_digest(raw), raw)
                   for raw in fetch_bundles(client, repository, subject)]
        with Session(engine) as session, session.begin():
            if package is not None:
                package = session.merge(package)
            build_id = _index_bundles(session, f"{where}@{subject}", subject, bundles, trust,
                                      package)
            if build_id is not None:
                session.execute(update(Publication).where(
                    Publication.repository == where, Publication.manifest == subject,
                    Publication.build_id.is_(None)).values(build_id=build_id))
    settled.add((where, tag, digest))


def _index_bundles(session: Session, where: str, subject: Digest,
                   bundles: list[tuple[Digest, bytes]], trust: Trust | None,
                   package: Package | None) -> int | None:
    """Each bundle attached to `subject` (a package's manifest, verified against its
    FileSet, or an image's); the build the first package statement describes."""
    build_id = None
    signed = Digest(package.fileset) if package is not None else subject  # what a statement names
    for bundle_digest, raw in bundles:
        proof = _proof(raw, trust, signed, where)
        provenance_row(session, Published("", "", subject, bundle_digest, proof.signer,
                                          proof.verified, proof.problem))
        if package is not None and proof.statement is not None and build_id is None:
            build_id = _build_from_statement(session, package.id, proof.statement)
    return build_id


def catalog(client: RegistryClient) -> Iterator[str]:
    """Every repository, page by page (the registry's `last` marker)."""
    yield from _pages(client, "/v2/_catalog", "repositories", "catalog")


def tags(client: RegistryClient, repository: str) -> Iterator[str]:
    yield from _pages(client, f"/v2/{repository}/tags/list", "tags", "tags")


@dataclass(frozen=True)
class _Proof:
    """A publication's provenance as the sync checked it."""

    signer: str
    verified: bool | None
    problem: str
    statement: dict[str, Any] | None


def _proof(raw: bytes, trust: Trust | None, subject: Digest, where: str) -> _Proof:
    """Who signed a bundle and what it says; verified when a trust is given."""
    try:
        bundle = parse_bundle(raw, f"{where} bundle")
        if trust is not None:
            verified = verify_bundle(bundle, trust, subject, where)
            return _Proof(verified.signer, True, "", verified.statement)
        statement = json.loads(bundle.envelope.payload)
        signer = "keyless" if bundle.keyless else f"key {bundle.key_hint}"
        return _Proof(signer, None, "", statement if isinstance(statement, dict) else None)
    except KilnError as exc:
        return _Proof("", False, f"{exc.message} [{exc.reason}]", None)
    except ValueError as exc:
        return _Proof("", False, f"{where}: the statement is not JSON ({exc})", None)


def _build_from_statement(session: Session, package_id: int,
                          statement: dict[str, Any]) -> int | None:
    """The build a recipe build's statement describes (None for other kinds)."""
    try:
        definition = statement["predicate"]["buildDefinition"]
        run = statement["predicate"]["runDetails"]
        if definition["buildType"] != BUILD_TYPE:
            return None
        key = str(definition["internalParameters"]["buildKey"])
        recipes = definition["externalParameters"]["recipes"]
        metadata = run.get("metadata") or {}
        started = str(metadata.get("startedOn", ""))
        inputs = []
        for dependency in definition["resolvedDependencies"]:
            match = _INPUT.fullmatch(str(dependency.get("uri", "")))
            digest = (dependency.get("digest") or {}).get("sha256")
            if match and digest:
                inputs.append(BuildInput(name=match["name"], version=match["version"],
                                         digest=f"sha256:{digest}"))
    except (KeyError, TypeError):
        return None  # a statement of another shape: the package stands without a build
    found = session.scalars(select(Build).where(
        Build.package_id == package_id, Build.build_key == key,
        Build.started == started)).one_or_none()
    if found is None:
        found = Build(package_id=package_id, build_key=key,
                      recipe_repo=str(recipes.get("repository", "")),
                      recipe_commit=str(recipes.get("commit", "")),
                      recipe_path=str(recipes.get("path", "")),
                      builder=str((run.get("builder") or {}).get("id", "")),
                      started=started, finished=str(metadata.get("finishedOn", "")),
                      inputs=inputs)
        reproduction = read_reproduction(statement["predicate"])
        if reproduction is not None:
            found.reproduced, found.gate, found.not_reproducible = reproduced_columns(
                reproduction)
        session.add(found)
        session.flush()
    return found.id


def _package_set(session: Session, digest: str) -> PackageSet:
    found = session.scalars(select(PackageSet).where(PackageSet.digest == digest)).one_or_none()
    if found is None:
        found = PackageSet(digest=digest)
        session.add(found)
    return found


def _indexed(engine: Engine, repository: str, tag: str, digest: str) -> bool:
    with Session(engine) as session:
        package = session.scalar(select(Publication.manifest).where(
            Publication.repository == repository, Publication.tag == tag))
        image = session.scalar(select(Image.digest).where(
            Image.repository == repository, Image.tag == tag))
    return digest in (package, image)


def _kind(manifest: bytes) -> str | None:
    try:
        raw = json.loads(manifest)
    except ValueError:
        return None
    if not isinstance(raw, dict):
        return None
    if raw.get("artifactType") == ARTIFACT_TYPE:
        return "package"
    if PACKAGES in (raw.get("annotations") or {}):
        return "image"
    return None


def _pages(client: RegistryClient, path: str, key: str, what: str) -> Iterator[str]:
    last = ""
    while True:
        query = f"?n={_PAGE}" + (f"&last={last}" if last else "")
        answer = client.get_json(path + query, kind=what, ok=(200, 404))
        if answer.status == 404:
            answer.read_all(1 << 16, what)
            return
        items = json.loads(answer.read_all(8 << 20, what)).get(key) or []
        yield from items
        if len(items) < _PAGE or "next" not in (answer.headers.get("Link") or ""):
            return
        last = items[-1]
