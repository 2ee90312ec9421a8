"""Progress reporting for long work, decoupled from how it is shown."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    """Receives progress from long operations; the CLI decides how to show it."""

    def start(self, label: str, total_bytes: int | None) -> None:
        """Begin; `total_bytes` is None while the total is not known yet."""

    def advance(self, nbytes: int) -> None: ...

    def finish(self) -> None: ...


class NoProgress:
    """Shows nothing: the default for library calls and tests."""

    def start(self, label: str, total_bytes: int | None) -> None:
        pass

    def advance(self, nbytes: int) -> None:
        pass

    def finish(self) -> None:
        pass
