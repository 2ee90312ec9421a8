"""The curated recipes: clean, and their lock reproducible on this machine."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from kiln.recipes.lock import ensure_locked, read_lock
from kiln.recipes.repository import check_repository
from kiln.store import Store
from tests.conftest import REPO
from tests.integration.test_debian import apt_lists  # noqa: F401 - fixture

RECIPES = REPO / "recipes"


def test_curated_recipes_are_clean() -> None:
    repository, problems = check_repository(RECIPES)
    assert [str(p) for p in problems] == []
    assert {"kiln.dev/hello", "kiln.dev/zlib"} <= set(repository.recipes)


def test_a_locked_debian_package_imports_to_the_committed_digest(
        tmp_path: Path, apt_lists: None) -> None:  # noqa: F811
    lock = read_lock(RECIPES / "kiln.lock")
    assert lock is not None
    make = lock.get("debian.org/bookworm/make")
    assert make is not None
    offered = subprocess.run(["apt-cache", "show", f"make={make.version}"],
                             capture_output=True, check=False)
    if offered.returncode != 0:
        pytest.skip(f"Debian no longer serves make={make.version}; run kiln lock update")
    store = Store.open(tmp_path / "store")
    digests = ensure_locked(store, lock, {"debian.org/bookworm/make"})
    assert digests["debian.org/bookworm/make"] == make.digest
    assert store.has(make.digest)
