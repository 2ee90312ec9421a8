"""The sandbox a build runs in: a narrow interface, one backend per technology.

A `RunSpec` says everything about one run: the root (bind mounts and a symlink
farm), the command, its environment, and its limits. A backend turns it into an
isolated process and reports how it ended.

What every backend guarantees (README, "What a build can reach"): the run is
an unprivileged uid of the host (root only inside its own user namespace), with
no capabilities, no_new_privs and the seccomp filter of workers.seccomp; its
own PID, mount, network (loopback only), IPC, UTS and cgroup namespaces; a
read-only root with `/proc/sys` and the rest of procfs that changes the host
read-only or masked, and no `/sys`; writable places only as fresh, size-bound
tmpfs; memory and pids limits in cgroups; a log cut at its size limit.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from kiln.errors import InputError
from kiln.limits import Limits

_DEFAULTS = Limits()
DEFAULT_TIMEOUT = _DEFAULTS.wall_time
DEFAULT_MEMORY = _DEFAULTS.memory
DEFAULT_PIDS = _DEFAULTS.pids
DEFAULT_TMP_SIZE = _DEFAULTS.tmp_size
DEFAULT_LOG_SIZE = _DEFAULTS.log_size
TAIL_BYTES = 64 << 10  # what an error message may show of a log, read from its end


@dataclass(frozen=True)
class Mount:
    """A host directory at `target` in the root; read-only unless `writable`."""

    target: str
    source: Path
    writable: bool = False


@dataclass(frozen=True)
class Scratch:
    """A fresh tmpfs at `target`, writable by the run, gone with it."""

    target: str
    size: int


@dataclass(frozen=True)
class RunSpec:
    """Everything about one run: root, command, environment and limits."""

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
    input_fd: int | None = None  # read input here (a debugging shell's terminal); else none
    user: tuple[int, int] | None = None  # (uid, gid) inside the run; None: its root
    scratch: tuple[Scratch, ...] = ()  # writable tmpfs besides /tmp
    tmp_size: int = DEFAULT_TMP_SIZE
    log_size: int = DEFAULT_LOG_SIZE  # past this the log is cut, with a marker
    # Where the root's skeleton is made: a directory on the filesystem of the package
    # mounts (the store's), so that links to package files are hard links and a program
    # that finds its own files from /proc/self/exe (cmake, python, gcc) finds them in
    # the root. None: the host's shared cache, symbolic links only.
    root_cache: Path | None = None

    @property
    def stdin(self) -> int:
        """The run's standard input: the terminal a debugging shell reads, else nothing."""
        return subprocess.DEVNULL if self.input_fd is None else self.input_fd

    @property
    def inside_ids(self) -> tuple[int, int]:
        """The uid and gid the run has inside its user namespace."""
        return self.user or (0, 0)


def bounded(spec: RunSpec, limits: Limits) -> RunSpec:
    """`spec` with the run limits of `limits` (wall time, memory, pids, /tmp, log)."""
    return replace(spec, timeout=limits.wall_time, memory_bytes=limits.memory,
                   pids=limits.pids, tmp_size=limits.tmp_size, log_size=limits.log_size)


@dataclass(frozen=True)
class RunResult:
    """How a run ended, and where its log is."""

    exit_code: int | None  # None when it was killed for its time
    timed_out: bool
    seconds: float
    log: Path

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    def log_tail(self, lines: int = 30) -> str:
        """The log's last lines, read from its end: a log may be large."""
        return "\n".join(log_end(self.log).splitlines()[-lines:])


def log_end(log: Path, size: int = TAIL_BYTES) -> str:
    """The last `size` bytes of a log, as text ("" if it cannot be read)."""
    try:
        with open(log, "rb") as handle:
            end = handle.seek(0, os.SEEK_END)
            handle.seek(max(0, end - size))
            return handle.read().decode(errors="replace")
    except OSError:
        return ""


class Sandbox(Protocol):
    """Runs one command in isolation; `name` and `version` go into build records."""

    name: str
    host_uid: int  # the unprivileged host uid a run's root is

    @property
    def version(self) -> str: ...

    def run(self, spec: RunSpec) -> RunResult: ...


class RunOutput:
    """Where a run's output goes: the caller's descriptor (kiln run's terminal), or
    the log file through a pipe, copied while it streams and cut at `log_size`.

    The log is never held in memory; past the limit the rest is read and dropped
    (so the run never blocks on a full pipe) and a marker says how much went.
    """

    def __init__(self, spec: RunSpec) -> None:
        self._log = open(spec.log, "ab")  # noqa: SIM115 - closed by close()
        self._limit = spec.log_size
        self._thread: threading.Thread | None = None
        if spec.output_fd is not None:
            self.fd = os.dup(spec.output_fd)
            self._read_fd = -1
        else:
            self._read_fd, self.fd = os.pipe()
            self._thread = threading.Thread(target=self._copy, daemon=True)
            self._thread.start()

    def _copy(self) -> None:
        kept = dropped = 0
        while chunk := os.read(self._read_fd, 1 << 16):
            room = self._limit - kept
            if room > 0:
                self._log.write(chunk[:room])
                self._log.flush()  # in the log at once, for whoever follows the build
                kept += min(room, len(chunk))
            dropped += max(0, len(chunk) - max(room, 0))
        if dropped:
            self._log.write(f"\nkiln: log cut at {self._limit} bytes; {dropped} more bytes"
                            " were dropped\n".encode())
        self._log.flush()

    def started(self) -> None:
        """The run has the write end now; the caller's copy must go, or no EOF comes."""
        os.close(self.fd)

    def note(self, text: str) -> None:
        """A line of Kiln's own at the end of the log (after the run's output)."""
        self.close()
        self._log.write(text.encode())

    def close(self) -> None:
        if self._thread is not None:
            self._thread.join(timeout=30)  # every writer is dead: EOF is immediate
            self._thread = None
        if self._read_fd >= 0:
            os.close(self._read_fd)
            self._read_fd = -1

    def __enter__(self) -> RunOutput:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
        self._log.close()


def memory_file(name: str, data: bytes) -> int:
    """A descriptor of an anonymous file holding `data`, read from its start."""
    fd = os.memfd_create(name, 0)  # inherited: no MFD_CLOEXEC
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


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
