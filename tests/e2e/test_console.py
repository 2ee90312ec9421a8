"""The console end to end: a real Buildbot master and worker, Debian's registry, the
REST API as anonymous users, readers, maintainers and admins, and Debian's chromium
driven through its chromedriver: log in, force a rebuild from the form, read the
dashboard. Screenshots are kept in $KILN_ARTEFACTS (default: .artefacts/ in the
checkout)."""

from __future__ import annotations

import base64
import http.cookiejar
import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from master.config import FarmConfig, load_farm
from master.lifecycle import (
    InitOptions,
    api,
    init_farm,
    package_builds,
    plan_builds,
    start_farm,
    start_master,
    stop_farm,
    wait_for_commit,
)
from tests.conftest import REPO, run_kiln_process
from tests.fixtures.farms import BASE, SHELL, TOP, push, seed
from tests.fixtures.packages import ensure_apt_lists
from tests.fixtures.registry import free_port, run_registry

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("bwrap") is None,
                       reason="the farm's builds need root and bubblewrap"),
    pytest.mark.slow,
]

SESSION = 20  # seconds a login lasts on this farm: long enough for a browser's work
TIMEOUT = 240
DASHBOARD = "plugins/wsgi_dashboards/kiln"


class Client:
    """A browser's view of the REST API: a cookie jar, logins at /auth/login."""

    def __init__(self, farm: FarmConfig) -> None:
        self.farm = farm
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def login(self, user: str, password: str) -> tuple[int, bytes]:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request = urllib.request.Request(f"{self.farm.www_url}auth/login",
                                         headers={"Authorization": f"Basic {token}"})
        return self._open(request)

    def logout(self) -> int:
        return self._open(urllib.request.Request(f"{self.farm.www_url}auth/logout"))[0]

    def control(self, path: str, method: str, **params: Any) -> tuple[int, Any]:
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method,
                           "params": params}).encode()
        status, answer = self._open(urllib.request.Request(
            f"{self.farm.www_url}api/v2/{path}", data=body,
            headers={"Content-Type": "application/json"}))
        try:
            return status, json.loads(answer)
        except ValueError:
            return status, answer

    def get(self, path: str) -> tuple[int, bytes]:
        return self._open(urllib.request.Request(f"{self.farm.www_url}{path}"))

    def _open(self, request: urllib.request.Request) -> tuple[int, bytes]:
        try:
            with self.opener.open(request, timeout=30) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()


@dataclass
class Console:
    config: FarmConfig
    directory: Path
    clone: Path
    passwords: dict[str, str]

    def client(self, user: str | None = None) -> Client:
        client = Client(self.config)
        if user is not None:
            status, _ = client.login(user, self.passwords[user])
            assert status == 200, f"{user} could not log in"
        return client

    def push(self, name: str, build: str, requires: list[str], message: str) -> str:
        return push(self.clone, {name: (build, requires)}, message)

    def builderid(self, name: str) -> int:
        return int((api(self.config, f"builders?name={name}") or {})["builders"][0]
                   ["builderid"])

    def dashboard(self, path: str) -> str:
        status, page = Client(self.config).get(f"{DASHBOARD}/{path}")
        assert status == 200, path
        return page.decode()


def artefacts() -> Path:
    path = Path(os.environ.get("KILN_ARTEFACTS", REPO / ".artefacts")) / "console"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    ensure_apt_lists()
    root = tmp_path_factory.mktemp("console")
    seeded = seed(root / "seed", {"base": BASE, "top": TOP})
    with run_registry(root / "registry") as registry:
        directory = root / "farm"
        init_farm(directory, InitOptions(workers=1, registry=registry.host, seed=seeded,
                                         www_port=free_port(), pb_port=free_port()))
        settings = json.loads((directory / "farm.yaml").read_text())
        settings.update(admins=["boss"], console={"public": "true", "session": str(SESSION)})
        (directory / "farm.yaml").write_text(json.dumps(settings))
        passwords = {"maintainer": (directory / "users/maintainer.password").read_text().strip(),
                     "reader": "reader's own", "boss": "boss's own"}
        for user in ("reader", "boss"):  # as an operator adds them
            added = run_kiln_process(root, "farm", "passwd", directory, user,
                                     "--password-stdin", stdin=passwords[user] + "\n")
            assert added.returncode == 0, added.stderr
        try:
            config = start_farm(directory)
            clone = root / "clone"
            subprocess.run(["git", "clone", "-q", config.recipes_url, str(clone)], check=True)
            found = Console(config, directory, clone, passwords)
            # The farm's first push builds and publishes everything.
            first = found.push("beside", "echo beside > /out/beside", SHELL, "beside")
            assert wait_for_commit(config, first, TIMEOUT)["results"] == 0
            yield found
        finally:
            assert "master" in stop_farm(directory)


