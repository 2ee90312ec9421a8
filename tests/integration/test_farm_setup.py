"""`kiln farm setup`: what the deployment's master role asks of Kiln. Around a farm.yaml
and passwords put in place by someone else, it lays out the hosted recipe repository
(seeded once), Buildbot's master and the local worker; a second run makes nothing."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from master.config import load_farm
from tests.conftest import run_kiln_process
from tests.fixtures.farms import BASE, seed

FARM_YAML = """\
name: deployed
recipes: {repository: "git://master.example.invalid/recipes.git", hosted: recipes.git}
registry: {host: "registry.example.invalid:5000"}
signer: file:keys/farm.pem
listen: 127.0.0.1
workers: [w1]
"""


def _farm(directory: Path, text: str = FARM_YAML) -> Path:
    for sub in ("workers", "users", "keys"):
        (directory / sub).mkdir(parents=True)
    (directory / "farm.yaml").write_text(text)
    (directory / "workers" / "master-local.password").write_text("local-secret\n")
    return directory


def _setup(directory: Path, *extra: str | Path) -> list[str]:
    done = run_kiln_process(directory / "store", "farm", "setup", directory, "--json", *extra)
    assert done.returncode == 0, done.stderr
    made: list[str] = json.loads(done.stdout)["made"]
    return made


def test_setup_lays_out_a_hosted_repository_master_and_local_worker_once(
        tmp_path: Path) -> None:
    farm_dir = _farm(tmp_path / "farm")
    recipes = seed(tmp_path / "seed", {"base": BASE})

    assert _setup(farm_dir, "--seed", recipes) == ["recipes", "master",
                                                   "worker-master-local"]
    farm = load_farm(farm_dir)
    # The repository workers fetch by URL is the bare one kept here, seeded, with the hook.
    assert farm.hosted_recipes == farm_dir / "recipes.git"
    assert farm.recipes_url == "git://master.example.invalid/recipes.git"
    listed = subprocess.run(["git", "-C", str(farm_dir / "recipes.git"), "ls-tree", "-r",
                             "--name-only", "main"], capture_output=True, text=True, check=True)
    assert listed.stdout.split() == ["recipes/base/recipe.yaml", "recipes/kiln.lock"]
    hook = farm_dir / "recipes.git" / "hooks" / "post-receive"
    assert hook.stat().st_mode & 0o111
    assert "master.hook" in hook.read_text()
    assert "load_farm" in (farm_dir / "master" / "master.cfg").read_text()
    tac = (farm_dir / "worker-master-local" / "buildbot.tac").read_text()
    assert "'master-local'" in tac
    assert "local-secret" in tac

    # A second run makes nothing, and a seed never overwrites a repository's history.
    head = (farm_dir / "recipes.git" / "refs" / "heads" / "main").read_text()
    assert _setup(farm_dir, "--seed", recipes) == []
    assert (farm_dir / "recipes.git" / "refs" / "heads" / "main").read_text() == head

    # A hook or master.cfg changed by hand is put back, and said so.
    hook.write_text("#!/bin/sh\nexit 0\n")
    (farm_dir / "master" / "master.cfg").write_text("BuildmasterConfig = {}\n")
    assert _setup(farm_dir) == ["hook", "master.cfg"]
    assert "master.hook" in hook.read_text()


def test_setup_of_a_farm_building_a_remote_repository_makes_no_repository(
        tmp_path: Path) -> None:
    farm_dir = _farm(tmp_path / "farm", FARM_YAML.replace(", hosted: recipes.git", ""))
    assert _setup(farm_dir) == ["master", "worker-master-local"]
    assert load_farm(farm_dir).hosted_recipes is None
    assert not (farm_dir / "recipes.git").exists()


def test_setup_of_a_broken_farm_yaml_names_the_file_and_line(tmp_path: Path) -> None:
    farm_dir = _farm(tmp_path / "farm", FARM_YAML.replace("workers: [w1]", "workers: [W 1]"))
    done = run_kiln_process(tmp_path / "store", "farm", "setup", farm_dir)
    assert done.returncode == 2
    assert f"{farm_dir / 'farm.yaml'}:6" in done.stderr
    assert not (farm_dir / "master").exists()
