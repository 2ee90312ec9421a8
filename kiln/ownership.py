"""Directories whose contents Kiln trusts: its own, and nobody else's to write.

A cache of build roots or objects that another local user could create first,
or write into, would let that user choose what the next build runs as root (the
sandbox review replaced `bin/sh` in a cached root that way). Such directories
are made with the right owner and mode, and checked before every use: owned by
this user, written by no one else, not a symlink.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from kiln.errors import StoreError


class UntrustedDirectory(StoreError):
    """A directory Kiln would trust is owned or writable by someone else."""

    default_reason = "untrusted-directory"


def owned_directory(path: Path, what: str, mode: int = 0o755) -> Path:
    """`path`, made with `mode` if absent; refused unless it is safely ours."""
    try:
        os.mkdir(path, mode)
        os.chmod(path, mode)  # the umask may have taken bits that others need (0755)
    except FileExistsError:
        pass
    except OSError as exc:
        raise StoreError(f"cannot make {what} {path}: {exc.strerror}") from exc
    check_owned(path, what)
    return path


def check_owned(path: Path, what: str) -> None:
    """Refuse `path` unless it is a real directory of this user, writable by no other."""
    try:
        info = os.lstat(path)
    except OSError as exc:
        raise StoreError(f"cannot read {what} {path}: {exc.strerror}") from exc
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise UntrustedDirectory(f"{what} {path} is not a directory (a symlink or a file"
                                 " put there); remove it and run again")
    if info.st_uid != os.geteuid():
        raise UntrustedDirectory(f"{what} {path} belongs to uid {info.st_uid}, not to this"
                                 f" user (uid {os.geteuid()}); another user made it first:"
                                 " remove it and run again")
    if info.st_mode & 0o022:
        raise UntrustedDirectory(f"{what} {path} is writable by others (mode"
                                 f" {stat.S_IMODE(info.st_mode):04o}); Kiln trusts only"
                                 " directories that only it writes")
