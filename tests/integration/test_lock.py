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


@pytest.fixture
def curated(tmp_path: Path) -> Path:
    """A recipe repository of one recipe (dash) with the curated lock, in git."""
    import shutil

    import git

    from tests.conftest import REPO

    top = tmp_path / "repo"
    (top / "recipes" / "tiny").mkdir(parents=True)
    shutil.copy(REPO / "recipes" / "kiln.lock", top / "recipes" / "kiln.lock")
    (top / "recipes" / "tiny" / "recipe.yaml").write_text(
        "package: {name: kiln.dev/tiny, version: '1'}\n"
        "build-requires: [debian.org/bookworm/dash]\nbuild: 'echo made > /out/made'\n")
    repo = git.Repo.init(top)
    repo.index.add(["recipes"])
    repo.index.commit("tiny")
    return top / "recipes"


def entries(lock_path: Path) -> dict[str, dict[str, object]]:
    return {p["name"]: p for p in json.loads(lock_path.read_text())["packages"]}


def test_adding_a_package_moves_no_pin_and_no_unrelated_build_key(
        curated: Path, kiln: Kiln, store: Store, tmp_path: Path,
        apt_lists: None) -> None:  # noqa: F811
    import git

    from workers.build_plan import prepare

    before_key = prepare(store, curated, "tiny", tmp_path / "one", sandbox="bwrap").build_key
    before = entries(curated / "kiln.lock")
    quiet = kiln("lock", "update", "--recipes", curated)
    assert quiet.code == 0, quiet.err
    assert "nothing to change" in quiet.out  # the other curated packages are not dropped
    added = kiln("lock", "update", "--recipes", curated, "--add", "sensible-utils", "--json")
    assert added.code == 0, added.err
    change = json.loads(added.out)
    assert [p["name"] for p in change["added"]] == ["debian.org/bookworm/sensible-utils"]
    assert change["updated"] == []
    assert change["removed"] == []
    after = entries(curated / "kiln.lock")
    assert {n: p for n, p in after.items() if n in before} == before  # every pin as it was
    repo = git.Repo(curated.parent)
    repo.index.add(["recipes/kiln.lock"])
    repo.index.commit("sensible-utils, for a recipe to come")
    assert prepare(store, curated, "tiny", tmp_path / "two",
                   sandbox="bwrap").build_key == before_key


def test_only_moves_the_package_named_and_shows_the_diff(
        curated: Path, kiln: Kiln, apt_lists: None) -> None:  # noqa: F811
    lock = json.loads((curated / "kiln.lock").read_text())
    for package in lock["packages"]:
        if package["name"] == "debian.org/bookworm/zlib1g":
            package["version"] = "1:1.2.13.dfsg-0"  # as if apt had moved on since
    (curated / "kiln.lock").write_text(json.dumps(lock, indent=2))
    before = entries(curated / "kiln.lock")
    moved = kiln("lock", "update", "--recipes", curated, "--only",
                 "debian.org/bookworm/zlib1g")
    assert moved.code == 0, moved.err
    lines = moved.out.splitlines()
    assert lines[0].startswith("~ debian.org/bookworm/zlib1g 1:1.2.13.dfsg-0 -> ")
    assert "1 updated" in lines[-1]
    after = entries(curated / "kiln.lock")
    assert after["debian.org/bookworm/zlib1g"]["version"] == apt_field("zlib1g", "Version")
    assert {n: p for n, p in after.items() if n != "debian.org/bookworm/zlib1g"} == {
        n: p for n, p in before.items() if n != "debian.org/bookworm/zlib1g"}
    unknown = kiln("lock", "update", "--recipes", curated, "--only", "cowsay")
    assert unknown.code == 2
    assert "[not-locked]" in unknown.err


def test_a_package_that_needs_a_newer_locked_one_is_refused(
        curated: Path, kiln: Kiln, apt_lists: None) -> None:  # noqa: F811
    lock = json.loads((curated / "kiln.lock").read_text())
    for package in lock["packages"]:
        if package["name"] == "debian.org/bookworm/libc6":
            package["version"] = "2.30-1"  # older than hello's libc6 (>= 2.34)
    (curated / "kiln.lock").write_text(json.dumps(lock, indent=2))
    before = (curated / "kiln.lock").read_bytes()
    refused = kiln("lock", "update", "--recipes", curated, "--add", "hello")
    assert refused.code == 2
    assert "[lock-would-move]" in refused.err
    assert "debian.org/bookworm/libc6@2.30-1" in refused.err
    assert "--only debian.org/bookworm/libc6" in refused.err
    assert (curated / "kiln.lock").read_bytes() == before  # nothing written
