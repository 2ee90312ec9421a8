"""Tar headers, written deterministically and read strictly.

Python's tarfile is lenient where Kiln must not be: it takes a bad checksum or
a truncated header in mid-archive for the end of the archive and says nothing.
Kiln's reader treats both as corruption, insists on the end-of-archive block,
and knows only what the ustar, pax and GNU long-name formats define.
The writer is ours too, so the archive's bytes never depend on a Python release.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from kiln.errors import InputError
from kiln.limits import DEFAULT_IMPORT_LIMITS, ImportLimits

BLOCK = 512
END_OF_ARCHIVE = b"\0" * (2 * BLOCK)

REGULAR = b"0"
HARDLINK = b"1"
SYMLINK = b"2"
DIRECTORY = b"5"
PAX_HEADER = b"x"
PAX_GLOBAL = b"g"
GNU_LONGNAME = b"L"
GNU_LONGLINK = b"K"

_TYPE_NAMES = {b"3": "a character device", b"4": "a block device", b"6": "a FIFO",
               b"7": "a contiguous file", b"S": "a GNU sparse file", b"V": "a volume label",
               b"M": "a multi-volume continuation"}

# Members whose size field does not announce data blocks.
_NO_DATA = {HARDLINK, SYMLINK, DIRECTORY, b"3", b"4", b"6"}

_MAX_META = 1 << 20  # pax and long-name data larger than this is not a real archive
_MAX_TRAILING_ZEROS = 1 << 20  # tar pads to its record size (10 KiB by default)


# -- writing ---------------------------------------------------------------


def encode_member(path: str, typeflag: bytes, *, mode: int, size: int = 0,
                  linkname: str = "") -> bytes:
    """The header block(s) for one member: a pax header first when ustar cannot hold it."""
    name = path.encode("utf-8")
    link = linkname.encode("utf-8")
    pax: list[bytes] = []
    split = _split_ustar(name) if name.isascii() else None
    if split is None:
        pax.append(_pax_record("path", name))
        split = (b"", name[:100])
    if len(link) > 100 or not link.isascii():
        pax.append(_pax_record("linkpath", link))
        link = link[:100]
    out = b""
    if pax:
        records = b"".join(pax)
        out += _header(b"././@PaxHeader", b"", PAX_HEADER, 0o644, len(records), b"")
        out += records + _padding(len(records))
    return out + _header(split[1], split[0], typeflag, mode, size, link)


def _split_ustar(name: bytes) -> tuple[bytes, bytes] | None:
    """(prefix, name) fitting ustar's 155 + 100 bytes, or None."""
    if len(name) <= 100:
        return b"", name
    for index in range(len(name) - 1, 0, -1):
        if name[index:index + 1] == b"/" and index <= 155 and len(name) - index - 1 <= 100:
            return name[:index], name[index + 1:]
    return None


def _pax_record(key: str, value: bytes) -> bytes:
    body = b" " + key.encode("ascii") + b"=" + value + b"\n"
    length = len(body)
    while len(str(length).encode()) + len(body) != length:
        length = len(str(length).encode()) + len(body)
    return str(length).encode() + body


def _header(name: bytes, prefix: bytes, typeflag: bytes, mode: int, size: int,
            linkname: bytes) -> bytes:
    fields = [
        name.ljust(100, b"\0"),
        b"%07o\0" % mode,
        b"%07o\0" % 0,  # uid
        b"%07o\0" % 0,  # gid
        b"%011o\0" % size,
        b"%011o\0" % 0,  # mtime
        b" " * 8,  # checksum, filled below
        typeflag,
        linkname.ljust(100, b"\0"),
        b"ustar\x0000",
        b"\0" * 32,  # uname
        b"\0" * 32,  # gname
        b"%07o\0" % 0,
        b"%07o\0" % 0,
        prefix.ljust(155, b"\0"),
        b"\0" * 12,
    ]
    header = bytearray(b"".join(fields))
    header[148:156] = b"%06o\0 " % sum(header)
    return bytes(header)


