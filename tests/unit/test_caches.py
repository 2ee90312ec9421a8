"""The store's caches as gc's bounds see them: entries are files (or a tree as one),
never a directory that holds entries of its own."""

from __future__ import annotations

from pathlib import Path

from kiln.hostconfig import CachePolicy
from kiln.store import Store
from kiln.store.caches import bound_caches, cache_entries


def test_kept_bundles_and_their_lists_are_entries_each(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "store")
    bundles = store.layout.cache / "bundles"
    (bundles / "subjects").mkdir(parents=True)
    (bundles / ("a" * 64)).write_bytes(b"{}")
    (bundles / "subjects" / ("b" * 64)).write_text("sha256:" + "a" * 64 + "\n")
    entries = [e for e in cache_entries(store) if e.kind == "bundles"]
    assert sorted(p.name for e in entries for p in e.paths) == ["a" * 64, "b" * 64]
    report = bound_caches(store, CachePolicy(max_size=0))
    assert report.freed["bundles"].entries == 2
    assert not any((bundles / "subjects").iterdir())
