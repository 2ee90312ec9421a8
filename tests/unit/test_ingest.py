"""Ingest: the same tree gives the same digest; what a FileSet cannot hold is refused."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kiln.errors import InputError
from kiln.store import Store, hashcache
from kiln.store.ingest import ingest_directory
from tests.golden.fixtures import HELLO
from tests.treespec import Dir, File, Link, Spec, write_tree

component = st.text(alphabet="abcdé_-.☕0", min_size=1, max_size=6).filter(
    lambda s: s not in (".", ".."))
trees = st.dictionaries(
    st.lists(component, min_size=1, max_size=3).map("/".join),
    st.one_of(
        # a few fixed contents, so that trees often hold the same bytes twice
        st.builds(File, st.sampled_from([b"", b"same\n"]) | st.binary(max_size=300),
                  st.booleans()),
        st.builds(Link, component),
        st.just(Dir()),
    ),
    min_size=1, max_size=12,
).filter(lambda spec: not any(
    # a path cannot be both a file and the parent of another path
    other.startswith(path + "/") and not isinstance(item, Dir)
    for path, item in spec.items() for other in spec))


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=trees, seed_a=st.integers(0, 1000), seed_b=st.integers(0, 1000))
def test_digest_ignores_order_times_owners_and_mode_noise(
        tmp_path_factory: pytest.TempPathFactory, spec: Spec, seed_a: int, seed_b: int) -> None:
    base = tmp_path_factory.mktemp("trees")
    store = Store.open(base / "store")
    first = ingest_directory(store, write_tree(base / "a", spec, seed=seed_a),
                             name="kiln.dev/t", version="1").fileset
    second = ingest_directory(store, write_tree(base / "b", spec, seed=seed_b),
                              name="kiln.dev/t", version="1").fileset
    assert first.tree == second.tree
    assert first.digest == second.digest


def test_content_executable_bit_and_links_do_change_the_digest(tmp_path: Path,
                                                                store: Store) -> None:
    def digest(spec: Spec, where: str) -> str:
        return ingest_directory(store, write_tree(tmp_path / where, spec),
                                name="kiln.dev/t", version="1").fileset.tree

    base = digest({"f": File(b"x"), "l": Link("f")}, "base")
    assert digest({"f": File(b"y"), "l": Link("f")}, "content") != base
    assert digest({"f": File(b"x", executable=True), "l": Link("f")}, "exec") != base
    assert digest({"f": File(b"x"), "l": Link("g")}, "target") != base
    assert digest({"f": File(b"x"), "l": Link("f"), "d": Dir()}, "emptydir") != base
    assert digest({"f": File(b"x"), "l": Link("f")}, "again") == base


def test_each_content_is_stored_once_across_filesets(tmp_path: Path, store: Store) -> None:
    shared = File(b"shared content\n")
    ingest_directory(store, write_tree(tmp_path / "a", {"x": shared, "y": shared}),
                     name="kiln.dev/a", version="1")
    ingest_directory(store, write_tree(tmp_path / "b", {"z/w": shared, "v": File(b"other")}),
                     name="kiln.dev/b", version="1")
    objects = [p for d in store.layout.objects.iterdir() for p in d.iterdir()]
    assert len(objects) == 2
    # the same bytes executable are a different object: modes live in the inode
    ingest_directory(store, write_tree(tmp_path / "c", {"x": File(b"shared content\n", True)}),
                     name="kiln.dev/c", version="1")
    assert len([p for d in store.layout.objects.iterdir() for p in d.iterdir()]) == 3


def test_hard_links_within_the_tree_are_fine(tmp_path: Path, store: Store) -> None:
    root = write_tree(tmp_path / "t", {"a": File(b"linked\n")})
    os.link(root / "a", root / "b")
    fileset = ingest_directory(store, root, name="kiln.dev/t", version="1").fileset
    files = {e.path: e for e in store.tree(fileset).files()}
    assert files["a"].sha256 == files["b"].sha256


def _refused(store: Store, root: Path, reason: str, path_part: str) -> None:
    before = sorted(p.relative_to(store.layout.root) for p in store.layout.root.rglob("*")
                    if "cache" not in p.parts)
    with pytest.raises(InputError) as caught:
        ingest_directory(store, root, name="kiln.dev/t", version="1")
    assert caught.value.reason == reason
    assert path_part in caught.value.message
    after = sorted(p.relative_to(store.layout.root) for p in store.layout.root.rglob("*")
                   if "cache" not in p.parts)
    assert after == before


def test_fifo_is_refused(tmp_path: Path, store: Store) -> None:
    root = write_tree(tmp_path / "t", {"ok": File(b"x")})
    os.mkfifo(root / "pipe")
    _refused(store, root, "special-file", "pipe")


def test_socket_is_refused(tmp_path: Path, store: Store) -> None:
    root = write_tree(tmp_path / "t", {"ok": File(b"x")})
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(root / "sock"))
        _refused(store, root, "special-file", "sock")


@pytest.mark.skipif(os.geteuid() != 0, reason="making a device node needs root")
def test_device_node_is_refused(tmp_path: Path, store: Store) -> None:
    root = write_tree(tmp_path / "t", {"ok": File(b"x")})
    os.mknod(root / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    _refused(store, root, "special-file", "null")


@pytest.mark.parametrize("bit", [stat.S_ISUID, stat.S_ISGID])
def test_setuid_and_setgid_files_are_refused(tmp_path: Path, store: Store, bit: int) -> None:
    root = write_tree(tmp_path / "t", {"bin/su": File(b"x", executable=True)})
    os.chmod(root / "bin/su", 0o755 | bit)
    _refused(store, root, "setuid-file", "su")


def test_name_that_is_not_utf8_is_refused(tmp_path: Path, store: Store) -> None:
    root = write_tree(tmp_path / "t", {"ok": File(b"x")})
    with open(os.fsencode(root) + b"/bad-\xff-name", "wb") as handle:
        handle.write(b"x")
    _refused(store, root, "bad-path-encoding", "bad-")


def test_missing_directory_is_refused(tmp_path: Path, store: Store) -> None:
    with pytest.raises(InputError) as caught:
        ingest_directory(store, tmp_path / "nope", name="kiln.dev/t", version="1")
    assert caught.value.reason == "not-found"


def test_warm_reingest_reads_nothing(tmp_path: Path, store: Store,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # Files written a moment ago are "racily clean" and always re-read; the
    # tests' files are that new, so the window is closed for this test.
    monkeypatch.setattr(hashcache, "RACY_NS", 0)
    monkeypatch.setattr("kiln.store.ingest.RACY_NS", 0)
    root = write_tree(tmp_path / "t", HELLO)
    cold = ingest_directory(store, root, name="kiln.dev/hello", version="1")
    assert cold.bytes_hashed == cold.bytes_total > 0
    warm = ingest_directory(store, root, name="kiln.dev/hello", version="1")
    assert warm.bytes_hashed == 0
    assert warm.fileset.digest == cold.fileset.digest
    assert ingest_directory(store, root, name="kiln.dev/hello", version="1").bytes_hashed == 0

    # A change that keeps size and mtime still changes ctime: it is re-read.
    target = root / "usr/share/man/man1/hello.1"
    before = target.stat()
    target.write_bytes(b".TH HOLA 1\n")
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    changed = ingest_directory(store, root, name="kiln.dev/hello", version="1")
    assert changed.bytes_hashed == len(b".TH HOLA 1\n")
    assert changed.fileset.digest != cold.fileset.digest


@pytest.mark.parametrize("change", ["add-empty-dir", "remove-empty-dir", "retarget-link",
                                    "add-link", "remove-file"])
def test_warm_reingest_sees_changes_that_read_no_file(
        tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch, change: str) -> None:
    # An unchanged tree is recognised from the index alone; any change to the
    # set of directories, links or files must still give the new tree.
    monkeypatch.setattr("kiln.store.ingest.RACY_NS", 0)
    spec: Spec = {**HELLO, "old/empty": Dir(), "link": Link("usr/bin/hello")}
    root = write_tree(tmp_path / "t", spec)
    first = ingest_directory(store, root, name="kiln.dev/t", version="1").fileset
    assert ingest_directory(store, root, name="kiln.dev/t", version="1").fileset == first
    if change == "add-empty-dir":
        (root / "new-empty").mkdir()
    elif change == "remove-empty-dir":
        (root / "old/empty").rmdir()
    elif change == "retarget-link":
        (root / "link").unlink()
        (root / "link").symlink_to("usr/share")
    elif change == "add-link":
        (root / "another").symlink_to("link")
    else:
        (root / "etc/hello.conf").unlink()
    again = ingest_directory(store, root, name="kiln.dev/t", version="1")
    assert again.bytes_hashed == 0
    fresh = ingest_directory(Store.open(tmp_path / "fresh"), root, name="kiln.dev/t",
                             version="1").fileset
    assert again.fileset.tree == fresh.tree != first.tree


def test_racily_clean_files_are_not_remembered(tmp_path: Path, store: Store,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # A file edited in the same timestamp tick as it was hashed keeps its stat;
    # so files changed within RACY_NS of the scan are never cached.
    root = write_tree(tmp_path / "t", {"f": File(b"one")})
    ingest_directory(store, root, name="kiln.dev/t", version="1")
    assert hashcache.HashCache(store.layout.cache, str(root)).load().files == {}
    monkeypatch.setattr("kiln.store.ingest.RACY_NS", 0)
    ingest_directory(store, root, name="kiln.dev/t", version="1")
    remembered = hashcache.HashCache(store.layout.cache, str(root)).load().files
    assert list(remembered) == ["f"]


def test_a_damaged_index_only_costs_hashing(tmp_path: Path, store: Store,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("kiln.store.ingest.RACY_NS", 0)
    root = write_tree(tmp_path / "t", HELLO)
    cold = ingest_directory(store, root, name="kiln.dev/hello", version="1")
    for index in store.layout.cache.iterdir():
        data = bytearray(index.read_bytes())
        data[-5] ^= 0xFF
        index.write_bytes(bytes(data))
    again = ingest_directory(store, root, name="kiln.dev/hello", version="1")
    assert again.bytes_hashed == cold.bytes_total
    assert again.fileset.digest == cold.fileset.digest


def test_object_lost_from_store_is_read_again_despite_cache(
        tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("kiln.store.ingest.RACY_NS", 0)
    root = write_tree(tmp_path / "t", {"f": File(b"content")})
    first = ingest_directory(store, root, name="kiln.dev/t", version="1")
    from kiln.store.gc import collect_garbage

    store.remove_ref("kiln.dev/t", "1")
    collect_garbage(store)
    again = ingest_directory(store, root, name="kiln.dev/t", version="1")
    assert again.bytes_hashed == 7
    entry = next(store.tree(first.fileset).files())
    assert store.object_path(entry.sha256, False).read_bytes() == b"content"


def _big_spec(files: int) -> Spec:
    spec: dict[str, File | Link | Dir] = {f"top{i}": File(f"top {i}".encode()) for i in range(3)}
    for index in range(files):
        spec[f"d{index % 40}/e{index % 3}/f{index}"] = File(f"file {index}\n".encode(),
                                                            executable=index % 7 == 0)
    spec["d1/link"] = Link("e0/f1")
    spec["d2/empty"] = Dir()
    return spec


def test_parallel_reingest_sees_every_change(tmp_path: Path, store: Store,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("kiln.store.ingest.RACY_NS", 0)
    monkeypatch.setattr("kiln.store.ingest.PARALLEL_WALK_MIN_FILES", 100)
    root = write_tree(tmp_path / "t", _big_spec(600))
    first = ingest_directory(store, root, name="kiln.dev/t", version="1", jobs=2)
    unchanged = ingest_directory(store, root, name="kiln.dev/t", version="1", jobs=2)
    assert unchanged.bytes_hashed == 0
    assert unchanged.fileset == first.fileset
    assert unchanged.files == first.files == 603

    (root / "d5/e2/f5").write_bytes(b"changed content\n")
    os.chmod(root / "d6/e0/f6", 0o755)
    (root / "d7/e1/f7").unlink()
    (root / "d8/new").write_bytes(b"a new file\n")
    (root / "top0").write_bytes(b"changed at the top\n")
    (root / "d1/link").unlink()
    (root / "d1/link").symlink_to("elsewhere")
    (root / "d3/new-empty").mkdir()
    changed = ingest_directory(store, root, name="kiln.dev/t", version="1", jobs=2)
    assert changed.bytes_hashed == sum(len(data) for data in (
        b"changed content\n", b"file 6\n", b"a new file\n", b"changed at the top\n"))
    fresh = ingest_directory(Store.open(tmp_path / "fresh"), root, name="kiln.dev/t",
                             version="1", jobs=1)
    assert changed.fileset.tree == fresh.fileset.tree != first.fileset.tree
    again = ingest_directory(store, root, name="kiln.dev/t", version="1", jobs=2)
    assert again.bytes_hashed == 0
    assert again.fileset == changed.fileset
    from kiln.store.fsck import check_store

    assert check_store(store).clean
