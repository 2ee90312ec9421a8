"""New objects are written under tmp/ and linked into objects/ only on commit.

Staging makes an ingest or an archive import all-or-nothing: until `commit`,
nothing in objects/ changes, and a crash leaves only files under tmp/ that gc
removes. Objects are linked, never renamed, into place: an existing object
keeps its inode, so trees already materialised from it keep sharing it.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

from kiln.errors import InputError, StoreError
from kiln.faults import crash_point
from kiln.store.layout import (
    EXECUTABLE_OBJECT_MODE,
    OBJECT_MODE,
    StoreLayout,
    write_all,
)

CHUNK = 1 << 20
_buffers = threading.local()


def _buffer() -> memoryview:
    buffer: memoryview | None = getattr(_buffers, "view", None)
    if buffer is None:
        buffer = memoryview(bytearray(CHUNK))
        _buffers.view = buffer
    return buffer


class ObjectStager:
    """Writes new objects into a private staging directory; thread-safe."""

    def __init__(self, layout: StoreLayout) -> None:
        self.layout = layout
        self.directory = layout.temp_name("stage")
        self.directory.mkdir()
        self._staged: dict[tuple[str, bool], Path] = {}
        self._lock = threading.Lock()
        self._counter = itertools.count()
        self.bytes_written = 0

    def has(self, sha256_hex: str, executable: bool) -> bool:
        """True when the object is in the store or already staged here."""
        return (sha256_hex, executable) in self._staged or os.path.exists(
            self.layout.object_path(sha256_hex, executable)
        )

    def add_file(self, source: str, executable: bool,
                 on_bytes: Callable[[int], None] | None = None) -> tuple[str, int]:
        """Copy a file into staging while hashing it; return (sha256 hex, size)."""
        try:
            src = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            raise InputError(f"cannot read {source}: {exc.strerror}",
                             reason="unreadable-file") from exc
        try:
            return self._stage(lambda view: os.readv(src, [view]), executable, on_bytes)
        finally:
            os.close(src)

    def add_stream(self, read_into: Callable[[memoryview], int],
                   executable: bool) -> tuple[str, int]:
        """Stage bytes from a reader that fills a buffer and returns the count (0 at end)."""
        return self._stage(read_into, executable, None)

    def _stage(self, read_into: Callable[[memoryview], int], executable: bool,
               on_bytes: Callable[[int], None] | None) -> tuple[str, int]:
        tmp = self.directory / str(next(self._counter))
        mode = EXECUTABLE_OBJECT_MODE if executable else OBJECT_MODE
        digest = hashlib.sha256()
        size = 0
        view = _buffer()
        dst = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            while count := read_into(view):
                chunk = view[:count]
                digest.update(chunk)
                write_all(dst, chunk)
                size += count
                if on_bytes is not None:
                    on_bytes(count)
                crash_point("object-write")
            os.fchmod(dst, mode)
        except OSError as exc:
            os.close(dst)
            tmp.unlink(missing_ok=True)
            raise StoreError(f"cannot write a new object: {exc}", reason="store-write") from exc
        os.close(dst)
        sha = digest.hexdigest()
        key = (sha, executable)
        with self._lock:
            duplicate = key in self._staged or os.path.exists(self.layout.object_path(*key))
            if not duplicate:
                self._staged[key] = tmp
        if duplicate:
            tmp.unlink()
        self.bytes_written += size
        return sha, size

    def commit(self) -> int:
        """Link every staged object into objects/; return how many were new."""
        crash_point("before-commit")
        added = 0
        for (sha, executable), tmp in self._staged.items():
            try:
                os.link(tmp, self.layout.object_path(sha, executable))
                added += 1
            except FileExistsError:
                pass  # another writer stored the same content first
            crash_point("commit")
        self._staged.clear()
        self.discard()
        return added

    def discard(self) -> None:
        """Remove the staging directory and whatever is still in it."""
        shutil.rmtree(self.directory, ignore_errors=True)
