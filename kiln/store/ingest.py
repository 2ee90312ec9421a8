"""Ingest: a directory on disk becomes a FileSet in the store.

Hashing is the cost. Files whose stat matches the hash index, and whose object
is present, are not read at all; the rest are read once, hashed and copied in
the same pass by worker processes, which start on the first batch while the
scan goes on.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
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
    index_entry,
)
from kiln.store.scan import ScannedFile, walk_directory
from kiln.store.staging import ObjectStager
from kiln.store.store import Store
from kiln.tree import Entry, FileEntry, Tree


@dataclass(frozen=True)
class IngestResult:
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
    scan_started = time.time_ns()
    cache = HashCache(store.layout.cache, str(root))
    cached = cache.load()
    with store.shared():
        # While the tree the index came from is stored, every object it names is.
        objects_known = cached.tree is not None and store.layout.tree_path(
            Digest(cached.tree)).exists()
        stager = store.stager(publish_now=True)
        try:
            progress.start("hashing", None)
            with FileReader(stager, progress, jobs or os.cpu_count() or 1) as reader:
                seen = _walk(root, cached, objects_known, stager, reader)
                rows = reader.results()
            progress.finish()
            seen.add_read(rows, scan_started - RACY_NS)
            unchanged = objects_known and seen.matches(cached)
            # Nothing changed since the last ingest: its tree is this tree.
            tree = None if unchanged else Tree.from_entries(seen.entries())
            tree_digest = Digest(str(cached.tree)) if tree is None else tree.digest
            fileset = FileSet(name, version, tree_digest, tuple(imports), metadata or Metadata())
            store.record(fileset, tree, stager, objects_checked=True)
        finally:
            stager.discard()
    if not unchanged:
        cache.save(Index(seen.remember, seen.others, fileset.tree))
    return IngestResult(fileset, seen.files, seen.bytes_total,
                        sum(item.size for item in seen.to_read), stager.bytes_written)


@dataclass
class _Seen:
    """What the walk found, sorted into what the index vouches for and what was read."""

    others: Others = field(default_factory=dict)  # path -> symlink target, None: directory
    linked: list[Entry] = field(default_factory=list)  # the directories and symlinks
    hits: list[ScannedFile] = field(default_factory=list)
    to_read: list[ScannedFile] = field(default_factory=list)
    read: list[FileEntry] = field(default_factory=list)
    # The index is rewritten whole: what it still holds true is remembered again.
    remember: Files = field(default_factory=dict)
    files: int = 0
    bytes_total: int = 0

    def add_read(self, rows: list[tuple[str, int]], cacheable_before: int) -> None:
        for item, (sha, size) in zip(self.to_read, rows, strict=True):
            self.read.append(FileEntry(item.path, size, sha, item.executable))
            # The size read wins over the size seen by stat; a file that
            # changed meanwhile is recorded as read and left out of the index.
            if size == item.size and item.changed_ns < cacheable_before:
                self.remember[item.path] = index_entry(item.stat_key, sha)

    def matches(self, index: Index) -> bool:
        """True when nothing was read and every file, directory and link is as indexed."""
        return (not self.to_read and len(self.remember) == len(index.files)
                and self.others == index.others)

    def entries(self) -> list[Entry]:
        # Entries for hits are made only here, when the tree must be rebuilt.
        hits = [FileEntry(item.path, item.size, entry_sha256(self.remember[item.path]),
                          item.executable) for item in self.hits]
        return [*self.linked, *hits, *self.read]


def _walk(root: Path, cached: Index, objects_known: bool, stager: ObjectStager,
          reader: FileReader) -> _Seen:
    seen = _Seen()
    for item in walk_directory(root):
        if not isinstance(item, ScannedFile):
            seen.linked.append(item)
            seen.others[item.path] = getattr(item, "target", None)
            continue
        seen.files += 1
        seen.bytes_total += item.size
        hit = cached.files.get(item.path)
        if hit is not None and hit.startswith(item.stat_key) and (
                objects_known or stager.has(entry_sha256(hit), item.executable)):
            seen.hits.append(item)
            seen.remember[item.path] = hit
        else:
            seen.to_read.append(item)
            reader.add(item)
    return seen
