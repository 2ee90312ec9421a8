"""Garbage collection: drop what no named FileSet, pin or import reaches.

Roots are every NAME@VERSION and every pin; imports of a live FileSet are
live. Removal goes from the top down (materialised trees, then FileSet
records, then trees, then objects), so a crash at any point leaves only
unreferenced leftovers, never a record whose objects are gone.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from kiln.canonical import Digest
from kiln.errors import KilnError
from kiln.faults import crash_point
from kiln.hostconfig import CachePolicy
from kiln.store.caches import CacheReport, bound_caches
from kiln.store.materialize import remove_tree
from kiln.store.store import Store


@dataclass
class GcReport:
    """What `kiln store gc` removed and freed."""

    filesets_removed: list[str] = field(default_factory=list)
    trees_removed: int = 0
    objects_removed: int = 0
    bytes_freed: int = 0
    materialized_removed: int = 0
    temporary_removed: int = 0
    archives_removed: int = 0  # cached stable archives (cache/archives)
    caches: CacheReport = field(default_factory=CacheReport)  # what the policy bounded


def live_filesets(store: Store) -> set[Digest]:
    """Digests reachable from names and pins through imports."""
    live: set[Digest] = set()
    stack = [named.digest for named in store.named()] + store.pins()
    while stack:
        digest = stack.pop()
        if digest in live or not store.has(digest):
            continue
        live.add(digest)
        stack.extend(item.digest for item in store.get(digest).imports)
    return live


def collect_garbage(store: Store, policy: CachePolicy | None = None) -> GcReport:
    """Remove unreachable FileSets, trees, objects, materialised trees and temp files;
    then bound the caches by `policy` (kiln.store.caches), if it sets bounds."""
    report = GcReport()
    layout = store.layout
    with store.exclusive():
        live = live_filesets(store)
        live_trees: set[str] = set()
        live_objects: set[str] = set()
        for digest in live:
            fileset = store.get(digest)
            live_trees.add(layout.tree_path(fileset.tree).name)
            for entry in store.tree(fileset).files():
                live_objects.add(layout.object_path(entry.sha256, entry.executable).name)

        live_names = {layout.materialized_path(d).name for d in live}
        for path in sorted(layout.materialized.iterdir()):
            if path.name not in live_names:
                # Out of sight first: a gc killed half-way through removing it
                # must not leave a partial tree where store_tree would reuse it.
                doomed = layout.temp_name("dead-tree")
                os.rename(path, doomed)
                crash_point("gc-materialized")
                remove_tree(doomed)
                report.materialized_removed += 1

        for digest in store.all_digests():
            if digest not in live:
                report.filesets_removed.append(_describe(store, digest))
                layout.fileset_path(digest).unlink()
                crash_point("gc")

        for path in layout.trees.iterdir():
            if path.name not in live_trees:
                path.unlink()
                report.trees_removed += 1

        for prefix in layout.objects.iterdir():
            for path in prefix.iterdir():
                if path.name not in live_objects:
                    report.bytes_freed += path.lstat().st_size
                    path.unlink()
                    report.objects_removed += 1

        _collect_archives(store, live, report)
        if policy is not None and policy.bounded:
            report.caches = bound_caches(store, policy)

        # No writer holds the lock, so everything in tmp/ is left over from a crash.
        for path in layout.tmp.iterdir():
            if path.is_dir() and not path.is_symlink():
                remove_tree(path)
            else:
                path.unlink()
            report.temporary_removed += 1
        store.forget_cached()
    return report


def _collect_archives(store: Store, live: set[Digest], report: GcReport) -> None:
    """Cached archives of dead FileSets go; so do grouped image layers, which are
    remade from their packages' archives when an image needs them again."""
    directory = store.layout.cache / "archives"
    if not directory.is_dir():
        return
    live_hex = {digest.removeprefix("sha256:") for digest in live}
    for path in directory.iterdir():
        if path.name.split(".")[0] in live_hex:
            continue
        report.bytes_freed += path.lstat().st_size
        path.unlink()
        if path.suffix == ".tar":
            report.archives_removed += 1


def _describe(store: Store, digest: Digest) -> str:
    try:
        return f"{store.get(digest).label} ({digest})"
    except KilnError:
        return str(digest)
