"""The locked Debian toolchain, published by the master: imported once through apt,
each with its signed import statement, so that workers pull it from the farm's
registry by digest and never talk to Debian, and the farm keeps every locked
.deb's FileSet after Debian drops that point release."""

from __future__ import annotations

from collections.abc import Iterable

from kiln.recipes.lock import Lock, ensure_locked
from kiln.store.store import Store
from master.config import FarmConfig
from master.publishing import client, registry_config
from provenance.attest import attest_fileset
from provenance.signers import open_signer
from provenance.statement import debian_statement


def publish_toolchain(farm: FarmConfig, lock: Lock, names: Iterable[str]) -> list[str]:
    """Publish the locked closure of `names` the registry lacks; the labels published."""
    config = registry_config(farm)
    wanted = sorted(lock.closure(set(names)))
    registry = client(farm)
    try:
        missing = []
        for name in wanted:
            locked = lock.get(name)
            assert locked is not None
            place = config.locate(name, locked.version)
            assert place.tag is not None
            if registry.manifest_exists(place.repository, place.tag) is None:
                missing.append(name)
    finally:
        registry.close()
    if not missing:
        return []
    store = Store.open(farm.path("master/store"))
    digests = ensure_locked(store, lock, set(missing))
    signer = open_signer(farm.signer)
    published = []
    with store.shared():
        for name in missing:
            fileset = store.get(digests[name])
            attest_fileset(store, fileset, debian_statement(fileset), signer, config)
            published.append(fileset.label)
    return published
