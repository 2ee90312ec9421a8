"""What `kiln recipe new` guesses and writes (kiln/recipes/scaffold.py), and how a Debian
source package is unpacked with its patches (workers/debian_patches.py)."""

from __future__ import annotations

import gzip
import io
import subprocess
import tarfile
from pathlib import Path

import pytest

from kiln.errors import InputError
from kiln.recipes.model import DebianSource, load_recipe
from kiln.recipes.scaffold import (
    NewRecipe,
    debian_build_depends,
    debian_license,
    debian_summary,
    guess_build_system,
    upstream_version,
)
from workers.debian_patches import UNPACK_SCRIPT, unpack_step


def test_build_depends_keep_what_builds_the_software_for_this_architecture() -> None:
    fields = ["debhelper-compat (= 13), dh-python, cmake (>= 3.13), python3:any <!nocheck>,"
              " libfoo-dev [amd64] | libbar-dev, libhurd-dev [hurd-any], libssl-dev [!hurd-any],"
              " doxygen <!nodoc>, zlib1g-dev <stage1 !nocheck> | zlib1g-dev, libzstd-dev <nocheck>",
              "", "pkgconf"]
    assert debian_build_depends(fields, "amd64") == [
        "cmake", "libfoo-dev", "libssl-dev", "zlib1g-dev", "libzstd-dev", "pkgconf"]
    # On another architecture the [amd64]-only alternative gives way to the next.
    assert "libbar-dev" in debian_build_depends(fields, "arm64")


def test_debians_build_depends_choose_between_a_trees_build_systems() -> None:
    cjson = ["CMakeLists.txt", "Makefile", "cJSON.c", "tests/parse_examples.c"]
    assert guess_build_system(cjson, ["cmake"], "cjson").name == "cmake"
    assert guess_build_system(cjson, [], "cjson").name == "cmake"
    both = ["configure", "meson.build", "src/main.cc"]
    assert guess_build_system(both, ["meson"], "x").name == "meson"
    shipped = guess_build_system(both, [], "x")
    assert shipped.name == "autoconf"
    assert shipped.cxx  # a C++ tree wants g++ too
    assert shipped.steps[0].startswith("uses: autoconf/configure")
    # The build directory must not reach the debug info: `--check` varies it.
    assert "-ffile-prefix-map=$PWD=." in shipped.steps[0]
    bare = guess_build_system(["configure.ac", "Makefile.am"], [], "yaml", "1.17")
    assert bare.steps[0] == ("runs: cd yaml && ACLOCAL=aclocal-1.17 AUTOMAKE=automake-1.17"
                             " autoreconf -fi")
    assert {"autoconf", "automake", "libtool"} <= set(bare.tools)
    assert guess_build_system(["pyproject.toml"], [], "p").name == "python"
    make = guess_build_system(["Makefile", "lz4.c"], [], "lz4")
    assert make.name == "make"
    assert "PREFIX=/usr" in make.steps[1]
    with pytest.raises(InputError) as caught:
        guess_build_system(["README", "src/a.c"], [], "x")
    assert caught.value.reason == "no-build-system"
    assert "README" in caught.value.message


def test_summary_license_and_version_come_from_debians_files() -> None:
    control = ("Source: cjson\n\nPackage: libcjson-dev\nDescription: headers\n more\n\n"
               "Package: libcjson1\nDescription: Ultralightweight JSON parser in ANSI C\n"
               " long text\n")
    assert debian_summary(control, "cjson") == "Ultralightweight JSON parser in ANSI C"
    copyright_text = ("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/"
                      "1.0/\n\nFiles: debian/*\nLicense: GPL-2+\n\nFiles: *\nCopyright: x\n"
                      "License: Expat\n Permission is hereby granted\n")
    assert debian_license(copyright_text) == "MIT"
    assert debian_license("This package was debianized by someone.\n") == ""
    assert upstream_version("1:1.2.13.dfsg-1") == "1.2.13.dfsg"
    assert upstream_version("1.7.15-1+deb12u4") == "1.7.15"
    assert upstream_version("55") == "55"


def test_a_written_recipe_is_one_the_recipe_format_accepts(tmp_path: Path) -> None:
    system = guess_build_system(["CMakeLists.txt"], ["cmake"], "cjson")
    recipe = NewRecipe(
        "kiln.dev/cjson", "1.7.15-1", "a \"quoted\" summary: with colon", "MIT",
        "https://github.com/DaveGamble/cJSON", "Made by a test.",
        {"debian": "cjson", "version": "1.7.15-1+deb12u4", "dsc-sha256": "a" * 64},
        {"debian-patches": "true"}, system=system,
        build_requires=("debian.org/bookworm/gcc-12", "debian.org/bookworm/cmake"),
        requires=("debian.org/bookworm/libc6",), env={"CC": "gcc-12"},
        notes=("a note",))
    file = tmp_path / "cjson" / "recipe.yaml"
    file.parent.mkdir()
    file.write_text(recipe.text())
    parsed, problems = load_recipe(file)
    assert problems == []
    assert parsed is not None
    assert parsed.package.summary == "a \"quoted\" summary: with colon"
    assert parsed.sources == (DebianSource("cjson", "1.7.15-1+deb12u4", "a" * 64,
                                           parsed.sources[0].line, patches=True),)
    assert [step.pipeline for step in parsed.steps] == ["cmake"]  # type: ignore[union-attr]


