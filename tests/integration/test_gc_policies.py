"""The store's caches bounded by age and size: what goes is what can be made again,
every named FileSet stays, a build running meanwhile is not disturbed, and a worker
collects past its threshold when a build ends."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import git
import pytest

from kiln.store import Store
from kiln.store.caches import cache_entries
from tests.conftest import REPO, Kiln, run_kiln_process
from tests.integration.test_debian import apt_lists  # noqa: F401 - fixture

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("bwrap") is None,
                                reason="builds need root and bubblewrap")
LONG_AGO = time.time() - 90 * 86400


@pytest.fixture
def recipes(tmp_path: Path) -> Path:
    """A recipe repository of one recipe that needs dash and coreutils."""
    top = tmp_path / "repo"
    (top / "recipes").mkdir(parents=True)
    shutil.copy(REPO / "recipes/kiln.lock", top / "recipes/kiln.lock")
    write_recipe(top / "recipes", "printf 'made\\n' > /out/made")
    repo = git.Repo.init(top)
    repo.index.add(["recipes"])
    repo.index.commit("tiny")
    return top / "recipes"


def write_recipe(recipes: Path, build: str) -> None:
    (recipes / "tiny").mkdir(exist_ok=True)
    (recipes / "tiny" / "recipe.yaml").write_text(textwrap.dedent(f"""\
        package: {{name: kiln.dev/tiny, version: '1'}}
        build-requires: [debian.org/bookworm/dash, debian.org/bookworm/coreutils]
        build: {json.dumps(build)}
        """))


def kinds(store: Store) -> dict[str, int]:
    found: dict[str, int] = {}
    for entry in cache_entries(store):
        found[entry.kind] = found.get(entry.kind, 0) + 1
    return found


def test_the_caches_go_by_age_then_by_size_and_every_named_fileset_stays(
        recipes: Path, kiln: Kiln, store: Store, apt_lists: None) -> None:  # noqa: F811
    built = kiln("build", "tiny", "--recipes", recipes, "--json")
    assert built.code == 0, built.err
    digest = json.loads(built.out)["output"]["digest"]
    before = kinds(store)
    for kind in ("build-records", "hash-indexes", "apt", "archives", "materialized"):
        assert before.get(kind), (kind, before)  # a build fills each of these
    named = {(n.name, n.version) for n in store.named()}

    # By age: nothing but the build's own record was used in the last 90 days.
    for entry in cache_entries(store):
        if entry.kind != "build-records":
            for path in entry.paths:
                if path.exists():
                    os.utime(path, (LONG_AGO, LONG_AGO))
    aged = kiln("store", "gc", "--keep-days", "30", "--json")
    assert aged.code == 0, aged.err
    freed = json.loads(aged.out)["caches"]
    assert freed["build-records"]["entries"] == 0  # used today: kept
    for kind in ("hash-indexes", "apt", "archives", "materialized"):
        assert freed[kind]["entries"] == before[kind], kind
    assert set(kinds(store)) == {"build-records"}
    assert {(n.name, n.version) for n in store.named()} == named  # no name lost
    assert kiln("store", "fsck").code == 0
    again = kiln("build", "tiny", "--recipes", recipes, "--json")
    assert again.code == 0, again.err
    assert json.loads(again.out)["reused"]  # its record survived: not built again

    # By size: the least recently used go first, until what is left fits.
    entries = sorted(cache_entries(store), key=lambda e: e.used)
    record = next(e for e in entries if e.kind == "build-records")
    for path in record.paths:
        os.utime(path, (LONG_AGO, LONG_AGO))  # now the oldest
    total = sum(e.size for e in cache_entries(store))
    sized = kiln("store", "gc", "--max-size", str(total - 1), "--json")
    assert sized.code == 0, sized.err
    freed = json.loads(sized.out)["caches"]
    assert freed["build-records"]["entries"] == 1
    assert sum(item["entries"] for item in freed.values()) == 1  # the oldest alone
    rebuilt = kiln("build", "tiny", "--recipes", recipes, "--json")
    assert rebuilt.code == 0, rebuilt.err
    assert not json.loads(rebuilt.out)["reused"]  # built again, to the same FileSet
    assert json.loads(rebuilt.out)["output"]["digest"] == digest

    emptied = kiln("store", "gc", "--max-size", "0")
    assert emptied.code == 0, emptied.err
    assert "caches: freed" in emptied.out
    assert "0 B kept" in emptied.out
    assert cache_entries(store) == []
    assert kiln("fileset", "show", "kiln.dev/tiny@1").code == 0


def test_a_build_running_during_a_gc_keeps_everything_it_uses(
        recipes: Path, store: Store, apt_lists: None, tmp_path: Path) -> None:  # noqa: F811
    # A gc that empties every cache (the build's materialised inputs among them) waits
    # for the build to end, and the build ends as it would have without it.
    write_recipe(recipes, "sleep 4; /bin/ls /bin/dash > /out/made")
    warm = run_kiln_process(store.layout.root, "build", "tiny", "--recipes", recipes,
                            "--allow-dirty", timeout=300)
    assert warm.returncode == 0, warm.stderr
    write_recipe(recipes, "sleep 4; /bin/ls /bin/dash > /out/made; echo 2 >> /out/made")
    command = ["-m", "kiln.cli.main", "--store", str(store.layout.root)]
    building = subprocess.Popen([sys.executable, *command, "build", "tiny", "--recipes",
                                 str(recipes), "--allow-dirty"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    time.sleep(2)  # inside its sleep
    assert building.poll() is None
    gc = subprocess.run([sys.executable, *command, "store", "gc", "--max-size", "0", "--json"],
                        capture_output=True, text=True, timeout=300, check=False)
    gc_ended = time.monotonic()
    out, err = building.communicate(timeout=300)
    assert building.returncode == 0, err
    assert "(built)" in out
    assert gc.returncode == 0, gc.stderr
    assert time.monotonic() - gc_ended < 1  # the build had ended before gc did: gc waited
    freed = json.loads(gc.stdout)["caches"]
    assert freed["materialized"]["entries"] > 0  # and then collected what it used


def test_a_build_past_the_hosts_threshold_collects_when_it_ends(
        recipes: Path, store: Store, apt_lists: None, tmp_path: Path) -> None:  # noqa: F811
    config = tmp_path / "kiln.yaml"
    config.write_text("gc: {threshold: 1M}\n")  # no max-size: the threshold is the bound
    env = {"KILN_CONFIG": str(config)}
    built = run_kiln_process(store.layout.root, "build", "tiny", "--recipes", recipes,
                             env=env, timeout=300)
    assert built.returncode == 0, built.stderr
    assert "above the gc threshold of 1.0 MiB" in built.stderr
    assert sum(e.size for e in cache_entries(store)) <= 1 << 20
    assert "kiln.dev/tiny@1" in built.stdout  # what it built is named, not collected
    shown = run_kiln_process(store.layout.root, "fileset", "show", "kiln.dev/tiny@1")
    assert shown.returncode == 0, shown.stderr
    # Under the threshold, a build collects nothing.
    config.write_text("gc: {threshold: 1T}\n")
    quiet = run_kiln_process(store.layout.root, "build", "tiny", "--recipes", recipes,
                             env=env, timeout=300)
    assert quiet.returncode == 0, quiet.stderr
    assert "threshold" not in quiet.stderr


@pytest.mark.parametrize(("flag", "value"), [("--keep-days", "soon"), ("--keep-days", "0"),
                                             ("--max-size", "lots")])
def test_a_bound_that_is_no_bound_is_refused_and_nothing_collected(
        kiln: Kiln, store: Store, flag: str, value: str) -> None:
    result = kiln("store", "gc", flag, value)
    assert result.code == 2
    assert "[bad-value]" in result.err
    assert repr(value) in result.err
