"""A farm on one host, for a person or a test: make it, start it, ask it, stop it.

`init` lays out a farm directory; `start` runs the Buildbot master, its local
worker and the build workers as processes of their own (new sessions, stopped
by PID); `status` and `wait` ask the master's REST API. For several hosts, the
Ansible roles lay out the same pieces, one per host.

    DIR/farm.yaml            the farm (master/config.py)
    DIR/keys/farm.pem        the signing key: the master's only (0600)
    DIR/users/               console.passwd (scrypt hashes of the console's users), the
                             change hook's login, the maintainer's password (0600)
    DIR/recipes.git          the recipe repository, with its post-receive hook
    DIR/master/              Buildbot's base directory (master.cfg, its database, and
                             Kiln's index when it is SQLite)
    DIR/worker-NAME/         a worker: Buildbot's base directory, its own store,
                             kiln.yaml (toolchain from the registry), registries.yaml
    DIR/run/                 pid files and logs
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kiln.errors import CheckFailed, InputError
from master.config import FARM_FILE, FarmConfig, check_name, load_farm
from master.configurator import HOOK_USERS, LOCAL_WORKER
from master.users import USERS_FILE, set_password

MASTER_CFG = """\
# Kiln's farm: everything is in ../farm.yaml, read and checked by master/config.py.
from pathlib import Path

from master.config import load_farm
from master.configurator import build_config

BuildmasterConfig = build_config(load_farm(Path(basedir).resolve().parent))  # noqa: F821
"""

POST_RECEIVE = """\
#!/bin/sh
# Tell the farm's master of every push (master/hook.py); the push stands either way.
exec {python} -m master.hook {farm}
"""


@dataclass(frozen=True)
class InitOptions:
    """What `kiln farm init` sets up."""

    workers: int = 2
    registry: str = "127.0.0.1:5000"
    recipes: str | None = None  # a repository URL; None: a bare one here, seeded
    seed: Path | None = None  # the recipes to seed it with (a directory)
    signer: str | None = None  # None: a farm key made here
    www_port: int = 8010
    pb_port: int = 9989
    poll: int = 0
    database: str = "sqlite:///state.sqlite"  # Buildbot's
    index: str = "sqlite:///index.sqlite"  # Kiln's
    builds: int | None = None  # the reproducibility gate's N; None: farm.yaml's default
    agree: int | None = None  # its K; None: N


def init_farm(directory: Path, options: InitOptions) -> FarmConfig:
    """Lay out a farm in `directory` (which must be empty or absent)."""
    directory = directory.resolve()
    if directory.exists() and any(directory.iterdir()):
        raise InputError(f"{directory} is not empty; a farm is made in a new directory",
                         reason="bad-usage")
    for sub in ("keys", "users", "workers", "run"):
        (directory / sub).mkdir(parents=True, exist_ok=True)
    os.chmod(directory / "keys", 0o700)
    os.chmod(directory / "users", 0o700)
    signer = options.signer or f"file:{_make_key(directory / 'keys')}"
    names = [f"w{index}" for index in range(1, options.workers + 1)]
    for name in [LOCAL_WORKER, *names]:
        _secret(directory / "workers" / f"{name}.password")
    hook_password = _secret(directory / "users" / "hook.password")
    (directory / HOOK_USERS).write_text(f"hook:{hook_password}\n")
    os.chmod(directory / HOOK_USERS, 0o600)
    maintainer = _secret(directory / "users" / "maintainer.password")
    set_password(directory / USERS_FILE, "maintainer", maintainer)
    recipes = options.recipes or str(directory / "recipes.git")
    host = options.registry
    gate = {} if options.builds is None else {"reproducibility": {
        "builds": str(options.builds), "agree": str(options.agree or options.builds)}}
    (directory / FARM_FILE).write_text(json.dumps({
        "name": "kiln-farm",
        "recipes": {"repository": recipes, "branch": "main", "path": "recipes",
                    "poll": str(options.poll)},
        "registry": {"host": host, "prefix": "kiln", "http": "true"},
        "database": options.database,
        "index": options.index,
        "signer": signer,
        "builder-id": "https://kiln.dev/builders/farm",
        "ports": {"www": str(options.www_port), "pb": str(options.pb_port)},
        "listen": "127.0.0.1",
        "workers": names,
        "maintainers": ["maintainer"],
        **gate,
    }, indent=2) + "\n")
    farm = load_farm(directory)
    (directory / "registries.yaml").write_text(
        f"registries:\n  - prefix: \"\"\n    location: {host}/kiln\ninsecure: [{host}]\n")
    if options.recipes is None:
        _seed_repository(farm, options.seed)
    _create_master(farm)
    for name in [LOCAL_WORKER, *names]:
        _create_worker(farm, name)
    return farm


def start_farm(directory: Path, *, timeout: float = 60, remote_workers: bool = False,
               ) -> FarmConfig:
    """Start the master and its workers; return once every worker started has connected.

    With `remote_workers`, the build workers run on hosts of their own (started
    there): only the master and its local worker start here."""
    farm = start_master(directory, timeout=timeout)
    here = (LOCAL_WORKER,) if remote_workers else (LOCAL_WORKER, *farm.workers)
    for name in here:
        _spawn_worker(farm, name)
    _wait_for(lambda: set(here) <= connected_workers(farm), timeout,
              "every worker to connect")
    return farm


def start_worker(directory: Path, name: str, *, timeout: float = 60) -> None:
    """Start one worker of a running farm again (after its host came back)."""
    farm = load_farm(directory)
    _spawn_worker(farm, name)
    _wait_for(lambda: name in connected_workers(farm), timeout, f"worker {name} to connect")


def _spawn_worker(farm: FarmConfig, name: str) -> None:
    base = _worker_dir(farm, name)
    env = {"KILN_STORE": str(base / "store"), "KILN_CONFIG": str(base / "kiln.yaml"),
           "KILN_REGISTRIES": str(farm.path("registries.yaml"))}
    _spawn(farm, f"worker-{name}", [_tool("buildbot-worker"), "start", "--nodaemon",
                                    str(base)], env)


def start_master(directory: Path, *, timeout: float = 60) -> FarmConfig:
    """Start the Buildbot master alone (workers that run reconnect by themselves)."""
    farm = load_farm(directory)
    _spawn(farm, "master", [_tool("buildbot"), "start", "--nodaemon",
                            str(farm.path("master"))], {})
    _wait_for(lambda: api(farm, "workers") is not None, timeout, "the master to answer")
    return farm


def kill_master(directory: Path) -> None:
    """SIGKILL the master's whole session, as a crash of its host would."""
    pid_file = directory / "run" / "master.pid"
    os.killpg(int(pid_file.read_text()), signal.SIGKILL)
    pid_file.unlink()
    (directory / "master" / "twistd.pid").unlink(missing_ok=True)  # or it will not start


