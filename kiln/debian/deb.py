"""Reading a .deb: an ar archive whose data.tar.* member is the package's tree, and
whose control.tar.* holds its own control fields."""

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
    return _member(deb, where, "data.tar")


def control_summary(deb: BinaryIO, where: str) -> str:
    """The first line of the package's own Description (its control file). apt's record
    carries it only where apt fetched translations, which a host may not."""
    files = control_files(deb, where, {"control"})
    if "control" not in files:
        raise InputError(f"{where}: control.tar has no control file", reason="bad-deb")
    return control_description(files["control"])


def control_files(deb: BinaryIO, where: str, names: set[str]) -> dict[str, str]:
    """The named files of the .deb's control.tar (control, postinst ...), as text, read
    and never extracted; each up to 1 MiB."""
    import tarfile

    stream = _member(deb, where, "control.tar")
    found = {}
    try:
        with tarfile.open(fileobj=stream, mode="r|") as tar:  # type: ignore[call-overload]
            for entry in tar:
                name = entry.name.lstrip("./")
                if entry.isfile() and name in names:
                    handle = tar.extractfile(entry)
                    assert handle is not None
                    found[name] = handle.read(1 << 20).decode("utf-8", "replace")
    except (tarfile.TarError, EOFError, lzma.LZMAError, OSError) as exc:
        raise InputError(f"{where}: unreadable control.tar: {exc}", reason="bad-deb") from exc
    return found


def control_description(control: str) -> str:
    """The first line of a control file's Description."""
    for line in control.splitlines():
        if line.startswith("Description:"):
            return line.removeprefix("Description:").strip()
    return ""


def _member(deb: BinaryIO, where: str, prefix: str) -> ByteStream:
    """The decompressed ar member whose name starts with `prefix`, as a stream."""
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
        if name.startswith(prefix):
            member = io.BytesIO(deb.read(size))
            if len(member.getbuffer()) != size:
                raise InputError(f"{where}: truncated {name}", reason="bad-deb")
            return _decompress(name, member, where)
        deb.seek(size + size % 2, io.SEEK_CUR)
    raise InputError(f"{where} has no {prefix} member", reason="bad-deb")


def _decompress(name: str, member: BinaryIO, where: str) -> ByteStream:
    if name in ("data.tar", "control.tar"):
        return member  # type: ignore[return-value]
    if name.endswith(".tar.xz"):
        return lzma.LZMAFile(member)
    if name.endswith(".tar.gz"):
        return gzip.GzipFile(fileobj=member)
    raise InputError(f"{where}: {name} is compressed in a way Kiln cannot read yet",
                     reason="bad-deb")
