"""A full disk is one clear error, and the store stays whole."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import run_kiln_process
from tests.treespec import File, write_tree

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", mount], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", mount], check=True)


def test_ingest_that_fills_the_disk_fails_cleanly(tmp_path: Path, small_disk: Path) -> None:
    store = small_disk / "store"
    fits = write_tree(tmp_path / "fits", {"a": File(b"small")})
    assert run_kiln_process(store, "fileset", "add", fits, "--name", "kiln.dev/fits",
                            "--version", "1").returncode == 0
    big = write_tree(tmp_path / "big", {f"f{i}": File(os.urandom(300_000)) for i in range(12)})

    failed = run_kiln_process(store, "fileset", "add", big, "--name", "kiln.dev/big",
                              "--version", "1")
    assert failed.returncode == 2
    assert failed.stderr.startswith("kiln: error: ")
    assert "[store-write]" in failed.stderr
    assert "Traceback" not in failed.stderr

    listed = json.loads(run_kiln_process(store, "fileset", "ls", "--json").stdout)
    assert [item["name"] for item in listed] == ["kiln.dev/fits"]
    fsck = run_kiln_process(store, "store", "fsck", "--json")
    assert fsck.returncode == 0, fsck.stdout
    assert run_kiln_process(store, "store", "gc").returncode == 0
    assert run_kiln_process(store, "fileset", "export", "kiln.dev/fits", "-o",
                            tmp_path / "fits.tar").returncode == 0
