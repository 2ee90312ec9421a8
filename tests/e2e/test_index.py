"""The index on a farm run on PostgreSQL: Buildbot's database and Kiln's index each in a
throwaway cluster the test starts (as the postgres user, stopped by PID), Debian's
registry, a real master and worker. What the farm publishes and what anyone pushes to
its registry is indexed; the index down during a publication loses nothing and
doubles nothing; `kiln index sync` of the registry into an empty index gives the
farm's own index back."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, select
from sqlalchemy.orm import Session

from master.config import FarmConfig
from master.index import queries
from master.index.models import (
    Build,
    Image,
    Package,
    Provenance,
    Publication,
)
from master.lifecycle import (
    InitOptions,
    api,
    init_farm,
    start_farm,
    stop_farm,
    wait_for_commit,
)
from tests.conftest import run_kiln_process
from tests.e2e.test_console import _running_build
from tests.fixtures.farms import BASE, SHELL, TOP, push, seed
from tests.fixtures.packages import ensure_apt_lists
from tests.fixtures.postgres import Postgres, run_postgres
from tests.fixtures.registry import Registry, free_port, run_registry

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("bwrap") is None,
                       reason="the farm's builds need root and bubblewrap"),
    pytest.mark.slow,
]

TIMEOUT = 240


@dataclass
class PostgresFarm:
    config: FarmConfig
    directory: Path
    registry: Registry
    index_db: Postgres
    index: Engine  # the farm's index, as an operator reads it
    clone: Path
    root: Path

    def push(self, name: str, build: str, requires: list[str], message: str) -> str:
        return push(self.clone, {name: (build, requires)}, message)

    def kiln(self, *args: str | Path) -> subprocess.CompletedProcess[str]:
        """A consumer's `kiln`, its registries.yaml pointing at the farm's registry."""
        return run_kiln_process(self.root / "consumer", *args, env={
            "KILN_REGISTRIES": str(self.directory / "registries.yaml")})


@pytest.fixture(scope="module")
def farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresFarm]:
    ensure_apt_lists()
    root = tmp_path_factory.mktemp("pgfarm")
    seeded = seed(root / "seed", {"base": BASE, "top": TOP})
    with run_registry(root / "registry") as registry, \
            run_postgres() as buildbot_db, \
            run_postgres() as index_db:
        # No password in farm.yaml: libpq reads them from the operator's password file.
        passfile = root / "pgpass"
        passfile.write_text(f"127.0.0.1:{buildbot_db.port}:*:kiln:{buildbot_db.password}\n"
                            f"127.0.0.1:{index_db.port}:*:kiln:{index_db.password}\n")
        passfile.chmod(0o600)
        before = os.environ.get("PGPASSFILE")
        os.environ["PGPASSFILE"] = str(passfile)
        directory = root / "farm"
        index_url = index_db.url("kiln_index", with_password=False)
        config = init_farm(directory, InitOptions(
            workers=1, registry=registry.host, seed=seeded, www_port=free_port(),
            pb_port=free_port(), database=buildbot_db.url("buildbot", with_password=False),
            index=index_url))
        settings = json.loads((directory / "farm.yaml").read_text())
        settings["index-sync"] = "1"
        (directory / "farm.yaml").write_text(json.dumps(settings))
        index = create_engine(index_url, pool_pre_ping=True)
        try:
            start_farm(directory)
            clone = root / "clone"
            subprocess.run(["git", "clone", "-q", config.recipes_url, str(clone)], check=True)
            yield PostgresFarm(config, directory, registry, index_db, index, clone, root)
        finally:
            index.dispose()
            assert "master" in stop_farm(directory)
            if before is None:
                os.environ.pop("PGPASSFILE", None)
            else:
                os.environ["PGPASSFILE"] = before


def test_a_farm_on_postgresql_indexes_what_it_publishes_and_what_anyone_pushes(
        farm: PostgresFarm, tmp_path: Path) -> None:
    farm_yaml = (farm.directory / "farm.yaml").read_text()
    assert "postgresql+psycopg://" in farm_yaml
    assert farm.index_db.password not in farm_yaml
    commit = farm.push("beside", "echo beside > /out/beside", SHELL, "beside")
    plan = wait_for_commit(farm.config, commit, TIMEOUT)
    assert plan["results"] == 0, plan["state_string"]
    # Buildbot keeps its builds in PostgreSQL, not in a SQLite file beside it.
    buildbot = create_engine(farm.config.database)
    try:
        with buildbot.connect() as connection:
            builds = connection.exec_driver_sql("SELECT count(*) FROM builds").scalar()
    finally:
        buildbot.dispose()
    assert builds is not None
    assert builds >= 4  # the plan and the three packages

    # What the farm published: its build (worker, inputs), its provenance (verified).
    top = queries.package(farm.index, "kiln.dev/top")
    [version] = top["versions"]
    [build] = version["builds"]
    assert build["worker"] == "w1"
    assert build["recipe_commit"] == commit
    [publication] = version["publications"]
    [proof] = publication["provenance"]
    assert proof["verified"] is True
    assert proof["signer"].startswith("key ")
    base_built = queries.built_with(farm.index, "kiln.dev/base", "1")["packages"]
    assert [p["name"] for p in base_built] == ["kiln.dev/top"]

    # An image a consumer composes from the farm's packages and pushes to its registry
    # is in the farm's index within seconds: the blast radius is complete.
    reference = _push_an_image(farm, tmp_path)
    started = time.monotonic()
    while time.monotonic() - started < 20:
        carriers = queries.affected(farm.index, "kiln.dev/base", "2")["images"]
        if carriers:
            break
        time.sleep(0.25)
    assert [c["image"] for c in carriers] == [reference]
    assert time.monotonic() - started < 20
    shown = queries.image(farm.index, reference)
    assert sorted(p["name"] for p in shown["packages"]) == ["kiln.dev/base", "kiln.dev/top"]
    assert shown["packages"][0]["provenance"][0]["verified"] is True

    # The registry is the truth: synced into an empty index, it gives the farm's back.
    assert_sync_gives_the_farms_index(farm, tmp_path)


def test_the_index_down_during_a_publication_loses_nothing_and_doubles_nothing(
        farm: PostgresFarm) -> None:
    commit = farm.push("slow", "sleep 4; echo slow > /out/slow", SHELL, "slow")
    running = _running_build(farm.config, "kiln.dev/slow")
    farm.index_db.stop()
    try:
        # While it is down: the package reaches the registry, the publication waits,
        # and a question to the index gets a clear, temporary error.
        _wait(lambda: _tag_exists(farm, "kiln.dev/slow", "1"), "the registry to hold slow")
        log = _wait_for_log(farm, running["buildid"], "gate", "unreachable")
        assert "the publication waits" in log
        asked = farm.kiln("query", "package", "kiln.dev/slow", "--index",
                          farm.config.index)
        assert asked.returncode == 75, asked.stderr
        assert "[index-unreachable]" in asked.stderr
        assert "temporary" in asked.stderr
    finally:
        farm.index_db.start()
    plan = wait_for_commit(farm.config, commit, TIMEOUT)
    assert plan["results"] == 0, plan["state_string"]
    assert "indexed after waiting" in _wait_for_log(farm, running["buildid"], "gate",
                                                    "indexed after")
    with Session(farm.index) as session:
        slow = session.scalars(select(Package).where(Package.name == "kiln.dev/slow")).all()
        assert len(slow) == 1
        assert len(session.scalars(select(Publication).where(
            Publication.package_id == slow[0].id)).all()) == 1
        [build] = session.scalars(select(Build).where(Build.package_id == slow[0].id)).all()
        assert build.worker == "w1"  # the farm's own entry, not only the registry's sync


def assert_sync_gives_the_farms_index(farm: PostgresFarm, tmp_path: Path) -> None:
    """`kiln index sync` of the farm's registry into an empty index equals the farm's."""
    synced_url = f"sqlite:///{tmp_path / 'synced.sqlite'}"
    synced = farm.kiln("index", "sync", farm.registry.host, "--index", synced_url,
                       "--key", farm.directory / "keys" / "farm.pub", "--json")
    assert synced.returncode == 0, synced.stderr
    report = json.loads(synced.stdout)
    assert report["images"] == 1
    assert report["packages"] >= 4  # the farm's three and the toolchain it published
    # (The farm's own sync runs every second: give it a few to see the same registry.)
    theirs = comparable(create_engine(synced_url))
    deadline = time.monotonic() + 10
    while (ours := comparable(farm.index)) != theirs and time.monotonic() < deadline:
        time.sleep(0.5)
    for kind, rows in ours.items():
        extra, missing = set(theirs[kind]) - set(rows), set(rows) - set(theirs[kind])
        assert not extra, (kind, "only in the synced index", extra)
        assert not missing, (kind, "only in the farm's index", missing)


def _push_an_image(farm: PostgresFarm, tmp_path: Path) -> str:
    """An image of two of the farm's packages, as a consumer composes and pushes it."""
    for name in ("kiln.dev/top@1", "kiln.dev/base@1"):
        pulled = farm.kiln("pull", name)
        assert pulled.returncode == 0, pulled.stderr
    spec = tmp_path / "image.yaml"
    spec.write_text(json.dumps({"name": "kiln.dev/images/app", "version": "1",
                                "packages": ["kiln.dev/top", "kiln.dev/base"]}))
    reference = f"{farm.registry.host}/images/app:1"
    pushed = farm.kiln("image", "build", spec, "--push", reference)
    assert pushed.returncode == 0, pushed.stderr
    return reference