def test_only_maintainers_rebuild_and_stop_and_only_admins_control_the_rest(
        console: Console) -> None:
    anonymous = console.client()
    plan_builder = console.builderid("plan")
    a_build = package_builds(console.config)[0]["buildid"]
    force = {"builderid": str(plan_builder), "package": "kiln.dev/top"}

    # Anonymous users read, and change nothing.
    assert anonymous.get("api/v2/builders")[0] == 200
    assert anonymous.control("forceschedulers/rebuild", "force", **force)[0] == 403
    assert anonymous.control(f"builds/{a_build}", "rebuild")[0] == 403
    assert anonymous.control(f"builds/{a_build}", "stop")[0] == 403

    # A wrong password and an unknown user get the same answer.
    wrong = Client(console.config).login("maintainer", "not the password")
    unknown = Client(console.config).login("nobody", "not the password")
    assert wrong[0] == unknown[0] == 401
    assert wrong[1] == unknown[1]

    # A user who logged in but is no maintainer reads only.
    reader = console.client("reader")
    assert reader.control("forceschedulers/rebuild", "force", **force)[0] == 403
    assert reader.control(f"builds/{a_build}", "rebuild")[0] == 403
    assert reader.control(f"builds/{a_build}", "stop")[0] == 403

    # A maintainer: a package that is not a recipe at the head is refused, no plan runs.
    maintainer = console.client("maintainer")
    plans_before = len(plan_builds(console.config))
    status, answer = maintainer.control("forceschedulers/rebuild", "force",
                                        builderid=str(plan_builder), package="kiln.dev/nope")
    assert status == 400, answer
    assert "kiln.dev/nope" in json.dumps(answer)
    # The package's rebuild runs the farm's own plan, for that package alone.
    status, answer = maintainer.control("forceschedulers/rebuild", "force", **force)
    assert status == 200, answer
    request = int(next(iter(answer["result"][1].values())))
    build = _finished_request(console, request)
    assert build["results"] == 0
    assert json.loads(build["properties"]["plan"][0])["waves"] == [["kiln.dev/top"]]
    assert len(plan_builds(console.config)) == plans_before + 1
    # ... and a rebuild of a build.
    status, answer = maintainer.control(f"builds/{build['buildid']}", "rebuild")
    assert status == 200, answer

    # Maintainers stop a build: a recipe that takes its time, pushed, stopped mid-build.
    slow = console.push("slow", "sleep 300; echo late > /out/late", SHELL, "slow")
    running = _running_build(console.config, "kiln.dev/slow")
    assert reader.control(f"builds/{running['buildid']}", "stop")[0] == 403
    status, answer = maintainer.control(f"builds/{running['buildid']}", "stop",
                                        reason="not today")
    assert status == 200, answer
    stopped = _finished_build(console, running["buildid"])
    assert stopped["results"] == 6  # CANCELLED
    assert wait_for_commit(console.config, slow, TIMEOUT)["results"] != 0
    assert "stopped" in console.dashboard(f"plans/{_plan_id(console, slow)}")

    # Admins control the rest (a scheduler turned off and on); maintainers may not.
    schedulers = (api(console.config, "schedulers") or {})["schedulers"]
    scheduler = next(s["schedulerid"] for s in schedulers if s["name"] == "push")
    assert maintainer.control(f"schedulers/{scheduler}", "enable", enabled=False)[0] == 403
    boss = console.client("boss")
    assert boss.control(f"schedulers/{scheduler}", "enable", enabled=False)[0] == 200
    assert boss.control(f"schedulers/{scheduler}", "enable", enabled=True)[0] == 200

    # Logging out ends the session; so does time.
    assert maintainer.logout() in (200, 302)
    assert maintainer.control("forceschedulers/rebuild", "force", **force)[0] == 403
    idle = console.client("maintainer")
    time.sleep(SESSION + 2)
    assert idle.control("forceschedulers/rebuild", "force", **force)[0] == 403


