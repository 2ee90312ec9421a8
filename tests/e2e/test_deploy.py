"""The deployment for real: ansible-playbook deploys a farm onto three Debian 12 hosts
this test makes (tests/fixtures/hosts.py: podman containers booting systemd as PID 1 on
a debootstrapped root, on a bridge network of their own), through the roles' production
path: apt, systemd units, restarts. Then the farm's scenario runs across them: a
maintainer pushes, the master on one host plans, the worker on another builds, the
registry and PostgreSQL on a third keep what was published, and a consumer on this
machine verifies it. A second run changes nothing; a worker added to the inventory joins
without the first being touched."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from master.config import FarmConfig, load_farm
from master.lifecycle import (
    connected_workers,
    package_builds,
    wait_for_commit,
    worker_names,
)
from tests.conftest import REPO, run_kiln_process
from tests.fixtures.farms import BASE, PLAN_TIMEOUT, SHELL, TOP, push, seed
from tests.fixtures.hosts import Hosts, debian_hosts

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0 or not all(shutil.which(tool) for tool in (
        "podman", "debootstrap")), reason="the test hosts need root, podman and debootstrap"),
    pytest.mark.slow,
    pytest.mark.timeout(2400),
]

PLAYBOOK = REPO / "ansible" / "site.yml"
# Which groups each test host is in: the database and the registry share one.
GROUPS = {"kiln-data": ("database", "registry"), "kiln-master": ("master",),
          "kiln-w1": ("workers",)}
FARM_DIR = "/srv/kiln/farm"


def test_ansible_deploys_a_farm_across_hosts_that_builds_and_publishes(tmp_path: Path) -> None:
    with debian_hosts() as hosts:
        _start(hosts, list(GROUPS))
        secrets = tmp_path / "secrets"
        made = run_kiln_process(tmp_path / "keystore", "key", "generate", secrets,
                                "--name", "farm")
        assert made.returncode == 0, made.stderr
        recipes = seed(tmp_path / "seed", {"base": BASE, "top": TOP})
        inventory = _inventory(tmp_path, hosts, GROUPS, secrets, recipes)

        first = _playbook(inventory)
        assert first.returncode == 0, first.stdout[-6000:]

        # Every service runs under systemd on its own host.
        for host, unit in (("kiln-data", "postgresql"), ("kiln-data", "docker-registry"),
                           ("kiln-master", "kiln-master"), ("kiln-master", "kiln-master-worker"),
                           ("kiln-master", "kiln-git-daemon"), ("kiln-w1", "kiln-worker")):
            state = hosts.run(host, ["systemctl", "is-active", unit], check=False)
            assert state.stdout.strip() == "active", (host, unit, state.stdout)
        _the_key_is_on_the_master_only(hosts, secrets)
        _the_database_lets_in_the_master_only(hosts, secrets)
        _the_registry_asks_for_tls_and_a_login(hosts, secrets)

        # A maintainer's push is planned on the master, built on the worker, published.
        farm = _farm_seen_from_here(hosts, tmp_path)
        clone = tmp_path / "clone"
        subprocess.run(["git", "clone", "-q", farm.recipes_url.replace(
            "kiln-master", hosts.address("kiln-master")), str(clone)], check=True)
        # Pushes reach the master host as ssh would bring them; the git daemon only reads.
        subprocess.run(["git", "-C", str(clone), "remote", "set-url", "--push", "origin",
                        f"ext::podman exec -i {hosts.container('kiln-master')} %S"
                        f" {FARM_DIR}/recipes.git"], check=True)
        subprocess.run(["git", "-C", str(clone), "config", "protocol.ext.allow", "always"],
                       check=True)
        commit = push(clone, {"base": ("mkdir -p /out/usr/share/base; echo deployed >"
                                       " /out/usr/share/base/d", SHELL)}, "base, deployed")
        build = wait_for_commit(farm, commit, PLAN_TIMEOUT)
        assert build["results"] == 0, build["state_string"]
        plan = json.loads(build["properties"]["plan"][0])
        assert plan["waves"] == [["kiln.dev/base"], ["kiln.dev/top"]]
        names = worker_names(farm)
        built = [b for b in package_builds(farm)
                 if b["properties"].get("commit", [None])[0] == plan["commit"]]
        assert sorted(b["properties"]["package"][0] for b in built) == ["kiln.dev/base",
                                                                        "kiln.dev/top"]
        for found in built:
            assert found["results"] == 0, found
            assert names[found["workerid"]] == "kiln-w1"  # never the master's own worker

        # A consumer here, with the farm's public key from its console, the CA and a
        # login, verifies what the farm published and reads the change in it.
        key, env = _consumer(tmp_path, hosts, secrets, farm)
        verified = run_kiln_process(tmp_path / "consumer", "verify", "kiln.dev/top@1",
                                    "--key", key, "--json", env=env)
        assert verified.returncode == 0, verified.stderr
        assert json.loads(verified.stdout)["builder"] == "https://kiln.dev/builders/farm"
        pulled = run_kiln_process(tmp_path / "consumer", "fileset", "materialize",
                                  "kiln.dev/top@1", tmp_path / "top", env=env)
        assert pulled.returncode == 0, pulled.stderr
        assert (tmp_path / "top" / "copied").read_text() == "deployed\n"

        # Idempotent: a second run reports no change on any host.
        second = _playbook(inventory)
        assert second.returncode == 0, second.stdout[-6000:]
        assert _changed(second.stdout) == dict.fromkeys([*GROUPS, "localhost"], 0), \
            second.stdout[-6000:]

        # A host added to `workers` joins the farm; the first worker is not touched.
        before = _main_pid(hosts, "kiln-w1", "kiln-worker")
        _start(hosts, ["kiln-w2"])
        grown = _inventory(tmp_path, hosts, {**GROUPS, "kiln-w2": ("workers",)}, secrets,
                           recipes)
        third = _playbook(grown)
        assert third.returncode == 0, third.stdout[-6000:]
        assert _changed(third.stdout)["kiln-w1"] == 0, third.stdout[-6000:]
        assert _main_pid(hosts, "kiln-w1", "kiln-worker") == before
        assert {"kiln-w1", "kiln-w2"} <= connected_workers(farm)

        _a_new_kiln_rolls_out_without_killing_a_build(hosts, farm, clone, grown, tmp_path,
                                                      before)


def _a_new_kiln_rolls_out_without_killing_a_build(
        hosts: Hosts, farm: FarmConfig, clone: Path, inventory: Path, tmp_path: Path,
        worker_pid: str) -> None:
    """A new Kiln rolls out while a build runs, and the build is not killed: the master's
    stop waits for it (Buildbot's clean shutdown), then each worker in turn drains, is
    upgraded and starts again."""
    slow = push(clone, {"slow": ("sleep 40; echo slow > /out/slow", SHELL)}, "slow")
    running = _builds_of(farm, "kiln.dev/slow", started=True)
    upgraded = _playbook(inventory, "-e", f"farm_source={_changed_kiln(tmp_path)}")
    assert upgraded.returncode == 0, upgraded.stdout[-6000:]
    assert wait_for_commit(farm, slow, PLAN_TIMEOUT)["results"] == 0
    # Two workers: the gate's 2 of 2, one build on each, neither lost nor retried.
    done = _builds_of(farm, "kiln.dev/slow", started=False)
    assert [b["results"] for b in done] == [0, 0], done
    assert {b["buildid"] for b in running} <= {b["buildid"] for b in done}
    release = json.loads((REPO / ".state" / "wheelhouse" / "build.json").read_text())
    for host in ("kiln-master", "kiln-w1", "kiln-w2"):
        installed = hosts.run(host, ["cat", "/opt/kiln/venv/.release"]).stdout.strip()
        assert installed == release["release"], host
    assert _main_pid(hosts, "kiln-w1", "kiln-worker") != worker_pid
    stops = sorted(_restart_window(hosts, host) for host in ("kiln-w1", "kiln-w2"))
    assert stops[0][1] <= stops[1][0], stops  # one worker out at a time


def _start(hosts: Hosts, names: list[str]) -> None:
    """Boot hosts side by side (each waits for its systemd)."""
    failures: list[BaseException] = []

    def boot(name: str) -> None:
        try:
            hosts.start(name)
        except BaseException as exc:  # handed to the test's thread below
            failures.append(exc)

    threads = [threading.Thread(target=boot, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]


def _inventory(tmp_path: Path, hosts: Hosts, groups: dict[str, tuple[str, ...]],
               secrets: Path, recipes: Path) -> Path:
    """An inventory of the test hosts, reached through podman (no ssh in them)."""
    connection = {"ansible_connection": "containers.podman.podman",
                  "ansible_podman_extra_args": "--cgroup-manager=cgroupfs --runtime=runc",
                  "ansible_python_interpreter": "/usr/bin/python3"}
    children: dict[str, dict[str, dict[str, dict[str, str]]]] = {}
    for host, in_groups in groups.items():
        for group in in_groups:
            children.setdefault(group, {"hosts": {}})["hosts"][host] = {
                **connection, "ansible_host": hosts.container(host)}
    inventory = {"all": {
        "vars": {"farm_signing_key_file": str(secrets / "farm.pem"),
                 "farm_secrets_dir": str(secrets),
                 # Kept between runs: the dependencies' wheels are made once per pin set.
                 "farm_wheelhouse": str(REPO / ".state" / "wheelhouse"),
                 "master_seed_recipes": str(recipes)},
        "children": children}}
    path = tmp_path / f"inventory-{len(groups)}.yml"
    path.write_text(yaml.safe_dump(inventory))
    return path


def _playbook(inventory: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    tools = Path(sys.executable).parent
    return subprocess.run(
        [str(tools / "ansible-playbook"), "-i", str(inventory), *extra, str(PLAYBOOK)],
        capture_output=True, text=True, timeout=1800, check=False,
        env={**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible" / "ansible.cfg"),
             "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0",
             "PATH": f"{tools}:{os.environ['PATH']}"})


def _changed(output: str) -> dict[str, int]:
    """changed=N of every host in the play recap."""
    recap = output[output.rindex("PLAY RECAP"):]
    return {host: int(changed) for host, changed in
            re.findall(r"^(\S+)\s+:\s+ok=\d+\s+changed=(\d+)", recap, re.MULTILINE)}


def _builds_of(farm: FarmConfig, package: str, *, started: bool) -> list[dict[str, Any]]:
    """The builds of `package` once one has started (`started`), or once all finished."""
    deadline = time.monotonic() + PLAN_TIMEOUT
    while time.monotonic() < deadline:
        builds = [b for b in package_builds(farm)
                  if b["properties"].get("package", [None])[0] == package]
        if builds and (any(b["started_at"] for b in builds) if started
                       else all(b["complete"] for b in builds)):
            return builds
        time.sleep(0.5)
    raise AssertionError(f"no build of {package} {'started' if started else 'finished'}")


def _changed_kiln(tmp_path: Path) -> Path:
    """Kiln's sources with one comment more: another wheel, so another release."""
    source = tmp_path / "kiln-next"
    for name in ("kiln", "workers", "provenance", "master"):
        shutil.copytree(REPO / name, source / name,
                        ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "constraints.txt"):
        shutil.copyfile(REPO / name, source / name)
    with open(source / "kiln" / "__init__.py", "a") as module:
        module.write("# the next release\n")
    return source


def _restart_window(hosts: Hosts, host: str) -> tuple[float, float]:
    """When the worker's unit last began to stop (drain) and was running again
    (monotonic seconds: one clock for every host of this machine)."""
    shown = hosts.run(host, ["systemctl", "show", "kiln-worker", "-p",
                             "ActiveExitTimestampMonotonic",
                             "-p", "ActiveEnterTimestampMonotonic"]).stdout
    values = dict(line.split("=", 1) for line in shown.split())
    return (int(values["ActiveExitTimestampMonotonic"]) / 1e6,
            int(values["ActiveEnterTimestampMonotonic"]) / 1e6)


def _main_pid(hosts: Hosts, host: str, unit: str) -> str:
    return hosts.run(host, ["systemctl", "show", "-p", "MainPID", "--value", unit]).stdout.strip()


def _the_key_is_on_the_master_only(hosts: Hosts, secrets: Path) -> None:
    body = (secrets / "farm.pem").read_text().splitlines()[1]  # a line of the key itself
    places = ["/etc", "/srv", "/opt", "/root", "/var/lib", "/tmp"]
    on_master = hosts.run("kiln-master", ["grep", "-rlF", body, *places], check=False)
    assert on_master.stdout.split() == [f"{FARM_DIR}/keys/farm.pem"]
    mode = hosts.run("kiln-master", ["stat", "-c", "%a %U", f"{FARM_DIR}/keys/farm.pem"])
    assert mode.stdout.split() == ["600", "root"]
    for host in ("kiln-w1", "kiln-data"):
        found = hosts.run(host, ["grep", "-rlF", body, *places], check=False)
        assert found.stdout == "", (host, found.stdout)


def _the_database_lets_in_the_master_only(hosts: Hosts, secrets: Path) -> None:
    password = (secrets / "passwords" / "database-buildbot").read_text().strip()
    probe = ("import psycopg, sys\n"
             "try:\n"
             f"    psycopg.connect(host='kiln-data', dbname='buildbot', user='buildbot',"
             f" password={password!r}, connect_timeout=10).close()\n"
             "    print('connected')\n"
             "except psycopg.OperationalError as exc:\n"
             "    print(exc)\n")
    python = "/opt/kiln/venv/bin/python"
    assert hosts.run("kiln-master", [python, "-c", probe]).stdout.strip() == "connected"
    refused = hosts.run("kiln-w1", [python, "-c", probe]).stdout
    assert "no pg_hba.conf entry" in refused, refused


def _the_registry_asks_for_tls_and_a_login(hosts: Hosts, secrets: Path) -> None:
    address = hosts.address("kiln-data")
    probe = "import urllib.request, sys; urllib.request.urlopen(sys.argv[1], timeout=10)"
    plain = subprocess.run([sys.executable, "-c", probe, f"http://{address}:5000/v2/"],
                           capture_output=True, text=True, check=False)
    assert plain.returncode != 0  # no plain http
    anonymous = subprocess.run([sys.executable, "-c", probe, f"https://{address}:5000/v2/"],
                               capture_output=True, text=True, check=False,
                               env={**os.environ, "SSL_CERT_FILE": str(secrets / "ca.crt")})
    assert "401" in anonymous.stderr, anonymous.stderr


def _farm_seen_from_here(hosts: Hosts, tmp_path: Path) -> FarmConfig:
    """The deployed farm.yaml, read here: its console and API at the master's address."""
    view = tmp_path / "farm-view"
    view.mkdir()
    (view / "farm.yaml").write_text(hosts.run("kiln-master",
                                              ["cat", f"{FARM_DIR}/farm.yaml"]).stdout)
    config = load_farm(view)
    assert config.listen == hosts.address("kiln-master")
    return config


def _consumer(tmp_path: Path, hosts: Hosts, secrets: Path, farm: FarmConfig,
              ) -> tuple[Path, dict[str, str]]:
    """The farm's public key (from its console) and a consumer's environment: the
    registry by address, its login, the farm's CA."""
    registry = f"{hosts.address('kiln-data')}:5000"
    with urllib.request.urlopen(f"{farm.www_url}plugins/wsgi_dashboards/kiln/farm.pub",
                                timeout=30) as answer:
        (tmp_path / "farm.pub").write_bytes(answer.read())
    password = (secrets / "passwords" / "registry-consumer").read_text().strip()
    (tmp_path / "auth.json").write_text(json.dumps({"auths": {registry: {
        "auth": base64.b64encode(f"consumer:{password}".encode()).decode()}}}))
    (tmp_path / "registries.yaml").write_text(
        f"registries:\n  - prefix: \"\"\n    location: {registry}/kiln\nsecure: [{registry}]\n")
    return tmp_path / "farm.pub", {"KILN_REGISTRIES": str(tmp_path / "registries.yaml"),
                                   "REGISTRY_AUTH_FILE": str(tmp_path / "auth.json"),
                                   "SSL_CERT_FILE": str(secrets / "ca.crt")}
