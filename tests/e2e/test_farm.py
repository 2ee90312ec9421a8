"""The farm end to end: a real Buildbot master and two real workers on loopback (started
as processes, stopped by PID), Debian's docker-registry, a bare recipe repository with
its post-receive hook, pushes from a maintainer's clone; consumers verify from empty
stores. Few, rich scenarios: each push costs a plan and its builds."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from master.lifecycle import (
    InitOptions,
    api,
    connected_workers,
    init_farm,
    kill_master,
    kill_worker,
    package_builds,
    start_farm,
    start_master,
    stop_farm,
    wait_for_commit,
    worker_names,
)
from master.publishing import plan_tag
from tests.conftest import REPO, run_kiln_process
from tests.fixtures.farms import PLAN_TIMEOUT, SHELL, Farm, recipe
from tests.fixtures.keys import write_key
from tests.fixtures.packages import ensure_apt_lists
from tests.fixtures.registry import free_port, run_registry

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("bwrap") is None,
                       reason="the farm's builds need root and bubblewrap"),
    pytest.mark.slow,
]

@pytest.fixture(scope="module")
def farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Farm]:
    ensure_apt_lists()
    root = tmp_path_factory.mktemp("farm")
    seed = root / "seed"
    seed.mkdir()
    shutil.copy(REPO / "recipes" / "kiln.lock", seed / "kiln.lock")
    recipe(seed, "base", "mkdir -p /out/usr/share/base; echo base > /out/usr/share/base/d",
           SHELL)
    recipe(seed, "mid", "mkdir -p /out/usr/share/mid; cat /usr/share/base/d >"
                        " /out/usr/share/mid/d", [*SHELL, "kiln.dev/base"])
    recipe(seed, "top", "cat /usr/share/mid/d > /out/copied", [*SHELL, "kiln.dev/mid"])
    recipe(seed, "beside", "echo beside > /out/beside", SHELL)
    with run_registry(root / "registry") as registry:
        directory = root / "farm"
        # Scheduling, failures and crashes, one build a package: the gate's N builds
        # are tests/e2e/test_gate.py's.
        config = init_farm(directory, InitOptions(
            workers=2, registry=registry.host, seed=seed, www_port=free_port(),
            pb_port=free_port(), builds=1))
        try:
            start_farm(directory)
            clone = root / "clone"
            subprocess.run(["git", "clone", "-q", config.recipes_url, str(clone)], check=True)
            yield Farm(config, directory, registry, clone)
        finally:
            stopped = stop_farm(directory)
            assert "master" in stopped


def test_a_push_builds_the_change_and_its_dependants_in_waves_signed_and_verifiable(
        farm: Farm, tmp_path: Path) -> None:
    # The first push of a farm builds everything; its base then changes.
    commit = farm.push({"base": ("mkdir -p /out/usr/share/base; echo base 2 >"
                                 " /out/usr/share/base/d", SHELL)}, "base 2")
    build, plan = farm.plan_of(commit)
    assert build["results"] == 0, build["state_string"]
    assert plan["waves"] == [["kiln.dev/base", "kiln.dev/beside"], ["kiln.dev/mid"],
                             ["kiln.dev/top"]]
    builds = farm.builds_of(plan)
    assert set(builds) == {"kiln.dev/base", "kiln.dev/beside", "kiln.dev/mid", "kiln.dev/top"}
    for name, found in builds.items():
        assert [b["results"] for b in found] == [0], (name, found)
    only = {name: found[0] for name, found in builds.items()}
    # A wave starts when the packages it needs are published.
    assert only["kiln.dev/base"]["complete_at"] <= only["kiln.dev/mid"]["started_at"]
    assert only["kiln.dev/mid"]["complete_at"] <= only["kiln.dev/top"]["started_at"]
    names = worker_names(farm.config)
    assert {names[only[n]["workerid"]] for n in only} <= {"w1", "w2"}  # never the local one

    # A consumer with an empty store verifies what the farm published, by its key.
    env = {"KILN_REGISTRIES": str(farm.directory / "registries.yaml")}
    verified = run_kiln_process(tmp_path / "consumer", "verify", "kiln.dev/top@1", "--key",
                                farm.directory / "keys" / "farm.pub", "--json", env=env)
    assert verified.returncode == 0, verified.stderr
    report = json.loads(verified.stdout)
    assert report["builder"] == "https://kiln.dev/builders/farm"
    assert report["reproducedBy"] == [names[only["kiln.dev/top"]["workerid"]]]  # 1 of 1
    refuse_built_once(farm, tmp_path, env)
    pulled = run_kiln_process(tmp_path / "consumer", "fileset", "materialize",
                              "kiln.dev/top@1", tmp_path / "top", env=env)
    assert pulled.returncode == 0, pulled.stderr
    assert (tmp_path / "top" / "copied").read_text() == "base 2\n"

    status = run_kiln_process(tmp_path / "status", "farm", "status", farm.directory, "--json")
    assert status.returncode == 0, status.stderr
    shown = json.loads(status.stdout)
    assert set(shown["workers"]) == {"master-local", "w1", "w2"}
    assert shown["last_plan"]["waves"] == plan["waves"]
    assert shown["console"] == farm.config.www_url

    # Substitution: a laptop with an empty store asks for the same build key and gets
    # the farm's package, verified, instead of building (no toolchain, no sandbox).
    substituted = run_kiln_process(tmp_path / "laptop", "build", "top", "--recipes",
                                   farm.clone / "recipes", "--key",
                                   farm.directory / "keys" / "farm.pub", "--json", env=env)
    assert substituted.returncode == 0, substituted.stderr
    outcome = json.loads(substituted.stdout)
    assert outcome["substituted"] is True
    assert outcome["output"]["digest"] == report["digest"]
    assert not (tmp_path / "laptop" / "cache" / "builds").exists()  # nothing was built
    # Trusting another key, the farm's packages are refused, not taken.
    _, other_key = write_key(tmp_path, "other")
    refused = run_kiln_process(tmp_path / "laptop2", "build", "top", "--recipes",
                               farm.clone / "recipes", "--key", other_key, env=env)
    assert refused.returncode == 1
    assert "[untrusted-signer]" in refused.stderr

    # The key never reaches a worker: not its files, its environment, a property, a log.
    key = (farm.directory / "keys" / "farm.pem").read_bytes()
    secret = key.split(b"\n")[1]
    for worker in ("w1", "w2"):
        for path in (farm.directory / f"worker-{worker}").rglob("*"):
            if path.is_file() and not path.is_symlink():
                assert secret not in path.read_bytes(), path
        pid = int((farm.directory / "run" / f"worker-{worker}.pid").read_text())
        assert secret not in Path(f"/proc/{pid}/environ").read_bytes()
        assert b"farm.pem" not in Path(f"/proc/{pid}/environ").read_bytes()
    for log in (farm.directory / "run").glob("worker-*.log"):
        assert secret not in log.read_bytes()
    for found in builds.values():
        assert "farm.pem" not in json.dumps(found[0]["properties"])
        assert secret.decode() not in json.dumps(found[0]["properties"])


def refuse_built_once(farm: Farm, tmp_path: Path, env: dict[str, str]) -> None:
    """A consumer who demands two independent builds refuses a package built once."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"trust:\n  - prefix: kiln.dev/\n    keys: [{farm.directory}/keys/farm.pub]"
                      "\nreproduced: 2\n")
    refused = run_kiln_process(tmp_path / "strict", "verify", "kiln.dev/top@1", "--policy",
                               policy, env=env)
    assert refused.returncode == 1, refused.stderr
    assert "reproduced by 1 builder;" in refused.stderr
    assert "[not-reproduced]" in refused.stderr


