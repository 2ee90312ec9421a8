"""The dashboard app on its own (WSGI, a real index, a real Buildbot session token):
it reads only, escapes what recipes and workers wrote, never shows a secret, and
guards a private console itself."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jwt
import pytest
from buildbot.www.auth import SESSION_SECRET_ALGORITHM

from master.config import FarmConfig, load_farm
from master.dashboard.app import Dashboard
from master.index import writes
from master.index.database import open_index
from master.proof import ProvenanceState
from tests.fixtures.keys import write_key
from tests.unit.test_index import PLACE, published, record

HOSTILE = "<script>alert(1)</script>"


def farm(tmp_path: Path, extra: str = "") -> FarmConfig:
    (tmp_path / "keys").mkdir()
    private, _ = write_key(tmp_path / "keys", "farm")
    (tmp_path / "farm.yaml").write_text(
        "recipes: {repository: recipes.git}\nregistry: {host: 127.0.0.1:5000}\n"
        f"signer: file:{private}\nworkers: [w1]\n{extra}")
    return load_farm(tmp_path)


def get(app: Dashboard, path: str, method: str = "GET", cookie: str = ""
        ) -> tuple[str, dict[str, str], str]:
    answer: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        answer.update(status=status, headers=dict(headers))

    environ = {"REQUEST_METHOD": method, "PATH_INFO": path,
               "SCRIPT_NAME": "/plugins/wsgi_dashboards/kiln", "HTTP_COOKIE": cookie,
               "wsgi.input": io.BytesIO()}
    body = b"".join(app(environ, start_response)).decode()
    return answer["status"], answer["headers"], body


@pytest.fixture
def dashboard(tmp_path: Path) -> Dashboard:
    config = farm(tmp_path)
    engine = open_index("sqlite:///index.sqlite", tmp_path)
    plan = writes.record_plan(engine, "c" * 40, writes.plan_packages(
        [["kiln.dev/hello", "kiln.dev/odd"]], {}, {"kiln.dev/hello": ["kiln.dev/libc (>= 2)"]},
        {}, {}))
    writes.record_publication(engine, record("kiln.dev/hello", "2.10-1"),
                              published("kiln.dev/hello", "2.10-1", "sha256:" + "9" * 64),
                              plan_id=plan, place=PLACE)
    # What a hostile recipe or worker could put in front of a maintainer's browser.
    writes.package_building(engine, plan, "kiln.dev/odd",
                            writes.BuildPlace(HOSTILE, "javascript:alert(1)", HOSTILE))
    writes.package_finished(engine, plan, "kiln.dev/odd", writes.FAILED, HOSTILE)
    checks: list[str] = []

    def check(name: str, manifest: str) -> ProvenanceState:
        checks.append(name)
        return ProvenanceState(False, "", "signed by key X, which is not trusted here")

    app = Dashboard(config, engine, check, recheck_after=0)
    app.checks = checks  # type: ignore[attr-defined]
    return app


def test_the_overview_and_a_package_page_show_what_the_index_holds(
        dashboard: Dashboard) -> None:
    status, headers, page = get(dashboard, "/index.html")
    assert status == "200 OK"
    assert "2 packages, 1 published, 1 failing" in page
    assert "2.10-1" in page
    assert "key K" in page
    assert "href='/plugins/wsgi_dashboards/kiln/packages/kiln.dev/hello'" in page
    assert "script-src" not in headers["Content-Security-Policy"]  # so: none at all

    status, _, page = get(dashboard, "/packages/kiln.dev/hello")
    assert status == "200 OK"
    assert dashboard.checks == ["kiln.dev/hello"]  # type: ignore[attr-defined]
    # Checked again when the page was asked for, and the finding kept.
    assert "does not verify</span>: signed by key X, which is not trusted here" in page
    assert "kiln.dev/libc (&gt;= 2)" in page  # its runtime requirements
    assert "debian.org/bookworm/gcc-12" in page  # its build inputs
    assert "kiln verify kiln.dev/hello@2.10-1 --key farm.pub" in page
    _, _, overview = get(dashboard, "/")
    assert "does not verify" in overview

    # Its build record, as JSON (never a page a browser would render).
    assert "href='/plugins/wsgi_dashboards/kiln/records/1'" in page
    status, headers, record = get(dashboard, "/records/1")
    assert status == "200 OK"
    assert headers["Content-Type"] == "application/json"
    assert json.loads(record)["output"]["name"] == "kiln.dev/hello"

    status, _, page = get(dashboard, "/plans/1")
    assert status == "200 OK"
    assert "Wave 1" in page
    assert get(dashboard, "/packages/kiln.dev/none")[0] == "404 Not Found"
    assert get(dashboard, "/plans/99")[0] == "404 Not Found"
    assert get(dashboard, "/plans/../../etc/passwd")[0] == "404 Not Found"


def test_what_a_recipe_or_a_worker_wrote_is_escaped_never_markup(dashboard: Dashboard) -> None:
    for path in ("/index.html", "/packages/kiln.dev/odd", "/plans/1"):
        _, _, page = get(dashboard, path)
        assert HOSTILE not in page, path
        assert "javascript:" not in page, path
    _, _, page = get(dashboard, "/packages/kiln.dev/odd")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_a_package_page_checks_the_registry_at_most_so_often(tmp_path: Path) -> None:
    engine = open_index("sqlite:///index.sqlite", tmp_path)
    writes.record_publication(engine, record("kiln.dev/hello", "1"),
                              published("kiln.dev/hello", "1", "sha256:" + "1" * 64),
                              plan_id=None, place=PLACE)
    checks: list[str] = []

    def check(name: str, manifest: str) -> ProvenanceState:
        checks.append(name)
        return ProvenanceState(True, "key K")

    app = Dashboard(farm(tmp_path), engine, check, recheck_after=3600)
    for _ in range(5):  # anyone may open it: a flood of views is no flood of checks
        assert get(app, "/packages/kiln.dev/hello")[0] == "200 OK"
    assert checks == []  # checked when published, a moment ago
    app.recheck_after = 0
    get(app, "/packages/kiln.dev/hello")
    assert checks == ["kiln.dev/hello"]


def test_the_dashboard_only_reads(dashboard: Dashboard) -> None:
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        status, headers, _ = get(dashboard, "/index.html", method)
        assert status == "405 Method Not Allowed"
        assert headers["Allow"] == "GET, HEAD"
    status, headers, body = get(dashboard, "/index.html", "HEAD")
    assert status == "200 OK"
    assert body == ""
    assert int(headers["Content-Length"]) > 0


def test_no_page_shows_a_secret_and_the_public_key_is_served(
        dashboard: Dashboard, tmp_path: Path) -> None:
    private = (tmp_path / "keys" / "farm.pem").read_text()
    public = (tmp_path / "keys" / "farm.pub").read_text()
    status, headers, served = get(dashboard, "/farm.pub")
    assert status == "200 OK"
    assert headers["Content-Type"].startswith("text/plain")
    assert served == public
    for path in ("/index.html", "/packages/kiln.dev/hello", "/plans/1", "/farm.pub"):
        _, _, page = get(dashboard, path)
        assert "PRIVATE KEY" not in page
        assert private.splitlines()[1] not in page
        assert str(tmp_path / "keys") not in page  # nor where the key lies


def test_a_private_console_asks_for_buildbots_login(tmp_path: Path) -> None:
    config = farm(tmp_path, "console: {public: false}\n")
    app = Dashboard(config, open_index("sqlite:///index.sqlite", tmp_path))
    secret = "s3cret-" * 8
    app.buildbot_api = SimpleNamespace(master=SimpleNamespace(
        www=SimpleNamespace(site=SimpleNamespace(session_secret=secret))))

    def cookie(user_info: dict[str, Any], expires: float, key: str = secret) -> str:
        token = jwt.encode({"user_info": user_info, "exp": int(expires)}, key,
                           algorithm=SESSION_SECRET_ALGORITHM)
        return f"TWISTED_SESSION={token}"

    later = time.time() + 600
    assert get(app, "/index.html")[0] == "401 Unauthorized"
    assert get(app, "/index.html", cookie=cookie({"anonymous": True}, later))[0] \
        == "401 Unauthorized"
    assert get(app, "/index.html", cookie=cookie({"username": "alice"}, time.time() - 5))[0] \
        == "401 Unauthorized"  # expired
    assert get(app, "/index.html",
               cookie=cookie({"username": "alice"}, later, key="forged-" * 8))[0] \
        == "401 Unauthorized"
    assert get(app, "/index.html", cookie="TWISTED_SESSION=not-a-token")[0] \
        == "401 Unauthorized"
    assert get(app, "/index.html", cookie=cookie({"username": "alice"}, later))[0] == "200 OK"


def test_an_unreachable_index_is_a_clear_503_not_a_traceback(tmp_path: Path) -> None:
    from tests.fixtures.registry import free_port

    config = farm(tmp_path, f"index: postgresql+psycopg://kiln@127.0.0.1:{free_port()}/idx\n")
    status, _, page = get(Dashboard(config), "/index.html")
    assert status == "503 Service Unavailable"
    assert "cannot be opened" in page
