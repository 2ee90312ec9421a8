"""New objects are written under tmp/ and then moved into objects/.

An archive import stages: nothing reaches objects/ until `commit`, so a
refused archive leaves the store as it was. An ingest publishes each object as
soon as it is written (`publish_now`): an object nobody records yet is only
garbage, gc cannot run while the ingest holds the store's shared lock, and the
workers' moves then overlap their reads instead of queueing at the end.
A crash leaves files under tmp/ (and perhaps unreferenced objects) for gc.
Objects are moved with renameat2(RENAME_NOREPLACE): an object that already
exists keeps its inode, so trees materialised from it keep sharing it.

Ingest cost is per-file system calls, so the common small file takes six:
open, read, close the source; create, write, close the object.
"""

from __future__ import annotations

import errno
import hashlib
import itertools
import os
import shutil
import threading
from collections.abc import Callable

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


def _current_umask() -> int | None:
    # os.umask can only be read by setting it, which races with other threads.
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return None


class _NoReplaceRename:
    """renameat2(RENAME_NOREPLACE), or link+unlink where the kernel or libc lacks it."""

    _AT_FDCWD = -100
    _RENAME_NOREPLACE = 1

    def __init__(self) -> None:
        self._call: Callable[..., int] | None = None
        self._looked_up = False  # by the first rename: a reader of the store needs no libc

    def _renameat2(self) -> Callable[..., int] | None:
        if not self._looked_up:
            import ctypes

            try:
                self._call = ctypes.CDLL(None, use_errno=True).renameat2
            except (AttributeError, OSError):
                self._call = None
            self._looked_up = True
        return self._call

    def __call__(self, source: str, target: str) -> bool:
        """Move `source` to `target` unless `target` exists; True if it was moved."""
        call = self._renameat2()
        if call is not None:
            if call(self._AT_FDCWD, os.fsencode(source), self._AT_FDCWD,
                    os.fsencode(target), self._RENAME_NOREPLACE) == 0:
                return True
            import ctypes

            code = ctypes.get_errno()
            if code == errno.EEXIST:
                os.unlink(source)
                return False
            if code == errno.ENOENT:
                raise FileNotFoundError(code, os.strerror(code), target)
            if code not in (errno.ENOSYS, errno.EINVAL):
                raise OSError(code, os.strerror(code), target)
            self._call = None  # this file system cannot; fall back for good
        try:
            os.link(source, target)
        except FileExistsError:
            return False
        finally:
            os.unlink(source)
        return True


_rename = _NoReplaceRename()


def _rename_no_replace(source: str, target: str) -> bool:
    """Move an object into place; its fan-out directory is made on first use."""
    try:
        return _rename(source, target)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        return _rename(source, target)