def _padding(size: int) -> bytes:
    return b"\0" * (-size % BLOCK)


# -- reading ---------------------------------------------------------------


class ByteStream(Protocol):
    """A readable binary stream: a file or a gzip decompressor."""

    def read(self, size: int = -1, /) -> bytes: ...

    def readinto(self, buffer: memoryview, /) -> int: ...


@dataclass(frozen=True)
class Member:
    """One archive member as its headers describe it (path not yet checked)."""

    path: str
    typeflag: bytes
    mode: int
    size: int
    linkname: str


class TarReader:
    """Reads members one by one; the caller must consume each member's data."""

    def __init__(self, stream: ByteStream, limits: ImportLimits = DEFAULT_IMPORT_LIMITS) -> None:
        self._stream = stream
        self._remaining = 0  # data bytes of the current member not yet read
        self._pad = 0
        self._limits = limits
        self._entries = 0
        self._announced = 0  # data bytes the headers announced so far

    def members(self) -> Iterator[Member]:
        pax: dict[str, bytes] = {}
        long_name: bytes | None = None
        long_link: bytes | None = None
        while True:
            self._skip_rest()
            block = self._read_exact(BLOCK, "a header")
            if block == b"\0" * BLOCK:
                return  # end of archive; a second zero block may or may not follow
            header = _parse_header(block)
            typeflag = header.typeflag
            if typeflag in (PAX_HEADER, PAX_GLOBAL, GNU_LONGNAME, GNU_LONGLINK):
                data = self._read_meta(header.size)
                if typeflag == PAX_HEADER:
                    pax = _parse_pax(data)
                elif typeflag == PAX_GLOBAL:
                    if {"path", "linkpath", "size"} & set(_parse_pax(data)):
                        raise InputError("archive has a global pax header that renames"
                                         " members; refused", reason="archive-unsupported")
                elif typeflag == GNU_LONGNAME:
                    long_name = data.rstrip(b"\0")
                else:
                    long_link = data.rstrip(b"\0")
                continue
            raw_name = pax.get("path", long_name if long_name is not None else header.name)
            raw_link = pax.get("linkpath",
                               long_link if long_link is not None else header.linkname)
            size = int(pax["size"]) if "size" in pax else header.size
            pax, long_name, long_link = {}, None, None
            self._remaining = 0 if typeflag in _NO_DATA else size
            self._count(self._remaining)
            self._pad = -self._remaining % BLOCK
            yield Member(_decode(raw_name), REGULAR if typeflag == b"\0" else typeflag,
                         header.mode, self._remaining, _decode(raw_link))

    def read_into(self, view: memoryview) -> int:
        """Read the current member's data into `view`; 0 at its end."""
        if self._remaining == 0:
            return 0
        wanted = min(len(view), self._remaining)
        count = self._stream.readinto(view[:wanted])
        if not count:
            raise _truncated("member data")
        self._remaining -= count
        return int(count)

    def read_all(self, limit: int) -> bytes:
        if self._remaining > limit:
            raise InputError(f"archive member is larger than {limit} bytes",
                             reason="archive-corrupt")
        data = self._read_exact(self._remaining, "member data")
        self._remaining = 0
        return data

    def finish(self) -> None:
        """Read to the end of the stream, so that gzip checks its CRC and length.

        After the end-of-archive block only zeros may follow (tar pads to its
        record size): data there would be read by one tool and not another."""
        trailing = 0
        while chunk := self._stream.read(1 << 16):
            trailing += len(chunk)
            if chunk.count(0) != len(chunk) or trailing > _MAX_TRAILING_ZEROS:
                raise InputError("archive has data after its end-of-archive blocks; refused",
                                 reason="archive-trailing-data")

    def _count(self, size: int) -> None:
        """Refuse archives with more entries or data than the import limits allow."""
        self._entries += 1
        self._announced += size
        limits = self._limits
        if self._entries > limits.archive_entries:
            raise InputError(f"archive has more than {limits.archive_entries} members"
                             " (archive-entries)", reason="archive-too-large")
        if self._announced > limits.archive_size:
            raise InputError(f"archive holds more than {limits.archive_size} bytes"
                             " (archive-size)", reason="archive-too-large")

    def _skip_rest(self) -> None:
        while self._remaining:
            chunk = self._stream.read(min(self._remaining, 1 << 20))
            if not chunk:
                raise _truncated("member data")
            self._remaining -= len(chunk)
        if self._pad:
            self._read_exact(self._pad, "padding")
            self._pad = 0

    def _read_meta(self, size: int) -> bytes:
        if size > _MAX_META:
            raise InputError("archive has an extended header over 1 MiB",
                             reason="archive-corrupt")
        data = self._read_exact(size, "an extended header")
        self._read_exact(-size % BLOCK, "padding")
        return data

    def _read_exact(self, size: int, what: str) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self._stream.read(size - len(data))
            if not chunk:
                raise _truncated(what)
            data += chunk
        return data