def test_a_maintainer_rebuilds_from_the_browser_and_reads_the_dashboard(
        console: Console) -> None:
    from selenium.common.exceptions import NoSuchElementException
    from selenium.webdriver.common.by import By

    keep = artefacts()
    host = console.config.www_url.removeprefix("http://")
    plan_builder = console.builderid("plan")
    with _browser() as browser:
        # Anonymous: the form is refused.
        before = len(plan_builds(console.config))
        browser.get(f"{console.config.www_url}#/builders/{plan_builder}")
        _force_from_form(browser, "kiln.dev/base")
        time.sleep(2)
        assert len(plan_builds(console.config)) == before

        # Logged in (the browser's basic-auth login, as the UI's Login link asks).
        password = console.passwords["maintainer"]
        browser.get(f"http://maintainer:{password}@{host}auth/login?redirect=%2F")
        _wait(lambda: "maintainer" in browser.find_element(By.TAG_NAME, "body").text,
              "the console to show who logged in")
        browser.get(f"{console.config.www_url}#/builders/{plan_builder}")
        _force_from_form(browser, "kiln.dev/base")
        _wait(lambda: len(plan_builds(console.config)) == before + 1, "the rebuild's plan")
        plan = plan_builds(console.config)[0]
        assert plan["properties"]["package"][0] == "kiln.dev/base"
        done = _finished_build(console, plan["buildid"])
        assert done["results"] == 0, done["state_string"]
        browser.get(f"{console.config.www_url}#/builders/{plan_builder}/builds/"
                    f"{plan['number']}")
        _wait(lambda: "wave 1" in browser.find_element(By.TAG_NAME, "body").text,
              "the plan's waves on its build page")
        browser.save_screenshot(str(keep / "rebuild.png"))

        # The dashboard, inside Buildbot's UI, and a package page.
        browser.get(f"{console.config.www_url}#/kiln")
        _wait(lambda: "kiln.dev/base" in browser.find_element(By.TAG_NAME, "body").text,
              "the dashboard's packages")
        text = browser.find_element(By.TAG_NAME, "body").text
        assert "published" in text
        assert "verifies" in text
        browser.save_screenshot(str(keep / "dashboard.png"))
        browser.find_element(By.LINK_TEXT, "kiln.dev/top").click()
        _wait(lambda: "Build inputs" in browser.find_element(By.TAG_NAME, "body").text,
              "the package page")
        page = browser.find_element(By.TAG_NAME, "body").text
        assert "kiln verify kiln.dev/top@1 --key farm.pub" in page
        assert "debian.org/bookworm/dash" in page
        browser.save_screenshot(str(keep / "package.png"))
        with pytest.raises(NoSuchElementException):
            browser.find_element(By.TAG_NAME, "script")  # the page carries none
    # Every page the dashboard serves, as anyone reads it: no secret in any.
    secrets = [console.passwords["maintainer"],
               *(p.read_text().strip() for p in (console.directory / "workers").iterdir()),
               (console.directory / "users" / "hook.password").read_text().strip(),
               (console.directory / "keys" / "farm.pem").read_text().splitlines()[1],
               str(console.directory / "keys")]
    pages = ["index.html", "packages/kiln.dev/base", "packages/kiln.dev/top", "farm.pub",
             *(f"plans/{n}" for n in range(1, 6))]
    for path in pages:
        status, body = Client(console.config).get(f"{DASHBOARD}/{path}")
        assert status in (200, 404)
        for secret in secrets:
            assert secret not in body.decode(), path


