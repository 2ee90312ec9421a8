"""Kill Kiln at the worst moments: nothing partial is ever visible, fsck stays clean.

Each test arms one named crash point (kiln.faults) in a real `kiln` process,
which then SIGKILLs itself there, as an OOM kill or a power cut would.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from tests.conftest import run_kiln_process
from tests.golden.fixtures import HELLO
from tests.treespec import File, read_tree, with_parents, write_tree

KILLED = -signal.SIGKILL


def names(store_dir: Path) -> list[str]:
    result = run_kiln_process(store_dir, "fileset", "ls", "--json")
    assert result.returncode == 0, result.stderr
    return [f"{item['name']}@{item['version']}" for item in json.loads(result.stdout)]


def assert_fsck_clean(store_dir: Path) -> None:
    result = run_kiln_process(store_dir, "store", "fsck", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["clean"]


# (crash point, whether the dead process leaves its staging directory behind).
# Ingest publishes each object once written: a crash leaves unreferenced
# objects at most, which are garbage, never a FileSet.
ADD_POINTS = [("object-write", True), ("before-rename", True), ("record-tree", False)]


@pytest.mark.parametrize(("point", "leaves_staging"), ADD_POINTS, ids=[p for p, _ in ADD_POINTS])
def test_crash_during_add_leaves_nothing_visible(tmp_path: Path, point: str,
                                                 leaves_staging: bool) -> None:
    store_dir = tmp_path / "store"
    src = write_tree(tmp_path / "hello", HELLO)
    crashed = run_kiln_process(store_dir, "fileset", "add", src, "--name", "kiln.dev/hello",
                               "--version", "1", env={"KILN_CRASH_AT": point})
    assert crashed.returncode == KILLED
    assert names(store_dir) == []
    assert run_kiln_process(store_dir, "fileset", "show", "kiln.dev/hello").returncode == 2
    assert_fsck_clean(store_dir)

    retried = run_kiln_process(store_dir, "fileset", "add", src, "--name", "kiln.dev/hello",
                               "--version", "1")
    assert retried.returncode == 0, retried.stderr
    assert names(store_dir) == ["kiln.dev/hello@1"]
    assert_fsck_clean(store_dir)
    gc = run_kiln_process(store_dir, "store", "gc", "--json")
    assert json.loads(gc.stdout)["temporary_removed"] == int(leaves_staging)
    assert_fsck_clean(store_dir)


def test_crash_after_manifest_before_name_leaves_an_unnamed_whole_fileset(
        tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    src = write_tree(tmp_path / "hello", HELLO)
    crashed = run_kiln_process(store_dir, "fileset", "add", src, "--name", "kiln.dev/hello",
                               "--version", "1", env={"KILN_CRASH_AT": "record-manifest"})
    assert crashed.returncode == KILLED
    assert names(store_dir) == []
    assert_fsck_clean(store_dir)
    gc = json.loads(run_kiln_process(store_dir, "store", "gc", "--json").stdout)
    assert len(gc["filesets_removed"]) == 1
    assert_fsck_clean(store_dir)


@pytest.mark.parametrize("point", ["import", "object-write", "before-commit", "commit"])
def test_crash_during_import_leaves_nothing_visible(tmp_path: Path, point: str) -> None:
    source_store = tmp_path / "source"
    src = write_tree(tmp_path / "hello", HELLO)
    assert run_kiln_process(source_store, "fileset", "add", src, "--name", "kiln.dev/hello",
                            "--version", "1").returncode == 0
    archive = tmp_path / "hello.tar"
    assert run_kiln_process(source_store, "fileset", "export", "kiln.dev/hello",
                            "-o", archive).returncode == 0

    store_dir = tmp_path / "store"
    crashed = run_kiln_process(store_dir, "fileset", "import", archive,
                               env={"KILN_CRASH_AT": point})
    assert crashed.returncode == KILLED
    assert names(store_dir) == []
    assert_fsck_clean(store_dir)
    assert run_kiln_process(store_dir, "fileset", "import", archive).returncode == 0
    assert names(store_dir) == ["kiln.dev/hello@1"]
    assert_fsck_clean(store_dir)


def test_crash_during_gc_keeps_every_live_fileset_whole(tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    live = {"usr/bin/tool": File(b"live tool", True), "shared": File(b"shared")}
    assert run_kiln_process(store_dir, "fileset", "add", write_tree(tmp_path / "live", live),
                            "--name", "kiln.dev/live", "--version", "1").returncode == 0
    for index in range(3):  # three versions of one name: two become garbage
        spec = {"f": File(f"garbage {index}".encode()), "shared": File(b"shared")}
        assert run_kiln_process(store_dir, "fileset", "add",
                                write_tree(tmp_path / f"g{index}", spec),
                                "--name", "kiln.dev/churn", "--version", "1").returncode == 0
    crashed = run_kiln_process(store_dir, "store", "gc", env={"KILN_CRASH_AT": "gc"})
    assert crashed.returncode == KILLED
    assert_fsck_clean(store_dir)
    assert sorted(names(store_dir)) == ["kiln.dev/churn@1", "kiln.dev/live@1"]
    out = tmp_path / "out"
    assert run_kiln_process(store_dir, "fileset", "materialize", "kiln.dev/live",
                            out).returncode == 0
    assert read_tree(out) == with_parents(live)

    finished = json.loads(run_kiln_process(store_dir, "store", "gc", "--json").stdout)
    assert len(finished["filesets_removed"]) == 1  # the crashed gc had removed one
    assert finished["objects_removed"] == 2
    assert_fsck_clean(store_dir)


def test_crash_while_gc_removes_a_materialised_tree_leaves_no_partial_tree(
        tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    spec = {"a/b/c": File(b"c"), "d": File(b"d")}
    src = write_tree(tmp_path / "t", spec)
    assert run_kiln_process(store_dir, "fileset", "add", src, "--name", "kiln.dev/t",
                            "--version", "1").returncode == 0
    made = run_kiln_process(store_dir, "fileset", "materialize", "kiln.dev/t")
    tree_dir = Path(made.stdout.strip())
    assert run_kiln_process(store_dir, "fileset", "rm", "kiln.dev/t@1").returncode == 0
    crashed = run_kiln_process(store_dir, "store", "gc",
                               env={"KILN_CRASH_AT": "gc-materialized"})
    assert crashed.returncode == KILLED
    assert not tree_dir.exists()
    # The same FileSet added again gets a whole tree, not the dead one's remains.
    assert run_kiln_process(store_dir, "fileset", "add", src, "--name", "kiln.dev/t",
                            "--version", "1").returncode == 0
    again = Path(run_kiln_process(store_dir, "fileset", "materialize",
                                  "kiln.dev/t").stdout.strip())
    assert again == tree_dir
    assert read_tree(again) == with_parents(spec)
    assert_fsck_clean(store_dir)