def test_debian_patches_must_be_true_or_false(tmp_path: Path) -> None:
    file = tmp_path / "x" / "recipe.yaml"
    file.parent.mkdir()
    file.write_text("package: {name: kiln.dev/x, version: '1'}\nsources:\n"
                    f"  - debian: xy\n    version: '1'\n    dsc-sha256: {'a' * 64}\n"
                    "    debian-patches: yes please\nbuild: 'true'\n")
    _, problems = load_recipe(file)
    assert [(p.line, p.reason) for p in problems] == [(6, "bad-value")]
    assert "true or false" in problems[0].message


def _tar(path: Path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def _unpack(tmp_path: Path, files: list[str]) -> subprocess.CompletedProcess[str]:
    """The unpacking step run with the host's tar and patch, /src being the test's."""
    step = unpack_step(DebianSource("demo", "1.0-1", "a" * 64, 1, True), files)
    build = tmp_path / "build"
    build.mkdir()
    return subprocess.run(["sh", "-ec", step.replace("/src/", f"{tmp_path}/src/")], cwd=build,
                          capture_output=True, text=True, check=False)


def test_a_quilt_source_is_unpacked_as_dpkg_source_would(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    _tar(src / "demo_1.0.orig.tar.gz", {"demo-1.0/hello.c": b"old line\n",
                                        "demo-1.0/debian/rules": b"upstream's, dropped\n"})
    _tar(src / "demo_1.0.orig-docs.tar.gz", {"docs-1.0/guide.txt": b"guide\n"})
    patch = (b"--- a/hello.c\n+++ b/hello.c\n@@ -1 +1 @@\n-old line\n+patched line\n")
    flat = b"--- hello.c\n+++ hello.c\n@@ -1 +1,2 @@\n patched line\n+second patch\n"
    _tar(src / "demo_1.0-1.debian.tar.gz", {
        "debian/control": b"Source: demo\n",
        "debian/patches/series": b"# Debian's patches\nfix.patch\n\nflat.patch -p0\n",
        "debian/patches/fix.patch": patch, "debian/patches/flat.patch": flat})
    result = _unpack(tmp_path, ["demo_1.0.orig.tar.gz", "demo_1.0.orig-docs.tar.gz",
                                "demo_1.0-1.debian.tar.gz"])
    assert result.returncode == 0, result.stderr
    tree = tmp_path / "build" / "demo"
    assert (tree / "hello.c").read_text() == "patched line\nsecond patch\n"
    assert (tree / "docs" / "guide.txt").read_text() == "guide\n"
    assert not (tree / "debian" / "rules").exists()  # upstream's debian/ gives way
    assert "applying debian/patches/fix.patch" in result.stdout


def test_a_patch_that_does_not_apply_fails_the_build_naming_it(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    _tar(src / "demo_1.0.orig.tar.gz", {"demo-1.0/hello.c": b"other text\n"})
    _tar(src / "demo_1.0-1.debian.tar.gz", {
        "debian/patches/series": b"fix.patch\n",
        "debian/patches/fix.patch": b"--- a/hello.c\n+++ b/hello.c\n@@ -1 +1 @@\n-old\n+new\n"})
    result = _unpack(tmp_path, ["demo_1.0.orig.tar.gz", "demo_1.0-1.debian.tar.gz"])
    assert result.returncode != 0
    assert "applying debian/patches/fix.patch" in result.stdout


def test_a_format_1_source_applies_its_diff(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    _tar(src / "demo_1.0.orig.tar.gz", {"demo-1.0/hello.c": b"old line\n"})
    (src / "demo_1.0-1.diff.gz").write_bytes(gzip.compress(
        b"--- a/hello.c\n+++ b/hello.c\n@@ -1 +1 @@\n-old line\n+new line\n"))
    result = _unpack(tmp_path, ["demo_1.0.orig.tar.gz", "demo_1.0-1.diff.gz"])
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "build" / "demo" / "hello.c").read_text() == "new line\n"


def test_file_names_a_dsc_should_never_hold_are_refused() -> None:
    source = DebianSource("demo", "1.0-1", "a" * 64, 1, True)
    for hostile in (["demo_1.0.orig.tar.gz", "$(reboot).debian.tar.xz"],
                    ["demo_1.0.orig.tar.gz", "a b.debian.tar.xz"]):
        with pytest.raises(InputError) as caught:
            unpack_step(source, hostile)
        assert caught.value.reason == "bad-source"
    with pytest.raises(InputError):  # two upstream tarballs: no format Kiln knows
        unpack_step(source, ["demo_1.0.orig.tar.gz", "demo_1.0.tar.gz"])
    assert "kiln_into=demo" in unpack_step(source, ["demo_1.0.tar.xz"])
    assert UNPACK_SCRIPT in unpack_step(source, ["demo_1.0.tar.xz"])
