"""Reusable pipelines (`uses:`): read from the recipe repository's pipelines/, checked
with file and line, rendered into the build script, and an input of exactly the recipes
that use them (their plan keys; the build keys take the same refs, tests/integration)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kiln.recipes.pipelines import Pipeline, load_pipelines, render
from kiln.recipes.repository import check_repository, load_repository
from master.inputs import recipe_inputs
from tests.conftest import REPO

CONFIGURE = """\
description: configure
inputs:
  dir: {default: "."}
  opts: {default: ""}
  prefix: {default: /usr}
runs: |
  cd ${{inputs.dir}}
  ./configure --prefix=${{inputs.prefix}} ${{inputs.opts}}
"""
UNPACK = """\
inputs:
  archive: {description: a file in /src}
runs: tar -xf /src/${{ inputs.archive }}
"""


def _repository(root: Path, recipes: dict[str, str], pipelines: dict[str, str]) -> Path:
    for name, build in recipes.items():
        (root / name).mkdir(parents=True)
        (root / name / "recipe.yaml").write_text(
            f"package: {{name: kiln.dev/{name}, version: '1'}}\nbuild:\n{build}")
    for name, text in pipelines.items():
        (root / "pipelines" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "pipelines" / f"{name}.yaml").write_text(text)
    return root


def test_steps_render_into_one_script_with_inputs_and_defaults(tmp_path: Path) -> None:
    root = _repository(tmp_path, {"a": """\
  - uses: tar/unpack
    with: {archive: a.tar.gz}
  - uses: autoconf/configure
    with: {dir: a-1, opts: '--disable-nls CFLAGS="-O2"'}
  - runs: make -j"$JOBS"
"""}, {"tar/unpack": UNPACK, "autoconf/configure": CONFIGURE})
    repository = load_repository(root)
    assert repository.problems == ()
    script = render(repository.recipes["kiln.dev/a"].steps, repository.pipelines)
    assert script == (
        "# uses: tar/unpack\n(\ntar -xf /src/a.tar.gz\n)\n"
        "# uses: autoconf/configure\n(\ncd a-1\n"
        "./configure --prefix=/usr --disable-nls CFLAGS=\"-O2\"\n\n)\n"
        "(\nmake -j\"$JOBS\"\n)\n")


def test_a_script_as_written_runs_as_written(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "recipe.yaml").write_text(
        "package: {name: kiln.dev/a, version: '1'}\nbuild: |\n  cd x\n  make\n")
    recipe = load_repository(tmp_path).recipes["kiln.dev/a"]
    assert recipe.build == "cd x\nmake\n"
    assert render(recipe.steps, {}) == "cd x\nmake\n"


@pytest.mark.parametrize(("build", "line", "reason"), [
    ("  - uses: autoconf/cmake\n", 3, "unknown-pipeline"),
    ("  - uses: tar/unpack\n", 3, "missing-pipeline-input"),
    ("  - runs: make\n  - uses: tar/unpack\n    with: {archive: a, strip: 1}\n", 4,
     "unknown-pipeline-input"),
    ("  - runs: make\n    uses: tar/unpack\n", 3, "bad-recipe"),
    ("  - uses: ../../etc/passwd\n", 3, "bad-recipe"),
    ("  []\n", 3, "bad-recipe"),
])
def test_a_bad_step_is_named_by_file_and_line(tmp_path: Path, build: str, line: int,
                                              reason: str) -> None:
    root = _repository(tmp_path, {"a": build}, {"tar/unpack": UNPACK})
    repository, problems = check_repository(root)
    assert [(p.file, p.line, p.reason) for p in problems] == [
        (str(root / "a" / "recipe.yaml"), line, reason)]
    assert "kiln.dev/a" not in repository.recipes  # it cannot be built as it stands


def test_a_bad_pipeline_is_named_by_file_and_line(tmp_path: Path) -> None:
    root = _repository(tmp_path, {}, {
        "bad": "inputs: {x: {}}\nruns: echo ${{inputs.y}}\n",
        "broken": "runs: [\n",
        "odd": "runs: make\nsteps: []\n"})
    pipelines, problems = load_pipelines(root)
    assert pipelines == {}
    assert [(Path(p.file).name, p.line, p.reason) for p in problems] == [
        ("bad.yaml", 2, "bad-recipe"), ("broken.yaml", 2, "bad-yaml"),
        ("odd.yaml", 2, "unknown-key")]


def test_a_changed_pipeline_changes_the_keys_of_exactly_the_recipes_using_it(
        tmp_path: Path) -> None:
    root = _repository(tmp_path, {
        "uses-it": "  - uses: autoconf/configure\n",
        "uses-it-too": "  - runs: true\n  - uses: autoconf/configure\n    with: {dir: x}\n",
        "uses-another": "  - uses: tar/unpack\n    with: {archive: a.tar}\n",
        "uses-none": "  - runs: make\n",
    }, {"autoconf/configure": CONFIGURE, "tar/unpack": UNPACK})
    before = {name: inputs.own for name, inputs in recipe_inputs(load_repository(root)).items()}
    (root / "pipelines" / "autoconf" / "configure.yaml").write_text(
        CONFIGURE.replace("--prefix=", "--sysconfdir=/etc --prefix="))
    after = {name: inputs.own for name, inputs in recipe_inputs(load_repository(root)).items()}
    changed = {name for name in before if before[name] != after[name]}
    assert changed == {"kiln.dev/uses-it", "kiln.dev/uses-it-too"}


def test_the_curated_pipelines_read_clean() -> None:
    pipelines, problems = load_pipelines(REPO / "recipes")
    assert problems == []
    assert {"autoconf/configure", "make/build", "make/install", "cmake", "meson",
            "python/wheel", "strip", "tar/unpack"} <= set(pipelines)
    assert all(isinstance(p, Pipeline) and p.description for p in pipelines.values())
