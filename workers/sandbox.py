"""The sandbox a build runs in: a narrow interface, one backend per technology.

A `RunSpec` says everything about one run: the root (bind mounts and a symlink
farm), the command, its environment, and its limits. A backend turns it into an
isolated process and reports how it ended; the log is kept whole in a file.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol

from kiln.errors import InputError

DEFAULT_TIMEOUT = 3600.0
DEFAULT_MEMORY = 4 << 30
DEFAULT_PIDS = 1024


@dataclass(frozen=True)
class Mount:
    """A host directory at `target` in the root; read-only unless `writable`."""

    target: str
    source: Path
    writable: bool = False


@dataclass(frozen=True)
class RunSpec:
    argv: tuple[str, ...]
    env: Mapping[str, str]
    log: Path
    mounts: tuple[Mount, ...] = ()
    links: Mapping[str, str] = field(default_factory=dict)  # path in the root -> target
    links_key: str | None = None  # a digest of `links`, when the caller has one
    cwd: str = "/"
    hostname: str = "kiln-build"
    timeout: float = DEFAULT_TIMEOUT
    memory_bytes: int = DEFAULT_MEMORY
    pids: int = DEFAULT_PIDS
    capabilities: tuple[str, ...] = ()  # kept, all others dropped (CAP_NET_BIND_SERVICE ...)
    output_fd: int | None = None  # write output here (kiln run's terminal), not to `log`
    user: tuple[int, int] | None = None  # (uid, gid) to run as; None: root, no user namespace


@dataclass(frozen=True)
class RunResult:
    exit_code: int | None  # None when it was killed for its time
    timed_out: bool
    seconds: float
    log: Path

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class Sandbox(Protocol):
    """Runs one command in isolation; `name` and `version` go into build records."""

    name: str

    @property
    def version(self) -> str: ...

    def run(self, spec: RunSpec) -> RunResult: ...


def open_output(spec: RunSpec) -> BinaryIO:
    """Where the run's output goes: the log file, or a copy of the caller's descriptor."""
    if spec.output_fd is not None:
        return os.fdopen(os.dup(spec.output_fd), "ab")
    return open(spec.log, "ab")


def wait_with_deadline(process: subprocess.Popen[bytes], timeout: float,
                       on_timeout: Callable[[], None]) -> tuple[int, bool]:
    """Wait for `process`; past `timeout` call `on_timeout` (which must kill it).

    Popen.wait(timeout=...) polls with sleeps of up to 50 ms, most of a short
    sandbox run's cost; a timer thread and a blocking wait cost nothing.
    Returns (exit code, timed out).
    """
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        on_timeout()

    timer = threading.Timer(timeout, expire)
    timer.start()
    try:
        code = process.wait()
    finally:
        timer.cancel()
    return code, expired.is_set()


def require_tool(tool: str, package: str, purpose: str) -> str:
    """The path of a program a sandbox backend needs, or one clear error naming its package."""
    path = shutil.which(tool)
    if path is None:
        raise InputError(f"{tool} is not installed (Debian package {package}); {purpose}",
                         reason="sandbox-missing")
    return path
