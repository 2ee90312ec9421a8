"""What a build is doing while it runs, for whoever watches it (`kiln build` on a
terminal): its phase, and the last line its log has now."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

from workers.sandbox import log_end

_TAIL = 4096  # bytes read from the log's end for its last line


class BuildWatcher(Protocol):
    """What a build tells as it runs (its progress, on a terminal or a farm's log)."""

    def phase(self, name: str) -> None:
        """The build entered a phase: fetching sources, building, testing, ..."""

    def line(self, text: str) -> None:
        """The log's last line now (told again while it stays the last)."""


@contextmanager
def following(log: Path, watcher: BuildWatcher | None, interval: float = 0.5,
              ) -> Iterator[None]:
    """Tell `watcher` the last line of `log` every `interval` (changed or not: the
    watcher says what it wants to, when), until the block ends."""
    if watcher is None:
        yield
        return
    done = threading.Event()

    def follow() -> None:
        while not done.wait(interval):
            line = last_line(log)
            if line:
                watcher.line(line)

    thread = threading.Thread(target=follow, name="kiln-build-log", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def last_line(log: Path) -> str:
    """The last non-empty line of `log` (its end only is read), printable characters only."""
    for raw in reversed(log_end(log, _TAIL).splitlines()):
        # A build's output is not to drive this terminal: no escapes, no control bytes.
        text = "".join(c for c in raw if c.isprintable()).strip()
        if text:
            return text
    return ""
