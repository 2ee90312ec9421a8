"""Tree entries: validation, ordering and strict parsing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kiln.errors import InputError
from kiln.tree import DirectoryEntry, FileEntry, SymlinkEntry, Tree, check_path, path_sort_key

SHA = "0" * 64
paths = st.lists(st.text(alphabet="ab-./é", min_size=1, max_size=4), min_size=1,
                 max_size=4).map("/".join)


@given(st.lists(paths, max_size=30))
def test_sort_key_is_component_order(items: list[str]) -> None:
    assert sorted(items, key=path_sort_key) == sorted(items, key=lambda p: p.split("/"))


@pytest.mark.parametrize("path", ["", "/abs", "trailing/", "a//b", ".", "a/./b", "..", "a/../b",
                                  "nul\0", "x" * 256, "/".join(["y" * 200] * 25), "bad-\udcff"])
def test_bad_paths_are_refused(path: str) -> None:
    with pytest.raises(InputError):
        check_path(path)


@pytest.mark.parametrize("path", ["a", ".hidden", "a/.b/..c", "é/☕", "a b", "x" * 255])
def test_good_paths(path: str) -> None:
    assert check_path(path) == path


@pytest.mark.parametrize(("entries", "reason"), [
    ([DirectoryEntry("a"), DirectoryEntry("a")], "duplicate-path"),
    ([FileEntry("a/b", 1, SHA, False)], "bad-parent"),
    ([SymlinkEntry("l", "x"), FileEntry("l/f", 1, SHA, False)], "bad-parent"),
    ([FileEntry("f", 1, "xyz", False)], "bad-tree"),
    ([FileEntry("f", -1, SHA, False)], "bad-tree"),
])
def test_invalid_trees_are_refused(entries: list[FileEntry], reason: str) -> None:
    with pytest.raises(InputError) as caught:
        Tree.from_entries(entries)
    assert caught.value.reason == reason


def test_stored_tree_must_be_canonical_and_known() -> None:
    tree = Tree.from_entries([DirectoryEntry("d"), FileEntry("d/f", 3, SHA, True),
                              SymlinkEntry("l", "d/f")])
    assert Tree.from_json_bytes(tree.canonical_bytes, where="t") == tree
    spaced = tree.canonical_bytes.replace(b",", b", ")
    with pytest.raises(InputError):
        Tree.from_json_bytes(spaced, where="t")
    unknown = tree.canonical_bytes.replace(b'"type":"directory"',
                                           b'"type":"directory","mode":493')
    with pytest.raises(InputError) as caught:
        Tree.from_json_bytes(unknown, where="t")
    assert caught.value.reason == "bad-tree"
    with pytest.raises(InputError):
        Tree.from_json_bytes(tree.canonical_bytes.replace(b"true", b"1"), where="t")