def comparable(engine: Engine) -> dict[str, Any]:
    """What an index holds that the registry holds too (workers, logs and plans are
    the farm's alone)."""
    with Session(engine) as session:
        packages = {p.id: (p.name, p.version, p.fileset, p.archive)
                    for p in session.scalars(select(Package))}
        return {
            "packages": sorted(packages.values()),
            "publications": sorted((packages[p.package_id], p.repository, p.tag, p.manifest)
                                   for p in session.scalars(select(Publication))),
            "builds": sorted((packages[b.package_id], b.build_key, b.recipe_repo,
                              b.recipe_commit, b.recipe_path, b.builder, b.started, b.finished,
                              tuple((i.name, i.version, i.digest) for i in b.inputs))
                             for b in session.scalars(select(Build))),
            "provenance": sorted((p.subject, p.bundle, p.signer, p.verified)
                                 for p in session.scalars(select(Provenance))),
            "images": sorted((i.repository, i.tag, i.digest, i.name, i.version,
                              tuple((p.name, p.version, p.fileset, p.overridden)
                                    for p in i.packages))
                             for i in session.scalars(select(Image))),
        }


def _tag_exists(farm: PostgresFarm, name: str, tag: str) -> bool:
    from master.publishing import client, registry_config

    registry = client(farm.config)
    try:
        repository = registry_config(farm.config).locate(name).repository
        return registry.manifest_exists(repository, tag) is not None
    finally:
        registry.close()


def _wait_for_log(farm: PostgresFarm, buildid: int, step: str, text: str) -> str:
    found: list[str] = []

    def has() -> bool:
        steps = (api(farm.config, f"builds/{buildid}/steps") or {}).get("steps", [])
        for item in steps:
            if item["name"] != step:
                continue
            logs = (api(farm.config, f"steps/{item['stepid']}/logs") or {}).get("logs", [])
            for entry in logs:
                content = _raw_log(farm, entry["logid"])
                if text in content:
                    found.append(content)
                    return True
        return False

    _wait(has, f"{text!r} in the {step} step's log")
    return found[0]


def _raw_log(farm: PostgresFarm, logid: int) -> str:
    """A log as far as it is written; "" while the master cannot answer (it is polled)."""
    import urllib.request

    try:
        with urllib.request.urlopen(f"{farm.config.www_url}api/v2/logs/{logid}/raw",
                                    timeout=10) as response:
            return str(response.read().decode())
    except OSError:
        return ""


def _wait(ready: Any, what: str, timeout: float = TIMEOUT) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = ready()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")
