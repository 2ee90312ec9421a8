"""Kiln's index as the master writes it and the console reads it: a plan's packages
from queued to published, failed, skipped or retried, and a package's history."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from kiln.record import BuildRecord
from master.index import reads, writes
from master.index.database import open_index
from tests.unit.test_record import record_json

PLACE = writes.BuildPlace("w1", "http://farm/#/builders/1/builds/7",
                          "http://farm/api/v2/builders/1/builds/7/steps/build/logs/stdio/raw")


def record(name: str, version: str, **changes: Any) -> BuildRecord:
    document = record_json()
    document["output"].update(name=name, version=version, **changes)
    return BuildRecord.from_bytes(json.dumps(document).encode(), "test")


def published(name: str, tag: str, manifest: str, verified: bool | None = True
              ) -> writes.Published:
    return writes.Published(f"127.0.0.1:5000/kiln/{name.rsplit('/', 1)[-1]}", tag, manifest,
                            "sha256:" + manifest[-8:].rjust(64, "b"), "key K", verified)


def index(tmp_path: Path) -> Engine:
    return open_index("sqlite:///index.sqlite", tmp_path)


def test_a_plan_moves_its_packages_from_queued_to_what_became_of_them(tmp_path: Path) -> None:
    engine = index(tmp_path)
    packages = writes.plan_packages(
        [["kiln.dev/base", "kiln.dev/beside"], ["kiln.dev/top"]],
        {"kiln.dev/base": "sha256:1", "kiln.dev/beside": "sha256:2", "kiln.dev/top": "sha256:3"},
        {"kiln.dev/top": ["kiln.dev/base (>= 1)"]}, {"kiln.dev/odd": "bad yaml"},
        {"kiln.dev/after-odd": "kiln.dev/odd"})
    plan_id = writes.record_plan(engine, "c" * 40, packages, summary="3 packages in 2 waves")
    states = {p.name: (p.wave, p.state) for p in reads.plan_with_packages(engine, plan_id)
              .packages}  # type: ignore[union-attr]
    assert states == {"kiln.dev/base": (1, "queued"), "kiln.dev/beside": (1, "queued"),
                      "kiln.dev/top": (2, "queued"), "kiln.dev/odd": (0, "broken"),
                      "kiln.dev/after-odd": (0, "skipped")}

    writes.package_building(engine, plan_id, "kiln.dev/base", PLACE)
    writes.record_publication(engine, record("kiln.dev/base", "1"),
                              published("kiln.dev/base", "1", "sha256:m1"), plan_id=plan_id,
                              place=PLACE)
    writes.package_finished(engine, plan_id, "kiln.dev/base", writes.PUBLISHED)
    writes.package_building(engine, plan_id, "kiln.dev/beside", PLACE)
    writes.package_finished(engine, plan_id, "kiln.dev/beside", writes.RETRYING, "lost")
    writes.package_building(engine, plan_id, "kiln.dev/beside", PLACE)
    writes.package_finished(engine, plan_id, "kiln.dev/beside", writes.FAILED, "exit 2")
    writes.package_finished(engine, plan_id, "kiln.dev/top", writes.SKIPPED,
                            "kiln.dev/beside failed in wave 1")
    # A late end of a build that was published (a resumed request) changes nothing.
    writes.package_finished(engine, plan_id, "kiln.dev/base", writes.FAILED, "late")

    plan = reads.plan_with_packages(engine, plan_id)
    assert plan is not None
    now = {p.name: (p.state, p.reason) for p in plan.packages}
    assert now["kiln.dev/base"] == ("published", "")
    assert now["kiln.dev/beside"] == ("failed", "exit 2")
    assert now["kiln.dev/top"] == ("skipped", "kiln.dev/beside failed in wave 1")
    [(listed, counts)] = reads.recent_plans(engine)
    assert listed.id == plan_id
    assert counts == {"published": 1, "failed": 1, "skipped": 2, "broken": 1}


def test_the_overview_shows_each_package_once_with_its_latest_publication(
        tmp_path: Path) -> None:
    engine = index(tmp_path)
    first = writes.record_plan(engine, "a" * 40, writes.plan_packages(
        [["kiln.dev/base"]], {}, {}, {}, {}))
    writes.record_publication(engine, record("kiln.dev/base", "1"),
                              published("kiln.dev/base", "1", "sha256:m1"), plan_id=first,
                              place=PLACE)
    second = writes.record_plan(engine, "b" * 40, writes.plan_packages(
        [["kiln.dev/base", "kiln.dev/new"]], {}, {"kiln.dev/base": ["libc6"]}, {}, {}))
    writes.record_publication(engine, record("kiln.dev/base", "2"),
                              published("kiln.dev/base", "2", "sha256:m2"), plan_id=second,
                              place=PLACE)
    # Written again (a retry after a commit whose answer was lost): nothing doubles.
    writes.record_publication(engine, record("kiln.dev/base", "2"),
                              published("kiln.dev/base", "2", "sha256:m2"), plan_id=second,
                              place=PLACE)
    writes.package_building(engine, second, "kiln.dev/new", PLACE)

    lines = {line.name: line for line in reads.package_lines(engine)}
    assert sorted(lines) == ["kiln.dev/base", "kiln.dev/new"]
    base = lines["kiln.dev/base"].latest
    assert base is not None
    assert base.version == "2"
    assert base.requires == "libc6"  # the runtime requirements of the plan that built it
    assert lines["kiln.dev/new"].latest is None
    assert lines["kiln.dev/new"].state == "building"

    history = reads.package_history(engine, "kiln.dev/base")
    assert history is not None
    assert [p.version for p in history.publications] == ["2", "1"]
    assert [p.plan.commit[0] for p in history.planned] == ["b", "a"]
    assert reads.package_history(engine, "kiln.dev/none") is None

    writes.record_verification(engine, "sha256:m1", False, "signature-invalid")
    again = reads.publication_view(engine, history.publications[1].id)
    assert again is not None
    assert again.verified is False
    assert again.problem == "signature-invalid"
    assert history.inputs[0].name == "debian.org/bookworm/gcc-12"  # the newest build's