def stop_farm(directory: Path) -> list[str]:
    """Stop every process the farm started (by PID, whole sessions); their names."""
    stopped = []
    for pid_file in sorted((directory / "run").glob("*.pid")):
        pid = int(pid_file.read_text())
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            pid_file.unlink()
            continue
        for _ in range(30):  # a worker's graceful stop can wait on its master: 3 s at most
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            os.killpg(pid, signal.SIGKILL)
        pid_file.unlink(missing_ok=True)
        stopped.append(pid_file.stem)
    return stopped


def kill_worker(directory: Path, name: str) -> None:
    """SIGKILL one worker's whole session, as a dying host would."""
    pid_file = directory / "run" / f"worker-{name}.pid"
    os.killpg(int(pid_file.read_text()), signal.SIGKILL)
    pid_file.unlink()


def worker_names(farm: FarmConfig) -> dict[int, str]:
    """Worker id -> name, as the master knows them."""
    answer = api(farm, "workers") or {}
    return {w["workerid"]: w["name"] for w in answer.get("workers", [])}


def connected_workers(farm: FarmConfig) -> set[str]:
    answer = api(farm, "workers")
    if answer is None:
        return set()
    return {w["name"] for w in answer.get("workers", []) if w.get("connected_to")}


def plan_builds(farm: FarmConfig) -> list[dict[str, Any]]:
    """The plan builder's builds, newest first, with their properties."""
    return _builds(farm, "plan", "order=-number&property=*")


def package_builds(farm: FarmConfig) -> list[dict[str, Any]]:
    """Every package build, with its properties (package, wave, commit, skipped ...)."""
    return _builds(farm, "package", "property=*")


def _builds(farm: FarmConfig, builder: str, query: str) -> list[dict[str, Any]]:
    builders = (api(farm, f"builders?name={builder}") or {}).get("builders", [])
    if not builders:
        return []
    answer = api(farm, f"builders/{builders[0]['builderid']}/builds?{query}") or {}
    return list(answer.get("builds", []))


