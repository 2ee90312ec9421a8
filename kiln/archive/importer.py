"""Importing an archive: all or nothing, and nothing hostile gets through.

Objects are staged, never written through archive paths, so no member can
reach outside the store whatever its name. Every member is still checked, so
a hostile archive is refused with a reason instead of half-imported: `..` or
absolute paths, paths under a symlink, devices, FIFOs, setuid bits, hard links
to nothing earlier in the archive, a path twice with different content,
over-long paths, and truncated or corrupt data (gzip's CRC included).
"""

from __future__ import annotations

import dataclasses
import gzip
import lzma
import re
import stat
import zlib
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from kiln.archive.export import MANIFEST_SUFFIX
from kiln.archive.gzipstream import SingleGzip
from kiln.archive.tarformat import (
    DIRECTORY,
    HARDLINK,
    REGULAR,
    SYMLINK,
    ByteStream,
    Member,
    TarReader,
    describe_type,
)
from kiln.canonical import Digest
from kiln.errors import InputError, KilnError
from kiln.faults import crash_point
from kiln.fileset import MOUNT_ROOT, FileSet, Metadata
from kiln.hostconfig import host_config
from kiln.store.staging import ObjectStager
from kiln.store.store import Store
from kiln.tree import (
    DirectoryEntry,
    Entry,
    FileEntry,
    SymlinkEntry,
    Tree,
    check_path,
    check_symlink_target,
)

_MANIFEST_PATH = re.compile(rf"{MOUNT_ROOT}/(.+){re.escape(MANIFEST_SUFFIX)}")
_MAX_MANIFEST = 16 << 20


@dataclass(frozen=True)
class ImportResult:
    """A FileSet imported from an archive, and how many files it holds."""

    fileset: FileSet
    files: int


def import_archive(store: Store, source: Path, *, name: str | None = None,
                   version: str | None = None) -> ImportResult:
    """Import a Kiln archive (or, given NAME and VERSION, any plain tar) into the store."""
    with ExitStack() as stack:
        try:
            raw = stack.enter_context(open(source, "rb"))
        except OSError as exc:
            raise InputError(f"cannot read {source}: {exc.strerror}",
                             reason="unreadable-file") from exc
        stream: ByteStream = raw
        if raw.peek(2)[:2] == b"\x1f\x8b":
            stream = SingleGzip(raw, host_config().imports)
        return import_tar_stream(store, stream, str(source), name=name, version=version)


def import_tar_stream(store: Store, stream: ByteStream, where: str, *, name: str | None = None,
                      version: str | None = None, metadata: Metadata | None = None,
                      strip_setuid: bool = False, expect: Digest | None = None,
                      check_stream: Callable[[], None] | None = None) -> ImportResult:
    """Import an uncompressed (or already decompressing) tar stream; `where` names it in
    errors. `metadata` is for plain tars, whose content says nothing of what they are.

    `strip_setuid` drops setuid and setgid bits instead of refusing them, and lists
    the paths in the label `setuid-stripped`: for Debian packages (mount, su), which
    Kiln runs only under no_new_privs, where those bits mean nothing anyway.

    `check_stream` runs once the stream is read to its end, and raises to keep
    nothing (a registry pull checks the blob's digest there); `expect` is the
    FileSet digest the archive must hold."""
    with store.shared():
        stager = store.stager()
        try:
            state = _ArchiveState(strip_setuid=strip_setuid)
            return _import(store, stager, TarReader(stream, host_config().imports), state, name,
                           version, metadata, expect, check_stream)
        except (EOFError, gzip.BadGzipFile, zlib.error, lzma.LZMAError) as exc:
            raise InputError(f"{where}: archive is truncated or corrupt: {exc}",
                             reason="archive-corrupt") from exc
        except KilnError as exc:
            exc.message = f"{where}: {exc.message}"
            raise
        finally:
            stager.discard()


