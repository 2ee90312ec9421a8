"""The reproducibility gate end to end: a real master and two real workers, the farm's
default of 2 of 2 builds, each package built on both workers under different
variations. hello and zlib (Debian's sources) pass it; recipes that write the date,
a random value, the build path or the host name fail it, nothing of theirs is
published, and diffoscope's report names the file; a recipe that declares itself
not reproducible is published built once, marked so, where farm.yaml allows it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kiln.registry.naming import version_to_tag
from master.config import load_farm
from master.lifecycle import (
    InitOptions,
    api,
    init_farm,
    kill_worker,
    package_builds,
    start_farm,
    start_worker,
    stop_farm,
    worker_names,
)
from master.publishing import client, plan_tag, registry_config
from provenance.bundle import parse_bundle
from provenance.registry import fetch_bundles
from tests.conftest import REPO, run_kiln_process
from tests.fixtures.farms import PLAN_TIMEOUT, SHELL, Farm, recipe
from tests.fixtures.packages import ensure_apt_lists
from tests.fixtures.registry import free_port, run_registry

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("bwrap") is None,
                       reason="the farm's builds need root and bubblewrap"),
    pytest.mark.skipif(shutil.which("diffoscope") is None,
                       reason="the gate's report needs Debian's diffoscope (./dev installs it)"),
    pytest.mark.slow,
]

# Each writes what must not matter into /out/stamp: the gate's second build differs.
HOSTILE = {
    "stamp-date": "date +%F > /out/stamp",
    "stamp-random": "od -An -N16 -tx1 /dev/urandom > /out/stamp",
    "stamp-path": "pwd > /out/stamp",
    "stamp-host": "uname -n > /out/stamp",
}
DECLARED = "writes the day it was built into /stamp (upstream's build does)"
# Split recipes: one whose two packages both reproduce, one whose split-off package
# differs between builds while the recipe's own package does not.
SPLIT = {
    "split-ok": ("mkdir -p /out/usr/bin /out/usr/share/doc/split-ok; echo tool > /out/usr/bin/tool;"
                 " echo doc > /out/usr/share/doc/split-ok/README", "split-ok-doc",
                 "usr/share/doc/*"),
    "split-differs": ("mkdir -p /out/usr/share/extra; echo same > /out/same;"
                      " od -An -N16 -tx1 /dev/urandom > /out/usr/share/extra/stamp",
                      "split-differs-extra", "usr/share/extra/*"),
}


@pytest.fixture(scope="module")
def farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Farm]:
    ensure_apt_lists()
    root = tmp_path_factory.mktemp("gate")
    seed = root / "seed"
    shutil.copytree(REPO / "recipes", seed, ignore=shutil.ignore_patterns("greet"))
    for name, build in HOSTILE.items():
        recipe(seed, name, build, SHELL)
    recipe(seed, "on-date", "echo on > /out/on", [*SHELL, "kiln.dev/stamp-date"])
    recipe(seed, "declared", "date +%F > /out/stamp", SHELL)
    with (seed / "declared" / "recipe.yaml").open("a") as file:
        file.write(f"not-reproducible: {json.dumps(DECLARED)}\n")
    for name, (build, output, paths) in SPLIT.items():
        recipe(seed, name, build, SHELL)
        with (seed / name / "recipe.yaml").open("a") as file:
            file.write(f"outputs:\n  - {{name: kiln.dev/{output}, paths: [{json.dumps(paths)}]}}\n")
    with run_registry(root / "registry") as registry:
        directory = root / "farm"
        config = init_farm(directory, InitOptions(
            workers=2, registry=registry.host, seed=seed, www_port=free_port(),
            pb_port=free_port()))
        assert config.reproducibility.default.describe() == "2 of 2"  # the default
        # The farm's policy publishes what declares itself not reproducible (marked).
        settings = json.loads((directory / "farm.yaml").read_text())
        settings["reproducibility"] = {"allow-unreproducible": "true"}
        (directory / "farm.yaml").write_text(json.dumps(settings))
        assert load_farm(directory).reproducibility.allow_unreproducible
        try:
            start_farm(directory)
            clone = root / "clone"
            subprocess.run(["git", "clone", "-q", config.recipes_url, str(clone)], check=True)
            yield Farm(load_farm(directory), directory, registry, clone)
        finally:
            stop_farm(directory)


def statement_of(farm: Farm, name: str, version: str) -> dict[str, object]:
    """The statement the farm signed for name@version, read from its bundle."""
    location = registry_config(farm.config).locate(name).repository
    registry = client(farm.config)
    try:
        digest = registry.manifest_exists(location, version_to_tag(version))
        assert digest is not None, f"{name}@{version} is not published"
        bundles = fetch_bundles(registry, location, digest)
    finally:
        registry.close()
    assert len(bundles) == 1
    payload = parse_bundle(bundles[0], "the bundle").envelope.payload
    statement: dict[str, object] = json.loads(payload)
    return statement


def test_reproducible_packages_pass_the_gate_and_unreproducible_ones_publish_nothing(
        farm: Farm, tmp_path: Path) -> None:
    commit = farm.push({}, "the gate's first plan", files={"README": "gated\n"})
    build, plan = farm.plan_of(commit)
    assert build["results"] != 0  # not everything was published, and the plan says so
    builds = farm.builds_of(plan)
    env = {"KILN_REGISTRIES": str(farm.directory / "registries.yaml")}
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"trust:\n  - prefix: kiln.dev/\n    keys: [{farm.directory}/keys/farm.pub]"
                      "\nreproduced: 2\n")

    # hello and zlib: two builds each, one on each worker, both agreeing; published once.
    for name, version in (("kiln.dev/hello", "2.10-1"), ("kiln.dev/zlib", "1.2.13-1")):
        check_reproduced(farm, plan, builds[name], name, version, tmp_path, policy, env)

    # Each hostile recipe: both builds ran, the gate refused, nothing is published,
    # and the report names the file that differs.
    for name in HOSTILE:
        check_refused(farm, plan, builds[f"kiln.dev/{name}"], f"kiln.dev/{name}")

    # What builds with a refused package is skipped, saying why.
    on_date = builds["kiln.dev/on-date"]
    assert {b["results"] for b in on_date} == {3}  # SKIPPED, both attempts
    assert on_date[0]["properties"]["skipped"][0] == (
        "kiln.dev/stamp-date was not reproduced in wave 1")

    # Declared not reproducible, and allowed: built once, published, marked.
    declared = builds["kiln.dev/declared"]
    assert [b["results"] for b in declared] == [0]
    statement = statement_of(farm, "kiln.dev/declared", "1")
    predicate = statement["predicate"]
    assert isinstance(predicate, dict)
    assert predicate["buildDefinition"]["internalParameters"]["reproducibility"] == {
        "builds": 1, "agree": 1, "agreed": 1, "notReproducible": DECLARED}
    strict = run_kiln_process(tmp_path / "consumer", "verify", "kiln.dev/declared@1",
                              "--policy", policy, env=env)
    assert strict.returncode == 1
    assert "[not-reproduced]" in strict.stderr
    assert "declared not reproducible" in strict.stderr

    check_split(farm, plan, builds, tmp_path, policy, env)

    # The console: a package page says who reproduced it; a refused one, why not.
    dashboard = f"{farm.config.www_url}plugins/wsgi_dashboards/kiln/"
    with urllib.request.urlopen(f"{dashboard}packages/kiln.dev/hello", timeout=10) as page:
        html = page.read().decode()
    assert "reproduced by 2 builds (w1, w2)" in html or "reproduced by 2 builds (w2, w1)" in html
    with urllib.request.urlopen(f"{dashboard}packages/kiln.dev/declared", timeout=10) as page:
        assert "declared not reproducible" in page.read().decode()
    with urllib.request.urlopen(f"{dashboard}packages/kiln.dev/stamp-path", timeout=10) as page:
        html = page.read().decode()
    assert "not reproduced" in html
    assert "packages/kiln.dev/stamp-path/1/stamp" in html  # the report, or its summary


def check_reproduced(farm: Farm, plan: dict[str, Any], attempts: list[dict[str, Any]],
                     name: str, version: str, tmp_path: Path, policy: Path,
                     env: dict[str, str]) -> None:
    """Two agreeing builds on two workers, named in the provenance; a strict consumer
    takes the package."""
    names = worker_names(farm.config)
    assert sorted(b["properties"]["attempt"][0] for b in attempts) == [1, 2], name
    assert [b["results"] for b in attempts] == [0, 0], (name, attempts)
    assert {names[b["workerid"]] for b in attempts} == {"w1", "w2"}, name
    assert plan_tag(plan["keys"][name]) in farm.tags(name)
    statement = statement_of(farm, name, version)
    predicate = statement["predicate"]
    assert isinstance(predicate, dict)
    reproduced = [b for b in predicate["runDetails"]["byproducts"]
                  if b["name"] == "kiln.dev/reproduced-build"]
    assert sorted(b["annotations"]["worker"] for b in reproduced) == ["w1", "w2"]
    assert len({b["digest"]["sha256"] for b in reproduced}) == 2  # two records
    assert predicate["buildDefinition"]["internalParameters"]["reproducibility"] == {
        "builds": 2, "agree": 2, "agreed": 2}
    # A consumer who asks for two independent builds takes it.
    verified = run_kiln_process(tmp_path / "consumer", "verify", f"{name}@{version}",
                                "--policy", policy, "--json", env=env)
    assert verified.returncode == 0, verified.stderr
    assert json.loads(verified.stdout)["reproducedBy"] == ["w1", "w2"]


def check_split(farm: Farm, plan: dict[str, Any], builds: dict[str, list[dict[str, Any]]],
                tmp_path: Path, policy: Path, env: dict[str, str]) -> None:
    """A split recipe is gated whole: both packages reproduced, each published, signed
    and verified on its own; one whose split-off package differs publishes neither,
    and the report names the file of that package."""
    for name in ("kiln.dev/split-ok", "kiln.dev/split-ok-doc"):
        assert "1" in farm.tags(name), name
        assert plan_tag(plan["keys"]["kiln.dev/split-ok"]) in farm.tags(name)
        verified = run_kiln_process(tmp_path / "consumer", "verify", f"{name}@1",
                                    "--policy", policy, "--json", env=env)
        assert verified.returncode == 0, verified.stderr
    internal = statement_of(farm, "kiln.dev/split-ok-doc", "1")["predicate"][  # type: ignore[index]
        "buildDefinition"]["internalParameters"]
    assert internal["splitFrom"] == "kiln.dev/split-ok"
    assert internal["outputs"] == ["kiln.dev/split-ok", "kiln.dev/split-ok-doc"]
    for name in ("kiln.dev/split-differs", "kiln.dev/split-differs-extra"):
        assert "1" not in farm.tags(name), name
    attempts = builds["kiln.dev/split-differs"]
    assert len(attempts) == 2
    refused = [step for b in attempts for step in
               (api(farm.config, f"builds/{b['buildid']}/steps") or {})["steps"]
               if step["name"] == "gate" and step["results"] == 2]
    assert len(refused) == 1
    assert ("differs in packages/kiln.dev/split-differs-extra/1/usr/share/extra/stamp"
            in refused[0]["state_string"])
    dashboard = f"{farm.config.www_url}plugins/wsgi_dashboards/kiln/"
    with urllib.request.urlopen(f"{dashboard}packages/kiln.dev/split-ok-doc", timeout=10) as page:
        assert "reproduced by 2 builds" in page.read().decode()


def check_refused(farm: Farm, plan: dict[str, Any], attempts: list[dict[str, Any]],
                  package: str) -> None:
    """Both builds ran; the gate refused once; no tag; diffoscope's report names /stamp."""
    assert len(attempts) == 2, package
    assert plan_tag(plan["keys"][package]) not in farm.tags(package)
    assert "1" not in farm.tags(package)  # no version tag either
    gate_steps = [step for b in attempts for step in
                  (api(farm.config, f"builds/{b['buildid']}/steps") or {})["steps"]
                  if step["name"] == "gate"]
    refused = [s for s in gate_steps if s["results"] == 2]
    assert len(refused) == 1, gate_steps  # the second build to end refused, once
    assert f"differs in packages/{package}/1/stamp" in refused[0]["state_string"]
    logs = api(farm.config, f"steps/{refused[0]['stepid']}/logs") or {}
    report_log = next(log for log in logs["logs"] if log["name"] == "diffoscope")
    content = api(farm.config, f"logs/{report_log['logid']}/contents") or {}
    report = "".join(chunk["content"] for chunk in content["logchunks"])
    assert f"packages/{package}/1/stamp" in report
    assert "first.tar" in report  # diffoscope's own report follows Kiln's summary



