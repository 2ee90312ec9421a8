"""Composing a root from FileSets: links, conflicts, and remembered compositions."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from kiln.errors import ConflictError
from kiln.fileset import FileSet
from kiln.ownership import UntrustedDirectory
from kiln.package import PackageMetadata
from kiln.store import Store
from kiln.store.ingest import ingest_directory
from kiln.store.materialize import remove_tree
from tests.treespec import Dir, File, Link, Spec, write_tree
from workers import rootfs
from workers.root import compose_root
from workers.rootfs import cached_root, mounts_to_bind
from workers.sandbox import Mount, RunSpec


def package(store: Store, tmp_path: Path, name: str, spec: Spec,
            install: tuple[str, ...] = ()) -> FileSet:
    root = write_tree(tmp_path / name, spec)
    return ingest_directory(store, root, name=f"kiln.dev/{name}", version="1",
                            metadata=PackageMetadata(install=install,
                                                     env={"FROM": name})).fileset


def test_files_link_to_their_mount_and_symlinks_go_in_verbatim(tmp_path: Path,
                                                                store: Store) -> None:
    tools = package(store, tmp_path, "tools", {"usr/bin/x86_64-as": File(b"as", True)})
    front = package(store, tmp_path, "front", {"usr/bin/as": Link("x86_64-as")})
    root = compose_root(store, [tools, front])
    assert root.links["/usr/bin/x86_64-as"] == "/packages/kiln.dev/tools/1/usr/bin/x86_64-as"
    assert root.links["/usr/bin/as"] == "x86_64-as"  # resolves in the root, to tools'
    assert {m.target for m in root.mounts} == {"/packages/kiln.dev/tools/1",
                                               "/packages/kiln.dev/front/1"}
    assert root.env == {"FROM": "tools"}  # merged in name order: tools after front


def test_install_patterns_pick_what_is_linked(tmp_path: Path, store: Store) -> None:
    hello = package(store, tmp_path, "hello", {"usr/bin/hello": File(b"hi", True),
                                               "usr/share/doc/hello/README": File(b"doc")},
                    install=("usr/bin/*",))
    assert set(compose_root(store, [hello]).links) == {"/usr/bin/hello"}


def test_two_packages_claiming_one_path_are_refused(tmp_path: Path, store: Store) -> None:
    one = package(store, tmp_path, "one", {"usr/bin/tool": File(b"one", True)})
    two = package(store, tmp_path, "two", {"usr/bin/tool": File(b"two", True)})
    same = package(store, tmp_path, "same", {"usr/bin/tool": File(b"one", True)})
    with pytest.raises(ConflictError) as caught:
        compose_root(store, [one, two])
    assert "kiln.dev/one@1" in caught.value.message
    assert "kiln.dev/two@1" in caught.value.message
    assert "/usr/bin/tool" in compose_root(store, [one, same]).links  # same content: fine


def test_a_composition_is_remembered_while_its_trees_exist(tmp_path: Path,
                                                          store: Store) -> None:
    one = package(store, tmp_path, "one", {"a": File(b"a")})
    two = package(store, tmp_path, "two", {"b": File(b"b")})
    first = compose_root(store, [one, two])
    assert compose_root(store, [two, one]) is first  # the set, not the order, counts
    gone = next(m.source for m in first.mounts if m.target.endswith("/one/1"))
    remove_tree(gone)  # as gc does to a tree it collects
    again = compose_root(store, [one, two])
    assert again is not first
    assert all(m.source.is_dir() for m in again.mounts)
    assert again.key == first.key


def _skeleton(store: Store, filesets: list[FileSet]) -> Path:
    root = compose_root(store, filesets)
    return cached_root(RunSpec(argv=("true",), env={}, log=Path("/dev/null"),
                               mounts=root.mounts, links=root.links, links_key=root.key))


@pytest.fixture
def own_scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The root cache in the test's own directory, not the machine's /dev/shm."""
    scratch = tmp_path / "shm"
    scratch.mkdir()
    monkeypatch.setattr(rootfs, "SCRATCH", scratch)
    return scratch


def test_the_composer_never_writes_through_a_packages_link(
        tmp_path: Path, store: Store, own_scratch: Path) -> None:
    # The review's escape: a package whose etc/passwd, etc/group or etc/hostname is a
    # symlink to a host path had the composer, as root, write onto the host.
    canaries = {name: tmp_path / f"canary-{name}" for name in ("passwd", "group", "hostname")}
    for canary in canaries.values():
        canary.write_text("host file, untouched\n")
    hostile = package(store, tmp_path, "hostile",
                      {f"etc/{name}": Link(str(canary)) for name, canary in canaries.items()})
    skeleton = _skeleton(store, [hostile])
    for name, canary in canaries.items():
        assert canary.read_text() == "host file, untouched\n"
        # The package's link stands in the root, to resolve inside the sandbox only.
        assert os.readlink(skeleton / "etc" / name) == str(canary)


