"""`kiln recipe new` for real: two of Debian 12's source packages the curated recipes do
not have, one built with autoconf (libyaml: configure.ac, no configure shipped) and one
with cmake (cJSON, with Debian's security patches), each written, locked, and built
twice identically (`--check`) without an edit; then a tarball and a git commit."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import git
import pytest

from kiln.recipes.lock import read_lock
from tests.conftest import Kiln
from tests.fixtures.recipes import curated_copy
from tests.integration.test_debian import apt_lists  # noqa: F401 - a fixture

pytestmark = [
    pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap"),
    pytest.mark.skipif(os.geteuid() != 0, reason="apt-get source and builds run as root"),
]


def test_new_recipes_from_debian_build_and_reproduce_without_edits(
        tmp_path: Path, kiln: Kiln, apt_lists: None,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    recipes, repo = curated_copy(tmp_path)
    before = read_lock(recipes / "kiln.lock")
    assert before is not None

    made = {}
    for name, source in (("cjson", "cjson"), ("yaml", "libyaml")):
        result = kiln("recipe", "new", name, "--debian", source, "--recipes", recipes, "--json")
        assert result.code == 0, result.err
        made[name] = json.loads(result.out)
    assert made["cjson"]["build_system"] == "cmake"  # Debian builds it with cmake
    assert made["yaml"]["build_system"] == "autoconf"
    assert "debian.org/bookworm/cmake" in made["cjson"]["build_requires"]
    assert {"debian.org/bookworm/cmake", "debian.org/bookworm/automake"} <= {
        row["name"] for change in made.values() for row in change["lock"]["added"]}
    after = read_lock(recipes / "kiln.lock")
    assert after is not None
    # Every pin the lock held stays as it was: new packages only.
    assert all(after.get(p.name) == p for p in before.packages)
    text = (recipes / "cjson" / "recipe.yaml").read_text()
    assert "debian-patches: true" in text
    assert 'license: "MIT"' in text  # from debian/copyright's Files: *
    checked = kiln("recipe", "check", recipes)
    assert checked.code == 0, checked.out

    repo.index.add(["recipes"])
    repo.index.commit("cjson and yaml, as kiln recipe new wrote them")
    for name, wanted in (("cjson", "usr/include/cjson/cJSON.h"), ("yaml", "usr/include/yaml.h")):
        built = kiln("build", name, "--recipes", recipes, "--check", "--json")
        assert built.code == 0, built.err
        record = json.loads(built.out)
        # How Kiln applied Debian's patches is an input of the build, as a pipeline is.
        assert "kiln:debian-patches" in {source["uri"] for source in record["sources"]}
        out = tmp_path / f"{name}-tree"
        package = f"{record['output']['name']}@{record['output']['version']}"
        assert kiln("fileset", "materialize", package, out).code == 0
        assert (out / wanted).is_file()
        assert list((out / "usr").rglob("lib*.so.*"))  # a shared library, wherever it lies
        if name == "cjson":  # Debian's 12 security fixes are in, and the log says so
            assert "applying debian/patches/" in kiln("build", "log", package).out

    _a_tarball_and_a_git_commit(tmp_path, kiln, recipes, repo, monkeypatch)

    # A recipe's directory is never written over; an unknown source writes nothing.
    again = kiln("recipe", "new", "cjson", "--debian", "cjson", "--recipes", recipes)
    assert again.code == 2
    assert "[recipe-exists]" in again.err
    assert (recipes / "cjson" / "recipe.yaml").read_text() == text
    missing = kiln("recipe", "new", "nothing", "--debian", "kiln-no-such-source",
                   "--recipes", recipes)
    assert missing.code == 2
    assert "[source-unreachable]" in missing.err
    assert not (recipes / "nothing").exists()


def _a_tarball_and_a_git_commit(tmp_path: Path, kiln: Kiln, recipes: Path, repo: git.Repo,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A tarball and a git commit (local ones, where the host allows them), made into
    recipes that build with make."""
    upstream = tmp_path / "upstream"
    upstream.mkdir()
    (upstream / "Makefile").write_text(
        "all:\n\techo built > made.txt\ninstall:\n"
        "\tmkdir -p $(DESTDIR)$(PREFIX)/share/tool\n"
        "\tcp made.txt $(DESTDIR)$(PREFIX)/share/tool/\n")
    upstream_repo = git.Repo.init(upstream)
    upstream_repo.index.add(["Makefile"])
    upstream_repo.index.commit("a tool")
    subprocess.run(["tar", "-czf", tmp_path / "tool-1.2.tar.gz", "-C", tmp_path, "upstream"],
                   check=True)
    (tmp_path / "host.yaml").write_text(f"file-sources: {tmp_path}\n")
    monkeypatch.setenv("KILN_CONFIG", str(tmp_path / "host.yaml"))
    for name, how in (("tool", ["--url", (tmp_path / "tool-1.2.tar.gz").as_uri()]),
                      ("gtool", ["--git", f"{upstream}@{upstream_repo.active_branch.name}"])):
        result = kiln("recipe", "new", name, *how, "--recipes", recipes, "--json")
        assert result.code == 0, result.err
        assert json.loads(result.out)["build_system"] == "make"
    assert 'version: "1.2-1"' in (recipes / "tool" / "recipe.yaml").read_text()
    assert upstream_repo.head.commit.hexsha in (recipes / "gtool" / "recipe.yaml").read_text()
    repo.index.add(["recipes"])
    repo.index.commit("tool and gtool")
    for name in ("tool", "gtool"):
        built = kiln("build", name, "--recipes", recipes, "--json")
        assert built.code == 0, built.err
        output = json.loads(built.out)["output"]
        out = tmp_path / f"{name}-tree"
        assert kiln("fileset", "materialize", f"{output['name']}@{output['version']}",
                    out).code == 0
        assert (out / "usr/share/tool/made.txt").read_text() == "built\n"
