"""Reading a .deb: an ar archive whose data.tar.* member is the package's tree."""

from __future__ import annotations

import gzip
import io
import lzma
from typing import BinaryIO

from kiln.archive.tarformat import ByteStream
from kiln.errors import InputError

_MAGIC = b"!<arch>\n"
_HEADER = 60


def data_tar(deb: BinaryIO, where: str) -> ByteStream:
    """The decompressed data.tar of a .deb, as a stream."""
    if deb.read(len(_MAGIC)) != _MAGIC:
        raise InputError(f"{where} is not a Debian package (no ar header)", reason="bad-deb")
    while header := deb.read(_HEADER):
        if len(header) != _HEADER or header[58:60] != b"`\n":
            raise InputError(f"{where}: corrupt ar member header", reason="bad-deb")
        name = header[:16].decode("ascii", "replace").strip().rstrip("/")
        try:
            size = int(header[48:58].decode("ascii").strip())
        except ValueError:
            raise InputError(f"{where}: corrupt ar member size", reason="bad-deb") from None
        if name.startswith("data.tar"):
            member = io.BytesIO(deb.read(size))
            if len(member.getbuffer()) != size:
                raise InputError(f"{where}: truncated {name}", reason="bad-deb")
            return _decompress(name, member, where)
        deb.seek(size + size % 2, io.SEEK_CUR)
    raise InputError(f"{where} has no data.tar member", reason="bad-deb")


def _decompress(name: str, member: BinaryIO, where: str) -> ByteStream:
    if name == "data.tar":
        return member  # type: ignore[return-value]
    if name == "data.tar.xz":
        return lzma.LZMAFile(member)
    if name == "data.tar.gz":
        return gzip.GzipFile(fileobj=member)
    raise InputError(f"{where}: {name} is compressed in a way Kiln cannot read yet",
                     reason="bad-deb")
