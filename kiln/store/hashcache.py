"""Remembers file hashes by stat, so an unchanged tree is not hashed again.

The cache is keyed by absolute path and checked against (device, inode, size,
mtime, ctime), as git's index is. A file changed within the same timestamp
tick as it was hashed would keep its stat, so files changed less than
RACY_NS before the scan are never cached (git's "racily clean" entries).
The cache is advisory: when it cannot be read or written, ingest hashes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path

RACY_NS = 2_000_000_000

StatKey = tuple[int, int, int, int, int]


class HashCache:
    """An SQLite table of path -> (stat key, sha256)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._db: sqlite3.Connection | None = None
        try:
            self._db = sqlite3.connect(path, timeout=30, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, dev INTEGER,"
                " ino INTEGER, size INTEGER, mtime_ns INTEGER, ctime_ns INTEGER,"
                " sha256 TEXT)"
            )
        except sqlite3.Error:
            self._db = None

    def lookup_under(self, root: str) -> dict[str, tuple[StatKey, str]]:
        """Every cached file below the directory `root`."""
        if self._db is None:
            return {}
        prefix = root.rstrip("/") + "/"
        try:
            rows = self._db.execute(
                "SELECT path, dev, ino, size, mtime_ns, ctime_ns, sha256 FROM files"
                " WHERE path >= ? AND path < ?",
                (prefix, prefix[:-1] + "0"),  # "0" is the character after "/"
            ).fetchall()
        except sqlite3.Error:
            return {}
        return {row[0]: ((row[1], row[2], row[3], row[4], row[5]), row[6]) for row in rows}

    def remember(self, rows: Iterable[tuple[str, StatKey, str]]) -> None:
        if self._db is None:
            return
        try:
            with self._db:
                self._db.execute("BEGIN")
                self._db.executemany(
                    "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?)",
                    ((path, *key, sha) for path, key, sha in rows),
                )
        except sqlite3.Error:
            pass  # a lost cache entry only costs a re-hash next time

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
