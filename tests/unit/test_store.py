"""The store: read-only shared trees, imports, gc, pins and fsck."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from kiln.errors import ConflictError, InputError, NotFound
from kiln.fileset import FileSet, make_imports
from kiln.store import Store
from kiln.store.fsck import check_store
from kiln.store.gc import collect_garbage
from kiln.store.ingest import ingest_directory
from kiln.store.materialize import materialize, store_tree
from kiln.tree import FileEntry
from tests.golden.fixtures import HELLO
from tests.treespec import File, Link, Spec, read_tree, with_parents, write_tree


def add(store: Store, tmp_path: Path, name: str, spec: Spec, version: str = "1",
        imports: list[tuple[str, FileSet]] | None = None) -> FileSet:
    root = write_tree(tmp_path / "src" / name.replace("/", "_") / version, spec)
    return ingest_directory(store, root, name=name, version=version,
                            imports=make_imports(imports or [])).fileset


def _assert_read_only_and_shared(store: Store, fileset: FileSet, tree: Path) -> None:
    for dirpath, _dirnames, filenames in os.walk(tree):
        assert stat.S_IMODE(os.stat(dirpath).st_mode) == 0o555
        for name in filenames:
            path = Path(dirpath, name)
            if path.is_symlink():
                continue
            assert stat.S_IMODE(path.stat().st_mode) in (0o444, 0o555)
    for entry in store.tree(fileset).files():
        made = tree / entry.path
        assert made.stat().st_ino == store.object_path(entry.sha256, entry.executable).stat().st_ino


def test_materialize_is_read_only_and_shares_inodes(tmp_path: Path, store: Store) -> None:
    fileset = add(store, tmp_path, "kiln.dev/hello", HELLO)
    made = materialize(store, fileset, tmp_path / "out")
    assert made.linked == len(list(store.tree(fileset).files()))
    assert made.copied == 0
    assert read_tree(tmp_path / "out") == with_parents(HELLO)
    _assert_read_only_and_shared(store, fileset, tmp_path / "out")
    if os.geteuid() != 0:  # root ignores permission bits
        with pytest.raises(PermissionError):
            (tmp_path / "out/usr/bin/hello").write_bytes(b"changed")


def test_store_tree_is_made_once_read_only_and_shared(tmp_path: Path, store: Store) -> None:
    fileset = add(store, tmp_path, "kiln.dev/hello", HELLO)
    path = store_tree(store, fileset)
    assert path == store.layout.materialized_path(fileset.digest)
    assert read_tree(path) == with_parents(HELLO)
    _assert_read_only_and_shared(store, fileset, path)
    inode = path.stat().st_ino
    assert store_tree(store, fileset).stat().st_ino == inode


def test_materialize_refuses_a_non_empty_destination(tmp_path: Path, store: Store) -> None:
    fileset = add(store, tmp_path, "kiln.dev/hello", HELLO)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy/file").write_text("mine")
    with pytest.raises(InputError) as caught:
        materialize(store, fileset, tmp_path / "busy")
    assert caught.value.reason == "destination-exists"
    assert (tmp_path / "busy/file").read_text() == "mine"


def test_imports_are_joined_on_materialize(tmp_path: Path, store: Store) -> None:
    libc = add(store, tmp_path, "debian.org/bookworm/libc6", {"lib/libc.so.6": File(b"libc")})
    zlib = add(store, tmp_path, "kiln.dev/zlib", {"lib/libz.so.1": File(b"zlib")})
    app = add(store, tmp_path, "kiln.dev/app", {"bin/app": File(b"app", True),
                                                "lib/README": File(b"mine")},
              imports=[("deps/libc", libc), ("deps/zlib", zlib)])
    made = materialize(store, app, tmp_path / "root")
    tree = read_tree(made.path)
    assert tree["deps/libc/lib/libc.so.6"] == File(b"libc")
    assert tree["deps/zlib/lib/libz.so.1"] == File(b"zlib")
    assert tree["bin/app"] == File(b"app", True)
    # a FileSet importing one that imports: joined all the way down
    image = add(store, tmp_path, "kiln.dev/image", {"etc/os-release": File(b"kiln")},
                imports=[("opt/app", app)])
    deep = read_tree(store_tree(store, image))
    assert deep["opt/app/deps/zlib/lib/libz.so.1"] == File(b"zlib")


def test_a_path_claimed_twice_is_refused_naming_both(tmp_path: Path, store: Store) -> None:
    one = add(store, tmp_path, "kiln.dev/one", {"bin/tool": File(b"one")})
    with pytest.raises(ConflictError) as caught:
        add(store, tmp_path, "kiln.dev/two", {"opt/bin/tool": File(b"two")},
            imports=[("opt", one)])
    assert caught.value.reason == "path-claimed-twice"
    assert "kiln.dev/one@1" in caught.value.message
    assert "kiln.dev/two@1" in caught.value.message
    assert "opt/bin/tool" in caught.value.message
    assert "kiln.dev/two" not in {n.name for n in store.named()}

    # two imports whose trees overlap at a file
    other = add(store, tmp_path, "kiln.dev/other", {"tool": File(b"other")})
    same = add(store, tmp_path, "kiln.dev/same", {"bin": File(b"file, not a dir")})
    with pytest.raises(ConflictError) as caught:
        add(store, tmp_path, "kiln.dev/three", {"x": File(b"x")},
            imports=[("opt", same), ("opt/bin", other)])
    assert "kiln.dev/same@1" in caught.value.message
    assert "kiln.dev/other@1" in caught.value.message


def test_shared_directories_are_not_a_conflict(tmp_path: Path, store: Store) -> None:
    one = add(store, tmp_path, "kiln.dev/one", {"usr/bin/a": File(b"a")})
    both = add(store, tmp_path, "kiln.dev/both", {"usr/bin/b": File(b"b"),
                                                  "x/usr/lib": Link("elsewhere")},
               imports=[("x", one)])
    assert read_tree(store_tree(store, both))["x/usr/bin/a"] == File(b"a")


def test_import_missing_from_store_is_refused(tmp_path: Path, store: Store) -> None:
    elsewhere = Store.open(tmp_path / "other-store")
    foreign = add(elsewhere, tmp_path, "kiln.dev/foreign", {"f": File(b"f")})
    with pytest.raises(NotFound) as caught:
        add(store, tmp_path, "kiln.dev/app", {"a": File(b"a")}, imports=[("lib", foreign)])
    assert caught.value.reason == "import-missing"


def _object_count(store: Store) -> int:
    return sum(1 for d in store.layout.objects.iterdir() for _ in d.iterdir())


def test_gc_drops_only_what_nothing_uses(tmp_path: Path, store: Store) -> None:
    base = add(store, tmp_path, "kiln.dev/base", {"lib/base": File(b"base")})
    app = add(store, tmp_path, "kiln.dev/app", {"bin/app": File(b"app")},
              imports=[("base", base)])
    old = add(store, tmp_path, "kiln.dev/tool", {"tool": File(b"old tool")}, version="1")
    store_tree(store, old)
    # Re-adding tool@1 with new content leaves the old one unnamed: garbage.
    new = add(store, tmp_path, "kiln.dev/tool", {"tool": File(b"new tool")}, version="1")
    store.remove_ref("kiln.dev/base", "1")  # still imported by app: kept
    (store.layout.tmp / "leftover-from-a-crash").write_bytes(b"x")

    report = collect_garbage(store)
    assert report.filesets_removed == [f"kiln.dev/tool@1 ({old.digest})"]
    assert report.objects_removed == 1
    assert report.bytes_freed == len(b"old tool")
    assert report.materialized_removed == 1
    assert report.temporary_removed == 1
    assert not store.has(old.digest)
    for kept in (base, app, new):
        assert store.has(kept.digest)
        assert read_tree(store_tree(store, kept))
    assert check_store(store).clean


def test_pins_keep_unnamed_filesets(tmp_path: Path, store: Store) -> None:
    fileset = add(store, tmp_path, "kiln.dev/pinned", {"f": File(b"keep me")})
    store.pin(fileset.digest)
    store.remove_ref("kiln.dev/pinned", "1")
    collect_garbage(store)
    assert store.get(fileset.digest).tree == fileset.tree
    assert _object_count(store) == 1
    store.unpin(fileset.digest)
    collect_garbage(store)
    assert not store.has(fileset.digest)
    assert _object_count(store) == 0


def test_fsck_names_a_corrupted_object_and_its_filesets(tmp_path: Path, store: Store) -> None:
    spec = {"usr/bin/hello": File(b"#!/bin/sh\necho hi\n", True)}
    one = add(store, tmp_path, "kiln.dev/one", spec)
    add(store, tmp_path, "kiln.dev/two", {**spec, "extra": File(b"x")})
    assert check_store(store).clean
    entry = next(e for e in store.tree(one).files() if isinstance(e, FileEntry))
    victim = store.object_path(entry.sha256, entry.executable)
    data = bytearray(victim.read_bytes())
    data[3] ^= 0x01
    os.chmod(victim, 0o755)
    victim.write_bytes(bytes(data))
    os.chmod(victim, 0o555)

    report = check_store(store)
    assert not report.clean
    corrupt = [p for p in report.problems if p.reason == "object-corrupt"]
    assert len(corrupt) == 1
    assert corrupt[0].path == str(victim)
    assert corrupt[0].filesets == ("kiln.dev/one@1", "kiln.dev/two@1")


def test_fsck_reports_a_wrong_mode_and_corrupt_content_both(tmp_path: Path,
                                                            store: Store) -> None:
    fileset = add(store, tmp_path, "kiln.dev/one", {"a": File(b"content")})
    entry = next(e for e in store.tree(fileset).files() if isinstance(e, FileEntry))
    victim = store.object_path(entry.sha256, entry.executable)
    os.chmod(victim, 0o644)
    victim.write_bytes(b"tampered")  # and left writable: two problems, two reports
    reasons = sorted(p.reason for p in check_store(store).problems)
    assert reasons == ["object-corrupt", "object-mode"]


def test_fsck_finds_missing_objects_and_bad_records(tmp_path: Path, store: Store) -> None:
    fileset = add(store, tmp_path, "kiln.dev/one", {"a": File(b"a"), "b": File(b"b")})
    entry = next(store.tree(fileset).files())
    store.object_path(entry.sha256, entry.executable).unlink()
    record = store.layout.fileset_path(fileset.digest)
    bogus = store.layout.filesets / ("0" * 64 + ".json")
    bogus.write_bytes(record.read_bytes())
    reasons = {p.reason for p in check_store(Store.open(store.layout.root)).problems}
    assert reasons == {"object-missing", "fileset-digest-mismatch"}


def test_a_store_another_user_can_write_is_refused(tmp_path: Path) -> None:
    import os

    from kiln.ownership import UntrustedDirectory

    shared = tmp_path / "shared-store"
    Store.open(shared)
    shared.chmod(0o777)  # as if anyone could plant objects in it
    with pytest.raises(UntrustedDirectory) as caught:
        Store.open(shared)
    assert "writable by others" in caught.value.message
    shared.chmod(0o755)
    os.chown(shared, 4242, 4242)  # made by another user
    with pytest.raises(UntrustedDirectory) as caught:
        Store.open(shared)
    assert "uid 4242" in caught.value.message
    os.chown(shared, os.geteuid(), os.getegid())
    assert Store.open(shared).layout.root == shared
