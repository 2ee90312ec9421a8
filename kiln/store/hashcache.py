"""Remembers file hashes by stat, so an unchanged tree is not hashed again.

One index file per ingested directory, as git keeps one index per work tree:
relative path -> (device, inode, size, mtime, ctime, sha256), and the tree
digest that ingest produced. A file is trusted only when all five stat fields
match. While that tree is in the store, so are the objects of its files: gc
removes trees before objects, and cannot run during an ingest. A file changed within the same
timestamp tick as it was hashed would keep its stat, so files changed less
than RACY_NS before the scan are never remembered (git's "racily clean").
The cache is advisory: a missing, stale or damaged index only costs hashing.
"""

from __future__ import annotations

import hashlib
import marshal
import os
from pathlib import Path

RACY_NS = 2_000_000_000
_MAGIC = b"kiln-hash-index/v2\n"

StatKey = tuple[int, int, int, int, int]


class HashCache:
    """The hash index of one directory, kept under the store's cache/."""

    def __init__(self, cache_dir: Path, root: str) -> None:
        self._root = root.rstrip("/") + "/"
        key = hashlib.sha256(self._root.encode("utf-8", "surrogateescape")).hexdigest()
        self._path = cache_dir / f"{key}.index"
        self._tmp_dir = cache_dir

    def load(self) -> tuple[dict[str, tuple[StatKey, str]], str | None]:
        """(path in the tree -> (stat key, sha256), the tree digest of that ingest)."""
        try:
            data = self._path.read_bytes()
        except OSError:
            return {}, None
        checksum, payload = data[len(_MAGIC):len(_MAGIC) + 32], data[len(_MAGIC) + 32:]
        if not data.startswith(_MAGIC) or hashlib.sha256(payload).digest() != checksum:
            return {}, None
        try:
            tree, rows = marshal.loads(payload)
        except (EOFError, ValueError, TypeError):
            return {}, None
        return rows, tree

    def save(self, rows: dict[str, tuple[StatKey, str]], tree: str) -> None:
        """Replace the index with `rows` (path in the tree -> stat key, sha256) of `tree`."""
        payload = marshal.dumps((tree, rows))
        tmp = self._tmp_dir / f".{self._path.name}.{os.getpid()}"
        try:
            tmp.write_bytes(_MAGIC + hashlib.sha256(payload).digest() + payload)
            os.replace(tmp, self._path)
        except OSError:
            tmp.unlink(missing_ok=True)  # a lost index only costs a re-hash next time
