"""Ingest: a directory on disk becomes a FileSet in the store.

Hashing is the cost. Files whose stat matches the directory's hash index, and
whose object is present, are not read at all; the rest are read once, hashed
and copied in the same pass, in one worker process per core:

- a first ingest scans in this process and hands files to the workers in
  batches as the scan goes (a tree too small for one batch never forks);
- a re-ingest of a large tree hands whole subtrees to the workers, which walk
  them against the index themselves, since then the walk is most of the work.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from kiln.canonical import Digest
from kiln.fileset import FileSet, Import, Metadata
from kiln.progress import NoProgress, Progress
from kiln.store.filereader import FileReader
from kiln.store.hashcache import (
    RACY_NS,
    Files,
    HashCache,
    Index,
    Others,
    entry_sha256,
    file_entry,
    index_entry,
)
from kiln.store.scan import ScannedFile, check_root, walk_directory
from kiln.store.staging import ObjectStager
from kiln.store.store import Store
from kiln.tree import DirectoryEntry, Entry, FileEntry, SymlinkEntry, Tree

# A re-ingest walks in parallel when the index lists at least this many files,
# in about SHARES_PER_JOB subtrees per worker so that uneven ones balance out.
PARALLEL_WALK_MIN_FILES = 2000
SHARES_PER_JOB = 8


@dataclass(frozen=True)
class IngestResult:
    """A FileSet ingested, and how much of its tree had to be hashed."""

    fileset: FileSet
    files: int
    bytes_total: int
    bytes_hashed: int
    bytes_written: int


def ingest_directory(
    store: Store,
    root: Path,
    *,
    name: str,
    version: str,
    imports: Sequence[Import] = (),
    metadata: Metadata | None = None,
    progress: Progress | None = None,
    jobs: int | None = None,
) -> IngestResult:
    """Add the tree at `root` to the store as NAME@VERSION and return its FileSet."""
    progress = progress or NoProgress()
    root = Path(root).absolute()
    check_root(root)
    jobs = jobs or os.cpu_count() or 1
    cacheable_before = time.time_ns() - RACY_NS
    cache = HashCache(store.layout.cache, str(root))
    cached = cache.load()
    with store.shared():
        # While the tree the index came from is stored, every object it names is.
        objects_known = cached.tree is not None and store.layout.tree_path(
            Digest(cached.tree)).exists()
        stager = store.stager(publish_now=True)
        try:
            progress.start("hashing", None)
            walk = _Walk(root, cached, objects_known, stager, cacheable_before)
            if jobs > 1 and len(cached.files) >= PARALLEL_WALK_MIN_FILES:
                seen = walk.in_workers(jobs, progress)
            else:
                seen = walk.here(jobs, progress)
            progress.finish()
            unchanged = objects_known and seen.matches(cached)
            # Nothing changed since the last ingest: its tree is this tree.
            tree = None if unchanged else Tree.from_entries(seen.entries(cached))
            tree_digest = Digest(str(cached.tree)) if tree is None else tree.digest
            fileset = FileSet(name, version, tree_digest, tuple(imports), metadata or Metadata())
            store.record(fileset, tree, stager, objects_checked=True)
        finally:
            stager.discard()
    if not unchanged:
        remember = {path: cached.files[path] for path in seen.hit_paths}
        remember.update(seen.remember)
        cache.save(Index(remember, seen.others, fileset.tree))
    return IngestResult(fileset, seen.files, seen.bytes_total, seen.bytes_read,
                        stager.bytes_written)


@dataclass
class _Seen:
    """What a walk found: what the index vouches for, and what was read."""

    others: Others = field(default_factory=dict)  # path -> symlink target, None: directory
    hit_paths: list[str] = field(default_factory=list)  # files the index vouches for
    read: list[FileEntry] = field(default_factory=list)  # files read this time
    remember: Files = field(default_factory=dict)  # index entries of the files read
    files: int = 0
    bytes_total: int = 0
    bytes_read: int = 0

    def add_other(self, item: DirectoryEntry | SymlinkEntry) -> None:
        self.others[item.path] = item.target if isinstance(item, SymlinkEntry) else None

    def add_read(self, item: ScannedFile, sha: str, size: int, cacheable_before: int) -> None:
        self.read.append(FileEntry(item.path, size, sha, item.executable))
        self.bytes_read += item.size
        # The size read wins over the size seen by stat; a file that changed
        # meanwhile is recorded as read and left out of the index.
        if size == item.size and item.changed_ns < cacheable_before:
            self.remember[item.path] = index_entry(item.stat_key, sha)

    def merge(self, other: _Seen) -> None:
        self.others.update(other.others)
        self.hit_paths.extend(other.hit_paths)
        self.read.extend(other.read)
        self.remember.update(other.remember)
        self.files += other.files
        self.bytes_total += other.bytes_total
        self.bytes_read += other.bytes_read

    def matches(self, index: Index) -> bool:
        """True when nothing was read and every file, directory and link is as indexed."""
        return (not self.read and len(self.hit_paths) == len(index.files)
                and self.others == index.others)

    def entries(self, index: Index) -> list[Entry]:
        # Entries of files the index vouches for are made only here, when the
        # tree must be rebuilt.
        linked: list[Entry] = [DirectoryEntry(path) if target is None
                               else SymlinkEntry(path, target)
                               for path, target in self.others.items()]
        hits = [file_entry(path, index.files[path]) for path in self.hit_paths]
        return [*linked, *hits, *self.read]


class _Walk:
    """One ingest's walk: sorts each entry into the index's hits and what to read."""

    def __init__(self, root: Path, cached: Index, objects_known: bool,
                 stager: ObjectStager, cacheable_before: int) -> None:
        self.root = root
        self.cached = cached
        self.objects_known = objects_known
        self.stager = stager
        self.cacheable_before = cacheable_before

    @property
    def known(self) -> Files | None:
        """What the scan may match on its own: the index, while its objects are known."""
        return self.cached.files if self.objects_known else None

    def _sort(self, seen: _Seen, item: str | ScannedFile | DirectoryEntry | SymlinkEntry
              ) -> ScannedFile | None:
        """Record an entry and count every file; a file that must be read is returned."""
        if isinstance(item, ScannedFile):
            seen.files += 1
            seen.bytes_total += item.size
            # Without a stored tree behind the index, each object is looked for.
            entry = self.cached.files.get(item.path)
            if entry is None or not entry.startswith(item.stat_key) or not self.stager.has(
                    entry_sha256(entry), item.executable):
                return item
            seen.hit_paths.append(item.path)
        elif isinstance(item, str):
            seen.files += 1
            seen.bytes_total += file_entry(item, self.cached.files[item]).size
            seen.hit_paths.append(item)
        else:
            seen.add_other(item)
        return None

    def here(self, jobs: int, progress: Progress) -> _Seen:
        """Scan in this process; workers read what the index cannot vouch for."""
        seen = _Seen()
        to_read: list[ScannedFile] = []
        with FileReader(self.stager, progress, jobs) as reader:
            for found in walk_directory(self.root, known=self.known):
                item = self._sort(seen, found)
                if item is not None:
                    to_read.append(item)
                    reader.add(item)
            rows = reader.results()
        for item, (sha, size) in zip(to_read, rows, strict=True):
            seen.add_read(item, sha, size, self.cacheable_before)
        return seen

    def share(self, start: str, recursive: bool = True) -> _Seen:
        """Walk one subtree, reading in this process what the index cannot vouch for."""
        seen = _Seen()
        for found in walk_directory(self.root, start=start, recursive=recursive,
                                    known=self.known):
            item = self._sort(seen, found)
            if item is not None:
                sha, size = self.stager.add_file(item.source, item.executable, item.size)
                seen.add_read(item, sha, size, self.cacheable_before)
        return seen

    def in_workers(self, jobs: int, progress: Progress) -> _Seen:
        """Hand subtrees to worker processes, each walking its share against the index."""
        seen = _Seen()
        # Breadth first, here, until there are enough subtrees to share out
        # evenly; each directory's own entry is recorded by its parent's level.
        frontier = [""]
        while frontier and len(frontier) < SHARES_PER_JOB * jobs:
            level = [self.share(start, recursive=False) for start in frontier]
            for part in level:
                seen.merge(part)
            frontier = [path for part in level for path, target in part.others.items()
                        if target is None]
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(jobs, mp_context=context, initializer=_start_worker,
                                 initargs=(self,)) as pool:
            # A few chunks per worker: one task per subtree would cost more in
            # round trips than a small subtree takes to walk.
            chunk = max(1, len(frontier) // (4 * jobs))
            for part, written in pool.map(_walk_share, frontier, chunksize=chunk):
                seen.merge(part)
                self.stager.bytes_written += written
                progress.advance(part.bytes_read)
        return seen


_worker_walk: _Walk | None = None


def _start_worker(walk: _Walk) -> None:
    global _worker_walk  # noqa: PLW0603 - one walk per worker process
    walk.stager = walk.stager.for_worker()
    _worker_walk = walk


def _walk_share(start: str) -> tuple[_Seen, int]:
    walk = _worker_walk
    assert walk is not None
    before = walk.stager.bytes_written
    seen = walk.share(start)
    return seen, walk.stager.bytes_written - before
