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
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kiln.errors import ConflictError, StoreError
from kiln.ownership import owned_directory
from kiln.store.layout import unique_part
from workers.sandbox import Mount, RunSpec

# Fast, and cleaned up with the machine: the farm holds thousands of symlinks.
SCRATCH = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())
ROOT_FORMAT = "kiln.root/v6"  # bump when _make_root changes what it makes
KEPT_ROOTS = 32
PACKAGES = "/packages/"  # where package trees are mounted (DESIGN.md 2b)
_DIRECTORY = os.O_DIRECTORY | os.O_NOFOLLOW | os.O_RDONLY | os.O_CLOEXEC


def roots_directory(store_cache: Path | None = None) -> Path:
    """Where composed roots are cached: made by this user, writable by no other; in
    `store_cache` (a store's, RunSpec.root_cache), else the host's shared one."""
    return owned_directory(store_cache or SCRATCH / f"kiln-roots-{os.geteuid()}",
                           "the build-root cache")


def _package_mounts(spec: RunSpec) -> list[Mount]:
    """The package trees (DESIGN.md 2b: /packages/) a store's root holds, hard-linked
    into its skeleton: those on the cache's filesystem. The host's shared roots hold
    none (tmpfs: no hard link reaches the store)."""
    if spec.root_cache is None:
        return []
    try:
        device = os.stat(spec.root_cache).st_dev
    except OSError:
        return []
    return [m for m in spec.mounts if m.target.startswith(PACKAGES) and not m.writable
            and _on_device(m.source, device)]


def _on_device(path: Path, device: int) -> bool:
    try:
        return os.stat(path).st_dev == device
    except OSError:
        return False


def mounts_to_bind(spec: RunSpec) -> list[Mount]:
    """What a sandbox binds into the root as a run starts: every mount of `spec` but the
    package trees its skeleton holds already. A build's root is then one bind mount
    (and its writable places), where binding each package cost one mount each."""
    held = {mount.target for mount in _package_mounts(spec)}
    return [mount for mount in spec.mounts if mount.target not in held]


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
    roots = roots_directory(spec.root_cache)
    links = spec.links_key or sorted(spec.links.items())
    # Hard links hold the packages' content: which trees they came from is the key's too.
    packages = sorted((m.target, str(m.source)) for m in _package_mounts(spec))
    key = hashlib.sha256(json.dumps(
        [ROOT_FORMAT, spec.hostname, sorted(m.target for m in spec.mounts),
         sorted(s.target for s in spec.scratch), links, packages]).encode()).hexdigest()
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
        dead = roots / f".dead-{unique_part()}"
        try:
            os.rename(path, dead)
        except OSError:
            return False
    finally:
        os.close(fd)
    shutil.rmtree(dead, ignore_errors=True)
    return True


