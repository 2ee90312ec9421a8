"""The root's skeleton on tmpfs: mount points, the symlink farm, /etc basics.

Made once per composition and shared by every run of it, whatever the backend:
making the farm costs more than starting a sandbox (3,600 symlinks for the gcc
root). Sharing is safe: sandboxes mount it read-only, and every mount point a
run needs exists already (they are part of the key).

The composer runs as root on the host and the links come from packages, so it
never follows a link: Kiln's own directories and files are made first, every
step goes through directory descriptors opened with O_NOFOLLOW, and a package
link where Kiln has already put something is refused. (Links may point
anywhere, absolute targets included: they resolve inside the sandbox's root,
never on the host.) The cache lives in a directory only root may write,
checked before every use.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kiln.errors import ConflictError, StoreError
from kiln.ownership import owned_directory
from workers.sandbox import RunSpec

# Fast, and cleaned up with the machine: the farm holds thousands of symlinks.
SCRATCH = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())
ROOT_FORMAT = "kiln.root/v4"  # bump when _make_root changes what it makes
KEPT_ROOTS = 32
_DIRECTORY = os.O_DIRECTORY | os.O_NOFOLLOW | os.O_RDONLY | os.O_CLOEXEC


def roots_directory() -> Path:
    """Where composed roots are cached: made by this user, writable by no other."""
    return owned_directory(SCRATCH / f"kiln-roots-{os.geteuid()}", "the build-root cache")


@contextmanager
def root_in_use(spec: RunSpec) -> Iterator[Path]:
    """The root's skeleton for `spec` while a run uses it: a shared flock on it keeps
    pruning (another run's, or gc's) from removing it meanwhile."""
    for _ in range(5):
        final = cached_root(spec)
        try:
            fd = os.open(final, _DIRECTORY)
        except FileNotFoundError:
            continue  # pruned between being found and being opened: make it again
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            try:
                same = os.stat(final).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                yield final
                return
        finally:
            os.close(fd)
    raise StoreError(f"the cached root {final} keeps being removed while it is taken")


def cached_root(spec: RunSpec) -> Path:
    """The root's skeleton for `spec`, made on first use (runs take it with
    `root_in_use`, which keeps it from being pruned)."""
    links = spec.links_key or sorted(spec.links.items())
    key = hashlib.sha256(json.dumps(
        [ROOT_FORMAT, spec.hostname, sorted(m.target for m in spec.mounts),
         sorted(s.target for s in spec.scratch), links]).encode()).hexdigest()
    roots = roots_directory()
    final = roots / key
    if final.exists():
        os.utime(final)  # recently used: the last to be pruned
        return final
    scratch = Path(tempfile.mkdtemp(prefix=".making-", dir=roots))
    try:
        scratch.chmod(0o755)  # mkdtemp's 0700 would shut out the sandbox's uid
        _make_root(scratch, spec)
        os.rename(scratch, final)
    except FileExistsError:
        pass  # another run made it first
    except OSError as exc:
        if exc.errno != errno.ENOTEMPTY:
            raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    _prune(roots)
    return final


def _prune(roots: Path, keep: int = KEPT_ROOTS, older_than: float | None = None) -> int:
    """Remove the least recently used roots beyond `keep` (and any unused since
    `older_than`, a time), never one a run holds; how many went."""
    made = sorted((p for p in roots.iterdir() if not p.name.startswith(".")),
                  key=lambda p: p.stat().st_mtime)
    doomed = made[:-keep] if keep else made
    if older_than is not None:
        doomed = [p for p in made if p in doomed or p.stat().st_mtime < older_than]
    return sum(_remove_unless_used(roots, path) for path in doomed)


def _remove_unless_used(roots: Path, path: Path) -> bool:
    try:
        fd = os.open(path, _DIRECTORY)
    except OSError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a run uses it
        # Out of sight while locked: a run that opened it before must see it gone.
        dead = roots / f".dead-{secrets.token_hex(6)}"
        try:
            os.rename(path, dead)
        except OSError:
            return False
    finally:
        os.close(fd)
    shutil.rmtree(dead, ignore_errors=True)
    return True


def prune_roots(keep_days: float | None, *, empty: bool = False) -> int:
    """`kiln store gc`'s bounds on this host's cached roots: those unused for
    `keep_days`, or every one no run holds (`empty`); how many went."""
    roots = roots_directory()
    for leftover in roots.glob(".dead-*"):
        shutil.rmtree(leftover, ignore_errors=True)
    older = None if keep_days is None else time.time() - keep_days * 86400
    return _prune(roots, keep=0 if empty else KEPT_ROOTS, older_than=older)


def _make_root(rootfs: Path, spec: RunSpec) -> None:
    """The root's skeleton: Kiln's own parts first, then the packages' links."""
    top = os.open(rootfs, _DIRECTORY)
    try:
        for directory in ("proc", "dev", "tmp", "etc"):
            fd = _make_directories(top, directory)
            if directory == "tmp":  # runc gives its /tmp tmpfs the mode of what lies beneath
                os.fchmod(fd, 0o1777)
            os.close(fd)
        for mount in spec.mounts:
            os.close(_make_directories(top, mount.target))
        for scratch in spec.scratch:
            os.close(_make_directories(top, scratch.target))
        # What programs look for and no package provides without maintainer scripts;
        # a package that links one of these itself keeps its own.
        basics = {"etc/passwd": "root:x:0:0:root:/tmp:/bin/sh\n"
                                "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
                  "etc/group": "root:x:0:\nnogroup:x:65534:\n",
                  "etc/hostname": spec.hostname + "\n"}
        for path, text in basics.items():
            if f"/{path}" not in spec.links:
                _write_new_file(top, path, text.encode())
        for path, target in sorted(spec.links.items()):
            _make_link(top, path, target)
    finally:
        os.close(top)


def _make_directories(top: int, path: str) -> int:
    """A descriptor of directory `path` under `top`, made as needed; never through a link."""
    current = os.dup(top)
    for part in _parts(path):
        try:
            os.mkdir(part, 0o755, dir_fd=current)
            made = True
        except FileExistsError:
            made = False
        try:
            following = os.open(part, _DIRECTORY, dir_fd=current)
        except OSError as exc:
            os.close(current)
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise ConflictError(f"/{path}: a package's link stands where the root needs"
                                    " a directory", reason="root-path-taken") from exc
            raise
        os.close(current)
        current = following
        if made:
            os.fchmod(current, 0o755)  # whatever the umask: the sandbox's uid walks it
    return current


def _write_new_file(top: int, path: str, data: bytes) -> None:
    parent, _, name = path.rpartition("/")
    directory = _make_directories(top, parent)
    try:
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o644, dir_fd=directory)
        try:
            os.write(fd, data)
            os.fchmod(fd, 0o644)  # readable by the sandbox's uid whatever the umask
        finally:
            os.close(fd)
    finally:
        os.close(directory)


def _make_link(top: int, path: str, target: str) -> None:
    parent, _, name = path.lstrip("/").rpartition("/")
    directory = _make_directories(top, parent)
    try:
        os.symlink(target, name, dir_fd=directory)
    except FileExistsError:
        raise ConflictError(f"{path}: a package links a path the root already has (a mount"
                            " point or Kiln's own directory)", reason="root-path-taken") from None
    finally:
        os.close(directory)


def _parts(path: str) -> list[str]:
    parts = [part for part in path.split("/") if part and part != "."]
    if ".." in parts:
        raise ConflictError(f"{path}: '..' has no place in a root path", reason="bad-path")
    return parts
