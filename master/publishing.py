"""What the master asks the registry: which plan keys are published, and publishing a
worker's build under its plan key. No Buildbot here: the steps call these."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from kiln.errors import KilnError
from kiln.record import BuildRecord, build_key_tag
from kiln.registry.artifact import MANIFEST_TYPE
from kiln.registry.client import RegistryClient, client_for
from kiln.registry.config import Mapping as RegistryMapping
from kiln.registry.config import RegistryConfig
from kiln.registry.reference import Reference, parse_reference
from master.config import FarmConfig
from provenance.publish import Published, publish
from provenance.signers import open_signer
from provenance.statement import Reproduction


def registry_config(farm: FarmConfig) -> RegistryConfig:
    """Every name lives under the farm's registry prefix (registries.yaml's form)."""
    settings = farm.registry
    plain, tls = (frozenset({settings.host}), frozenset()) if settings.http \
        else (frozenset(), frozenset({settings.host}))
    return RegistryConfig((RegistryMapping("", f"{settings.host}/{settings.prefix}"),),
                          plain, tls)


def client(farm: FarmConfig) -> RegistryClient:
    """The farm's registry, with the credentials the auth file holds for it (a deployed
    farm's registry asks for them: $REGISTRY_AUTH_FILE, as podman and skopeo read it)."""
    return client_for(farm.registry.host, registry_config(farm))


def plan_tag(key: str) -> str:
    """The tag that marks a package as the output of a plan key."""
    return "plan-" + key.removeprefix("sha256:")


def published_keys(farm: FarmConfig, keys: Mapping[str, str]) -> set[str]:
    """The plan keys (of `keys`, recipe -> key) the registry holds a package for."""
    config = registry_config(farm)
    found: set[str] = set()
    registry = client(farm)
    try:
        for name, key in keys.items():
            if registry.manifest_exists(config.locate(name).repository, plan_tag(key)) is not None:
                found.add(key)
    finally:
        registry.close()
    return found


def publish_build(farm: FarmConfig, record: BuildRecord, pushed_file: Path,
                  plan_key: str, reproduction: Reproduction | None = None
                  ) -> list[Published]:
    """Check, sign, attach and tag what a worker pushed (its record already read), with
    what the gate found; then mark it with its plan key. A split build pushed one
    package a line, in the record's order: each is published, the package first."""
    lines = pushed_file.read_text().split()
    if len(lines) != len(record.outputs):
        raise KilnError(f"the worker pushed {len(lines)} packages; the record names"
                        f" {len(record.outputs)}", reason="pushed-mismatch")
    places = [(output, parse_reference(line))
              for output, line in zip(record.outputs, lines, strict=True)]
    for output, pushed in places:
        _check_place(farm, output.name, pushed)
    signer = open_signer(farm.signer)
    registry = client(farm)
    published = []
    try:
        # The package last: its plan tag says the whole build is published
        # (published_keys), so a publication cut short is done again, outputs and all.
        for output, pushed in [*places[1:], places[0]]:
            made = publish(registry, pushed, record, signer, farm.builder_id, reproduction,
                           output)
            for tag in (build_key_tag(record.build_key), plan_tag(plan_key)):
                registry.put_manifest(pushed.repository, tag, made.manifest_bytes,
                                      MANIFEST_TYPE)
            published.append(made)
    finally:
        registry.close()
    return [published[-1], *published[:-1]]  # the package first, as the record has it


def _check_place(farm: FarmConfig, name: str, pushed: Reference) -> None:
    """A worker may push only where the farm keeps that package."""
    expected = registry_config(farm).locate(name)
    if (pushed.host, pushed.repository) != (expected.host, expected.repository):
        raise KilnError(f"the worker pushed {name} to {pushed}, not to"
                        f" {expected.host}/{expected.repository}", reason="pushed-mismatch")
