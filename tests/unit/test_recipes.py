"""Recipes: broken ones are reported with file and line, all problems at once."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from kiln.recipes.model import DebianSource, GitSource, PathSource, UrlSource, load_recipe
from kiln.recipes.repository import check_repository
from tests.conftest import Kiln

SHA = "a" * 64
COMMIT = "b" * 40

GOOD = f"""\
package:
  name: kiln.dev/hello
  version: 2.10
  summary: GNU hello
  license: GPL-3.0-or-later
  homepage: https://www.gnu.org/software/hello/
sources:
  - url: https://ftp.gnu.org/gnu/hello/hello-2.10.tar.gz
    sha256: {SHA}
  - git: https://git.example.org/hello.git
    commit: {COMMIT}
  - path: fix.patch
  - debian: hello
    version: 2.10-3
    dsc-sha256: {SHA}
build-requires:
  - kiln.dev/zlib (>= 1.3)
requires:
  - kiln.dev/zlib | kiln.dev/zlib-ng
env:
  GCC_EXEC_PREFIX: /usr/lib/gcc/
build: |
  ./configure --prefix=/usr
  make -j"$JOBS" && make install DESTDIR=/out
test: hello | grep -q 'Hello, world!'
requirements:
  kernel: "5.10"
  capabilities: [CAP_NET_BIND_SERVICE]
"""

ZLIB = """\
package:
  name: kiln.dev/zlib
  version: 1.3.1-1
