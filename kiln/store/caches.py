"""The store's caches, bounded by age and total size: `kiln store gc --keep-days N
--max-size SIZE`, or `gc:` in the host configuration, which a worker applies
between builds once its caches pass a threshold.

A cache holds what Kiln fetches or makes again on need: fetched sources, git
mirrors, build records and their logs, the ingest hash indexes, apt's binary
caches, stable archives, verified packages' bundles and materialised trees.
Named and pinned FileSets are never a cache; the policies bound the rest. An
entry's age is the time it was last used: its mtime, which every use sets
(`layout.mark_used`). First every entry unused for longer than keep-days goes;
then, while the caches are above max-size, the least recently used. Materialised
trees are hard links to the store's objects: removing one frees directory
entries, not data, so they count no bytes and go by age.

Called with the store's exclusive lock held: no build, ingest or pull runs then
(a build holds the shared lock from its start to its end), so nothing a running
build uses is collected.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from kiln.hostconfig import CachePolicy
from kiln.store.store import Store

DAY = 86400.0
# The order gc reports them in; the index of a kind also breaks ties of age.
KINDS = ("sources", "git-mirrors", "build-records", "kept-builds", "hash-indexes", "apt",
         "archives", "bundles", "materialized")


@dataclass(frozen=True)
class CacheEntry:
    """What gc removes of a cache at once, with its size and last use."""

    kind: str
    paths: tuple[Path, ...]  # removed together (a record and its log)
    size: int  # bytes its removal frees
    used: float  # when it was last used (the newest mtime of its paths)


@dataclass
class Freed:
    """How many entries, and bytes, gc freed of one kind."""

    entries: int = 0
    bytes: int = 0


@dataclass
class CacheReport:
    """What gc freed by kind, and what the caches hold after."""

    freed: dict[str, Freed] = field(default_factory=dict)
    kept_bytes: int = 0  # what the caches hold after the bounds

    def add(self, entry: CacheEntry) -> None:
        freed = self.freed.setdefault(entry.kind, Freed())
        freed.entries += 1
        freed.bytes += entry.size

    @property
    def bytes_freed(self) -> int:
        return sum(item.bytes for item in self.freed.values())


def cache_entries(store: Store) -> list[CacheEntry]:
    """Every entry of the store's caches."""
    layout = store.layout
    sources = layout.root / "sources"
    found: list[CacheEntry] = []
    found += [_file("sources", path) for path in _listing(sources / "sha256")]
    found += [_directory("git-mirrors", path, data=True) for path in _listing(sources / "git")]
    builds = layout.cache / "builds"
    for directory in (builds, builds / "failed"):  # failed builds keep their logs too
        found += [_files("build-records", (path, path.with_suffix(".log")))
                  for path in _listing(directory) if path.suffix == ".json"]
    # what `kiln build --keep-failed` kept of a failed run (workers/debugging.py)
    found += [_directory("kept-builds", path, data=True) for path in _listing(builds / "kept")]
    found += [_file("hash-indexes", path) for path in _listing(layout.cache)
              if path.suffix == ".index"]
    found += [_file("apt", path) for path in _listing(layout.cache / "apt")
              if path.suffix == ".bin"]
    groups: dict[str, list[Path]] = {}
    for path in _listing(layout.cache / "archives"):
        groups.setdefault(path.name.split(".")[0], []).append(path)
    found += [_files("archives", tuple(paths)) for paths in groups.values()]
    bundles = layout.cache / "bundles"  # the bundles, and the lists of them by subject
    found += [_file("bundles", path) for directory in (bundles, bundles / "subjects")
              for path in _listing(directory) if not path.is_dir()]
    found += [_directory("materialized", path, data=False)
              for path in _listing(layout.materialized)]
    return found


def caches_size(store: Store) -> int:
    """What the store's caches hold, in bytes (what a worker's threshold compares)."""
    return sum(entry.size for entry in cache_entries(store))


def bound_caches(store: Store, policy: CachePolicy, now: float | None = None) -> CacheReport:
    """Remove what the policy does not keep. Hold the store's exclusive lock."""
    report = CacheReport()
    entries = sorted(cache_entries(store), key=lambda e: (e.used, KINDS.index(e.kind)))
    now = time.time() if now is None else now
    kept: list[CacheEntry] = []
    for entry in entries:
        if policy.keep_days is not None and now - entry.used > policy.keep_days * DAY:
            _remove(store, entry, report)
        else:
            kept.append(entry)
    total = sum(entry.size for entry in kept)
    if policy.max_size is not None:
        survivors = []
        for entry in kept:  # the least recently used first
            if total > policy.max_size and (entry.size or policy.max_size == 0):
                _remove(store, entry, report)
                total -= entry.size
            else:
                survivors.append(entry)
        kept = survivors
    report.kept_bytes = total
    return report


def _remove(store: Store, entry: CacheEntry, report: CacheReport) -> None:
    from kiln.store.materialize import remove_tree

    for path in entry.paths:
        if path.is_dir() and not path.is_symlink():
            # Out of sight first: a gc killed half-way through must not leave a partial
            # tree or mirror where the next build would take it for whole.
            doomed = store.layout.temp_name("dead-cache")
            try:
                os.rename(path, doomed)
            except FileNotFoundError:
                continue
            remove_tree(doomed)
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
    report.add(entry)


def _listing(directory: Path) -> Iterator[Path]:
    try:
        names = sorted(os.listdir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return
    for name in names:
        if not name.startswith("."):  # a file being written (renamed into place when done)
            yield directory / name


def _file(kind: str, path: Path) -> CacheEntry:
    return _files(kind, (path,))


def _files(kind: str, paths: tuple[Path, ...]) -> CacheEntry:
    size, used = 0, 0.0
    for path in paths:
        try:
            status = path.lstat()
        except FileNotFoundError:
            continue
        size += status.st_size
        used = max(used, status.st_mtime)
    return CacheEntry(kind, paths, size, used)


def _directory(kind: str, path: Path, *, data: bool) -> CacheEntry:
    """A directory's entry: its files' bytes (`data`), or none (hard links to objects)."""
    size = 0
    if data:
        for top, _directories, files in os.walk(path):
            for name in files:
                with contextlib.suppress(FileNotFoundError):
                    size += os.lstat(os.path.join(top, name)).st_size
    try:
        used = path.lstat().st_mtime
    except FileNotFoundError:
        used = 0.0
    return CacheEntry(kind, (path,), size, used)
