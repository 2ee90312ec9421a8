"""The toolchain lock through the real apt: written, checked for drift, enforced."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from kiln.errors import StoreError
from kiln.recipes.lock import ensure_locked, read_lock, write_lock
from kiln.store import Store
from kiln.store.gc import collect_garbage
from tests.conftest import Kiln
from tests.integration.test_debian import apt_field, apt_lists  # noqa: F401 - fixture


def recipe(repo: Path, requires: list[str]) -> None:
    (repo / "greet").mkdir(parents=True, exist_ok=True)
    lines = "".join(f"  - {json.dumps(r)}\n" for r in requires)
    (repo / "greet/recipe.yaml").write_text(textwrap.dedent("""\
        package: {name: kiln.dev/greet, version: '1'}
        build: make
        build-requires:
        """) + lines)


def test_lock_update_then_check_then_drift(tmp_path: Path, kiln: Kiln,
                                          apt_lists: None) -> None:  # noqa: F811
    repo = tmp_path / "recipes"
    recipe(repo, ["debian.org/bookworm/hello"])
    assert kiln("recipe", "check", repo).code == 1  # nothing locked yet

    updated = kiln("lock", "update", "--recipes", repo, "--json")
    assert updated.code == 0, updated.err
    lock = read_lock(repo / "kiln.lock")
    assert lock is not None
    hello = lock.get("debian.org/bookworm/hello")
    assert hello is not None
    assert hello.version == apt_field("hello", "Version")
    assert hello.deb_sha256 == apt_field("hello", "SHA256")
    assert "debian.org/bookworm/libc6" in hello.requires
    assert lock.get("debian.org/bookworm/libc6") is not None
    assert kiln("recipe", "check", repo).code == 0

    # A requirement the lock does not have, and one at a version it does not lock.
    recipe(repo, ["debian.org/bookworm/sensible-utils", "debian.org/bookworm/hello (>= 3)"])
    drift = kiln("recipe", "check", repo, "--json")
    assert drift.code == 1
    problems = json.loads(drift.out)["problems"]
    assert [(p["line"], p["reason"]) for p in problems] == [(4, "lock-drift"),
                                                            (5, "lock-drift")]
    assert "sensible-utils: kiln.lock lacks it" in problems[0]["message"]
    assert f"kiln.lock locks debian.org/bookworm/hello@{hello.version}" in problems[1]["message"]

    # Locked packages no recipe needs any more are drift too.
    recipe(repo, [])
    stale = json.loads(kiln("recipe", "check", repo, "--json").out)["problems"]
    assert {p["reason"] for p in stale} == {"lock-drift"}
    assert {p["message"].split(" ")[0] for p in stale} == {
        f"{p.name}@{p.version}" for p in lock.packages}


def test_a_locked_fileset_missing_from_the_store_is_reimported_exactly(
        tmp_path: Path, kiln: Kiln, apt_lists: None) -> None:  # noqa: F811
    repo = tmp_path / "recipes"
    recipe(repo, ["debian.org/bookworm/hello"])
    assert kiln("lock", "update", "--recipes", repo).code == 0
    lock = read_lock(repo / "kiln.lock")
    assert lock is not None
    store = Store.open(kiln.store_dir)
    for locked in lock.packages:
        store.remove_ref(locked.name, locked.version)
    collect_garbage(store)
    store = Store.open(kiln.store_dir)
    digests = ensure_locked(store, lock, {"debian.org/bookworm/hello"})
    assert digests == {p.name: p.digest for p in lock.packages}
    assert all(store.has(digest) for digest in digests.values())

    # A lock that pins another digest than apt's package gives: the build must stop.
    forged = type(lock)(lock.suite, tuple(
        type(p)(p.name, p.version, "sha256:" + "0" * 64, p.deb_sha256, p.requires)  # type: ignore[arg-type]
        if p.name.endswith("/hello") else p for p in lock.packages))
    write_lock(repo / "kiln.lock", forged)
    with pytest.raises(StoreError) as caught:
        ensure_locked(Store.open(kiln.store_dir), forged, {"debian.org/bookworm/hello"})
    assert caught.value.reason == "lock-digest-mismatch"
