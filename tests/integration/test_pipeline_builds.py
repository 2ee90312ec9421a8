"""A recipe built with `uses:` for real (the sandbox): the pipeline's step runs with its
inputs, the record names the pipeline and its digest among its sources, and a changed
pipeline changes the build key of the recipe that uses it and of no other."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import git
import pytest

from kiln.store import Store
from tests.conftest import REPO, Kiln
from tests.integration.test_debian import apt_lists  # noqa: F401 - a fixture
from workers.build_plan import prepare

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap")

WRITE = """\
description: write a line into the output
inputs:
  file: {description: the file under /out}
  text: {default: made}
runs: printf '%s\\n' '${{inputs.text}}' > /out/${{inputs.file}}
"""


@pytest.fixture
def recipes(tmp_path: Path) -> Path:
    top = tmp_path / "repo"
    for name, build in (("tiny", "\n  - uses: out/write\n    with: {file: made, text: piped}"
                                 "\n  - runs: echo after >> /out/made"),
                        ("other", " 'echo other > /out/other'")):
        (top / "recipes" / name).mkdir(parents=True)
        (top / "recipes" / name / "recipe.yaml").write_text(
            f"package: {{name: kiln.dev/{name}, version: '1'}}\n"
            f"build-requires: [debian.org/bookworm/dash]\nbuild:{build}\n")
    (top / "recipes" / "pipelines" / "out").mkdir(parents=True)
    (top / "recipes" / "pipelines" / "out" / "write.yaml").write_text(WRITE)
    shutil.copy(REPO / "recipes" / "kiln.lock", top / "recipes" / "kiln.lock")
    repo = git.Repo.init(top)
    repo.index.add(["recipes"])
    repo.index.commit("two recipes, one pipeline")
    return top / "recipes"


def test_a_pipeline_runs_is_recorded_and_keys_exactly_its_users(
        recipes: Path, kiln: Kiln, tmp_path: Path, apt_lists: None) -> None:  # noqa: F811
    built = kiln("build", "tiny", "--recipes", recipes, "--json")
    assert built.code == 0, built.err
    record = json.loads(built.out)
    pipeline = recipes / "pipelines" / "out" / "write.yaml"
    assert {"uri": "pipeline:out/write",
            "sha256": hashlib.sha256(pipeline.read_bytes()).hexdigest()} in record["sources"]
    out = tmp_path / "tiny"
    assert kiln("fileset", "materialize", "kiln.dev/tiny@1", out).code == 0
    assert (out / "made").read_text() == "piped\nafter\n"

    store = Store.open(kiln.store_dir)
    before = {name: prepare(store, recipes, name, tmp_path / f"{name}-1", sandbox="bwrap")
              for name in ("tiny", "other")}
    pipeline.write_text(WRITE.replace("printf '%s\\n'", "printf '%s\\n\\n'"))
    repo = git.Repo(recipes.parent)
    repo.index.add(["recipes/pipelines"])
    repo.index.commit("the pipeline writes one line more")
    after = {name: prepare(store, recipes, name, tmp_path / f"{name}-2", sandbox="bwrap")
             for name in ("tiny", "other")}
    assert after["tiny"].build_key != before["tiny"].build_key
    assert after["other"].build_key == before["other"].build_key


def test_a_build_root_has_the_links_debians_alternatives_make(
        recipes: Path, kiln: Kiln, tmp_path: Path, apt_lists: None) -> None:  # noqa: F811
    # mawk's postinst makes /usr/bin/awk, debianutils' /usr/bin/which: configure scripts
    # and makefiles call them by those names.
    (recipes / "alts").mkdir()
    (recipes / "alts" / "recipe.yaml").write_text(
        "package: {name: kiln.dev/alts, version: '1'}\n"
        "build-requires: [debian.org/bookworm/dash, debian.org/bookworm/mawk,"
        " debian.org/bookworm/debianutils]\n"
        "build: |\n  awk 'BEGIN { print \"awk runs\" }' > /out/awk.txt\n"
        "  which awk nawk > /out/which.txt\n")
    repo = git.Repo(recipes.parent)
    repo.index.add(["recipes/alts"])
    repo.index.commit("a recipe that calls awk and which")
    built = kiln("build", "alts", "--recipes", recipes)
    assert built.code == 0, built.err
    out = tmp_path / "alts"
    assert kiln("fileset", "materialize", "kiln.dev/alts@1", out).code == 0
    assert (out / "awk.txt").read_text() == "awk runs\n"
    assert (out / "which.txt").read_text() == "/usr/bin/awk\n/usr/bin/nawk\n"