def test_a_private_console_reads_nothing_to_anonymous_users(
        tmp_path: Path, console: Console) -> None:
    directory = tmp_path / "private"
    # No recipes yet (an empty repository) and no worker started: the master alone.
    init_farm(directory, InitOptions(workers=1, registry="127.0.0.1:9", www_port=free_port(),
                                     pb_port=free_port()))
    settings = json.loads((directory / "farm.yaml").read_text())
    settings["console"] = {"public": "false"}
    (directory / "farm.yaml").write_text(json.dumps(settings))
    try:
        farm = start_master(directory)
        anonymous = Client(farm)
        assert anonymous.get("api/v2/builders")[0] == 403
        assert anonymous.get(f"{DASHBOARD}/index.html")[0] == 401
        maintainer = Client(farm)
        password = (directory / "users" / "maintainer.password").read_text().strip()
        assert maintainer.login("maintainer", password)[0] == 200
        assert maintainer.get("api/v2/builders")[0] == 200
        assert maintainer.get(f"{DASHBOARD}/index.html")[0] == 200
    finally:
        stop_farm(directory)
    assert load_farm(directory).console.public is False


def _force_from_form(browser: Any, package: str) -> None:
    """Open the rebuild form, pick `package`, start; whatever the console answers."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    _wait(lambda: browser.find_elements(By.XPATH, "//button[text()='rebuild package']"),
          "the rebuild button")
    browser.find_element(By.XPATH, "//button[text()='rebuild package']").click()
    _wait(lambda: browser.find_elements(By.CSS_SELECTOR, ".modal input[type=text]"),
          "the rebuild form")
    field = browser.find_element(By.CSS_SELECTOR, ".modal input[type=text]")
    field.send_keys(package)
    field.send_keys(Keys.ENTER)
    browser.find_element(By.XPATH, "//button[text()='Start build']").click()


def _browser() -> Any:
    from contextlib import contextmanager

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver is None:
        pytest.fail("chromium and chromedriver are missing: ./dev test installs Debian's"
                    " chromium and chromium-driver")

    @contextmanager
    def opened() -> Iterator[Any]:
        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                     "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync",
                     "--disable-dev-shm-usage", "--window-size=1440,900"):
            options.add_argument(flag)
        browser = webdriver.Chrome(service=Service(driver), options=options)
        try:
            yield browser
        finally:
            browser.quit()

    return opened()


def _wait(ready: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if ready():
                return
        except Exception:
            pass
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def _finished_request(console: Console, request: int) -> dict[str, Any]:
    found: dict[str, Any] = {}

    def done() -> bool:
        answer = api(console.config, f"builds?buildrequestid={request}&property=*") or {}
        finished = [b for b in answer.get("builds", []) if b.get("complete")]
        if finished:
            found.update(finished[0])
        return bool(finished)

    _wait(done, f"build request {request}", TIMEOUT)
    return found


def _finished_build(console: Console, buildid: int) -> dict[str, Any]:
    found: dict[str, Any] = {}

    def done() -> bool:
        answer = api(console.config, f"builds/{buildid}?property=*") or {}
        builds = answer.get("builds", [])
        if builds and builds[0].get("complete"):
            found.update(builds[0])
            return True
        return False

    _wait(done, f"build {buildid} to end", TIMEOUT)
    return found


def _running_build(farm: FarmConfig, package: str) -> dict[str, Any]:
    found: dict[str, Any] = {}

    def running() -> bool:
        for build in package_builds(farm):
            if build["properties"]["package"][0] == package and not build.get("complete"):
                steps = api(farm, f"builds/{build['buildid']}/steps") or {}
                if any(s["name"] == "build" and s.get("started_at") and not s.get("complete")
                       for s in steps.get("steps", [])):
                    found.update(build)
                    return True
        return False

    _wait(running, f"{package} to be building", TIMEOUT)
    return found


def _plan_id(console: Console, commit: str) -> int:
    build = wait_for_commit(console.config, commit, TIMEOUT)
    answer = api(console.config, f"builds/{build['buildid']}?property=plan_id") or {}
    return int(answer["builds"][0]["properties"]["plan_id"][0])