def test_a_package_link_over_the_roots_own_directories_is_refused(
        tmp_path: Path, store: Store, own_scratch: Path) -> None:
    target = tmp_path / "host-dir"
    target.mkdir()
    for path in ("etc", "tmp", "packages"):
        hostile = package(store, tmp_path, f"over-{path}", {path: Link(str(target))})
        with pytest.raises(ConflictError) as caught:
            _skeleton(store, [hostile])
        assert caught.value.reason == "root-path-taken"
    assert list(target.iterdir()) == []


def test_a_root_cache_another_user_made_is_refused(tmp_path: Path, store: Store,
                                                   own_scratch: Path) -> None:
    one = package(store, tmp_path, "one", {"usr/bin/one": File(b"one", True)})
    cache = own_scratch / f"kiln-roots-{os.geteuid()}"
    cache.mkdir()
    os.chown(cache, 4242, 4242)  # as if another local user made it first
    with pytest.raises(UntrustedDirectory) as caught:
        _skeleton(store, [one])
    assert "uid 4242" in caught.value.message
    os.chown(cache, os.geteuid(), os.getegid())
    cache.chmod(0o777)
    with pytest.raises(UntrustedDirectory) as caught:
        _skeleton(store, [one])
    assert "writable by others" in caught.value.message
    cache.rmdir()
    cache.symlink_to(tmp_path)
    with pytest.raises(UntrustedDirectory):
        _skeleton(store, [one])
    cache.unlink()
    made = _skeleton(store, [one])  # its own, made right: used
    assert made.parent == cache
    assert (cache.stat().st_mode & 0o777) == 0o755


def test_a_root_a_run_holds_is_never_pruned(tmp_path: Path, store: Store,
                                             own_scratch: Path) -> None:
    one = package(store, tmp_path, "one", {"a": File(b"a")})
    root = compose_root(store, [one])
    spec = RunSpec(argv=("true",), env={}, log=Path("/dev/null"), mounts=root.mounts,
                   links=root.links, links_key=root.key)
    with rootfs.root_in_use(spec) as held:
        assert rootfs.prune_roots(None, empty=True) == 0  # gc's "every idle root"
        assert held.is_dir()
    assert rootfs.prune_roots(None, empty=True) == 1  # idle now: it goes
    assert not held.exists()
    with rootfs.root_in_use(spec) as again:  # and is made again on need
        assert again == held
        assert again.is_dir()


def test_roots_unused_for_the_days_kept_are_pruned(tmp_path: Path, store: Store,
                                                   own_scratch: Path) -> None:
    old = _skeleton(store, [package(store, tmp_path, "old", {"a": File(b"a")})])
    new = _skeleton(store, [package(store, tmp_path, "new", {"b": File(b"b")})])
    os.utime(old, (1, 1))
    assert rootfs.prune_roots(30) == 1
    assert not old.exists()
    assert new.is_dir()


def test_a_stores_root_hard_links_package_files_and_keeps_package_symlinks(
        tmp_path: Path, store: Store) -> None:
    # cmake (and python, gcc) find their own data from /proc/self/exe: through a
    # symbolic link that is the package's mount, where cmake-data's files are not.
    tools = package(store, tmp_path, "tools", {
        "usr/bin/tool": File(b"tool", True),
        "usr/bin/alias": Link("tool"),
        # A package's own link that names a package path stays the link it is.
        "usr/bin/across": Link("/packages/kiln.dev/tools/1/usr/bin/tool")})
    root = compose_root(store, [tools])
    assert root.cache == store.layout.cache / "roots"
    skeleton = cached_root(RunSpec(argv=("true",), env={}, log=Path("/dev/null"),
                                   mounts=root.mounts, links=root.links, links_key=root.key,
                                   root_cache=root.cache))
    assert skeleton.parent == store.layout.cache / "roots"
    tree = next(m.source for m in root.mounts)
    linked = skeleton / "usr/bin/tool"
    assert not linked.is_symlink()
    assert linked.stat().st_ino == (tree / "usr/bin/tool").stat().st_ino
    assert os.readlink(skeleton / "usr/bin/alias") == "tool"
    assert os.readlink(skeleton / "usr/bin/across") == "/packages/kiln.dev/tools/1/usr/bin/tool"
    # The host's shared cache (no store's) keeps symbolic links only.
    assert (_skeleton(store, [tools]) / "usr/bin/tool").is_symlink()


