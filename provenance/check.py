"""Proving a package or an image, from the registry: what `kiln verify`, `kiln policy
check` and `kiln image build --require-provenance` run.

A package: its artifact is pulled (every blob and the tree checked against their
digests, so a changed bit is caught), its bundles are fetched, one must verify
against who is trusted for its name, about this FileSet digest, with an SLSA
provenance predicate, and the policy's rules must hold.

An image: its manifest's bundle must verify the same way, its statement must name
exactly the packages the image's annotations list, each package must verify as
above, and each single-package layer must be the package artifact's own layer.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from kiln.canonical import Digest
from kiln.errors import CheckFailed, KilnError, NotFound
from kiln.fileset import FileSet
from kiln.registry.artifact import parse_fileset_manifest, pull_fileset
from kiln.registry.client import RegistryClient, client_for
from kiln.registry.config import RegistryConfig
from kiln.registry.reference import Reference
from kiln.registry.referrers import remembered_blobs
from kiln.store.store import Store
from provenance.bundle import BUNDLE_TYPE, parse_bundle
from provenance.policy import Evidence, TrustPolicy
from provenance.registry import fetch_bundles
from provenance.statement import IMAGE_TYPE
from provenance.verify import Trust, Verified, trusted_for, verify_bundle

if TYPE_CHECKING:  # a package's check needs neither: `kiln verify NAME@V` imports less
    from kiln.image.inspect import ImageSummary
    from kiln.image.location import LayoutStore, RegistryImageStore

T = TypeVar("T")


@dataclass(frozen=True)
class PackageProof:
    """A package verified: who signed it, and what its provenance says."""

    name: str
    version: str
    digest: Digest
    signer: str
    build_type: str
    builder: str
    layer: Digest
    build_key: str | None = None  # what a recipe build's statement signs
    reproduced_by: tuple[str, ...] = ()  # the workers a farm's gate found to agree
    not_reproducible: str = ""  # a recipe's reason, published built once

    def to_json(self) -> dict[str, object]:
        shown: dict[str, object] = {
            "name": self.name, "version": self.version, "digest": self.digest,
            "signer": self.signer, "buildType": self.build_type, "builder": self.builder,
            "reproducedBy": list(self.reproduced_by)}
        if self.not_reproducible:
            shown["notReproducible"] = self.not_reproducible
        return shown


@dataclass(frozen=True)
class ImageProof:
    """An image verified with each of its packages."""

    name: str
    version: str
    digest: Digest
    signer: str
    packages: tuple[PackageProof, ...]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "digest": self.digest,
                "signer": self.signer, "packages": [p.to_json() for p in self.packages]}


@dataclass
class Checker:
    """Verifies against a policy, or against one trust given on the command line."""

    store: Store
    config: RegistryConfig
    policy: TrustPolicy | None = None
    trust: Trust | None = None
    jobs: int = 8  # an image's packages verified side by side
    _clients: list[RegistryClient] = field(default_factory=list)
    _local: threading.local = field(default_factory=threading.local)

    def close(self) -> None:
        for client in self._clients:
            client.close()

    def client(self, host: str) -> RegistryClient:
        """This thread's client of `host` (a connection serves one request at a time)."""
        mine: dict[str, RegistryClient] = self._local.__dict__.setdefault("clients", {})
        if host not in mine:
            mine[host] = client_for(host, self.config)
            self._clients.append(mine[host])
        return mine[host]

    @property
    def remembered(self) -> Path:
        """Where verified packages' bundles are kept (a cache: `kiln store gc` bounds it)."""
        return self.store.layout.cache / "bundles"

    def trust_for(self, name: str) -> Trust:
        return trusted_for(name, self.trust, self.policy)

    def check_rules(self, evidence: Evidence) -> None:
        if self.policy is not None:
            self.policy.rules.verify(evidence)

    def package(self, reference: Reference) -> PackageProof:
        """Verify the FileSet artifact `reference` names, and its provenance."""
        client = self.client(reference.host)
        where = str(reference)
        try:
            manifest, _, manifest_digest = client.get_manifest(reference)
        except NotFound as exc:
            raise CheckFailed(f"{where}: nothing is published there, so there is no provenance"
                              " to verify (kiln attest publishes a package with its own)",
                              reason="no-provenance") from exc
        except KilnError as exc:
            raise CheckFailed(exc.message, reason=exc.reason, temporary=exc.temporary) from exc
        artifact = as_check(lambda: parse_fileset_manifest(manifest, where))
        fileset: FileSet = as_check(lambda: pull_fileset(self.store, client, reference,
                                                         manifest=manifest))
        verified = self._remembered(manifest_digest, fileset, where)
        if verified is None:
            # Bundles are kept in the store by their referrer's digest, listed by their
            # subject's: verifying again needs no referrers and no bundle fetched.
            bundles = as_check(lambda: fetch_bundles(client, reference.repository,
                                                     manifest_digest, self.remembered))
            verified = self.first_verified(bundles, fileset.name, fileset.digest, where)
        self.check_rules(Evidence(fileset.name, fileset.version, verified))
        return PackageProof(fileset.name, fileset.version, fileset.digest, verified.signer,
                            verified.build_type, verified.builder, artifact.layer.digest,
                            verified.build_key, verified.reproduced_by,
                            verified.not_reproducible)

    def _remembered(self, manifest: Digest, fileset: FileSet, where: str) -> Verified | None:
        """A bundle kept from an earlier verification of this very artifact manifest,
        checked again in full; None sends the caller to the registry's referrers (none
        kept, or none verifies under today's trust)."""
        kept = remembered_blobs(self.remembered, manifest)
        if not kept:
            return None
        try:
            return self.first_verified(kept, fileset.name, fileset.digest, where)
        except CheckFailed:
            return None

    def first_verified(self, bundles: list[bytes], name: str, subject: Digest,
                       where: str) -> Verified:
        """The first bundle that verifies; else the first one's failure."""
        if not bundles:
            raise CheckFailed(f"{where}: no provenance is attached", reason="no-provenance")
        trust = self.trust_for(name)
        failures: list[CheckFailed] = []
        for index, raw in enumerate(bundles):
            try:
                bundle = parse_bundle(raw, f"{where} bundle {index + 1}")
                return verify_bundle(bundle, trust, subject, where)
            except CheckFailed as exc:
                failures.append(exc)
            except KilnError as exc:
                failures.append(CheckFailed(exc.message, reason=exc.reason))
        raise failures[0]

    def image(self, location: LayoutStore | RegistryImageStore) -> ImageProof:
        """Verify an image's provenance and every package's."""
        from kiln.image.inspect import summarize

        manifest, digest = as_check_named(location.manifest)
        summary = as_check(lambda: summarize(manifest, digest, location.describe()))
        bundles = as_check(lambda: location.attachments(digest, BUNDLE_TYPE))
        verified = self.first_verified(bundles, summary.name, digest, location.describe())
        if verified.build_type != IMAGE_TYPE:
            raise CheckFailed(f"{location.describe()}: the statement is a {verified.build_type}"
                              " statement, not an image's", reason="wrong-build-type")
        _check_composition(verified, summary, location.describe())
        self.check_rules(Evidence(summary.name, summary.version, verified))
        references = [self.config.locate(p.name, p.version) for p in summary.packages]
        with ThreadPoolExecutor(max_workers=max(1, min(self.jobs, len(references)))) as pool:
            futures = [pool.submit(self.package, reference) for reference in references]
            wait(futures)
        proofs = []
        for package, future in zip(summary.packages, futures, strict=True):
            proof = future.result()  # the first failure in the image's order is the one told
            if proof.digest != package.digest:
                raise CheckFailed(f"{package.name}@{package.version} in the registry is"
                                  f" {proof.digest}, the image holds {package.digest}",
                                  reason="subject-mismatch")
            proofs.append(proof)
        _check_layers(summary, proofs, location.describe())
        return ImageProof(summary.name, summary.version, digest, verified.signer,
                          tuple(proofs))


    def admit(self, location: LayoutStore | RegistryImageStore) -> ImageProof:
        """The admission gate: denied versions, read from the image alone, are named all
        at once; then the image and every package must verify."""
        from kiln.image.inspect import summarize

        if self.policy is not None:
            manifest, digest = as_check_named(location.manifest)
            summary = as_check(lambda: summarize(manifest, digest, location.describe()))
            denied = []
            for package in summary.packages:
                try:
                    self.policy.denied.verify(Evidence(package.name, package.version))
                except CheckFailed:
                    denied.append(f"{package.name}@{package.version}")
            if denied:
                raise CheckFailed(f"{location.describe()} holds denied versions:"
                                  f" {', '.join(denied)}", reason="version-denied")
        return self.image(location)