def prune_roots(keep_days: float | None, *, empty: bool = False,
                store_cache: Path | None = None) -> int:
    """`kiln store gc`'s bounds on the cached roots (this host's shared ones, and a
    store's with `store_cache`): those unused for `keep_days`, or every one no run
    holds (`empty`); how many went."""
    older = None if keep_days is None else time.time() - keep_days * 86400
    pruned = 0
    for roots in (roots_directory(), *([roots_directory(store_cache)] if store_cache else [])):
        for leftover in roots.glob(".dead-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        pruned += _prune(roots, keep=0 if empty else KEPT_ROOTS, older_than=older)
    return pruned


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
        held = _package_mounts(spec)
        for mount in held:
            _copy_package_tree(mount, top)
        with _PackageFiles(held) as files:
            for path, target in sorted(spec.links.items()):
                if not files.hard_link(target, top, path):
                    _make_link(top, path, target)
    finally:
        os.close(top)


class _PackageFiles:
    """Hard links from a root to the regular files of its package trees.

    Kiln's link to a package's file (`/usr/bin/cmake -> /packages/N/V/usr/bin/cmake`:
    the path, under the package's mount) is made a hard link where it can be: the
    program then is at /usr/bin/cmake, and finds its data beside it as after dpkg -i.
    A package's own symlinks stay symlinks, whatever they name. Package trees are
    walked one directory at a time without following a link; what is not a regular
    file, or lies on another filesystem, stays a symbolic link."""

    def __init__(self, mounts: list[Mount]) -> None:
        self.mounts = {m.target.rstrip("/"): m.source for m in mounts}
        self.parent: tuple[str, int] | None = None  # the last directory opened, by path

    def __enter__(self) -> _PackageFiles:
        return self

    def __exit__(self, *_: object) -> None:
        if self.parent is not None:
            os.close(self.parent[1])

    def hard_link(self, target: str, top: int, path: str) -> bool:
        mount = target[:-len(path)] if target.endswith(path) else ""
        if mount not in self.mounts:
            return False
        directory, _, name = path.lstrip("/").rpartition("/")
        source = self._directory(mount, directory)
        if source is None:
            return False
        try:
            if not stat.S_ISREG(os.stat(name, dir_fd=source, follow_symlinks=False).st_mode):
                return False
        except OSError:
            return False
        destination = _make_directories(top, directory)
        try:
            os.link(name, name, src_dir_fd=source, dst_dir_fd=destination,
                    follow_symlinks=False)
        except FileExistsError:
            raise _taken(path) from None
        except OSError as exc:
            if exc.errno in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                return False  # another filesystem, or links refused: a symbolic link
            raise
        finally:
            os.close(destination)
        return True

    def _directory(self, mount: str, directory: str) -> int | None:
        """A descriptor of `directory` in the package tree at `mount`, opened without
        following links; None where that is not a directory."""
        key = f"{mount}/{directory}"
        if self.parent is not None and self.parent[0] == key:
            return self.parent[1]
        try:
            current = os.open(self.mounts[mount], _DIRECTORY)
        except OSError:
            return None
        try:
            for part in directory.split("/") if directory else ():
                if part in ("", ".", ".."):
                    raise NotADirectoryError(part)
                following = os.open(part, _DIRECTORY, dir_fd=current)
                os.close(current)
                current = following
        except OSError:
            os.close(current)
            return None
        if self.parent is not None:
            os.close(self.parent[1])
        self.parent = (key, current)
        return current


def _copy_package_tree(mount: Mount, top: int) -> None:
    """The package tree of `mount` at its mount point in the root, its files hard links
    to the store's: the package is then in the root, and needs no mount of its own.
    The tree is walked a directory at a time without following a link; its links are
    copied as links, whatever they name (they resolve inside the sandbox)."""
    source = os.open(mount.source, _DIRECTORY)
    try:
        destination = _make_directories(top, mount.target)
        try:
            _copy_directory(source, destination)
            os.fchmod(destination, stat.S_IMODE(os.fstat(source).st_mode))
        finally:
            os.close(destination)
    finally:
        os.close(source)


def _copy_directory(source: int, destination: int) -> None:
    with os.scandir(source) as entries:
        for entry in entries:
            name = entry.name
            if entry.is_symlink():
                os.symlink(os.readlink(name, dir_fd=source), name, dir_fd=destination)
            elif entry.is_dir(follow_symlinks=False):
                os.mkdir(name, 0o700, dir_fd=destination)
                inner = os.open(name, _DIRECTORY, dir_fd=source)
                made = os.open(name, _DIRECTORY, dir_fd=destination)
                try:
                    _copy_directory(inner, made)
                    # The package's mode, given once its contents are in (it may be 0555).
                    os.fchmod(made, stat.S_IMODE(os.fstat(inner).st_mode))
                finally:
                    os.close(inner)
                    os.close(made)
            elif entry.is_file(follow_symlinks=False):
                _link_or_copy(name, source, destination)
            # Nothing else is in a FileSet (no devices, fifos or sockets): left out.


def _link_or_copy(name: str, source: int, destination: int) -> None:
    """A hard link to the store's file; a copy where the filesystem refuses one (the
    inode's link count at its limit: an empty file many packages hold)."""
    try:
        os.link(name, name, src_dir_fd=source, dst_dir_fd=destination, follow_symlinks=False)
        return
    except OSError as exc:
        if exc.errno not in (errno.EMLINK, errno.EPERM, errno.EXDEV):
            raise
    reading = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=source)
    try:
        writing = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                          | os.O_CLOEXEC, 0o600, dir_fd=destination)
        try:
            size = os.fstat(reading).st_size
            while size > 0 and (sent := os.sendfile(writing, reading, None, size)):
                size -= sent
            # Modes as the store keeps them; never a setuid or setgid bit.
            os.fchmod(writing, stat.S_IMODE(os.fstat(reading).st_mode) & 0o777)
        finally:
            os.close(writing)
    finally:
        os.close(reading)


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
        raise _taken(path) from None
    finally:
        os.close(directory)


def _taken(path: str) -> ConflictError:
    return ConflictError(f"{path}: a package links a path the root already has (a mount"
                         " point or Kiln's own directory)", reason="root-path-taken")


def _parts(path: str) -> list[str]:
    parts = [part for part in path.split("/") if part and part != "."]
    if ".." in parts:
        raise ConflictError(f"{path}: '..' has no place in a root path", reason="bad-path")
    return parts
