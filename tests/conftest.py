"""Fixtures shared by every test: a fresh store, the CLI in-process and as a command."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kiln.cli.main import main
from kiln.store import Store

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"

# A resident server the developer runs (`kiln server start`) must not run the tests'
# commands: they run by themselves, unless a test starts a server of its own.
os.environ["KILN_SERVER"] = "off"


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def store(store_dir: Path) -> Store:
    return Store.open(store_dir)


@dataclass
class Result:
    code: int
    out: str
    err: str


class Kiln:
    """Runs `kiln --store STORE ...` in-process, capturing its output."""

    def __init__(self, store_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.store_dir = store_dir
        self._capsys = capsys

    def __call__(self, *args: str | Path) -> Result:
        self._capsys.readouterr()
        code = main(["--store", str(self.store_dir), *map(str, args)])
        captured = self._capsys.readouterr()
        return Result(code, captured.out, captured.err)


@pytest.fixture
def kiln(store_dir: Path, capsys: pytest.CaptureFixture[str]) -> Kiln:
    return Kiln(store_dir, capsys)


def run_kiln_process(store_dir: Path, *args: str | Path, env: dict[str, str] | None = None,
                     timeout: float = 120, stdin: str | None = None,
                     ) -> subprocess.CompletedProcess[str]:
    """`kiln` as a separate process, as crash and concurrency tests need."""
    return subprocess.run(
        [sys.executable, "-m", "kiln.cli.main", "--store", str(store_dir), *map(str, args)],
        capture_output=True, text=True, timeout=timeout, input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        env={**os.environ, **(env or {})}, check=False,
    )


@pytest.fixture
def umask_077() -> Iterator[None]:
    old = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(old)