build: make
provides: [kiln.dev/libz]
"""


def write(root: Path, name: str, text: str) -> Path:
    (root / name).mkdir(parents=True, exist_ok=True)
    path = root / name / "recipe.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_a_good_recipe_parses_into_typed_values(tmp_path: Path) -> None:
    write(tmp_path, "hello", GOOD)
    (tmp_path / "hello/fix.patch").write_text("--- a\n+++ b\n")
    recipe, problems = load_recipe(tmp_path / "hello/recipe.yaml")
    assert problems == []
    assert recipe is not None
    assert recipe.package.version == "2.10"  # a string, not the float 2.1
    assert recipe.sources == (
        UrlSource("https://ftp.gnu.org/gnu/hello/hello-2.10.tar.gz", SHA, 8),
        GitSource("https://git.example.org/hello.git", COMMIT, 10),
        PathSource("fix.patch", 12),
        DebianSource("hello", "2.10-3", SHA, 13),
    )
    assert str(recipe.build_requires[0]) == "kiln.dev/zlib (>= 1.3)"
    assert recipe.requires[0].names == ("kiln.dev/zlib", "kiln.dev/zlib-ng")
    assert recipe.env == {"GCC_EXEC_PREFIX": "/usr/lib/gcc/"}
    assert recipe.requirements.kernel == "5.10"
    assert recipe.requirements.capabilities == ("CAP_NET_BIND_SERVICE",)
    write(tmp_path, "zlib", ZLIB)
    assert check_repository(tmp_path)[1] == []


def test_an_empty_value_is_no_value_and_an_empty_string_is_one(tmp_path: Path) -> None:
    # LibYAML's parser calls a plain scalar's style "", the Python one None: an empty
    # `build-requires:` is none with either, not a list of one blank requirement.
    write(tmp_path, "tiny", "package: {name: kiln.dev/tiny, version: '1'}\nbuild: make\n"
                            "build-requires:\nrequires: ~\n")
    recipe, problems = load_recipe(tmp_path / "tiny/recipe.yaml")
    assert problems == []
    assert recipe is not None
    assert recipe.build_requires == ()
    assert recipe.requires == ()
    write(tmp_path, "blank", "package: {name: kiln.dev/blank, version: ''}\nbuild: make\n")
    _, problems = load_recipe(tmp_path / "blank/recipe.yaml")
    assert [(p.line, p.reason) for p in problems] == [(1, "bad-version")]

# (what is broken, the recipe text, the line of the problem, its reason)
BROKEN = [
    ("unknown top key", "package: {name: kiln.dev/x, version: '1'}\nbuild: make\nbuilt: x\n",
     3, "unknown-key"),
    ("unknown package key", "package:\n  name: kiln.dev/x\n  version: '1'\n  colour: red\n"
     "build: make\n", 4, "unknown-key"),
    ("missing build", "package: {name: kiln.dev/x, version: '1'}\n", 1, "missing-key"),
    ("missing version", "package:\n  name: kiln.dev/x\nbuild: make\n", 2, "missing-key"),
    ("bad name", "package:\n  name: hello\n  version: '1'\nbuild: make\n", 2, "bad-name"),
    ("bad version", "package:\n  name: kiln.dev/x\n  version: v1\nbuild: make\n", 3,
     "bad-version"),
    ("bad yaml", "package: {name: kiln.dev/x\nbuild: make\n", 2, "bad-yaml"),
    ("duplicate key", "package: {name: kiln.dev/x, version: '1'}\nbuild: make\nbuild: x\n", 3,
     "duplicate-key"),
    ("short sha256", "package: {name: kiln.dev/x, version: '1'}\nbuild: make\nsources:\n"
     "  - url: https://example.org/x.tgz\n    sha256: abc\n", 5, "bad-value"),
    ("http url", "package: {name: kiln.dev/x, version: '1'}\nbuild: make\nsources:\n"
     f"  - url: http://example.org/x.tgz\n    sha256: {SHA}\n", 4, "bad-source"),
    ("git without commit", "package: {name: kiln.dev/x, version: '1'}\nbuild: make\n"
     "sources:\n  - git: https://example.org/x.git\n", 4, "missing-key"),
    ("unknown source", "package: {name: kiln.dev/x, version: '1'}\nbuild: make\nsources:\n"
     "  - svn: https://example.org/x\n", 4, "bad-source"),
    ("path escapes", "package: {name: kiln.dev/x, version: '1'}\nbuild: make\nsources:\n"
     "  - path: ../../etc/passwd\n", 4, "bad-path"),
    ("bad relation", "package: {name: kiln.dev/x, version: '1'}\nbuild: make\n"
     "build-requires:\n  - kiln.dev/zlib (~> 1)\n", 4, "bad-relation"),
    ("bad env name", "package: {name: kiln.dev/x, version: '1'}\nbuild: make\nenv:\n"
     "  1BAD: x\n", 4, "bad-recipe"),
    ("bad capability", "package: {name: kiln.dev/x, version: '1'}\nbuild: make\n"
     "requirements:\n  capabilities: [NET_ADMIN]\n", 4, "bad-value"),
    ("list for build", "package: {name: kiln.dev/x, version: '1'}\nbuild: [make]\n", 2,
     "bad-recipe"),
    ("empty file", "", 1, "bad-yaml"),
]


@pytest.mark.parametrize(("label", "text", "line", "reason"), BROKEN,
                         ids=[case[0] for case in BROKEN])
def test_broken_recipes_name_file_and_line(tmp_path: Path, label: str, text: str, line: int,
                                           reason: str) -> None:
    path = write(tmp_path, "x", text)
    recipe, problems = load_recipe(path)
    assert recipe is None
    assert [(p.file, p.line, p.reason) for p in problems] == [(str(path), line, reason)], \
        [str(p) for p in problems]


def test_every_problem_of_a_file_is_reported_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, "x", """\
        package:
          name: Bad
          version: v1
        build: make
        colour: red
        sources:
          - url: https://example.org/x
            sha256: nope
        """)
    _recipe, problems = load_recipe(path)
    assert [(p.line, p.reason) for p in problems] == [
        (5, "unknown-key"), (2, "bad-name"), (3, "bad-version"), (8, "bad-value")]


def test_repository_problems_across_recipes(tmp_path: Path) -> None:
    write(tmp_path, "a", "package: {name: kiln.dev/a, version: '1'}\nbuild: make\n"
          "build-requires: [kiln.dev/b]\n")
    write(tmp_path, "b", "package: {name: kiln.dev/b, version: '1'}\nbuild: make\n"
          "build-requires: [kiln.dev/a]\n")
    write(tmp_path, "c", "package: {name: kiln.dev/c, version: '1'}\nbuild: make\n"
          "build-requires:\n  - kiln.dev/a (>= 2)\n  - kiln.dev/nowhere\n"
          "  - debian.org/bookworm/gcc-12\n"
          "sources:\n  - path: missing.patch\n")
    write(tmp_path, "wrongdir", "package: {name: kiln.dev/d, version: '1'}\nbuild: make\n")
    write(tmp_path, "d", "package: {name: kiln.dev/d, version: '2'}\nbuild: make\n")
    _repository, problems = check_repository(tmp_path)
    found = sorted((Path(p.file).parent.name, p.line, p.reason) for p in problems)
    assert found == [
        ("a", 3, "build-cycle"),
        ("c", 4, "missing-build-require"),  # kiln.dev/a is here, but at version 1
        ("c", 5, "missing-build-require"),  # kiln.dev/nowhere
        ("c", 6, "lock-drift"),  # gcc-12: no lock
        ("c", 8, "missing-source"),
        ("wrongdir", 1, "directory-mismatch"),
        ("wrongdir", 1, "duplicate-package"),  # d/ makes kiln.dev/d too
    ]
    messages = "\n".join(str(p) for p in problems)
    assert "kiln.dev/a -> kiln.dev/b -> kiln.dev/a" in messages
    assert "(here: kiln.dev/a@1)" in messages
    assert "kiln.lock lacks it" in messages


def test_recipe_check_command(tmp_path: Path, kiln: Kiln) -> None:
    write(tmp_path, "zlib", ZLIB)
    clean = kiln("recipe", "check", tmp_path)
    assert clean.code == 0
    assert "clean" in clean.out
    write(tmp_path, "x", "package: {name: kiln.dev/x, version: '1'}\nbuild: make\nbuilt: x\n")
    broken = kiln("recipe", "check", tmp_path)
    assert broken.code == 1
    assert f"{tmp_path}/x/recipe.yaml:3: unknown key 'built'" in broken.out
    assert kiln("recipe", "check", tmp_path / "none").code == 2


def test_a_local_git_source_must_hold_its_commit(tmp_path: Path) -> None:
    import git

    upstream = git.Repo.init(tmp_path / "upstream")
    (tmp_path / "upstream/f").write_text("x")
    upstream.index.add(["f"])
    commit = upstream.index.commit("one").hexsha
    repo = tmp_path / "recipes"
    for name, pin in (("good", commit), ("bad", "f" * 40)):
        write(repo, name, f"package: {{name: kiln.dev/{name}, version: '1'}}\nbuild: make\n"
                          f"sources:\n  - git: ../upstream\n    commit: {pin}\n")
    write(repo, "elsewhere", "package: {name: kiln.dev/elsewhere, version: '1'}\nbuild: make\n"
                             f"sources:\n  - git: ../nothing-here\n    commit: {commit}\n")
    _repository, problems = check_repository(repo)
    assert [(Path(p.file).parent.name, p.line, p.reason) for p in problems] == [
        ("bad", 4, "source-commit-missing"), ("elsewhere", 4, "source-commit-missing")]
    assert "is not a git repository" in problems[1].message


def test_a_broken_recipe_is_not_buried_under_drift_it_does_not_cause(tmp_path: Path) -> None:
    import shutil

    from tests.conftest import REPO

    shutil.copy(REPO / "recipes" / "kiln.lock", tmp_path / "kiln.lock")
    write(tmp_path, "small", "package: {name: kiln.dev/small, version: '1'}\n"
                             "build-requires: [debian.org/bookworm/dash]\nbuild: 'true'\n")
    # The only recipe that needs gcc has a schema error: its packages are not stale.
    write(tmp_path, "big", "package: {name: kiln.dev/big, version: '1'}\n"
                           "build-requires: [debian.org/bookworm/gcc-12]\nbuild: make\n"
                           "colour: blue\n")
    _repository, problems = check_repository(tmp_path)
    assert [p.reason for p in problems] == ["unknown-key"]
    assert problems[0].line == 4


LZ4 = (
    "package: {name: kiln.dev/lz4, version: '1.9.4-1'}\n"
    "build: make\n"
    "outputs:\n"
    '  - {name: kiln.dev/liblz4-1, paths: ["usr/lib/liblz4.so.*"]}\n'
    "  - name: kiln.dev/liblz4-dev\n"
    '    paths: ["usr/include/*"]\n'
    '    requires: ["kiln.dev/liblz4-1 (= 1.9.4-1)", kiln.dev/nowhere]\n')


def test_split_outputs_are_checked_as_packages_of_the_repository(tmp_path: Path) -> None:
    write(tmp_path, "lz4", LZ4 + "  - {name: kiln.dev/lz4, paths: [usr/bin/lz4]}\n"
          "  - {name: kiln.dev/liblz4-1, paths: [x]}\n  - {name: kiln.dev/empty, paths: []}\n")
    # Another recipe may build with a split output, at the recipe's version.
    write(tmp_path, "user", "package: {name: kiln.dev/user, version: '1'}\nbuild: make\n"
          "build-requires: ['kiln.dev/liblz4-dev (>= 1.9)']\n")
    write(tmp_path, "zclash", "package: {name: kiln.dev/zclash, version: '1'}\nbuild: make\n"
          "outputs:\n  - {name: kiln.dev/liblz4-1, paths: [y]}\n")
    _repository, problems = check_repository(tmp_path)
    found = sorted((Path(p.file).parent.name, p.line, p.reason) for p in problems)
    assert found == [
        ("lz4", 8, "duplicate-output"),  # the recipe's own package
        ("lz4", 9, "duplicate-output"),  # named twice
        ("lz4", 10, "bad-recipe"),  # claims no path
        ("user", 3, "missing-build-require"),  # a broken recipe makes nothing
    ]
    # A recipe with problems is not loaded; once they go, its outputs are its own.
    write(tmp_path, "lz4", LZ4)
    repository, problems = check_repository(tmp_path)
    found = sorted((Path(p.file).parent.name, p.line, p.reason) for p in problems)
    assert found == [
        ("lz4", 5, "missing-require"),  # kiln.dev/nowhere
        ("zclash", 1, "duplicate-package"),  # lz4, read first, makes kiln.dev/liblz4-1
    ]
    assert "output kiln.dev/liblz4-dev" in next(p for p in problems
                                                if p.reason == "missing-require").message
    recipe = repository.recipe_making("kiln.dev/liblz4-dev")
    assert recipe is not None
    assert recipe.package.name == "kiln.dev/lz4"
    assert repository.made_here()["kiln.dev/liblz4-1"] == "kiln.dev/lz4"
