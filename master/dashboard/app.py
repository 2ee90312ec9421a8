"""The dashboard as a WSGI application, mounted by Buildbot's wsgi_dashboards plugin
at /plugins/wsgi_dashboards/kiln/ (its index.html is shown inside Buildbot's UI).

Buildbot's authz does not cover a WSGI dashboard, so the app guards itself: it
answers GET and HEAD only, and when the farm's console is not public it asks for
the same login Buildbot's UI holds (the session cookie Buildbot signs). It reads
the index and, on a package page, checks the latest provenance against the
registry again; it never reads a password file or the signing key's bytes into
a page.
"""

from __future__ import annotations

import http.cookies
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import unquote

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from kiln.errors import KilnError
from master.config import FarmConfig
from master.dashboard import pages
from master.index import reads, writes
from master.index.database import farm_index
from master.proof import ProvenanceState, check_publication, farm_trust, public_key_pem

StartResponse = Callable[[str, list[tuple[str, str]]], Any]
_HEADERS = [("Content-Type", "text/html; charset=utf-8"),
            ("Cache-Control", "no-store"),
            ("X-Content-Type-Options", "nosniff"),
            # No script, no frame, no form: a page that carried injected markup
            # could still do nothing with it.
            ("Content-Security-Policy",
             "default-src 'none'; style-src 'unsafe-inline'; img-src 'self';"
             " frame-ancestors 'self'; form-action 'none'; base-uri 'none'")]
_REASONS = {200: "OK", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed",
            503: "Service Unavailable"}


