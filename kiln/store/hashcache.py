"""Remembers file hashes by stat, so an unchanged tree is not hashed again.

One index file per ingested directory, as git keeps one index per work tree:
each file's (device, inode, size, mtime, ctime, executable bit, sha256), the
tree digest that ingest produced, and its directories and symlinks (path ->
target, None for a directory). A file is trusted only when all its stat
fields match. While that
tree is in the store, so are the objects of its files: gc removes trees before
objects, and cannot run during an ingest. When every file and all directories
and symlinks match, the tree is that tree: nothing is hashed, sorted or encoded.

A file changed within the same timestamp tick as it was hashed would keep its
stat, so files changed less than RACY_NS before the scan are never remembered
(git's "racily clean" entries). The index is advisory: a missing, stale or
damaged index only costs hashing.
"""

from __future__ import annotations

import hashlib
import marshal
import os
import struct
from pathlib import Path
from typing import NamedTuple

from kiln.store.layout import mark_used
from kiln.tree import FileEntry

RACY_NS = 2_000_000_000
_MAGIC = b"kiln-hash-index/v5\n"

# A file's entry is one bytes value: its packed stat key, then its raw sha256.
# One flat value per file loads three times faster than nested tuples. The
# executable bit is in the key, so a hit alone rebuilds the file's tree entry.
STAT_KEY = struct.Struct("<5q?")  # device, inode, size, mtime_ns, ctime_ns, executable
Files = dict[str, bytes]
Others = dict[str, str | None]


def stat_key(dev: int, ino: int, size: int, mtime_ns: int, ctime_ns: int,
             executable: bool) -> bytes:
    return STAT_KEY.pack(dev, ino, size, mtime_ns, ctime_ns, executable)


def index_entry(key: bytes, sha256_hex: str) -> bytes:
    return key + bytes.fromhex(sha256_hex)


def entry_sha256(entry: bytes) -> str:
    return entry[STAT_KEY.size:].hex()


def file_entry(path: str, entry: bytes) -> FileEntry:
    """The tree entry an index entry stands for."""
    _dev, _ino, size, _mtime, _ctime, executable = STAT_KEY.unpack_from(entry)
    return FileEntry(path, size, entry[STAT_KEY.size:].hex(), executable)


class Index(NamedTuple):
    """A directory's remembered hashes: its files, other entries, and tree digest."""

    files: Files
    others: Others
    tree: str | None


class HashCache:
    """The hash index of one directory, kept under the store's cache/."""

    def __init__(self, cache_dir: Path, root: str) -> None:
        self._root = root.rstrip("/") + "/"
        key = hashlib.sha256(self._root.encode("utf-8", "surrogateescape")).hexdigest()
        self._path = cache_dir / f"{key}.index"
        self._tmp_dir = cache_dir

    def load(self) -> Index:
        """What the last ingest of this directory remembered (empty if nothing usable)."""
        empty = Index({}, {}, None)
        try:
            data = self._path.read_bytes()
        except OSError:
            return empty
        checksum, payload = data[len(_MAGIC):len(_MAGIC) + 32], data[len(_MAGIC) + 32:]
        if not data.startswith(_MAGIC) or hashlib.sha256(payload).digest() != checksum:
            return empty
        try:
            tree, files, others = marshal.loads(payload)
        except (EOFError, ValueError, TypeError):
            return empty
        mark_used(self._path)
        return Index(files, others, tree)

    def save(self, index: Index) -> None:
        """Replace the index (written whole, then renamed into place)."""
        payload = marshal.dumps((index.tree, index.files, index.others))
        tmp = self._tmp_dir / f".{self._path.name}.{os.getpid()}"
        try:
            tmp.write_bytes(_MAGIC + hashlib.sha256(payload).digest() + payload)
            os.replace(tmp, self._path)
        except OSError:
            tmp.unlink(missing_ok=True)  # a lost index only costs a re-hash next time
