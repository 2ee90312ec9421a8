"""Progress for long work: a rich bar on a terminal, a line every few seconds otherwise.

Both stay silent for work that ends quickly: the bar appears only once
MIN_BYTES have gone by, the lines only every LINE_INTERVAL seconds.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

from kiln.cli.output import human_size
from kiln.progress import Progress

LINE_INTERVAL = 5.0
MIN_BYTES = 64 << 20


def progress_for_stderr() -> Progress:
    return _RichProgress() if sys.stderr.isatty() else _LineProgress()


class _Counting:
    """What both kinds share: a label, a total that may be unknown, a thread-safe count."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._label = ""
        self._total: int | None = None
        self._done = 0

    def start(self, label: str, total_bytes: int | None) -> None:
        self._label, self._total, self._done = label, total_bytes, 0

    def _count(self, nbytes: int) -> int:
        with self._lock:
            self._done += nbytes
            return self._done


class _RichProgress(_Counting):
    def __init__(self) -> None:
        super().__init__()
        self._bar: Any = None
        self._task: Any = None

    def advance(self, nbytes: int) -> None:
        done = self._count(nbytes)
        if self._bar is None and done >= MIN_BYTES:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            # stderr: stdout carries the command's result (and --json).
            self._bar = Progress("{task.description}", BarColumn(), DownloadColumn(),
                                 TransferSpeedColumn(), TimeRemainingColumn(), transient=True,
                                 console=Console(stderr=True))
            self._bar.start()
            self._task = self._bar.add_task(self._label, total=self._total, completed=done)
        elif self._bar is not None:
            self._bar.update(self._task, completed=done)

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


class _LineProgress(_Counting):
    def __init__(self) -> None:
        super().__init__()
        self._next = 0.0

    def start(self, label: str, total_bytes: int | None) -> None:
        super().start(label, total_bytes)
        self._next = time.monotonic() + LINE_INTERVAL

    def advance(self, nbytes: int) -> None:
        done = self._count(nbytes)
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + LINE_INTERVAL
        of = f" of {human_size(self._total)}" if self._total is not None else ""
        print(f"kiln: {self._label}: {human_size(done)}{of}", file=sys.stderr, flush=True)

    def finish(self) -> None:
        pass


class BuildLines:
    """What a build is doing, on stderr: one line rewritten on a terminal (its phase and
    its log's last line); elsewhere (a farm's step log, a pipe) a line at each phase and
    the log's last line at most every LINE_INTERVAL seconds."""

    def __init__(self, label: str) -> None:
        self._label = label
        self._tty = sys.stderr.isatty()
        self._lock = threading.Lock()
        self._phase = ""
        self._said = 0.0  # when the last line was printed (not on a terminal)
        self._text = ""  # the log's line shown or printed last

    def phase(self, name: str) -> None:
        with self._lock:
            self._phase, self._text = name, ""
            if self._tty:
                self._draw("")
            else:
                print(f"kiln: {self._label}: {name}", file=sys.stderr, flush=True)
                self._said = time.monotonic()

    def line(self, text: str) -> None:
        with self._lock:
            if text == self._text:
                return
            if self._tty:
                self._draw(text)
            elif time.monotonic() - self._said >= LINE_INTERVAL:
                print(f"kiln: {self._label}: {self._phase}: {text}", file=sys.stderr,
                      flush=True)
                self._said = time.monotonic()
            else:
                return  # said again when the interval has passed, if still the last
            self._text = text

    def close(self) -> None:
        if self._tty:
            with self._lock:
                sys.stderr.write("\r\x1b[K")
                sys.stderr.flush()

    def _draw(self, text: str) -> None:
        import shutil

        width = shutil.get_terminal_size().columns - 1
        status = f"{self._label}: {self._phase}" + (f" | {text}" if text else "")
        sys.stderr.write("\r\x1b[K" + status[:width])
        sys.stderr.flush()
