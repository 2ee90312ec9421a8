"""./dev's apt-get waits while another process holds apt's lock, and fails at once,
with apt's own message, on anything else."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import REPO

WAITING = REPO / "scripts" / "apt-get-waiting"

pytestmark = pytest.mark.skipif(shutil.which("apt-get") is None, reason="needs Debian's apt-get")


def _empty_update(lists: Path, parts: Path) -> list[str]:
    """`apt-get update` of no sources into lists of its own: it takes the lists' lock as
    a real update does, and touches neither the network nor this host's lists."""
    return [str(WAITING), "-o", f"Dir::State::Lists={lists}", "-o",
            "Dir::Etc::SourceList=/dev/null", "-o", f"Dir::Etc::SourceParts={parts}", "update"]


def test_an_update_waits_for_the_lists_lock_another_process_holds(tmp_path: Path) -> None:
    lists, parts = tmp_path / "lists", tmp_path / "parts"
    (lists / "partial").mkdir(parents=True)
    parts.mkdir()
    descriptor = os.open(lists / "lock", os.O_RDWR | os.O_CREAT, 0o640)
    fcntl.lockf(descriptor, fcntl.LOCK_EX)  # as apt itself locks it
    held = 3.0
    threading.Timer(held, os.close, (descriptor,)).start()
    started = time.monotonic()
    result = subprocess.run(_empty_update(lists, parts), capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started >= held - 0.1  # it waited, it did not fail at once
    assert "apt's lock is held" in result.stderr
    assert "waiting for it" in result.stderr


def test_a_lock_held_past_the_patience_fails_with_apts_message(tmp_path: Path) -> None:
    lists, parts = tmp_path / "lists", tmp_path / "parts"
    (lists / "partial").mkdir(parents=True)
    parts.mkdir()
    descriptor = os.open(lists / "lock", os.O_RDWR | os.O_CREAT, 0o640)
    fcntl.lockf(descriptor, fcntl.LOCK_EX)
    try:
        result = subprocess.run(_empty_update(lists, parts), capture_output=True, text=True,
                                timeout=60, check=False,
                                env={**os.environ, "KILN_APT_PATIENCE": "2"})
    finally:
        os.close(descriptor)
    assert result.returncode != 0
    assert "Could not get lock" in result.stderr


def test_any_other_failure_is_not_waited_for() -> None:
    started = time.monotonic()
    result = subprocess.run([str(WAITING), "-s", "install", "kiln-no-such-package"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode != 0
    assert "Unable to locate package kiln-no-such-package" in result.stderr
    assert "waiting" not in result.stderr
    assert time.monotonic() - started < 10