def _check_composition(verified: Verified, summary: ImageSummary, where: str) -> None:
    dependencies = verified.predicate["buildDefinition"]["resolvedDependencies"]
    signed = {(d.get("name"), "sha256:" + d["digest"]["sha256"]) for d in dependencies
              if str(d.get("uri", "")).startswith("kiln:") and "@" in str(d.get("uri"))}
    listed = {(p.name, p.digest) for p in summary.packages}
    if signed != listed:
        raise CheckFailed(f"{where}: the image lists other packages than its signed statement"
                          f" ({len(listed ^ signed)} differ)", reason="statement-mismatch")


def _check_layers(summary: ImageSummary, proofs: list[PackageProof], where: str) -> None:
    by_digest = {p.digest: p for p in proofs}
    for layer in summary.layers:
        if len(layer.packages) == 1:
            proof = by_digest[layer.packages[0].digest]
            if layer.descriptor.digest != proof.layer:
                raise CheckFailed(f"{where}: the layer of {proof.name} is not its package's"
                                  f" archive", reason="layer-mismatch")


def as_check_named(action: Callable[[], T]) -> T:
    """`as_check` for what the user named: if it is not there at all, that stays bad
    input (exit 2), as `kiln pull` says it; anything else wrong fails the check."""
    try:
        return action()
    except NotFound:
        raise
    except KilnError as exc:
        raise CheckFailed(exc.message, reason=exc.reason, temporary=exc.temporary) from exc


def as_check(action: Callable[[], T]) -> T:
    """Run `action`; what goes wrong on the way (a digest mismatch, a missing blob) fails
    the check (exit 1) with its own reason. A service that could not be reached stays
    temporary (exit 75): the check did not run, it did not fail."""
    try:
        return action()
    except CheckFailed:
        raise
    except KilnError as exc:
        raise CheckFailed(exc.message, reason=exc.reason, temporary=exc.temporary) from exc