def _truncated(what: str) -> InputError:
    return InputError(f"archive is truncated: it ends inside {what}", reason="archive-truncated")


@dataclass(frozen=True)
class _Header:
    """One tar header, as read, before it is checked."""

    name: bytes
    mode: int
    size: int
    typeflag: bytes
    linkname: bytes


def _parse_header(block: bytes) -> _Header:
    stored = _number(block[148:156])
    unsigned = sum(block[:148]) + 8 * 32 + sum(block[156:])
    signed = sum((b - 256 if b > 127 else b) for b in block[:148] + b" " * 8 + block[156:])
    if stored not in (unsigned, signed):
        raise InputError("archive is corrupt: a header checksum does not match",
                         reason="archive-corrupt")
    name = block[0:100].split(b"\0", 1)[0]
    if block[257:262] == b"ustar":
        prefix = block[345:500].split(b"\0", 1)[0]
        if prefix:
            name = prefix + b"/" + name
    return _Header(name, _number(block[100:108]), _number(block[124:136]), block[156:157],
                   block[157:257].split(b"\0", 1)[0])


def _number(field: bytes) -> int:
    if field[:1] == b"\x80":  # GNU base-256 for values octal cannot hold
        return int.from_bytes(field[1:], "big")
    if field[:1] == b"\xff":
        raise InputError("archive has a negative number in a header", reason="archive-corrupt")
    text = field.split(b"\0", 1)[0].strip(b" ")
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise InputError("archive is corrupt: a header field is not a number",
                         reason="archive-corrupt") from None


def _parse_pax(data: bytes) -> dict[str, bytes]:
    records: dict[str, bytes] = {}
    position = 0
    while position < len(data):
        space = data.find(b" ", position)
        try:
            length = int(data[position:space])
        except ValueError:
            raise InputError("archive has a malformed pax header",
                             reason="archive-corrupt") from None
        record = data[space + 1:position + length]
        if length <= 0 or not record.endswith(b"\n") or b"=" not in record:
            raise InputError("archive has a malformed pax header", reason="archive-corrupt")
        key, _, value = record[:-1].partition(b"=")
        records[key.decode("utf-8", "replace")] = value
        position += length
    # No size has 20 digits; a longer one is an attack on the parser (Python's int
    # refuses over 4,300 digits with a traceback).
    if "size" in records and not (records["size"].isdigit() and len(records["size"]) < 20):
        raise InputError("archive has a malformed pax size", reason="archive-corrupt")
    return records


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        shown = raw.decode("utf-8", "backslashreplace")
        raise InputError(f"archive member {shown!r}: name is not valid UTF-8",
                         reason="bad-path-encoding") from None


def describe_type(typeflag: bytes) -> str:
    return _TYPE_NAMES.get(typeflag, f"of unknown type {typeflag!r}")