def test_a_failure_skips_only_its_dependants_and_a_published_change_builds_nothing(
        farm: Farm) -> None:
    commit = farm.push({"mid": ("echo 'mid.c:1: broken' >&2; exit 1",
                                [*SHELL, "kiln.dev/base"]),
                        "beside": ("echo beside 2 > /out/beside", SHELL)},
                       "mid breaks, beside changes")
    build, plan = farm.plan_of(commit)
    assert build["results"] != 0  # the plan says not everything was published
    assert plan["waves"] == [["kiln.dev/beside", "kiln.dev/mid"], ["kiln.dev/top"]]
    builds = farm.builds_of(plan)
    assert builds["kiln.dev/beside"][0]["results"] == 0
    assert builds["kiln.dev/mid"][0]["results"] == 2
    # The failed build's whole log is kept, and the console shows it.
    steps = api(farm.config, f"builds/{builds['kiln.dev/mid'][0]['buildid']}/steps")
    assert steps is not None
    step = next(s for s in steps["steps"] if s["name"] == "build")
    logs = api(farm.config, f"steps/{step['stepid']}/logs") or {}
    log = logs["logs"][0]
    content = api(farm.config, f"logs/{log['logid']}/contents") or {}
    assert "mid.c:1: broken" in "".join(c["content"] for c in content["logchunks"])
    top = builds["kiln.dev/top"][0]
    assert top["results"] == 3  # SKIPPED
    assert top["properties"]["skipped"][0] == "kiln.dev/mid failed in wave 1"
    assert plan_tag(plan["keys"]["kiln.dev/top"]) not in farm.tags("kiln.dev/top")
    assert plan_tag(plan["keys"]["kiln.dev/mid"]) not in farm.tags("kiln.dev/mid")
    assert plan_tag(plan["keys"]["kiln.dev/beside"]) in farm.tags("kiln.dev/beside")

    # A push that changes no recipe's inputs builds nothing.
    quiet = farm.push({}, "a note for maintainers", files={"README": "recipes live here\n"})
    build, plan = farm.plan_of(quiet)
    assert plan["waves"] == [["kiln.dev/mid"], ["kiln.dev/top"]]  # still failing: retried
    assert set(farm.builds_of(plan)) <= {"kiln.dev/mid", "kiln.dev/top"}
    fixed = farm.push({"mid": ("mkdir -p /out/usr/share/mid; cat /usr/share/base/d >"
                               " /out/usr/share/mid/d", [*SHELL, "kiln.dev/base"])}, "mid fixed")
    build, plan = farm.plan_of(fixed)
    assert build["results"] == 0, build["state_string"]
    nothing = farm.push({}, "another note", files={"README": "recipes live here, still\n"})
    build, plan = farm.plan_of(nothing)
    assert build["results"] == 0
    assert plan["waves"] == []
    assert farm.builds_of(plan) == {}


