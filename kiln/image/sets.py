"""Package sets: curated lists of package versions known to work together,
published as an artifact with a digest; an image that names a set draws its
versions from it.

    SET.yaml:  name: kiln.dev/sets/base
               version: "2026.11"
               packages: [kiln.dev/hello, kiln.dev/zlib (>= 1.2)]

Publishing resolves the closure in the store, pushes every package, then the set:
an OCI artifact (`application/vnd.kiln.set.v1`) whose config is the canonical
JSON `{format, name, version, packages: [{name, version, digest}]}`; the set's
digest is that config's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from kiln.canonical import Digest, canonical_json, parse_digest, sha256_digest
from kiln.errors import InputError
from kiln.image.resolve import resolve_packages
from kiln.image.spec import LockedPackage, parse_package_relation
from kiln.naming import validate_name, validate_version
from kiln.recipes.yamldoc import Reader, load_yaml_file
from kiln.registry.artifact import Descriptor, fetch_blob, push_fileset
from kiln.registry.client import RegistryClient, bytes_body, client_for
from kiln.registry.config import RegistryConfig
from kiln.registry.reference import Reference, is_registry_reference, parse_reference
from kiln.registry.referrers import EMPTY, EMPTY_TYPE
from kiln.store.store import Store

SET_ARTIFACT_TYPE = "application/vnd.kiln.set.v1"
SET_CONFIG_TYPE = "application/vnd.kiln.set.v1+json"
SET_FORMAT = "kiln.set/v1"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"


@dataclass(frozen=True)
class PackageSet:
    """A named, versioned set of package versions images draw from."""

    name: str
    version: str
    packages: tuple[LockedPackage, ...]

    def to_bytes(self) -> bytes:
        return canonical_json({"format": SET_FORMAT, "name": self.name, "version": self.version,
                               "packages": [p.to_json() for p in
                                            sorted(self.packages, key=lambda p: p.name)]})

    @property
    def digest(self) -> Digest:
        return sha256_digest(self.to_bytes())


def resolve_set(store: Store, file: Path) -> PackageSet:
    """Read SET.yaml and resolve its packages' closure in the store."""
    root = load_yaml_file(file)
    reader = Reader(str(file), "bad-set")
    top = reader.mapping(root, "the set", {"name", "version", "packages"},
                         {"name", "version", "packages"})
    name = reader.string(top.get("name"), "name", validate_name)
    version = reader.string(top.get("version"), "version", validate_version)
    wanted = reader.parsed(top.get("packages"), "packages", parse_package_relation)
    if reader.problems or name is None or version is None:
        raise InputError("; ".join(str(p) for p in reader.problems), reason="bad-set")
    packages = resolve_packages(store, wanted)
    return PackageSet(name, version, tuple(LockedPackage(f.name, f.version, f.digest)
                                           for f in packages))


def publish_set(store: Store, package_set: PackageSet, config: RegistryConfig) -> Reference:
    """Push every package of the set, then the set itself; returns where it went."""
    clients: dict[str, RegistryClient] = {}
    try:
        for package in package_set.packages:
            target = config.locate(package.name, package.version)
            client = clients.setdefault(target.host, client_for(target.host, config))
            push_fileset(store, store.get(package.digest), client, target)
        target = config.locate(package_set.name, package_set.version)
        client = clients.setdefault(target.host, client_for(target.host, config))
        data = package_set.to_bytes()
        client.push_blob(target.repository, package_set.digest, bytes_body(data))
        client.push_blob(target.repository, sha256_digest(EMPTY), bytes_body(EMPTY))
        manifest = canonical_json({
            "schemaVersion": 2, "mediaType": MANIFEST_TYPE, "artifactType": SET_ARTIFACT_TYPE,
            "config": Descriptor(SET_CONFIG_TYPE, package_set.digest, len(data)).to_json(),
            "layers": [Descriptor(EMPTY_TYPE, sha256_digest(EMPTY), len(EMPTY)).to_json()],
            "annotations": {"dev.kiln.set.name": package_set.name,
                            "dev.kiln.set.version": package_set.version,
                            "dev.kiln.set.digest": package_set.digest}})
        client.put_manifest(target.repository, target.tag or package_set.version, manifest,
                            MANIFEST_TYPE)
        return target.with_digest(sha256_digest(manifest))
    finally:
        for client in clients.values():
            client.close()


def fetch_set(text: str, config: RegistryConfig) -> PackageSet:
    """The set a reference names (`HOST/REPO:TAG`, or `NAME@VERSION` through registries.yaml)."""
    if is_registry_reference(text):
        reference = parse_reference(text)
    else:
        name, at, version = text.partition("@")
        if not at:
            raise InputError(f"set {text!r}: name it NAME@VERSION or HOST/REPO:TAG",
                             reason="bad-reference")
        reference = config.locate(name, version)
    client = client_for(reference.host, config)
    try:
        manifest, _, _ = client.get_manifest(reference)
        raw = json.loads(manifest)
        if raw.get("artifactType") != SET_ARTIFACT_TYPE:
            raise InputError(f"{reference} is not a Kiln package set", reason="not-a-set")
        descriptor = Descriptor(SET_CONFIG_TYPE, parse_digest(raw["config"]["digest"]),
                                int(raw["config"]["size"]))
        data = fetch_blob(client, reference.repository, descriptor, 16 << 20)
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{reference}: malformed set artifact ({exc})",
                         reason="not-a-set") from exc
    finally:
        client.close()
    return parse_set(data, str(reference))


def parse_set(data: bytes, where: str) -> PackageSet:
    try:
        raw = json.loads(data)
        if raw["format"] != SET_FORMAT:
            raise InputError(f"{where}: format {raw['format']!r}", reason="not-a-set")
        package_set = PackageSet(
            validate_name(raw["name"]), validate_version(raw["version"]),
            tuple(LockedPackage(validate_name(p["name"]), validate_version(p["version"]),
                                parse_digest(p["digest"])) for p in raw["packages"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{where}: malformed set ({exc})", reason="not-a-set") from exc
    if package_set.to_bytes() != data:
        raise InputError(f"{where}: the set is not in canonical form", reason="not-a-set")
    return package_set