def wait_for_commit(farm: FarmConfig, commit: str, timeout: float, *,
                    poll: float = 0.5) -> dict[str, Any]:
    """The finished plan build of `commit` (a prefix will do), asked every `poll`
    seconds; CheckFailed past `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for build in plan_builds(farm):
            revision = (build.get("properties", {}).get("revision") or [""])[0] or ""
            if revision.startswith(commit) and build.get("complete"):
                return build
        time.sleep(poll)
    raise CheckFailed(f"no plan of {commit} finished within {timeout:g} s",
                      reason="farm-timeout", temporary=True)


def _spawn(farm: FarmConfig, name: str, command: list[str], env: dict[str, str]) -> None:
    run = farm.path("run")
    log = open(run / f"{name}.log", "ab")  # noqa: SIM115 - the child keeps it
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, start_new_session=True,
                               env={**os.environ, **env,
                                    "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
                               cwd=farm.directory)
    log.close()
    (run / f"{name}.pid").write_text(f"{process.pid}\n")


def _wait_for(ready: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.2)
    raise CheckFailed(f"timed out after {timeout:g} s waiting for {what}",
                      reason="farm-timeout", temporary=True)


def api(farm: FarmConfig, path: str, *, log_in: bool = True) -> dict[str, Any] | None:
    """GET the master's REST API; None when it does not answer. Anonymous, or, on a
    farm whose console is private, logged in as its maintainer (this host's tools)."""
    opener = _readers.get(farm.www_url) or urllib.request.build_opener()
    try:
        with opener.open(f"{farm.www_url}api/v2/{path}", timeout=5) as response:
            answer: dict[str, Any] = json.loads(response.read())
            return answer
    except urllib.error.HTTPError as exc:
        if exc.code != 403 or not log_in:
            return None
        try:  # a private console, or a session that expired: log in (again)
            _readers[farm.www_url] = _logged_in(farm, "maintainer")
        except (OSError, ValueError):
            return None
        return api(farm, path, log_in=False)
    except (OSError, ValueError):
        return None


_readers: dict[str, urllib.request.OpenerDirector] = {}


def _logged_in(farm: FarmConfig, user: str) -> urllib.request.OpenerDirector:
    """An opener holding `user`'s session cookie (a login at /auth/login)."""
    import base64
    import http.cookiejar

    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    token = base64.b64encode(f"{user}:{farm.user_password(user)}".encode()).decode()
    login = urllib.request.Request(f"{farm.www_url}auth/login",
                                   headers={"Authorization": f"Basic {token}"})
    with opener.open(login, timeout=30):
        pass
    return opener


def _tool(name: str) -> str:
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else (shutil.which(name) or name)


def _worker_dir(farm: FarmConfig, name: str) -> Path:
    return farm.path(f"worker-{name}")


def set_user_password(farm: FarmConfig, user: str, password: str | None) -> str:
    """A console login for `user`; with no password given, one is made and kept in
    users/USER.password (0600) for `kiln farm rebuild`. Says where it is, if made."""
    check_name(user)  # it names a file in users/
    made = password is None
    if password is None:
        password = _secret(farm.path(f"users/{user}.password"))
    set_password(farm.path(USERS_FILE), user, password)
    return f"; password in {farm.path(f'users/{user}.password')}" if made else ""


def _secret(path: Path) -> str:
    value = secrets.token_urlsafe(24)
    path.write_text(value + "\n")
    os.chmod(path, 0o600)
    return value


def _make_key(keys: Path) -> Path:
    from provenance.keys import generate_key_pair

    return generate_key_pair(keys, "farm").private


def setup_farm(directory: Path, *, seed: Path | None = None, upgrade: bool = False,
               ) -> list[str]:
    """Lay out what a farm directory lacks, around a farm.yaml, keys and passwords put
    there by someone else (Ansible's master role): the hosted recipe repository (seeded
    when new) and its hook, Buildbot's master directory and its database, the local
    worker. What it made or changed; nothing on a second run. `upgrade` brings
    Buildbot's database to the installed Buildbot (its master stopped)."""
    farm = load_farm(directory)
    made = []
    bare = farm.hosted_recipes
    if bare is not None and not (bare / "HEAD").exists():
        _seed_repository(farm, seed)
        made.append("recipes")
    elif bare is not None and _write_hook(farm, bare):
        made.append("hook")
    if not (farm.path("master") / "buildbot.tac").exists():
        _create_master(farm)
        made.append("master")
    elif upgrade:
        _upgrade_master(farm)
        made.append("database")
    if (farm.path("master") / "master.cfg").read_text() != MASTER_CFG:
        (farm.path("master") / "master.cfg").write_text(MASTER_CFG)
        made.append("master.cfg")
    if not (_worker_dir(farm, LOCAL_WORKER) / "buildbot.tac").exists():
        _create_worker(farm, LOCAL_WORKER)
        made.append(f"worker-{LOCAL_WORKER}")
    return made


def _write_hook(farm: FarmConfig, bare: Path) -> bool:
    """The post-receive hook, as this Kiln writes it; whether it changed."""
    hook = bare / "hooks" / "post-receive"
    text = POST_RECEIVE.format(python=sys.executable, farm=farm.directory)
    if hook.exists() and hook.read_text() == text:
        return False
    hook.write_text(text)
    hook.chmod(0o755)
    return True


def _seed_repository(farm: FarmConfig, seed: Path | None) -> None:
    bare = farm.hosted_recipes
    assert bare is not None
    subprocess.run(["git", "init", "--quiet", "--bare", "--initial-branch=main", str(bare)],
                   check=True)
    _write_hook(farm, bare)
    if seed is None:
        return
    with tempfile.TemporaryDirectory(prefix="kiln-seed-") as scratch:
        work = Path(scratch) / "work"
        shutil.copytree(seed, work / farm.recipes.path)
        git = ["git", "-C", str(work), "-c", "user.name=kiln farm",
               "-c", "user.email=farm@kiln.invalid"]
        subprocess.run(["git", "init", "--quiet", "--initial-branch=main", str(work)], check=True)
        subprocess.run([*git, "add", "."], check=True)
        subprocess.run([*git, "commit", "--quiet", "-m", "the farm's first recipes"],
                       check=True)
        # Seeded before the master runs: the hook's post fails quietly, the push stands.
        subprocess.run([*git, "push", "--quiet", str(bare), "main"], check=True,
                       capture_output=True)


def _create_master(farm: FarmConfig) -> None:
    master = farm.path("master")
    subprocess.run([_tool("buildbot"), "create-master", "--quiet", str(master)], check=True,
                   capture_output=True)
    (master / "master.cfg").write_text(MASTER_CFG)
    (master / "handed-back").mkdir()
    if not farm.database.startswith("sqlite:"):
        # create-master made its tables in SQLite: make them where farm.yaml says.
        _upgrade_master(farm)


def _upgrade_master(farm: FarmConfig) -> None:
    upgraded = subprocess.run([_tool("buildbot"), "upgrade-master", str(farm.path("master"))],
                              capture_output=True, text=True, check=False)
    if upgraded.returncode != 0:
        raise InputError(f"Buildbot's database {farm.database.split('@')[-1]} cannot be"
                         f" made ready: {upgraded.stdout.strip()[-400:]}",
                         reason="database-unreachable")


def _create_worker(farm: FarmConfig, name: str) -> None:
    base = _worker_dir(farm, name)
    subprocess.run([_tool("buildbot-worker"), "create-worker", "--quiet", "--maxdelay", "2",
                    str(base), f"{farm.listen}:{farm.pb_port}", name,
                    farm.worker_password(name)], check=True, capture_output=True)
    # Never apt on a worker; and a worker runs for months: past 20 GiB of caches a
    # build that ends bounds them to what was used in the last 30 days and 16 GiB.
    (base / "kiln.yaml").write_text("toolchain: registry\n"
                                    "gc: {keep-days: 30, max-size: 16G, threshold: 20G}\n")


def force_rebuild(farm: FarmConfig, package: str, dependents: bool = False,
                  user: str = "maintainer") -> int:
    """A maintainer's rebuild of `package` (and its dependants): logged in, as the
    console would; the build request's id. Anonymous forces are refused (403)."""
    opener = _logged_in(farm, user)
    builders = api(farm, "builders?name=plan") or {}
    builderid = builders["builders"][0]["builderid"]
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "force",
                       "params": {"builderid": str(builderid), "package": package,
                                  "dependents": dependents}}).encode()
    request = urllib.request.Request(f"{farm.www_url}api/v2/forceschedulers/rebuild",
                                     data=body, headers={"Content-Type": "application/json"})
    try:
        with opener.open(request, timeout=30) as response:
            answer = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise CheckFailed(f"the master refused the rebuild: {exc.code} {exc.reason}",
                          reason="rebuild-refused") from exc
    _buildset, requests = answer["result"]
    return int(next(iter(requests.values())))


def wait_for_request(farm: FarmConfig, request: int, timeout: float) -> dict[str, Any]:
    """The finished build of a build request, with its plan; CheckFailed past `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = api(farm, f"builds?buildrequestid={request}&property=plan") or {}
        for build in answer.get("builds", []):
            if build.get("complete"):
                return dict(build)
        time.sleep(0.5)
    raise CheckFailed(f"build request {request} did not finish within {timeout:g} s",
                      reason="farm-timeout", temporary=True)
