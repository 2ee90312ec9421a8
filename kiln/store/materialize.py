"""Read-only trees made of hard links to store objects (no file is copied)."""

from __future__ import annotations

import errno
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from kiln.errors import InputError, StoreError
from kiln.fileset import FileSet
from kiln.store.join import JoinedEntry, joined_entries
from kiln.store.layout import mark_used
from kiln.store.store import Store
from kiln.tree import FileEntry, SymlinkEntry

READ_ONLY_DIR = 0o555


@dataclass(frozen=True)
class Materialized:
    """Where a tree was made, and how many files share an inode with the store."""

    path: Path
    linked: int
    copied: int


def materialize(store: Store, fileset: FileSet, dest: Path) -> Materialized:
    """Make `dest` (absent or empty) a read-only tree of `fileset` with its imports joined."""
    with store.shared():
        entries = joined_entries(store, fileset)
        if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
            raise InputError(f"{dest} exists and is not an empty directory",
                             reason="destination-exists")
        dest.mkdir(parents=True, exist_ok=True)
        return _build(store, entries, dest)


def store_tree(store: Store, fileset: FileSet) -> Path:
    """The store's own read-only tree of `fileset`, made once and then reused."""
    final = store.layout.materialized_path(fileset.digest)
    if final.exists():
        mark_used(final)  # used: the caches' bounds keep it longest
        return final
    with store.shared():
        entries = joined_entries(store, fileset)
        scratch = store.layout.temp_name("materialize")
        scratch.mkdir()
        try:
            _build(store, entries, scratch)
            os.rename(scratch, final)
        except OSError as exc:
            remove_tree(scratch)
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                return final  # another process made it first
            raise StoreError(f"cannot materialise {fileset.label}: {exc}") from exc
        except BaseException:
            remove_tree(scratch)
            raise
    return final


def _build(store: Store, entries: list[JoinedEntry], dest: Path) -> Materialized:
    linked = copied = 0
    directories = [dest]
    for joined in entries:
        entry = joined.entry
        target = dest / entry.path
        if isinstance(entry, FileEntry):
            source = store.object_path(entry.sha256, entry.executable)
            try:
                os.link(source, target)
                linked += 1
            except OSError as exc:
                # EMLINK: an object used by ~65,000 trees; EXDEV: dest on another
                # file system. Both are correct as a read-only copy.
                if exc.errno not in (errno.EMLINK, errno.EXDEV):
                    raise StoreError(f"cannot link {entry.path}: {exc.strerror}") from exc
                shutil.copyfile(source, target)
                os.chmod(target, stat.S_IMODE(os.stat(source).st_mode))
                copied += 1
        elif isinstance(entry, SymlinkEntry):
            os.symlink(entry.target, target)
        else:
            os.mkdir(target, 0o755)
            directories.append(target)
    for directory in reversed(directories):
        os.chmod(directory, READ_ONLY_DIR)
    return Materialized(dest, linked, copied)


def remove_tree(path: Path) -> None:
    """Remove a read-only tree: directories are made writable on the way down."""
    if not path.exists() and not path.is_symlink():
        return
    for dirpath, dirnames, _files in os.walk(path):
        os.chmod(dirpath, 0o755)
        for name in dirnames:
            child = os.path.join(dirpath, name)
            if not os.path.islink(child):
                os.chmod(child, 0o755)
    shutil.rmtree(path)
