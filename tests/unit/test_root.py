"""Composing a root from FileSets: links, conflicts, and remembered compositions."""

from __future__ import annotations

from pathlib import Path

import pytest

from kiln.errors import ConflictError
from kiln.fileset import FileSet
from kiln.package import PackageMetadata
from kiln.store import Store
from kiln.store.ingest import ingest_directory
from kiln.store.materialize import remove_tree
from tests.treespec import File, Link, Spec, write_tree
from workers.root import compose_root


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
