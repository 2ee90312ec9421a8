"""The content-addressed store on one host: objects, trees, FileSets, names, pins.

Every write is a temp file renamed (or linked) into place, so a reader sees a
record whole or not at all. Writers and readers hold a shared flock on `lock`
for the length of their work; gc holds it exclusively, so it never removes
what a running ingest has staged but not yet recorded.
"""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from kiln.canonical import Digest
from kiln.errors import InputError, NotFound, StoreError
from kiln.faults import crash_point
from kiln.fileset import FileSet
from kiln.naming import validate_name, validate_version, version_key
from kiln.ownership import check_owned
from kiln.store.durability import make_durable, sync_mode
from kiln.store.layout import STORE_FORMAT, StoreLayout, write_atomically
from kiln.store.staging import ObjectStager
from kiln.tree import Tree


@dataclass(frozen=True)
class NamedFileSet:
    """A name@version and the digest it currently means in this store."""

    name: str
    version: str
    digest: Digest


def default_store_path() -> Path:
    """`$KILN_STORE`, else `$XDG_DATA_HOME/kiln/store`, else ~/.local/share/kiln/store."""
    if env := os.environ.get("KILN_STORE"):
        return Path(env)
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "kiln" / "store"


class Store:
    """A store directory; create it with `Store.open`."""

    def __init__(self, layout: StoreLayout) -> None:
        self.layout = layout
        self._filesets: dict[Digest, FileSet] = {}
        self._trees: dict[Digest, Tree] = {}

    @classmethod
    def open(cls, root: Path | str) -> Store:
        """Open the store at `root`, creating it if it does not exist."""
        layout = StoreLayout(Path(root).absolute())
        try:
            marker = layout.marker.read_bytes()
        except FileNotFoundError:
            cls._create(layout)
        except OSError as exc:
            raise StoreError(f"cannot open store {layout.root}: {exc.strerror}") from exc
        else:
            if marker != STORE_FORMAT:
                raise StoreError(
                    f"{layout.root} is not a Kiln store of format {STORE_FORMAT.decode().strip()}",
                    reason="store-format",
                )
        # Objects from a store another user can write could be anything by the time a
        # build or an image uses them (a symlink the user chose is followed).
        check_owned(layout.root.resolve(), "the store")
        return cls(layout)

    @staticmethod
    def _create(layout: StoreLayout) -> None:
        try:
            layout.root.mkdir(parents=True, exist_ok=True)
            # Only our own names may be there: another process may be creating it too.
            known = {p.name for p in [*layout.directories(), layout.lock, layout.marker]}
            if any(p.name not in known for p in layout.root.iterdir()):
                raise StoreError(f"{layout.root} is not empty and not a Kiln store",
                                 reason="store-format")
            for directory in layout.directories():
                directory.mkdir(exist_ok=True)
            # objects/<aa>/ directories are made on first use: creating all 256
            # up front costs more than small stores ever need.
            layout.lock.touch()
            # The marker goes last: a store is only a store once it is complete.
            write_atomically(layout.marker, STORE_FORMAT, layout.tmp, mode=0o644)
            make_durable(layout.root, [layout.marker, *layout.directories(), layout.root,
                                       layout.root.parent])
        except FileExistsError:
            pass  # another process created it at the same moment
        except OSError as exc:
            raise StoreError(f"cannot create store {layout.root}: {exc.strerror}") from exc

    # -- locking -----------------------------------------------------------

    @contextmanager
    def shared(self) -> Iterator[None]:
        """Held by every reader and writer; keeps gc out."""
        with self._flock(fcntl.LOCK_SH):
            yield

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Held by gc: no reader or writer runs meanwhile."""
        with self._flock(fcntl.LOCK_EX):
            yield

    @contextmanager
    def _flock(self, operation: int) -> Iterator[None]:
        fd = os.open(self.layout.lock, os.O_RDONLY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, operation)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    # -- writing -----------------------------------------------------------

    def stager(self, *, publish_now: bool = False) -> ObjectStager:
        return ObjectStager(self.layout, publish_now=publish_now)

    def record(self, fileset: FileSet, tree: Tree | None, stager: ObjectStager | None = None,
               *, manifest_bytes: bytes | None = None, objects_checked: bool = False) -> FileSet:
        """Commit staged objects, then the tree, the FileSet and its name.

        Call with the shared lock held. `tree` None means the FileSet's tree is
        already stored (an unchanged re-ingest), and with it its objects.
        `manifest_bytes`, when given, are the exact bytes an archive carried;
        they must be the FileSet's canonical form. `objects_checked` says the
        caller saw, under this same lock, every object of the tree present or
        staged (ingest does), so they are not looked up again.
        """
        if tree is None:
            if not self.layout.tree_path(fileset.tree).exists():
                raise StoreError(f"{fileset.label}: tree {fileset.tree} is not stored",
                                 reason="tree-missing")
        elif tree.digest != fileset.tree:
            raise InputError(f"{fileset.label}: tree digest {tree.digest} does not match"
                             f" the manifest's {fileset.tree}", reason="tree-digest-mismatch")
        if manifest_bytes is not None and manifest_bytes != fileset.manifest_bytes:
            raise InputError(f"{fileset.label}: manifest is not canonical",
                             reason="bad-manifest")
        for item in fileset.imports:
            if not self.layout.fileset_path(item.digest).exists():
                raise NotFound(f"{fileset.label} imports {item.name}@{item.version}"
                               f" ({item.digest}), which is not in the store",
                               reason="import-missing")
        if fileset.imports:
            from kiln.store.join import joined_entries

            joined_entries(self, fileset, tree)  # refuses a path claimed twice
        if stager is not None:
            stager.commit()
        if tree is not None:
            object_file = self.layout.object_file
            missing = [] if objects_checked else [
                entry.path for entry in tree.files()
                if not os.path.exists(object_file(entry.sha256, entry.executable))]
            if missing:
                raise StoreError(f"{fileset.label}: {len(missing)} objects are missing, first"
                                 f" {missing[0]!r}", reason="object-missing")
            self._write_once(self.layout.tree_path(tree.digest), tree.canonical_bytes)
            self._trees[tree.digest] = tree
        crash_point("record-tree")
        self._write_once(self.layout.fileset_path(fileset.digest), fileset.manifest_bytes)
        crash_point("record-manifest")
        self._sync_recorded(fileset, tree)  # on the disk before anything names it
        self.set_ref(fileset.name, fileset.version, fileset.digest)
        self._filesets[fileset.digest] = fileset
        return fileset

    def _sync_recorded(self, fileset: FileSet, tree: Tree | None) -> None:
        layout = self.layout
        if sync_mode() != "fsync":  # no need to list what syncfs covers anyway
            make_durable(layout.root, ())
            return
        tree = tree or self.tree(fileset)
        objects = [layout.object_file(entry.sha256, entry.executable) for entry in tree.files()]
        make_durable(layout.root, [
            *objects, *(os.path.dirname(path) for path in objects), layout.objects,
            layout.tree_path(tree.digest), layout.fileset_path(fileset.digest), layout.trees,
            layout.filesets])

    def _write_once(self, path: Path, data: bytes) -> None:
        if not path.exists():
            write_atomically(path, data, self.layout.tmp)

    def set_ref(self, name: str, version: str, digest: Digest) -> None:
        """Make NAME@VERSION mean `digest` (the previous FileSet becomes gc's unless pinned)."""
        path = self.layout.ref_path(validate_name(name), validate_version(version))
        write_atomically(path, f"{digest}\n".encode(), self.layout.tmp, mode=0o644)
        self._sync_name(path)

    def _sync_name(self, path: Path) -> None:
        """A name (or pin) just renamed into place, on the disk before it is reported:
        the file, and every directory up to the store's root made for it."""
        make_durable(self.layout.root, [path, *(parent for parent in path.parents
                                                if parent.is_relative_to(self.layout.root))])

    def remove_ref(self, name: str, version: str) -> Digest:
        """Forget NAME@VERSION; gc then drops its FileSet unless pinned or imported."""
        path = self.layout.ref_path(name, version)
        digest = self._read_ref(path)
        path.unlink()
        self._prune_empty_dirs(path.parent, self.layout.refs)
        return digest

    def pin(self, digest: Digest) -> None:
        self.get(digest)
        write_atomically(self.layout.pin_path(digest), b"", self.layout.tmp, mode=0o644)
        self._sync_name(self.layout.pin_path(digest))

    def unpin(self, digest: Digest) -> None:
        try:
            self.layout.pin_path(digest).unlink()
        except FileNotFoundError:
            raise NotFound(f"{digest} is not pinned", reason="not-pinned") from None

    # -- reading -----------------------------------------------------------

    def has(self, digest: Digest) -> bool:
        return digest in self._filesets or self.layout.fileset_path(digest).exists()

    def get(self, digest: Digest) -> FileSet:
        """The FileSet with this digest, parsed and checked against its file name."""
        cached = self._filesets.get(digest)
        if cached is not None:
            return cached
        path = self.layout.fileset_path(digest)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise NotFound(f"no FileSet {digest} in the store", reason="not-found") from None
        fileset = FileSet.from_manifest(data, where=str(path))
        if fileset.digest != digest:
            raise StoreError(f"{path}: content does not match its digest",
                             reason="fileset-digest-mismatch")
        self._filesets[digest] = fileset
        return fileset

    def tree(self, fileset: FileSet) -> Tree:
        cached = self._trees.get(fileset.tree)
        if cached is not None:
            return cached
        path = self.layout.tree_path(fileset.tree)
        try:
            tree = Tree.from_json_bytes(path.read_bytes(), where=str(path))
        except FileNotFoundError:
            raise StoreError(f"{fileset.label}: tree {fileset.tree} is missing",
                             reason="tree-missing") from None
        if tree.digest != fileset.tree:
            raise StoreError(f"{path}: content does not match its digest",
                             reason="tree-digest-mismatch")
        self._trees[fileset.tree] = tree
        return tree

    def lookup(self, name: str, version: str) -> Digest:
        return self._read_ref(self.layout.ref_path(validate_name(name), validate_version(version)))

    def _read_ref(self, path: Path) -> Digest:
        try:
            text = path.read_text().strip()
        except (FileNotFoundError, NotADirectoryError):
            rel = path.relative_to(self.layout.refs).as_posix().replace("/@", "@")
            raise NotFound(f"no FileSet {rel} in the store", reason="not-found") from None
        return Digest(text)

    def versions(self, name: str) -> list[str]:
        """The versions of `name` in the store, lowest first (dpkg's ordering)."""
        directory = self.layout.refs / validate_name(name)
        try:
            found = [p.name[1:] for p in directory.iterdir() if p.name.startswith("@")]
        except FileNotFoundError:
            return []
        return sorted(found, key=version_key)

    def named(self) -> Iterator[NamedFileSet]:
        """Every name@version in the store, sorted by name then version."""
        found: list[NamedFileSet] = []
        for dirpath, _dirs, files in os.walk(self.layout.refs):
            name = Path(dirpath).relative_to(self.layout.refs).as_posix()
            for file in files:
                if file.startswith("@"):
                    digest = self._read_ref(Path(dirpath) / file)
                    found.append(NamedFileSet(name, file[1:], digest))
        found.sort(key=lambda item: (item.name, version_key(item.version)))
        return iter(found)

    def all_digests(self) -> list[Digest]:
        """Every FileSet recorded, named or not."""
        return sorted(Digest("sha256:" + p.name.removesuffix(".json"))
                      for p in self.layout.filesets.iterdir() if p.name.endswith(".json"))

    def pins(self) -> list[Digest]:
        return sorted(Digest("sha256:" + p.name) for p in self.layout.pins.iterdir())

    def forget_cached(self) -> None:
        """Drop parsed records kept in memory (after gc removed some)."""
        self._filesets.clear()
        self._trees.clear()

    def object_path(self, sha256_hex: str, executable: bool) -> Path:
        return self.layout.object_path(sha256_hex, executable)

    @staticmethod
    def _prune_empty_dirs(directory: Path, stop: Path) -> None:
        while directory != stop:
            try:
                directory.rmdir()
            except OSError as exc:
                if exc.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOENT):
                    return
                raise
            directory = directory.parent

