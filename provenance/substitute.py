"""Substitution, as Nix users know it from binary caches: before building, ask the
registry for a package published under the same build key, and take it instead,
but only once it verifies against the trust given and its signed statement names
that very build key (a moved tag cannot pass off another build)."""

from __future__ import annotations

from kiln.errors import CheckFailed, InputError
from kiln.fileset import FileSet
from kiln.record import build_key_tag
from kiln.registry.client import client_for
from kiln.registry.config import RegistryConfig
from kiln.registry.fetch import FetchPackage
from kiln.store.store import Store
from provenance.check import Checker


def published_build(store: Store, config: RegistryConfig, check: Checker, name: str,
                    build_key: str) -> FileSet | None:
    """The verified package published for `build_key`, pulled into `store`; None when
    the registry has none (or none is configured for `name`)."""
    try:
        place = config.locate(name)
    except InputError:
        return None
    tag = build_key_tag(build_key)
    client = client_for(place.host, config)
    try:
        if client.manifest_exists(place.repository, tag) is None:
            return None
    finally:
        client.close()
    proof = check.package(place.with_tag(tag))
    if proof.build_key != build_key:
        raise CheckFailed(f"{place.with_tag(tag)} is signed as build {proof.build_key}, not"
                          f" {build_key}: not taken", reason="substitute-mismatch")
    return store.get(proof.digest)


def verified_fetcher(store: Store, config: RegistryConfig, check: Checker) -> FetchPackage:
    """Fetches a package by name and version from the registry, verified."""
    def fetch(name: str, version: str) -> FileSet:
        proof = check.package(config.locate(name, version))
        return store.get(proof.digest)

    return fetch
