"""Writing a FileSet's stable archive: the same FileSet gives the same bytes anywhere.

Layout, in this order:
    packages/, packages/<domain>/, ...      the mount point's ancestors
    packages/<name>/<version>.fileset.json  the manifest, so an import needs nothing else
    packages/<name>/<version>/              the mount point
    packages/<name>/<version>/<path>...     the tree, sorted as its digest sorts it
then two zero blocks. Owner 0, mtime 0, no user or group names; modes 0644 or
0755 for files, 0755 for directories, 0777 for symlinks. A file whose content
(and executable bit) already appeared is a hard link to the first one.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import BinaryIO

from kiln.archive.tarformat import (
    DIRECTORY,
    END_OF_ARCHIVE,
    HARDLINK,
    REGULAR,
    SYMLINK,
    encode_member,
)
from kiln.canonical import Digest
from kiln.errors import StoreError
from kiln.fileset import FileSet
from kiln.store.store import Store
from kiln.tree import FileEntry, SymlinkEntry

MANIFEST_SUFFIX = ".fileset.json"


@dataclass(frozen=True)
class ArchiveInfo:
    """A FileSet's stable archive: its digest and size."""

    digest: Digest
    size: int


class _HashingWriter:
    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes | memoryview) -> None:
        self.hash.update(data)
        self._out.write(data)
        self.size += len(data)


def manifest_member(fileset: FileSet) -> str:
    return fileset.mount_point + MANIFEST_SUFFIX


def write_archive(store: Store, fileset: FileSet, out: BinaryIO) -> ArchiveInfo:
    """Write the stable archive of `fileset` (its own tree, not its imports) to `out`."""
    writer = _HashingWriter(out)
    with store.shared():
        tree = store.tree(fileset)
        mount = fileset.mount_point
        parts = mount.split("/")
        for depth in range(1, len(parts)):
            writer.write(encode_member("/".join(parts[:depth]) + "/", DIRECTORY, mode=0o755))
        manifest = fileset.manifest_bytes
        writer.write(encode_member(manifest_member(fileset), REGULAR, mode=0o644,
                                   size=len(manifest)))
        _write_data(writer, manifest)
        writer.write(encode_member(mount + "/", DIRECTORY, mode=0o755))
        first_path: dict[tuple[str, bool], str] = {}
        for entry in tree.entries:
            path = f"{mount}/{entry.path}"
            if isinstance(entry, FileEntry):
                mode = 0o755 if entry.executable else 0o644
                key = (entry.sha256, entry.executable)
                if key in first_path:
                    writer.write(encode_member(path, HARDLINK, mode=mode,
                                               linkname=first_path[key]))
                    continue
                first_path[key] = path
                writer.write(encode_member(path, REGULAR, mode=mode, size=entry.size))
                _copy_object(writer, str(store.object_path(*key)), entry)
            elif isinstance(entry, SymlinkEntry):
                writer.write(encode_member(path, SYMLINK, mode=0o777, linkname=entry.target))
            else:
                writer.write(encode_member(path + "/", DIRECTORY, mode=0o755))
        writer.write(END_OF_ARCHIVE)
    return ArchiveInfo(Digest("sha256:" + writer.hash.hexdigest()), writer.size)


def _write_data(writer: _HashingWriter, data: bytes) -> None:
    writer.write(data)
    writer.write(b"\0" * (-len(data) % 512))


def _copy_object(writer: _HashingWriter, path: str, entry: FileEntry) -> None:
    # The object is re-hashed on the way out: a corrupt store must not ship
    # an archive whose layer digest looks fine but whose tree does not match.
    content = hashlib.sha256()
    written = 0
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        while chunk := os.read(fd, 1 << 20):
            content.update(chunk)
            writer.write(chunk)
            written += len(chunk)
    finally:
        os.close(fd)
    if written != entry.size or content.hexdigest() != entry.sha256:
        raise StoreError(f"object {path} of {entry.path!r} is corrupt; run `kiln store fsck`",
                         reason="object-corrupt")
    writer.write(b"\0" * (-written % 512))