def _import(store: Store, stager: ObjectStager, reader: TarReader, state: _ArchiveState,
            name: str | None, version: str | None, metadata: Metadata | None,
            expect: Digest | None, check_stream: Callable[[], None] | None) -> ImportResult:
    for member in reader.members():
        path = _clean_path(member.path)
        if path is not None and not state.take_header(member, path, reader):
            tree_path = state.tree_path(path, member)
            if tree_path is not None:
                state.add(_entry(member, tree_path, reader, stager, state))
                crash_point("import")
    reader.finish()
    if check_stream is not None:
        check_stream()
    fileset, tree = state.finish(name, version, metadata)
    if expect is not None and fileset.digest != expect:
        raise InputError(f"the archive holds {fileset.label} ({fileset.digest}), not {expect}",
                         reason="fileset-digest-mismatch")
    store.record(fileset, tree, stager, manifest_bytes=state.manifest_bytes or None,
                 objects_checked=True)
    return ImportResult(fileset, sum(1 for _ in tree.files()))


class _ArchiveState:
    """What has been read so far: the manifest, if any, and the tree's entries."""

    def __init__(self, *, strip_setuid: bool = False) -> None:
        self.strip_setuid = strip_setuid
        self.stripped: list[str] = []
        self.manifest: FileSet | None = None
        self.manifest_bytes = b""
        self.ancestors: set[str] = set()
        self.set_aside: set[str] = set()
        self.entries: dict[str, Entry] = {}
        self.seen_tree_member = False

    def take_header(self, member: Member, path: str, reader: TarReader) -> bool:
        """Consume the manifest and the directories before it; True if it was one."""
        if self.manifest is not None or self.seen_tree_member:
            return False
        match = _MANIFEST_PATH.fullmatch(path)
        if member.typeflag == REGULAR and match:
            self.manifest_bytes = reader.read_all(_MAX_MANIFEST)
            manifest = FileSet.from_manifest(self.manifest_bytes, where=member.path)
            if match.group(1) != f"{manifest.name}/{manifest.version}":
                raise InputError(f"manifest {path} describes {manifest.label}",
                                 reason="archive-manifest-mismatch")
            parts = manifest.mount_point.split("/")
            self.ancestors = {"/".join(parts[:depth]) for depth in range(1, len(parts) + 1)}
            if self.set_aside - self.ancestors:
                raise InputError(f"member {min(self.set_aside - self.ancestors)!r} lies"
                                 f" outside {manifest.mount_point}",
                                 reason="archive-outside-mount")
            self.manifest = manifest
            return True
        if member.typeflag == DIRECTORY and path.startswith(MOUNT_ROOT):
            self.set_aside.add(path)  # the manifest's ancestors, if a manifest follows
            return True
        return False

    def tree_path(self, path: str, member: Member) -> str | None:
        """The member's path inside the tree, or None for the mount point's ancestors."""
        self.seen_tree_member = True
        if self.manifest is None:
            return path
        if path in self.ancestors and member.typeflag == DIRECTORY:
            return None
        prefix = self.manifest.mount_point + "/"
        if not path.startswith(prefix):
            raise InputError(f"member {path!r} lies outside {self.manifest.mount_point}",
                             reason="archive-outside-mount")
        return path[len(prefix):]

    def link_target(self, linkname: str) -> Entry | None:
        """The earlier entry a hard link names (archive paths carry the mount point)."""
        try:
            path = _clean_path(linkname)
        except InputError:
            return None  # absolute or `..`: nothing in this archive
        if path is None:
            return None
        if self.manifest is not None:
            prefix = self.manifest.mount_point + "/"
            if not path.startswith(prefix):
                return None
            path = path[len(prefix):]
        return self.entries.get(path)

    def add(self, entry: Entry) -> None:
        previous = self.entries.get(entry.path)
        if previous is not None and previous != entry:
            raise InputError(f"member {entry.path!r} appears twice with different content",
                             reason="archive-duplicate")
        self.entries[entry.path] = entry

    def finish(self, name: str | None, version: str | None,
               metadata: Metadata | None) -> tuple[FileSet, Tree]:
        manifest = self.manifest
        if manifest is None:
            if name is None or version is None:
                raise InputError("archive has no Kiln manifest; give --name and --version"
                                 " to import it as a plain tar", reason="archive-no-manifest")
            # A plain tar: the directories under packages/ set aside are its own.
            for path in self.set_aside:
                self.entries.setdefault(path, DirectoryEntry(path))
            _add_missing_parents(self.entries)
            tree = Tree.from_entries(self.entries.values())
            metadata = metadata or Metadata()
            if self.stripped:
                metadata = dataclasses.replace(metadata, labels={
                    **metadata.labels, "setuid-stripped": ",".join(sorted(self.stripped))})
            return FileSet(name, version, tree.digest, (), metadata), tree
        if metadata is not None:
            raise InputError("a Kiln archive carries its own metadata",
                             reason="archive-manifest-mismatch")
        if (name, version) != (None, None) and (name, version) != (
                manifest.name, manifest.version):
            raise InputError(f"archive holds {manifest.label}, not {name}@{version}",
                             reason="archive-manifest-mismatch")
        tree = Tree.from_entries(self.entries.values())
        if tree.digest != manifest.tree:
            raise InputError(f"content of {manifest.label} does not match its manifest: tree"
                             f" {tree.digest}, manifest says {manifest.tree}",
                             reason="archive-digest-mismatch")
        return manifest, tree


