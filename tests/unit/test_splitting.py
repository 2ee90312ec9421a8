"""Split outputs taken out of a build's /out (workers/splitting.py): first match wins,
emptied directories go with their content, links are moved and never followed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kiln.errors import InputError
from kiln.package import DEFAULT_INSTALL
from kiln.recipes.model import SplitOutput
from tests.treespec import Dir, File, Link, read_tree, write_tree
from workers.splitting import split_out


def files(root: Path) -> set[str]:
    """The files and links of a tree, directories left out."""
    return {path for path, entry in read_tree(root).items() if not isinstance(entry, Dir)}


def output(name: str, *paths: str) -> SplitOutput:
    return SplitOutput(f"kiln.dev/{name}", "", paths, (), (), DEFAULT_INSTALL, 1)


def test_each_output_takes_what_it_claims_first_and_the_package_keeps_the_rest(
        tmp_path: Path) -> None:
    out = write_tree(tmp_path / "out", {
        "usr/bin/lz4": File(b"tool", True),
        "usr/lib/liblz4.so.1.9.4": File(b"lib"),
        "usr/lib/liblz4.so.1": Link("liblz4.so.1.9.4"),
        "usr/lib/liblz4.so": Link("liblz4.so.1"),
        "usr/include/lz4.h": File(b"header"),
        "usr/lib/pkgconfig/liblz4.pc": File(b"pc")})
    runtime = output("liblz4-1", "usr/lib/liblz4.so.*")
    dev = output("liblz4-dev", "usr/include/*", "usr/lib/liblz4.so*", "usr/lib/pkgconfig/*")
    (first, lib), (second, headers) = split_out(out, (runtime, dev), "lz4/recipe.yaml")
    assert (first, second) == (runtime, dev)
    assert files(lib) == {"usr/lib/liblz4.so.1.9.4", "usr/lib/liblz4.so.1"}
    # liblz4.so.1 matched both: the first output to claim it has it.
    assert files(headers) == {"usr/include/lz4.h", "usr/lib/liblz4.so",
                                       "usr/lib/pkgconfig/liblz4.pc"}
    for place in (lib, headers):
        place.rename(tmp_path / place.name)  # as the build does once it ingested them
    assert files(out) == {"usr/bin/lz4"}
    assert not (out / "usr" / "include").exists()  # emptied: it went with the headers


def test_an_output_that_claims_nothing_fails_naming_it(tmp_path: Path) -> None:
    out = write_tree(tmp_path / "out", {"usr/bin/tool": File(b"tool", True)})
    with pytest.raises(InputError) as caught:
        split_out(out, (output("docs", "usr/share/doc/*"),), "tool/recipe.yaml")
    assert caught.value.reason == "empty-output"
    assert "kiln.dev/docs" in caught.value.message
    assert "tool/recipe.yaml" in caught.value.message
    assert files(out) == {"usr/bin/tool"}  # nothing moved


def test_a_builds_links_are_moved_never_followed(tmp_path: Path) -> None:
    host = tmp_path / "host"
    host.mkdir()
    (host / "secret").write_text("host file\n")
    out = write_tree(tmp_path / "out", {"usr/lib": Link(str(host)),
                                        "usr/x": File(b"x")})
    ((_, place),) = split_out(out, (output("all", "usr/*"),), "r/recipe.yaml")
    assert os.readlink(place / "usr" / "lib") == str(host)
    assert (host / "secret").read_text() == "host file\n"
    assert sorted(p.name for p in host.iterdir()) == ["secret"]
