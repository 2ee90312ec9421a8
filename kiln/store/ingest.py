"""Ingest: a directory on disk becomes a FileSet in the store.

Hashing is the cost. Files whose stat matches the hash cache and whose object
is present are not read at all; the rest are read once, hashed and copied into
staging in the same pass, on as many threads as there are cores (hashlib and
file I/O release the GIL).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from kiln.fileset import FileSet, Import, Metadata
from kiln.progress import NoProgress, Progress
from kiln.store.hashcache import RACY_NS, HashCache, StatKey
from kiln.store.scan import ScannedFile, scan_directory
from kiln.store.staging import ObjectStager
from kiln.store.store import Store
from kiln.tree import Entry, FileEntry, Tree

# Work is handed to threads in batches, so that per-task overhead stays small
# next to the I/O on trees of many small files.
BATCH_BYTES = 8 << 20
BATCH_FILES = 256


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
    scan = scan_directory(root)
    cache = HashCache(store.layout.cache / "hashes.sqlite")
    try:
        cached = cache.lookup_under(str(root))
        with store.shared():
            stager = store.stager()
            try:
                entries, to_remember, hashed = _hash_files(
                    stager, scan.files, cached, progress, jobs or os.cpu_count() or 1,
                    scan_started,
                )
                tree = Tree.from_entries([*entries, *scan.others])
                fileset = FileSet(name, version, tree.digest, tuple(imports),
                                  metadata or Metadata())
                store.record(fileset, tree, stager)
            finally:
                stager.discard()
        cache.remember(to_remember)
    finally:
        cache.close()
    return IngestResult(fileset, len(scan.files), scan.total_size, hashed, stager.bytes_written)


def _hash_files(
    stager: ObjectStager,
    files: list[ScannedFile],
    cached: dict[str, tuple[StatKey, str]],
    progress: Progress,
    jobs: int,
    scan_started: int,
) -> tuple[list[Entry], list[tuple[str, StatKey, str]], int]:
    entries: list[Entry] = []
    to_read: list[ScannedFile] = []
    for item in files:
        hit = cached.get(item.source)
        if hit is not None and hit[0] == item.stat_key and stager.has(hit[1], item.executable):
            entries.append(FileEntry(item.path, item.size, hit[1], item.executable))
        else:
            to_read.append(item)

    bytes_to_read = sum(item.size for item in to_read)
    progress.start("hashing", bytes_to_read)
    batches = _batches(to_read)

    def read_batch(batch: list[ScannedFile]) -> list[tuple[ScannedFile, str, int]]:
        return [(item, *stager.add_file(item.source, item.executable, progress.advance))
                for item in batch]

    if jobs > 1 and len(batches) > 1:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            results = [row for batch in pool.map(read_batch, batches) for row in batch]
    else:
        results = [row for batch in batches for row in read_batch(batch)]
    progress.finish()

    to_remember = []
    cacheable_before = scan_started - RACY_NS
    for item, sha, size in results:
        entries.append(FileEntry(item.path, size, sha, item.executable))
        # The size read wins over the size seen by stat; a file that changed
        # meanwhile is recorded as read and left out of the cache.
        if size == item.size and item.changed_ns < cacheable_before:
            to_remember.append((item.source, item.stat_key, sha))
    return entries, to_remember, bytes_to_read


def _batches(files: list[ScannedFile]) -> list[list[ScannedFile]]:
    batches: list[list[ScannedFile]] = []
    current: list[ScannedFile] = []
    size = 0
    for item in files:
        current.append(item)
        size += item.size
        if size >= BATCH_BYTES or len(current) >= BATCH_FILES:
            batches.append(current)
            current, size = [], 0
    if current:
        batches.append(current)
    return batches