def test_a_worker_lost_mid_build_is_built_again_on_a_worker_of_its_own(farm: Farm) -> None:
    """A gate's worker dies mid-build: its attempt is not counted, is not built again on
    the worker that built the other attempt, and once its host is back the package is
    published once, reproduced by both workers."""
    # The unreproducible recipes go: what this plan builds is the slow one alone.
    commit = farm.push({"slow": ("sleep 6; echo slow > /out/slow", SHELL)}, "a slow recipe",
                       remove=(*HOSTILE, "on-date", "split-differs"))
    deadline = time.monotonic() + PLAN_TIMEOUT
    running: list[dict[str, Any]] = []
    while len(running) < 2 and time.monotonic() < deadline:
        running = [b for b in package_builds(farm.config)
                   if b["properties"].get("commit", [""])[0] == commit
                   and b["properties"]["package"][0] == "kiln.dev/slow" and not b["complete"]]
        time.sleep(0.2)
    assert len(running) == 2, "both builds of the gate run side by side"
    time.sleep(1.5)  # inside the build step
    names = worker_names(farm.config)
    victim = running[0]
    lost, survivor = names[victim["workerid"]], names[running[1]["workerid"]]
    kill_worker(farm.directory, lost)
    # The survivor ends its own build; the lost one must not be built again beside it.
    time.sleep(10)
    again = [b for b in package_builds(farm.config)
             if b["properties"].get("gate") == victim["properties"]["gate"]
             and b["properties"]["attempt"] == victim["properties"]["attempt"]
             and b["buildid"] != victim["buildid"]]
    assert all(names.get(b["workerid"]) != survivor for b in again), again
    assert "1" not in farm.tags("kiln.dev/slow")  # one build agrees with itself only
    start_worker(farm.directory, lost)  # its host came back

    build, plan = farm.plan_of(commit)
    assert build["results"] == 0, build["state_string"]
    attempts = farm.builds_of(plan)["kiln.dev/slow"]
    assert sorted(b["results"] for b in attempts) in ([0, 0, 4], [0, 0, 5])  # a retry
    assert {names[b["workerid"]] for b in attempts if b["results"] == 0} == {"w1", "w2"}
    predicate = statement_of(farm, "kiln.dev/slow", "1")["predicate"]
    assert isinstance(predicate, dict)
    assert sorted(b["annotations"]["worker"] for b in predicate["runDetails"]["byproducts"]
                  if b["name"] == "kiln.dev/reproduced-build") == ["w1", "w2"]
