"""Progress for long work: a rich bar on a terminal, a line every few seconds otherwise."""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

from kiln.cli.output import human_size
from kiln.progress import NoProgress, Progress

LINE_INTERVAL = 5.0
MIN_BYTES = 64 << 20  # smaller work finishes before a bar would help


def progress_for_stderr() -> Progress:
    if sys.stderr.isatty():
        return _RichProgress()
    return _LineProgress()


class _RichProgress:
    def __init__(self) -> None:
        self._bar: Any = None
        self._task: Any = None

    def start(self, label: str, total_bytes: int) -> None:
        if total_bytes < MIN_BYTES:
            return
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self._bar = Progress("{task.description}", BarColumn(), DownloadColumn(),
                             TransferSpeedColumn(), TimeRemainingColumn(), transient=True)
        self._bar.start()
        self._task = self._bar.add_task(label, total=total_bytes)

    def advance(self, nbytes: int) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, nbytes)

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


class _LineProgress(NoProgress):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._label = ""
        self._total = self._done = 0
        self._next = 0.0

    def start(self, label: str, total_bytes: int) -> None:
        self._label, self._total, self._done = label, total_bytes, 0
        self._next = time.monotonic() + LINE_INTERVAL

    def advance(self, nbytes: int) -> None:
        with self._lock:
            self._done += nbytes
            now = time.monotonic()
            if now < self._next:
                return
            self._next = now + LINE_INTERVAL
        print(f"kiln: {self._label}: {human_size(self._done)} of {human_size(self._total)}",
              file=sys.stderr, flush=True)
