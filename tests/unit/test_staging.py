"""Staging points left by processes killed outright are swept (workers/staging.py)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from workers import staging


def test_the_staging_points_of_dead_processes_are_swept_and_no_other(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(staging, "SCRATCH", tmp_path)
    gone = subprocess.Popen(["true"])  # a pid that has just ended
    gone.wait()
    left = tmp_path / f"kiln-stage-{gone.pid}-abc"
    left.mkdir()
    mine = tmp_path / f"kiln-stage-{os.getpid()}-def"  # a live process's: in use
    mine.mkdir()
    busy = tmp_path / f"kiln-stage-{gone.pid}-ghi"  # not empty: not a staging point now
    (busy / "x").mkdir(parents=True)
    assert staging.sweep_staging_points() == 1
    assert not left.exists()
    assert mine.is_dir()
    assert busy.is_dir()
    with staging.staging_point() as point:
        assert point.name.startswith(f"kiln-stage-{os.getpid()}-")
        assert point.stat().st_mode & 0o777 == 0o755
    assert not point.exists()
