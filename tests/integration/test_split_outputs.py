"""A split recipe for real: Debian's lz4 built once into three packages (lz4 with the
tools, liblz4-1 with the shared library, liblz4-dev with headers, static library and
.pc file), one record, each package signed and verified on its own; an image of the
runtime library alone carries no header."""

from __future__ import annotations

import json
import os
import shutil
import tarfile
from pathlib import Path

import pytest

from tests.conftest import Kiln
from tests.fixtures.recipes import curated_copy
from tests.fixtures.registry import Registry, registry_config, run_registry
from tests.integration.test_debian import apt_lists  # noqa: F401 - a fixture

pytestmark = [
    pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap"),
    pytest.mark.skipif(os.geteuid() != 0, reason="apt-get source and builds run as root"),
]

OUTPUTS = """\
outputs:
  - name: kiln.dev/liblz4-1
    summary: LZ4 compression library (runtime)
    paths: ["usr/lib/liblz4.so.*"]
    requires: ["debian.org/bookworm/libc6 (>= 2.34)"]
  - name: kiln.dev/liblz4-dev
    summary: LZ4 compression library (headers, static library, pkg-config)
    paths: ["usr/include/*", "usr/lib/liblz4.so", "usr/lib/liblz4.a", "usr/lib/pkgconfig/*"]
    requires: ["kiln.dev/liblz4-1 (= VERSION)"]
test-requires: [debian.org/bookworm/dash, debian.org/bookworm/grep, debian.org/bookworm/coreutils]
test: |
  printf 'split outputs\\n' | lz4 | lz4 -d | grep -qx 'split outputs'
  test -f /usr/include/lz4.h
  test -f /usr/lib/liblz4.so  # -dev's link to -1's library, across the two
"""


def test_one_build_makes_three_packages_each_signed_and_an_image_takes_one(
        tmp_path: Path, kiln: Kiln, apt_lists: None,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    recipes, repo = curated_copy(tmp_path)
    made = kiln("recipe", "new", "lz4", "--debian", "lz4", "--recipes", recipes, "--json")
    assert made.code == 0, made.err
    version = json.loads(made.out)["version"]
    recipe = recipes / "lz4" / "recipe.yaml"
    recipe.write_text(recipe.read_text() + OUTPUTS.replace("VERSION", version))
    checked = kiln("recipe", "check", recipes)
    assert checked.code == 0, checked.out
    repo.index.add(["recipes"])
    repo.index.commit("lz4, split")

    keys = json.loads(kiln("key", "generate", tmp_path / "keys", "--json").out)
    with run_registry(tmp_path / "registry") as registry:
        monkeypatch.setenv("KILN_REGISTRIES", str(registry_config(
            tmp_path / "registries.yaml", registry.host)))
        built = kiln("build", "lz4", "--recipes", recipes, "--sign",
                     f"file:{keys['private']}", "--json")
        assert built.code == 0, built.err
        record = json.loads(built.out)
        names = ["kiln.dev/lz4", "kiln.dev/liblz4-1", "kiln.dev/liblz4-dev"]
        # One build, one record, three packages, each signed where it lives.
        assert [record["output"]["name"], *(o["name"] for o in record["outputs"])] == names
        assert [record["signed"]["name"], *(s["name"] for s in record["signed_outputs"])] \
            == names
        for name in names:
            verified = kiln("verify", f"{name}@{version}", "--key", keys["public"], "--json")
            assert verified.code == 0, verified.err
            assert json.loads(verified.out)["name"] == name
        _image_of_the_runtime_library(tmp_path, kiln, registry, version)

    trees = {}
    for name in names:
        trees[name] = tmp_path / name.rsplit("/", 1)[1]
        assert kiln("fileset", "materialize", f"{name}@{version}", trees[name]).code == 0
    assert (trees["kiln.dev/lz4"] / "usr/bin/lz4").is_file()
    assert not (trees["kiln.dev/lz4"] / "usr/include").exists()
    assert not list((trees["kiln.dev/lz4"] / "usr").rglob("liblz4*"))
    assert (trees["kiln.dev/liblz4-1"] / "usr/lib/liblz4.so.1").is_symlink()
    assert not (trees["kiln.dev/liblz4-1"] / "usr/include").exists()
    assert (trees["kiln.dev/liblz4-dev"] / "usr/include/lz4.h").is_file()
    shown = json.loads(kiln("fileset", "show", f"kiln.dev/liblz4-dev@{version}", "--json").out)
    assert "kiln.dev/liblz4-1 (= " in json.dumps(shown)  # its own requires

    # Building by an output's name is building its recipe: nothing to do, all named.
    again = kiln("build", "kiln.dev/liblz4-1", "--recipes", recipes)
    assert again.code == 0, again.err
    assert "already built" in again.out
    assert f"kiln.dev/liblz4-dev@{version}" in again.out
    assert "lz4" in kiln("build", "log", f"kiln.dev/liblz4-dev@{version}").out


def _image_of_the_runtime_library(tmp_path: Path, kiln: Kiln, registry: Registry,
                                  version: str) -> None:
    """An image of liblz4-1 alone: the library and what it needs, no header."""
    spec = tmp_path / "image.yaml"
    spec.write_text(json.dumps({"name": "kiln.dev/images/lz4-runtime", "version": "1",
                                "packages": ["kiln.dev/liblz4-1"]}))
    built = kiln("image", "build", spec, "-o", f"oci:{tmp_path / 'image'}")
    assert built.code == 0, built.err
    inspected = json.loads(kiln("image", "inspect", f"oci:{tmp_path / 'image'}",
                                "--json").out)
    packages = {p["name"] for p in inspected["packages"]}
    assert "kiln.dev/liblz4-1" in packages
    assert not {"kiln.dev/lz4", "kiln.dev/liblz4-dev"} & packages
    paths = []
    for blob in (tmp_path / "image" / "blobs" / "sha256").iterdir():
        try:
            with tarfile.open(blob) as layer:
                paths += layer.getnames()
        except tarfile.TarError:
            continue  # a manifest or a config
    assert any(path.endswith("usr/lib/liblz4.so.1") for path in paths)
    assert not any("/include/" in path or path.endswith(".h") for path in paths), [
        p for p in paths if "include" in p][:5]
    assert registry.host  # the packages came from the store; the registry holds them too
