"""Getting FileSets from the registries registries.yaml names: with their imports,
as fetchers for image composition, and the locked toolchain a worker builds with."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from kiln.errors import InputError

if TYPE_CHECKING:
    from kiln.fileset import FileSet, Import
    from kiln.recipes.lock import Lock
    from kiln.registry.config import RegistryConfig
    from kiln.registry.reference import Reference
    from kiln.store.store import Store

FetchPackage = Callable[[str, str], "FileSet"]


def pull_with_imports(store: Store, config: RegistryConfig, source: Reference) -> FileSet:
    """Pull `source`, and what it imports from where registries.yaml places it."""
    from kiln.registry.artifact import pull_fileset
    from kiln.registry.client import client_for

    def fetch_import(item: Import) -> FileSet:
        return pull_with_imports(store, config, config.locate(item.name, item.version))

    client = client_for(source.host, config)
    try:
        return pull_fileset(store, client, source, fetch_import=fetch_import)
    finally:
        client.close()


def registry_fetcher(store: Store, config: RegistryConfig) -> FetchPackage | None:
    """Pulls missing packages through registries.yaml, or None when nothing is mapped."""
    if not config.mappings:
        return None

    def fetch(name: str, version: str) -> FileSet:
        return pull_with_imports(store, config, config.locate(name, version))

    return fetch


def pull_locked(store: Store, config: RegistryConfig, lock: Lock, names: set[str]) -> int:
    """Pull from the registry every locked FileSet of `names`' closure the store lacks;
    how many. Each must come out with its locked digest: a farm's workers build with
    what the master published, never with what Debian serves today."""
    pulled = 0
    for name in sorted(lock.closure(names)):
        locked = lock.get(name)
        assert locked is not None
        if store.has(locked.digest):
            continue
        fileset = pull_with_imports(store, config, config.locate(name, locked.version))
        if fileset.digest != locked.digest:
            raise InputError(f"the registry's {name}@{locked.version} is {fileset.digest}; the"
                             f" lock pins {locked.digest}", reason="fileset-digest-mismatch")
        pulled += 1
    return pulled
