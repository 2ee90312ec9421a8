"""Reading one gzip member, and nothing after it, with its expansion bounded.

Python's GzipFile reads any number of concatenated members as one stream, so
an archive could carry a second member that one reader sees and another does
not; and a few megabytes of gzip can expand to gigabytes (a 4 MB archive
imported as 4 GB in the sandbox review). Kiln's reader stops at the first
member's end and refuses anything but that end after it, and refuses output
past `archive-size` bytes or `archive-ratio` times the input (past the first
MiB, so small archives of zeros still pass).
"""

from __future__ import annotations

import zlib
from typing import BinaryIO

from kiln.errors import InputError
from kiln.limits import DEFAULT_IMPORT_LIMITS, ImportLimits

_CHUNK = 1 << 16
_FREE_EXPANSION = 1 << 20


class SingleGzip:
    """A readable stream of one gzip member's content (CRC and length checked by zlib)."""

    def __init__(self, raw: BinaryIO, limits: ImportLimits = DEFAULT_IMPORT_LIMITS) -> None:
        self._raw = raw
        self._inflate = zlib.decompressobj(wbits=31)  # gzip framing: header, CRC, ISIZE
        self._buffer = b""
        self._limits = limits
        self.compressed = 0
        self.expanded = 0

    def read(self, size: int = -1, /) -> bytes:
        while (size < 0 or len(self._buffer) < size) and not self._inflate.eof:
            # Output is taken a bounded piece at a time; what is left waits in the tail.
            chunk = self._inflate.unconsumed_tail
            if not chunk:
                chunk = self._raw.read(_CHUNK)
                if not chunk:
                    raise InputError("archive is truncated or corrupt: the gzip stream ends"
                                     " early", reason="archive-corrupt")
                self.compressed += len(chunk)
            self._take(self._inflate.decompress(chunk, _CHUNK * 16))
        if self._inflate.eof:
            self._refuse_trailing()
        if size < 0:
            size = len(self._buffer)
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def readinto(self, buffer: memoryview, /) -> int:
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def _take(self, data: bytes) -> None:
        self.expanded += len(data)
        limits = self._limits
        if self.expanded > limits.archive_size:
            raise InputError(f"archive expands past {limits.archive_size} bytes (archive-size)",
                             reason="archive-too-large")
        if self.expanded > _FREE_EXPANSION and \
                self.expanded > limits.archive_ratio * self.compressed:
            raise InputError(f"archive expands more than {limits.archive_ratio} times its"
                             " compressed size (archive-ratio): a decompression bomb",
                             reason="archive-too-large")
        self._buffer += data

    def _refuse_trailing(self) -> None:
        if self._inflate.unused_data or self._raw.read(1):
            raise InputError("archive has data after its gzip stream (a second member?);"
                             " refused", reason="archive-trailing-data")