def test_maintainers_force_rebuilds_with_a_login_and_anonymous_users_cannot(
        farm: Farm, tmp_path: Path) -> None:
    import urllib.error
    import urllib.parse
    import urllib.request

    # Anonymous: refused.
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "force",
                       "params": {"builderid": "1", "package": "kiln.dev/base"}}).encode()
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(urllib.request.Request(
            f"{farm.config.www_url}api/v2/forceschedulers/rebuild", data=body,
            headers={"Content-Type": "application/json"}), timeout=10)
    assert refused.value.code == 403
    # Nor may anyone post a change without the hook's login.
    change = urllib.parse.urlencode({"revision": "0" * 40, "branch": "main"}).encode()
    with pytest.raises(urllib.error.HTTPError) as anonymous:
        urllib.request.urlopen(f"{farm.config.www_url}change_hook/base", data=change,
                               timeout=10)
    assert anonymous.value.code == 401
    # A maintainer: the package alone, then with what builds with it.
    alone = run_kiln_process(tmp_path, "farm", "rebuild", farm.directory,
                             "kiln.dev/beside", "--wait", "240", "--json")
    assert alone.returncode == 0, alone.stderr
    assert json.loads(alone.stdout)["waves"] == [["kiln.dev/beside"]]
    chain = run_kiln_process(tmp_path, "farm", "rebuild", farm.directory,
                             "kiln.dev/base", "--dependents", "--wait", "240", "--json")
    assert chain.returncode == 0, chain.stderr
    assert json.loads(chain.stdout)["waves"] == [["kiln.dev/base"], ["kiln.dev/mid"],
                                                 ["kiln.dev/top"]]


def test_a_repository_the_farm_does_not_host_is_polled(farm: Farm, tmp_path: Path) -> None:
    # A second farm, for a repository elsewhere (no hook of the farm's in it): its
    # GitPoller finds each push on its own. It shares the first farm's registry.
    upstream = tmp_path / "elsewhere.git"
    subprocess.run(["git", "init", "-q", "--bare", "--initial-branch=main", str(upstream)],
                   check=True)
    work = tmp_path / "work"
    (work / "recipes").mkdir(parents=True)
    shutil.copy(REPO / "recipes" / "kiln.lock", work / "recipes" / "kiln.lock")
    recipe(work / "recipes", "polled", "echo polled 1 > /out/polled", SHELL)
    git = ["git", "-C", str(work), "-c", "user.name=m", "-c", "user.email=m@kiln.invalid"]
    subprocess.run(["git", "init", "-q", "--initial-branch=main", str(work)], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "first"], check=True)
    subprocess.run([*git, "push", "-q", str(upstream), "main"], check=True, capture_output=True)
    directory = tmp_path / "polling-farm"
    config = init_farm(directory, InitOptions(
        workers=1, registry=farm.registry.host, recipes=str(upstream), www_port=free_port(),
        pb_port=free_port(), poll=1))
    assert not (upstream / "hooks" / "post-receive").exists()  # not the farm's to change
    try:
        start_farm(directory)
        time.sleep(3)  # a GitPoller's first poll only records where the branch stands
        # Two pushes, a moment apart: should the first poll come late and take the first
        # as its starting point, the second is still news to it.
        for edition in (2, 3):
            recipe(work / "recipes", "polled", f"echo polled {edition} > /out/polled", SHELL)
            subprocess.run([*git, "commit", "-qam", f"edition {edition}"], check=True)
            subprocess.run([*git, "push", "-q", str(upstream), "main"], check=True,
                           capture_output=True)
            time.sleep(2)
        commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True,
                                check=True).stdout.strip()
        build = wait_for_commit(config, commit, PLAN_TIMEOUT)
        assert build["results"] == 0, build["state_string"]
        assert json.loads(build["properties"]["plan"][0])["waves"] == [["kiln.dev/polled"]]
    finally:
        stop_farm(directory)


