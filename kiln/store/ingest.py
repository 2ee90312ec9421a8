"""Ingest: a directory on disk becomes a FileSet in the store.

Hashing is the cost. Files whose stat matches the hash cache and whose object
is present are not read at all; the rest are read once, hashed and copied into
staging in the same pass, on as many threads as there are cores (hashlib and
file I/O release the GIL).
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from kiln.canonical import Digest
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
# Below these, forking workers costs more than it saves.
PARALLEL_MIN_FILES = 1000
PARALLEL_MIN_BYTES = 32 << 20


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
    cache = HashCache(store.layout.cache, str(root))
    cached, cached_tree = cache.load()
    with store.shared():
        # While the tree the index came from is stored, every object it names is.
        objects_known = cached_tree is not None and store.layout.tree_path(
            Digest(cached_tree)).exists()
        stager = store.stager(publish_now=True)
        try:
            entries, to_remember, hashed = _hash_files(
                stager, scan.files, cached, objects_known, progress,
                jobs or os.cpu_count() or 1, scan_started,
            )
            tree = Tree.from_entries([*entries, *scan.others])
            fileset = FileSet(name, version, tree.digest, tuple(imports), metadata or Metadata())
            store.record(fileset, tree, stager, objects_checked=True)
        finally:
            stager.discard()
    cache.save(to_remember, fileset.tree)
    return IngestResult(fileset, len(scan.files), scan.total_size, hashed, stager.bytes_written)


def _hash_files(
    stager: ObjectStager,
    files: list[ScannedFile],
    cached: dict[str, tuple[StatKey, str]],
    objects_known: bool,
    progress: Progress,
    jobs: int,
    scan_started: int,
) -> tuple[list[Entry], dict[str, tuple[StatKey, str]], int]:
    entries: list[Entry] = []
    to_read: list[ScannedFile] = []
    # The index is rewritten whole: what it still holds true is remembered again.
    to_remember: dict[str, tuple[StatKey, str]] = {}
    for item in files:
        hit = cached.get(item.path)
        if hit is not None and hit[0] == item.stat_key and (
                objects_known or stager.has(hit[1], item.executable)):
            entries.append(FileEntry(item.path, item.size, hit[1], item.executable))
            to_remember[item.path] = hit
        else:
            to_read.append(item)

    bytes_to_read = sum(item.size for item in to_read)
    progress.start("hashing", bytes_to_read)
    read = _read_files(stager, to_read, progress, jobs)
    progress.finish()
    results = [(item, sha, size) for item, (sha, size) in zip(to_read, read, strict=True)]

    cacheable_before = scan_started - RACY_NS
    for item, sha, size in results:
        entries.append(FileEntry(item.path, size, sha, item.executable))
        # The size read wins over the size seen by stat; a file that changed
        # meanwhile is recorded as read and left out of the cache.
        if size == item.size and item.changed_ns < cacheable_before:
            to_remember[item.path] = (item.stat_key, sha)
    return entries, to_remember, bytes_to_read


def _read_files(stager: ObjectStager, files: list[ScannedFile], progress: Progress,
                jobs: int) -> list[tuple[str, int]]:
    """(sha256, size) of each file, staged if new; in worker processes for large trees.

    Threads do not help here: per-file work is Python code holding the GIL
    between short system calls. Forked workers each have their own.
    """
    total = sum(item.size for item in files)
    if jobs <= 1 or (len(files) < PARALLEL_MIN_FILES and total < PARALLEL_MIN_BYTES):
        return [stager.add_file(item.source, item.executable, item.size, progress.advance)
                for item in files]
    batches = _batches(files)
    results: list[tuple[str, int]] = []
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(jobs, mp_context=context, initializer=_start_worker,
                             initargs=(stager,)) as pool:
        work = [[(item.source, item.executable, item.size) for item in batch]
                for batch in batches]
        for rows, written in pool.map(_worker_batch, work):
            stager.bytes_written += written
            results.extend(rows)
            progress.advance(sum(size for _sha, size in rows))
    return results


_worker_stager: ObjectStager | None = None


def _start_worker(stager: ObjectStager) -> None:
    global _worker_stager  # noqa: PLW0603 - one stager per worker process
    _worker_stager = stager.for_worker()


def _worker_batch(batch: list[tuple[str, bool, int]]) -> tuple[list[tuple[str, int]], int]:
    stager = _worker_stager
    assert stager is not None
    before = stager.bytes_written
    rows = [stager.add_file(source, executable, size) for source, executable, size in batch]
    return rows, stager.bytes_written - before


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