class Dashboard:
    """A WSGI app; Buildbot's plugin sets `buildbot_api` (which holds the master)."""

    def __init__(self, farm: FarmConfig, engine: Engine | None = None,
                 check: Callable[[str, str], ProvenanceState] | None = None,
                 recheck_after: float = 10.0) -> None:
        self.farm = farm
        self._engine = engine
        self._check = check
        # Anyone may open a package page: its registry check runs at most this often.
        self.recheck_after = recheck_after
        self.buildbot_api: Any = None

    @property
    def engine(self) -> Engine:
        return self._engine or farm_index(self.farm.index, self.farm.path("master"))

    def __call__(self, environ: dict[str, Any], start_response: StartResponse
                 ) -> Iterable[bytes]:
        site = pages.Site(environ.get("SCRIPT_NAME", ""), self.farm.www_url, self.farm.name,
                          writes.now())
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "HEAD"):
            return self._answer(start_response, 405, pages.message_page(
                site, "Not allowed", "The dashboard only reads; rebuilds are forced from"
                " the console, logged in."), [("Allow", "GET, HEAD")], method)
        if not self.farm.console.public and self._user(environ) is None:
            return self._answer(start_response, 401, pages.message_page(
                site, "Log in first", "This farm's console is not public: log in to the"
                " console, then come back."), [], method)
        path = environ.get("PATH_INFO", "/")
        try:
            return self._serve(site, path, start_response, method)
        except (SQLAlchemyError, KilnError) as exc:  # the index's database is down
            message = exc.message if isinstance(exc, KilnError) else exc.__class__.__name__
            return self._answer(start_response, 503, pages.message_page(
                site, "The index is unreachable", f"{message}; builds go on, and this page"
                " will answer again when the index's database is back."), [], method)

    def _serve(self, site: pages.Site, path: str, start_response: StartResponse,
               method: str) -> list[bytes]:
        if path == "/farm.pub":  # the public half only: what consumers verify with
            return self._answer(start_response, 200, public_key_pem(farm_trust(self.farm)).decode(),
                                [("Content-Type", "text/plain; charset=utf-8")], method)
        if path.startswith("/records/") and path.removeprefix("/records/").isdigit():
            found = reads.publication_view(self.engine, int(path.removeprefix("/records/")))
            if found is not None and found.record is not None:  # JSON, never a page
                return self._answer(start_response, 200, found.record,
                                    [("Content-Type", "application/json")], method)
        status, page = self._route(site, path)
        return self._answer(start_response, status, page, [], method)

    def _route(self, site: pages.Site, path: str) -> tuple[int, str]:
        if path in ("", "/", "/index.html"):
            return 200, pages.overview(site, reads.package_lines(self.engine),
                                       reads.recent_plans(self.engine))
        if path.startswith("/packages/"):
            name = unquote(path.removeprefix("/packages/"))
            history = reads.package_history(self.engine, name)
            if history is None:
                return 404, pages.message_page(site, "No such package",
                                               f"The farm never planned {name}.")
            if history.publications and self._check_again(history.publications[0]):
                history = reads.package_history(self.engine, name) or history
            version = history.publications[0].version if history.publications else "VERSION"
            return 200, pages.package_page(site, history, self._verify_command(name, version))
        if path.startswith("/plans/") and path.removeprefix("/plans/").isdigit():
            plan = reads.plan_with_packages(self.engine, int(path.removeprefix("/plans/")))
            if plan is not None:
                return 200, pages.plan_page(site, plan)
        return 404, pages.message_page(site, "Not found", "There is no such page.")

    def _check_again(self, publication: Any) -> bool:
        """Verify the latest publication's provenance now, and remember what was found;
        False when it was checked a moment ago (nothing new to show)."""
        checked = publication.verified_at
        if checked is not None and \
                (writes.now() - checked).total_seconds() < self.recheck_after:
            return False
        check = self._check or self._check_registry
        state = check(publication.name, publication.manifest)
        writes.record_verification(self.engine, publication.manifest, state.verified,
                                   state.problem)
        return True

    def _check_registry(self, name: str, manifest: str) -> ProvenanceState:
        return check_publication(self.farm, farm_trust(self.farm), name, manifest)

    def _verify_command(self, name: str, version: str) -> str:
        """What a consumer runs, from an empty store, to check this package."""
        host = self.farm.registry.host
        insecure = f"insecure: [{host}]\n" if self.farm.registry.http else ""
        return (f"curl -o farm.pub {self.farm.www_url}plugins/wsgi_dashboards/kiln/farm.pub\n"
                "cat > farm-registries.yaml <<'EOF'\n"
                f"registries:\n  - prefix: \"\"\n    location: {host}/{self.farm.registry.prefix}\n"
                f"{insecure}EOF\n"
                f"KILN_REGISTRIES=farm-registries.yaml kiln verify {name}@{version} --key farm.pub")

    def _user(self, environ: dict[str, Any]) -> str | None:
        """The logged-in user of Buildbot's session cookie, if it is valid and current."""
        from buildbot.www.auth import parse_user_info_from_token

        master = getattr(self.buildbot_api, "master", None)
        secret = getattr(getattr(getattr(master, "www", None), "site", None),
                         "session_secret", None)
        if secret is None:
            return None
        cookies = http.cookies.SimpleCookie()
        try:
            cookies.load(environ.get("HTTP_COOKIE", ""))
        except http.cookies.CookieError:
            return None
        for name, morsel in cookies.items():
            if not name.startswith(("TWISTED_SESSION", "TWISTED_SECURE_SESSION")):
                continue
            try:
                info = parse_user_info_from_token(morsel.value, secret)
            except KeyError:  # expired, forged, or not a token
                continue
            if isinstance(info.get("username"), str):
                return str(info["username"])
        return None

    @staticmethod
    def _answer(start_response: StartResponse, status: int, page: str,
                extra: list[tuple[str, str]], method: str) -> list[bytes]:
        body = page.encode()
        names = {name for name, _ in extra}
        headers = [header for header in _HEADERS if header[0] not in names]
        start_response(f"{status} {_REASONS[status]}",
                       [*headers, ("Content-Length", str(len(body))), *extra])
        return [] if method == "HEAD" else [body]
