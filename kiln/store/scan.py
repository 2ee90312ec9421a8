"""Walking a directory for ingest: normalise what can be, refuse what cannot."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from kiln.errors import InputError
from kiln.store.hashcache import stat_key
from kiln.tree import DirectoryEntry, SymlinkEntry, check_symlink_target


@dataclass(slots=True)
class ScannedFile:
    """A regular file found by the scan, with the stat fields the hash cache keys on."""

    path: str
    source: str
    size: int
    executable: bool
    stat_key: bytes  # packed dev, inode, size, mtime_ns, ctime_ns, executable (hashcache)
    changed_ns: int  # the later of mtime and ctime


_REFUSED = {
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
}


def check_root(root: Path) -> None:
    """Refuse a root that is not a directory."""
    try:
        if not stat.S_ISDIR(os.stat(root).st_mode):
            raise InputError(f"{root} is not a directory", reason="not-a-directory")
    except FileNotFoundError:
        raise InputError(f"{root} does not exist", reason="not-found") from None


def walk_directory(root: Path, *, start: str = "", recursive: bool = True,
                   known: Mapping[str, bytes] | None = None
                   ) -> Iterator[str | ScannedFile | DirectoryEntry | SymlinkEntry]:
    """Every entry under `root/start` (paths relative to `root`), as found; owner,
    times and modes beyond the executable bit are dropped, and what a FileSet
    cannot hold is refused. Not `recursive`: one directory's own entries.

    A file whose entry in `known` (a hash index) starts with its stat key comes
    as its bare path: on a re-ingest that is nearly every file, and nothing more
    is needed of it.
    """
    known = known or {}
    pending = [(start, f"{root}/{start}" if start else str(root))]
    while pending:
        relative_dir, absolute_dir = pending.pop()
        try:
            iterator = os.scandir(absolute_dir)
        except OSError as exc:
            raise InputError(f"cannot read directory {absolute_dir}: {exc.strerror}",
                             reason="unreadable-file") from exc
        with iterator:
            for item in iterator:
                relative = f"{relative_dir}/{item.name}" if relative_dir else item.name
                if not item.name.isascii():
                    _check_name(item.name, item.path)
                info = item.stat(follow_symlinks=False)
                mode = info.st_mode
                kind = stat.S_IFMT(mode)
                if kind == stat.S_IFREG:
                    if mode & (stat.S_ISUID | stat.S_ISGID):
                        raise InputError(f"{item.path} is setuid or setgid; Kiln refuses such"
                                         " files", reason="setuid-file")
                    executable = bool(mode & stat.S_IXUSR)
                    key = stat_key(info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns,
                                   info.st_ctime_ns, executable)
                    if known.get(relative, b"").startswith(key):
                        yield relative
                    else:
                        yield ScannedFile(relative, item.path, info.st_size, executable, key,
                                          max(info.st_mtime_ns, info.st_ctime_ns))
                elif kind == stat.S_IFDIR:
                    yield DirectoryEntry(relative)
                    if recursive:
                        pending.append((relative, item.path))
                elif kind == stat.S_IFLNK:
                    target = os.readlink(item.path)
                    yield SymlinkEntry(relative, check_symlink_target(item.path, target))
                else:
                    what = _REFUSED.get(kind, "of an unknown file type")
                    raise InputError(f"{item.path} is {what}; a FileSet holds only files,"
                                     " directories and symlinks", reason="special-file")


def _check_name(name: str, absolute: str) -> None:
    # A name from a directory listing is one component, never "", "." or "..";
    # the tree checks whole paths (length included) once it is built.
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        shown = os.fsencode(absolute).decode("utf-8", "backslashreplace")
        raise InputError(f"{shown}: file name is not valid UTF-8",
                         reason="bad-path-encoding") from None
