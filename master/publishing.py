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
                  plan_key: str, reproduction: Reproduction | None = None) -> Published:
    """Check, sign, attach and tag what a worker pushed (its record already read), with
    what the gate found; then mark it with its plan key."""
    pushed = parse_reference(pushed_file.read_text().strip())
    _check_place(farm, record, pushed)
    registry = client(farm)
    try:
        published = publish(registry, pushed, record, open_signer(farm.signer), farm.builder_id,
                            reproduction)
        for tag in (build_key_tag(record.build_key), plan_tag(plan_key)):
            registry.put_manifest(pushed.repository, tag, published.manifest_bytes,
                                  MANIFEST_TYPE)
    finally:
        registry.close()
    return published


def _check_place(farm: FarmConfig, record: BuildRecord, pushed: Reference) -> None:
    """A worker may push only where the farm keeps that package."""
    expected = registry_config(farm).locate(record.output.name)
    if (pushed.host, pushed.repository) != (expected.host, expected.repository):
        raise KilnError(f"the worker pushed {record.output.name} to {pushed}, not to"
                        f" {expected.host}/{expected.repository}", reason="pushed-mismatch")
