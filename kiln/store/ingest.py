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
from dataclasses import dataclass
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
    entries: list[Entry] = []
    others: Others = {}
    to_read: list[ScannedFile] = []
    hits: list[ScannedFile] = []  # made into entries only if the tree must be rebuilt
    # The index is rewritten whole: what it still holds true is remembered again.
    remember: Files = {}
    files = bytes_total = 0
    with store.shared():
        # While the tree the index came from is stored, every object it names is.
        objects_known = cached.tree is not None and store.layout.tree_path(
            Digest(cached.tree)).exists()
        stager = store.stager(publish_now=True)
        try:
            progress.start("hashing", None)
            with FileReader(stager, progress, jobs or os.cpu_count() or 1) as reader:
                for item in walk_directory(root):
                    if not isinstance(item, ScannedFile):
                        entries.append(item)
                        others[item.path] = getattr(item, "target", None)
                        continue
                    files += 1
                    bytes_total += item.size
                    hit = cached.files.get(item.path)
                    if hit is not None and hit.startswith(item.stat_key) and (
                            objects_known or stager.has(entry_sha256(hit), item.executable)):
                        hits.append(item)
                        remember[item.path] = hit
                    else:
                        to_read.append(item)
                        reader.add(item)
                rows = reader.results()
            progress.finish()
            cacheable_before = scan_started - RACY_NS
            for item, (sha, size) in zip(to_read, rows, strict=True):
                entries.append(FileEntry(item.path, size, sha, item.executable))
                # The size read wins over the size seen by stat; a file that
                # changed meanwhile is recorded as read and left out of the index.
                if size == item.size and item.changed_ns < cacheable_before:
                    remember[item.path] = index_entry(item.stat_key, sha)
            unchanged = (objects_known and not to_read and len(remember) == len(cached.files)
                         and others == cached.others)
            if unchanged:
                # Nothing changed since the last ingest: its tree is this tree.
                tree, tree_digest = None, Digest(str(cached.tree))
            else:
                entries.extend(FileEntry(item.path, item.size, entry_sha256(remember[item.path]),
                                         item.executable) for item in hits)
                tree = Tree.from_entries(entries)
                tree_digest = tree.digest
            fileset = FileSet(name, version, tree_digest, tuple(imports), metadata or Metadata())
            store.record(fileset, tree, stager, objects_checked=True)
        finally:
            stager.discard()
    if not unchanged:
        cache.save(Index(remember, others, fileset.tree))
    return IngestResult(fileset, files, bytes_total, sum(item.size for item in to_read),
                        stager.bytes_written)
