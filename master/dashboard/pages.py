"""The dashboard's HTML: an overview (shown inside Buildbot's UI), a package page and
a plan page. Every value from a recipe, a record or a worker may be hostile: each
goes through `_e` (html.escape) or `_link`, never into markup as it is.

Plain HTML and one inline style sheet: no script, so a page loads in one request
and renders the same inside Buildbot's UI (which injects the overview) and alone.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote

from master.index.models import BuildInput, Image, Plan, PlanPackage
from master.index.reads import PackageHistory, PackageLine, PublicationView

STYLE = """
.kiln{font:14px/1.4 system-ui,sans-serif;color:#222;max-width:1400px;margin:0 auto;padding:8px}
.kiln h1{font-size:20px;margin:4px 0 8px}.kiln h2{font-size:16px;margin:16px 0 6px}
.kiln table{border-collapse:collapse;width:100%}
.kiln th,.kiln td{text-align:left;padding:3px 6px;border-bottom:1px solid #e3e3e3;
vertical-align:top;overflow-wrap:break-word}
.kiln th,.kiln .name{white-space:nowrap}
.kiln th{background:#f4f4f4;font-weight:600}.kiln code{font-size:12px}
.kiln .ok{color:#17692b}.kiln .bad{color:#b3261e}.kiln .busy{color:#8a5a00}
.kiln .muted{color:#777}.kiln .state{font-weight:600}
.kiln pre{background:#f6f6f6;padding:8px;overflow:auto}
.kiln nav a{margin-right:14px}
"""
_STATE_CLASS = {"published": "ok", "failed": "bad", "broken": "bad", "skipped": "muted",
                "stopped": "muted", "queued": "busy", "building": "busy", "retrying": "busy"}


@dataclass(frozen=True)
class Site:
    """Where the dashboard is served, and what it links to."""

    root: str  # the dashboard's own path, e.g. /plugins/wsgi_dashboards/kiln
    console: str  # Buildbot's UI, e.g. http://127.0.0.1:8010/
    farm: str  # the farm's name
    now: datetime

    def package(self, name: str) -> str:
        return f"{self.root}/packages/{quote(name, safe='/')}"

    def plan(self, plan_id: int) -> str:
        return f"{self.root}/plans/{plan_id}"

    def record(self, publication_id: int) -> str:
        return f"{self.root}/records/{publication_id}"


def overview(site: Site, lines: list[PackageLine],
             plans: list[tuple[Plan, dict[str, int]]]) -> str:
    """Packages and recent plans: the page Buildbot's UI shows under "Packages"."""
    published = sum(1 for line in lines if line.latest is not None)
    failing = sum(1 for line in lines if line.state in ("failed", "broken"))
    rows = "".join(_package_row(site, line) for line in lines)
    return (f"<div class='kiln'><style>{STYLE}</style>"
            f"<h1>{_e(site.farm)}: {len(lines)} packages, {published} published,"
            f" {failing} failing</h1>"
            "<table><thead><tr><th>Package</th><th>Version</th><th>FileSet</th>"
            "<th>Recipe commit</th><th>Published</th><th>Worker</th><th>Provenance</th>"
            "<th>Now</th><th>Build</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>"
            f"<h2>Plans</h2>{_plans_table(site, plans)}</div>")


def package_page(site: Site, history: PackageHistory, verify_command: str) -> str:
    latest = history.publications[0] if history.publications else None
    body = [f"<h1>{_e(history.name)}</h1>"]
    if latest is not None:
        body.append(f"<p>Latest: <b>{_e(latest.version)}</b>, FileSet"
                    f" <code>{_e(latest.fileset)}</code>; provenance:"
                    f" {_provenance(site, latest)}</p>"
                    f"<p>Reproducibility: {_reproducibility(latest)}</p>")
        body.append("<h2>Verify it yourself</h2>"
                    f"<pre>{_e(verify_command)}</pre>")
    body.append("<h2>Versions</h2>" + _table(
        ["Version", "FileSet", "Manifest", "Recipe commit", "Published", "Worker",
         "Provenance", "Reproducibility", "Build"],
        ([_e(p.version), _digest(p.fileset), _digest(p.manifest), _commit(p.recipe_commit),
          _e(_since(p.published, site.now)), _e(p.worker), _provenance(site, p),
          _reproducibility(p),
          _build_links(p.build_url, p.log_url) + " " + _link(site.record(p.id), "record")]
         for p in history.publications),
        "nothing published yet"))
    if latest is not None:
        body.append(_inputs(latest, history.inputs))
        requires = [line for line in latest.requires.splitlines() if line]
        body.append("<h2>Runtime requirements</h2>" + (
            "<ul>" + "".join(f"<li><code>{_e(r)}</code></li>" for r in requires) + "</ul>"
            if requires else "<p class='muted'>none</p>"))
    body.append("<h2>Images that carry it</h2>" + _table(
        ["Image", "Name", "Version", "Carries", "Digest", "Indexed"],
        ([_e(f"{i.repository}:{i.tag}"), _e(i.name), _e(i.version), _carried(i, history.name),
          _digest(i.digest), _e(_since(i.indexed, site.now))] for i in history.images),
        "no image in the farm's registry carries it"))
    body.append("<h2>In plans</h2>" + _table(
        ["Plan", "Recipe commit", "Wave", "State", "Gate", "Worker", "Build"],
        ([_link(site.plan(p.plan_id), f"#{p.plan_id}"), _commit(p.plan.commit),
          str(p.wave) if p.wave else "-", _state(p.state, p.reason), _e(p.gate),
          _e(p.worker or ""), _build_links(p.build_url, p.log_url)] for p in history.planned),
        "never planned"))
    refused = next((p for p in history.planned if p.report), None)
    if refused is not None:
        body.append(f"<h2>Not reproduced in plan #{refused.plan_id}: why the builds differ"
                    f"</h2><pre class='report'>{_e(refused.report or '')}</pre>")
    return _page(site, history.name, "".join(body))


def _reproducibility(publication: PublicationView) -> str:
    if publication.not_reproducible:
        return ("<span class='bad'>declared not reproducible</span>, built once: "
                + _e(publication.not_reproducible))
    if not publication.gate:
        return "<span class='muted'>no gate: built once</span>"
    workers = ", ".join(publication.reproduced)
    return (f"<span class='ok'>reproduced by {len(publication.reproduced)} builds"
            f" ({_e(workers)})</span>; the gate asked {_e(publication.gate)}")


def plan_page(site: Site, plan: Plan) -> str:
    waves: dict[int, list[PlanPackage]] = {}
    for package in plan.packages:
        waves.setdefault(package.wave, []).append(package)
    title = f"Plan #{plan.id} of {plan.commit[:12]}"
    body = [f"<h1>{_e(title)}</h1><p>Started {_e(_since(plan.started, site.now))}"
            + (f"; a rebuild of {_e(plan.forced)}"
               + (" with its dependants" if plan.dependents else "") if plan.forced else "")
            + f"; {_e(plan.summary)}. {_link(plan.build_url, 'the plan build')}</p>"]
    for wave in sorted(waves):
        heading = f"Wave {wave}" if wave else "Not built"
        body.append(f"<h2>{heading}</h2>" + _table(
            ["Package", "State", "Gate", "Worker", "Build"],
            ([_link(site.package(p.name), p.name), _state(p.state, p.reason), _e(p.gate),
              _e(p.worker or ""), _build_links(p.build_url, p.log_url)]
             for p in waves[wave]), ""))
    if not plan.packages:
        body.append("<p class='muted'>Nothing to build: every package was published.</p>")
    return _page(site, title, "".join(body))


def message_page(site: Site, title: str, message: str) -> str:
    return _page(site, title, f"<h1>{_e(title)}</h1><p>{_e(message)}</p>")


def _page(site: Site, title: str, body: str) -> str:
    nav = (f"<nav>{_link(site.console + '#/kiln', 'Packages')}"
           f"{_link(site.console + '#/builders', 'Builders')}"
           f"{_link(site.console, 'Console')}</nav>")
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{_e(title)} - Kiln</title><style>{STYLE}</style></head>"
            f"<body><div class='kiln'>{nav}{body}</div></body></html>")


def _package_row(site: Site, line: PackageLine) -> str:
    p = line.latest
    if p is None:
        cells = ["<span class='muted'>-</span>"] * 6
    else:
        cells = [_e(p.version), _digest(p.fileset), _commit(p.recipe_commit),
                 _e(_since(p.published, site.now)), _e(p.worker), _provenance(site, p)]
    build = _build_links(line.build_url, None) if line.build_url else ""
    return ("<tr>" + f"<td class='name'>{_link(site.package(line.name), line.name)}</td>"
            + "".join(f"<td>{cell}</td>" for cell in cells)
            + f"<td>{_state(line.state, line.reason)}</td><td>{build}</td></tr>")


def _plans_table(site: Site, plans: list[tuple[Plan, dict[str, int]]]) -> str:
    return _table(
        ["Plan", "Recipe commit", "Started", "Why", "Packages"],
        ([_link(site.plan(plan.id), f"#{plan.id}"), _commit(plan.commit),
          _e(_since(plan.started, site.now)),
          _e(f"rebuild of {plan.forced}" + (" and dependants" if plan.dependents else "")
             if plan.forced else "push"),
          ", ".join(f"<span class='{_STATE_CLASS.get(state, '')}'>{count} {_e(state)}</span>"
                    for state, count in sorted(counts.items())) or "nothing to build"]
         for plan, counts in plans),
        "no plan yet")


def _inputs(publication: PublicationView, inputs: list[BuildInput]) -> str:
    rows = [[_e(i.name), _e(i.version), _digest(i.digest)] for i in inputs]
    text = (f"<p>Build key <code>{_e(publication.build_key)}</code>; recipe"
            f" <code>{_e(publication.recipe_path)}</code> at"
            f" {_commit(publication.recipe_commit)}")
    sources: list[str] = []
    if publication.record is not None:  # the farm's own build: its whole record
        record = json.loads(publication.record)
        sources = [f"<li><code>{_e(s['uri'])}</code> "
                   f"{_digest('sha256:' + s['sha256']) if 'sha256' in s else _commit(s['commit'])}"
                   "</li>" for s in record.get("sources", [])]
        text += (f"; lock <code>{_e(record['lock'])}</code>; sandbox"
                 f" {_e(record['sandbox']['backend'])} {_e(record['sandbox']['version'])};"
                 f" Kiln {_e(record['kiln']['version'])}")
    return ("<h2>Build inputs</h2>" + text + "</p>"
            + ("<ul>" + "".join(sources) + "</ul>" if sources else "")
            + _table(["Toolchain package", "Version", "FileSet"], rows, "no build inputs"))


def _carried(image: Image, name: str) -> str:
    carried = [p for p in image.packages if p.name == name]
    return ", ".join(_e(p.version) + (" (override)" if p.overridden else "") for p in carried)


def _provenance(site: Site, publication: PublicationView) -> str:
    checked = _since(publication.verified_at, site.now)
    if publication.verified:
        return (f"<span class='ok'>verifies</span>, signed by {_signer(publication.signer)}"
                f" <span class='muted'>(checked {_e(checked)})</span>")
    if publication.verified is None:
        return "<span class='muted'>not checked</span>"
    return (f"<span class='bad'>does not verify</span>: {_e(publication.problem)}"
            f" <span class='muted'>(checked {_e(checked)})</span>")


def _signer(signer: str) -> str:
    """'key AbCdEf...' (a key's hint, whole in the title) or a keyless identity."""
    if signer.startswith("key ") and len(signer) > 16:
        return f"<code title='{_e(signer)}'>{_e(signer[:16])}…</code>"
    return f"<code>{_e(signer)}</code>"


def _state(state: str, reason: str) -> str:
    text = f"<span class='state {_STATE_CLASS.get(state, '')}'>{_e(state)}</span>"
    return text + (f": {_e(reason)}" if reason else "")


def _build_links(build_url: str | None, log_url: str | None) -> str:
    links = [_link(build_url, "build") if build_url else "",
             _link(log_url, "log") if log_url else ""]
    return " ".join(link for link in links if link)


def _table(headings: list[str], rows: Iterable[list[str]], empty: str) -> str:
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>"
                   for row in rows)
    if not body:
        return f"<p class='muted'>{_e(empty)}</p>" if empty else ""
    head = "".join(f"<th>{_e(h)}</th>" for h in headings)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _digest(digest: str) -> str:
    short = digest.removeprefix("sha256:")[:12]
    return f"<code title='{_e(digest)}'>{_e(short)}</code>"


def _commit(commit: str) -> str:
    return f"<code title='{_e(commit)}'>{_e(commit[:12])}</code>"


def _link(url: str, text: str) -> str:
    # Only links the dashboard made itself: its own paths and the console's.
    if not url.startswith(("/", "http://", "https://")):
        return _e(text)
    return f"<a href='{_e(url)}'>{_e(text)}</a>"


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _since(moment: datetime | None, now: datetime) -> str:
    """'3 min ago', for a page read at a glance."""
    if moment is None:
        return "never"
    seconds = max(0, int((now - moment).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"