class ObjectStager:
    """Writes new objects into a private staging directory; thread-safe."""

    def __init__(self, layout: StoreLayout, *, publish_now: bool = False) -> None:
        self.layout = layout
        self.publish_now = publish_now
        self.directory = layout.temp_name("stage")
        self.directory.mkdir()
        self._prefix = f"{self.directory}/"
        self._staged: dict[tuple[str, bool], str] = {}
        self._lock = threading.Lock()
        self._counter = itertools.count()
        umask = _current_umask()
        self._chmod_needed = umask is None or bool(umask & 0o555)
        self.bytes_written = 0

    def has(self, sha256_hex: str, executable: bool) -> bool:
        """True when the object is in the store or already staged here."""
        return (sha256_hex, executable) in self._staged or os.path.exists(
            self.layout.object_file(sha256_hex, executable)
        )

    def add_file(self, source: str, executable: bool, size_hint: int,
                 on_bytes: Callable[[int], None] | None = None) -> tuple[str, int]:
        """Copy a file into staging while hashing it; return (sha256 hex, size)."""
        try:
            src = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            raise InputError(f"cannot read {source}: {exc.strerror}",
                             reason="unreadable-file") from exc
        try:
            if size_hint < CHUNK:
                # One read reaches the end of a file that did not grow since stat.
                data = os.read(src, size_hint + 1)
                if len(data) <= size_hint:
                    if on_bytes is not None:
                        on_bytes(len(data))
                    return self.add_bytes(data, executable), len(data)
                first = data
            else:
                first = b""
            return self._stage_stream(_prefixed_reader(first, src), executable, on_bytes)
        finally:
            os.close(src)

    def add_bytes(self, data: bytes, executable: bool) -> str:
        """Stage content held in memory; nothing is written if it is already stored."""
        sha = hashlib.sha256(data).hexdigest()
        if self.has(sha, executable):
            return sha
        tmp, fd = self._new_file(executable)
        try:
            write_all(fd, data)
            crash_point("object-write")
        except OSError as exc:
            os.unlink(tmp)
            raise StoreError(f"cannot write a new object: {exc}", reason="store-write") from exc
        finally:
            os.close(fd)
        self._register(sha, executable, tmp, len(data), store_checked=True)
        return sha

    def add_stream(self, read_into: Callable[[memoryview], int],
                   executable: bool) -> tuple[str, int]:
        """Stage bytes from a reader that fills a buffer and returns the count (0 at end)."""
        return self._stage_stream(read_into, executable, None)

    def _new_file(self, executable: bool) -> tuple[str, int]:
        mode = EXECUTABLE_OBJECT_MODE if executable else OBJECT_MODE
        tmp = f"{self._prefix}{next(self._counter)}"  # count() is atomic under the GIL
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
            if self._chmod_needed:
                os.fchmod(fd, mode)
        except OSError as exc:
            raise StoreError(f"cannot write a new object: {exc}", reason="store-write") from exc
        return tmp, fd

    def _stage_stream(self, read_into: Callable[[memoryview], int], executable: bool,
                      on_bytes: Callable[[int], None] | None) -> tuple[str, int]:
        tmp, dst = self._new_file(executable)
        digest = hashlib.sha256()
        size = 0
        view = _buffer()
        try:
            while count := read_into(view):
                chunk = view[:count]
                digest.update(chunk)
                write_all(dst, chunk)
                size += count
                if on_bytes is not None:
                    on_bytes(count)
                crash_point("object-write")
        except OSError as exc:
            os.close(dst)
            os.unlink(tmp)
            raise StoreError(f"cannot write a new object: {exc}", reason="store-write") from exc
        except BaseException:
            os.close(dst)
            os.unlink(tmp)
            raise
        os.close(dst)
        sha = digest.hexdigest()
        self._register(sha, executable, tmp, size)
        return sha, size

    def _register(self, sha: str, executable: bool, tmp: str, size: int, *,
                  store_checked: bool = False) -> None:
        key = (sha, executable)
        if self.publish_now:
            crash_point("before-rename")
            if _rename_no_replace(tmp, self.layout.object_file(sha, executable)):
                with self._lock:
                    self.bytes_written += size
            return
        with self._lock:
            duplicate = key in self._staged or (
                not store_checked and os.path.exists(self.layout.object_file(*key)))
            if not duplicate:
                self._staged[key] = tmp
                self.bytes_written += size
        if duplicate:
            os.unlink(tmp)

    def for_worker(self) -> ObjectStager:
        """A publishing stager for a worker process, in a subdirectory of its own."""
        assert self.publish_now, "workers publish as they go; only ingest uses them"
        worker = ObjectStager.__new__(ObjectStager)
        worker.__dict__.update(self.__dict__)
        worker.directory = self.directory / f"worker-{os.getpid()}"
        worker.directory.mkdir()
        worker._prefix = f"{worker.directory}/"
        worker._staged = {}
        worker._lock = threading.Lock()
        worker._counter = itertools.count()
        worker.bytes_written = 0
        return worker

    def commit(self) -> int:
        """Move every staged object into objects/; return how many were new."""
        crash_point("before-commit")
        added = 0
        for (sha, executable), tmp in self._staged.items():
            # False: another writer stored the same content first; that is fine.
            added += _rename_no_replace(tmp, self.layout.object_file(sha, executable))
            crash_point("commit")
        self._staged.clear()
        self.discard()
        return added

    def discard(self) -> None:
        """Remove the staging directory and whatever is still in it."""
        shutil.rmtree(self.directory, ignore_errors=True)


def _prefixed_reader(first: bytes, fd: int) -> Callable[[memoryview], int]:
    """A reader that yields `first`, then the rest of the file `fd`."""
    pending = [first] if first else []

    def read_into(view: memoryview) -> int:
        if pending:
            data = pending.pop()
            view[:len(data)] = data
            return len(data)
        return os.readv(fd, [view])

    return read_into
