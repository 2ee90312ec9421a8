"""Reading many files into the store in parallel, while the scan still runs.

Threads do not help: per-file work is Python code holding the GIL between
short system calls. Forked worker processes each have their own. A tree too
small to fill one batch is read in this process, so small ingests never fork.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import Future, ProcessPoolExecutor
from types import TracebackType

from kiln.progress import Progress
from kiln.store.scan import ScannedFile
from kiln.store.staging import ObjectStager

# Files go to workers in batches, so that per-task overhead stays small next
# to the I/O on trees of many small files.
BATCH_BYTES = 8 << 20
BATCH_FILES = 256

Row = tuple[str, int]  # sha256 hex, size read


class FileReader:
    """Takes files in scan order; `results` gives (sha256, size) in that order."""

    def __init__(self, stager: ObjectStager, progress: Progress, jobs: int) -> None:
        self._stager = stager
        self._progress = progress
        self._jobs = jobs
        self._pool: ProcessPoolExecutor | None = None
        self._chunks: list[Future[tuple[list[Row], int]] | list[Row]] = []
        self._batch: list[ScannedFile] = []
        self._batch_bytes = 0

    def __enter__(self) -> FileReader:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def add(self, item: ScannedFile) -> None:
        self._batch.append(item)
        self._batch_bytes += item.size
        if self._batch_bytes >= BATCH_BYTES or len(self._batch) >= BATCH_FILES:
            self._send(parallel=self._jobs > 1)

    def results(self) -> list[Row]:
        """Every file's (sha256, size), in the order added; raises what a worker raised."""
        if self._batch:
            self._send(parallel=self._pool is not None)
        rows: list[Row] = []
        for chunk in self._chunks:
            if isinstance(chunk, list):
                rows.extend(chunk)
            else:
                done, written = chunk.result()
                self._stager.bytes_written += written
                rows.extend(done)
        return rows

    def _send(self, *, parallel: bool) -> None:
        batch, self._batch, self._batch_bytes = self._batch, [], 0
        if not parallel:
            advance = self._progress.advance
            self._chunks.append([self._stager.add_file(item.source, item.executable,
                                                       item.size, advance)
                                 for item in batch])
            return
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                self._jobs, mp_context=multiprocessing.get_context("fork"),
                initializer=_start_worker, initargs=(self._stager,))
        size = sum(item.size for item in batch)
        future = self._pool.submit(_worker_batch,
                                   [(item.source, item.executable, item.size) for item in batch])
        future.add_done_callback(lambda _: self._progress.advance(size))
        self._chunks.append(future)


_worker_stager: ObjectStager | None = None


def _start_worker(stager: ObjectStager) -> None:
    global _worker_stager  # noqa: PLW0603 - one stager per worker process
    _worker_stager = stager.for_worker()


def _worker_batch(batch: list[tuple[str, bool, int]]) -> tuple[list[Row], int]:
    stager = _worker_stager
    assert stager is not None
    before = stager.bytes_written
    rows = [stager.add_file(source, executable, size) for source, executable, size in batch]
    return rows, stager.bytes_written - before