def test_a_root_never_hard_links_through_a_packages_directory_link(
        tmp_path: Path, store: Store) -> None:
    secret = tmp_path / "host" / "secret"
    secret.parent.mkdir()
    secret.write_text("host file\n")
    tools = package(store, tmp_path, "tools", {"usr/bin/tool": File(b"tool", True)})
    root = compose_root(store, [tools])
    # A link plan naming a file beneath a package's symlink to a host directory (as a
    # hostile package would like it): walked without following, it stays a symlink.
    tree = next(m.source for m in root.mounts)
    os.chmod(tree / "usr", 0o755)
    (tree / "usr" / "host").symlink_to(secret.parent)
    links = {**root.links, "/usr/host/secret": "/packages/kiln.dev/tools/1/usr/host/secret"}
    skeleton = cached_root(RunSpec(argv=("true",), env={}, log=Path("/dev/null"),
                                   mounts=root.mounts, links=links, root_cache=root.cache))
    assert (skeleton / "usr/host/secret").is_symlink()
    assert secret.stat().st_nlink == 1


def test_a_stores_root_holds_its_package_trees_and_binds_none_of_them(
        tmp_path: Path, store: Store) -> None:
    tools = package(store, tmp_path, "tools", {
        "usr/bin/tool": File(b"tool", True),
        "usr/share/tool/data": File(b"data"),
        "usr/lib/libtool.so": Link("libtool.so.1"),
        "usr/lib/libtool.so.1": File(b"\x7fELF"),
        "var/empty": Dir()})
    root = compose_root(store, [tools])
    out = tmp_path / "out"
    out.mkdir()
    spec = RunSpec(argv=("true",), env={}, log=Path("/dev/null"),
                   mounts=(*root.mounts, Mount("/out", out, writable=True)),
                   links=root.links, links_key=root.key, root_cache=root.cache)
    skeleton = cached_root(spec)
    tree = next(m.source for m in root.mounts)
    held = skeleton / "packages/kiln.dev/tools/1"
    for path in ("usr/bin/tool", "usr/share/tool/data", "usr/lib/libtool.so.1"):
        assert (held / path).stat().st_ino == (tree / path).stat().st_ino, path
    assert os.readlink(held / "usr/lib/libtool.so") == "libtool.so.1"
    assert (held / "var/empty").is_dir()
    # The package's directory modes, not the umask's or the composer's.
    for directory in ("", "usr", "usr/share/tool", "var/empty"):
        assert (held / directory).stat().st_mode == (tree / directory).stat().st_mode
    # One bind for the run: its writable /out. The package is in the root already.
    assert [m.target for m in mounts_to_bind(spec)] == ["/out"]
    # The host's shared roots (tmpfs: no hard link reaches the store) bind every tree.
    shared = RunSpec(argv=("true",), env={}, log=Path("/dev/null"), mounts=root.mounts,
                     links=root.links, links_key=root.key)
    assert mounts_to_bind(shared) == list(root.mounts)


def test_a_file_the_filesystem_will_not_link_again_is_copied_into_the_root(
        tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    tools = package(store, tmp_path, "tools", {"usr/share/empty": File(b""),
                                              "usr/bin/tool": File(b"tool", True)})
    root = compose_root(store, [tools])
    real_link = os.link

    def at_its_limit(source: str, *args: object, **kwargs: object) -> None:
        if source == "empty":  # an inode at ext4's 65,000 links
            raise OSError(errno.EMLINK, "Too many links")
        real_link(source, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "link", at_its_limit)
    skeleton = cached_root(RunSpec(argv=("true",), env={}, log=Path("/dev/null"),
                                   mounts=root.mounts, links=root.links,
                                   links_key=root.key, root_cache=root.cache))
    held = skeleton / "packages/kiln.dev/tools/1/usr"
    tree = next(m.source for m in root.mounts) / "usr"
    assert (held / "share/empty").read_bytes() == b""
    assert (held / "share/empty").stat().st_ino != (tree / "share/empty").stat().st_ino
    assert (held / "share/empty").stat().st_mode == (tree / "share/empty").stat().st_mode
    assert (held / "bin/tool").stat().st_ino == (tree / "bin/tool").stat().st_ino
