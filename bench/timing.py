"""What every benchmark shares: timing an action, the median of runs, and Kiln as a
separate command (Python's start-up included, as a user meets it)."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def median(runs: int, action: Callable[[], object]) -> float:
    return statistics.median(timed(action) for _ in range(runs))


def kiln(store_dir: Path, *args: str | Path, env: dict[str, str] | None = None) -> str:
    """`kiln --store STORE ARGS...` as its own process; a failure stops the benchmark."""
    result = subprocess.run([sys.executable, "-m", "kiln.cli.main", "--store", str(store_dir),
                             *map(str, args)], capture_output=True, text=True, check=False,
                            cwd=REPO, env={**os.environ, **(env or {})})
    if result.returncode != 0:
        raise SystemExit(f"kiln {' '.join(map(str, args))} failed: {result.stderr}")
    return result.stdout