def test_a_master_killed_mid_plan_publishes_nothing_twice_once_planned_again(
        farm: Farm) -> None:
    commit = farm.push({"base": ("sleep 6; mkdir -p /out/usr/share/base; echo base 3 >"
                                 " /out/usr/share/base/d", SHELL),
                        "beside": ("echo beside 4 > /out/beside", SHELL)},
                       "base takes its time, beside does not")
    deadline = time.monotonic() + PLAN_TIMEOUT
    state: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        state = {b["properties"]["package"][0]: b for b in package_builds(farm.config)
                 if b["properties"].get("commit", [""])[0] == commit}
        if state.get("kiln.dev/beside", {}).get("results") == 0 and \
                "kiln.dev/base" in state and not state["kiln.dev/base"]["complete"]:
            break
        time.sleep(0.2)
    assert state["kiln.dev/beside"]["results"] == 0, state
    kill_master(farm.directory)  # mid-plan: base building, mid and top not started
    start_master(farm.directory)
    deadline = time.monotonic() + 60
    while not {"master-local"} < connected_workers(farm.config):
        assert time.monotonic() < deadline, "no worker came back to the new master"
        time.sleep(0.5)

    again = farm.push({}, "after the master's crash", files={"README": "crashed once\n"})
    build, plan = farm.plan_of(again)
    assert build["results"] == 0, build["state_string"]
    assert "kiln.dev/beside" in plan["published"]  # published before the crash: kept
    key = plan["keys"]["kiln.dev/base"]
    # Whatever Buildbot did with the interrupted build, base was published once.
    published = [b for b in package_builds(farm.config)
                 if b["properties"].get("plan_key", [""])[0] == key and b["results"] == 0
                 and not b["properties"].get("skipped")]
    assert len(published) == 1, published
    for name in ("kiln.dev/mid", "kiln.dev/top"):
        assert plan_tag(plan["keys"][name]) in farm.tags(name)


def test_a_worker_killed_mid_build_is_retried_elsewhere_and_published_once(
        farm: Farm) -> None:
    commit = farm.push({"beside": ("sleep 6; echo beside 3 > /out/beside", SHELL)},
                       "beside takes its time")
    deadline = time.monotonic() + PLAN_TIMEOUT
    victim = None
    while victim is None and time.monotonic() < deadline:
        for build in package_builds(farm.config):
            if build["properties"].get("package", [None])[0] == "kiln.dev/beside" \
                    and not build["complete"] and build["properties"].get("commit", [""])[0] \
                    == commit:
                victim = build
        time.sleep(0.2)
    assert victim is not None
    time.sleep(1.5)  # inside the build step
    name = worker_names(farm.config)[victim["workerid"]]
    assert name in ("w1", "w2")
    kill_worker(farm.directory, name)
    build, plan = farm.plan_of(commit)
    assert build["results"] == 0, build["state_string"]
    attempts = farm.builds_of(plan)["kiln.dev/beside"]
    assert sorted(b["results"] for b in attempts) == [0, 4] or \
        sorted(b["results"] for b in attempts) == [0, 5]  # EXCEPTION or RETRY, then success
    survivor = next(b for b in attempts if b["results"] == 0)
    assert survivor["workerid"] != victim["workerid"]
    assert plan_tag(plan["keys"]["kiln.dev/beside"]) in farm.tags("kiln.dev/beside")