def _clean_path(raw: str) -> str | None:
    path = raw
    while path.startswith("./"):
        path = path[2:]
    path = path.rstrip("/")
    if path in ("", "."):
        return None
    if raw.startswith("/"):
        raise InputError(f"member {raw!r} has an absolute path", reason="archive-absolute-path")
    if ".." in path.split("/"):
        raise InputError(f"member {raw!r} has a '..' component", reason="archive-dotdot")
    return check_path(path)


def _entry(member: Member, path: str, reader: TarReader, stager: ObjectStager,
           state: _ArchiveState) -> Entry:
    entries = state.entries
    parent = path.rpartition("/")[0]
    while parent:
        if isinstance(entries.get(parent), SymlinkEntry):
            raise InputError(f"member {path!r} lies under the symlink {parent!r}",
                             reason="archive-through-symlink")
        parent = parent.rpartition("/")[0]
    if member.typeflag == DIRECTORY:
        return DirectoryEntry(path)
    if member.typeflag == SYMLINK:
        return SymlinkEntry(path, check_symlink_target(path, member.linkname))
    if member.typeflag in (REGULAR, HARDLINK) and member.mode & (stat.S_ISUID | stat.S_ISGID):
        if not state.strip_setuid:
            raise InputError(f"member {path!r} is setuid or setgid", reason="setuid-file")
        state.stripped.append(path)
    if member.typeflag == REGULAR:
        executable = bool(member.mode & stat.S_IXUSR)
        sha, size = stager.add_stream(reader.read_into, executable)
        return FileEntry(path, size, sha, executable)
    if member.typeflag == HARDLINK:
        linked = state.link_target(member.linkname)
        if not isinstance(linked, FileEntry):
            raise InputError(f"hard link {path!r} points to {member.linkname!r}, which is not"
                             " a file earlier in the archive", reason="archive-hardlink-outside")
        return FileEntry(path, linked.size, linked.sha256, linked.executable)
    raise InputError(f"member {path!r} is {describe_type(member.typeflag)}; a FileSet holds"
                     " only files, directories and symlinks", reason="special-file")


def _add_missing_parents(entries: dict[str, Entry]) -> None:
    for path in list(entries):
        parent = path.rpartition("/")[0]
        while parent and parent not in entries:
            entries[parent] = DirectoryEntry(parent)
            parent = parent.rpartition("/")[0]
