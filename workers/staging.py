"""Staging a run's root: what a forked child does as root, in a mount namespace of its
own, before it executes the sandbox (bwrap through setpriv, or runc).

A root cached in a store's directory (hard links need the store's filesystem) lies
beneath directories only root may enter, and the sandbox walks its root as an
unprivileged uid: the child binds the root onto an empty directory that uid can
reach (`staging_point`), then bwrap's inputs onto their mount points there. The
mounts exist in the child's namespace only; the host keeps an empty directory,
removed afterwards.
"""

from __future__ import annotations

import ctypes
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

from workers.rootfs import SCRATCH
from workers.sandbox import RunSpec

_CLONE_NEWNS = 0x00020000
_MS_BIND, _MS_REC, _MS_PRIVATE = 0x1000, 0x4000, 0x40000
Binds = list[tuple[bytes, bytes]]  # (source, mount point), as the kernel takes paths


STAGE_PREFIX = "kiln-stage-"  # then the pid of the process that made it


@contextmanager
def staging_point() -> Iterator[Path]:
    """An empty directory the run's uid can reach, where the root is bound (in the run's
    own mount namespace only) before its inputs are: a root cached in a store's
    directory lies beneath directories only root may enter."""
    _sweep_once()
    point = Path(tempfile.mkdtemp(prefix=f"{STAGE_PREFIX}{os.getpid()}-", dir=SCRATCH))
    try:
        point.chmod(0o755)
        yield point
    finally:
        point.rmdir()


@cache
def _sweep_once() -> None:
    sweep_staging_points()


def sweep_staging_points() -> int:
    """Remove the staging points of processes that are gone (a process killed outright
    never removes its own); how many. Only empty directories this user made go."""
    removed = 0
    for point in SCRATCH.glob(f"{STAGE_PREFIX}*"):
        pid = point.name.removeprefix(STAGE_PREFIX).split("-", 1)[0]
        if not pid.isdigit() or process_alive(int(pid)):
            continue
        try:
            if point.lstat().st_uid != os.geteuid():
                continue
            point.rmdir()  # refuses anything not empty
            removed += 1
        except OSError:
            continue
    return removed


def process_alive(pid: int) -> bool:
    """Whether a process of that pid runs (another user's counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process: alive
    return True


@contextmanager
def reachable_root(spec: RunSpec, cached: Path) -> Iterator[tuple[Path, Binds]]:
    """The path a sandbox takes as the root of `spec`, and the bind that puts the cached
    root there: a store's root (RunSpec.root_cache) on a staging point; the host's
    shared roots are reachable as they are, and a run without staging starts sooner."""
    if spec.root_cache is None:
        yield cached, []
        return
    with staging_point() as point:
        yield point, [(os.fsencode(cached), os.fsencode(point))]


def staged(procs_files: list[str], binds: Binds) -> Callable[[], None]:
    """What the forked child does as root before it executes the sandbox: join the
    run's cgroups (`procs_files`), then make `binds` in a mount namespace of its own.

    Everything is prepared in the parent: the child only makes system calls, so no
    lock another thread of the parent held at the fork can be met here."""
    libc = _libc()
    pid_line = b"%d\n"

    def check(result: int, what: bytes) -> None:
        if result != 0:
            raise OSError(ctypes.get_errno(), f"{what.decode(errors='replace')}")

    def stage() -> None:
        mine = pid_line % os.getpid()
        for procs in procs_files:
            fd = os.open(procs, os.O_WRONLY)
            try:
                os.write(fd, mine)
            finally:
                os.close(fd)
        check(libc.unshare(_CLONE_NEWNS), b"unshare")
        check(libc.mount(None, b"/", None, _MS_REC | _MS_PRIVATE, None), b"private mounts")
        for source, target in binds:
            check(libc.mount(source, target, None, _MS_BIND | _MS_REC, None), target)

    return stage


@cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)
