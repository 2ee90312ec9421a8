"""Console benchmark: the Kiln dashboard's pages with 1,000 packages, served by a real
Buildbot master.

    ./dev bench console [--runs N] [--packages N]

A synthetic index (every package published three times, a plan of them all and
thirty plans of fifty) is written into a farm made here; its master serves the
dashboard over HTTP on loopback, with Debian's registry beside it for the
package page's live provenance check. Measured: each page as a browser fetches
it (the median of N), and the same page rendered in-process (the index queries
and the HTML, without HTTP and Twisted's thread pool). Target from the issue:
every page under 300 ms with 1,000 packages. Koji's, OBS's and Hydra's web
front ends cannot run here; the figures stand against the target, with
Buildbot's own REST listing of the master's builders as the floor of what one
request to this master costs.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import random
import shutil
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.timing import median

TARGET = 0.300


def fill_index(engine: Any, packages: int, seed: int = 1) -> None:
    """`packages` packages, three publications each; one plan of all, thirty of fifty."""
    from kiln.record import BuildRecord
    from master.index import writes
    from tests.unit.test_record import record_json

    rng = random.Random(seed)
    names = [f"kiln.dev/p{index}" for index in range(packages)]
    waves = [names[start:start + packages // 10] for start in range(0, packages,
                                                                    packages // 10)]
    everything = writes.record_plan(engine, "a" * 40, writes.plan_packages(
        waves, {}, {name: ["kiln.dev/libc (>= 2)"] for name in names}, {}, {}))
    place = writes.BuildPlace("w1", "http://farm/#/builders/1/builds/1",
                              "http://farm/api/v2/builders/1/builds/1/steps/build/logs/stdio/raw")
    for edition in range(3):
        for index, name in enumerate(names):
            document = record_json()
            document["output"].update(name=name, version=f"1.{edition}")
            record = BuildRecord.from_bytes(json.dumps(document).encode(), "bench")
            manifest = f"sha256:{edition:02x}{index:062x}"
            writes.record_publication(
                engine, record, writes.Published(
                    f"127.0.0.1:5000/kiln/p{index}", f"1.{edition}", manifest,
                    f"sha256:{edition + 10:02x}{index:062x}", "key bench", True),
                plan_id=everything, place=place)
    for plan in range(30):
        chosen = rng.sample(names, 50)
        plan_id = writes.record_plan(engine, f"{plan:040x}", writes.plan_packages(
            [chosen[:25], chosen[25:]], {}, {}, {}, {}))
        for name in chosen[:40]:
            writes.package_finished(engine, plan_id, name, writes.PUBLISHED)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--packages", type=int, default=1000)
    args = parser.parse_args()

    from master.dashboard.app import Dashboard
    from master.index.database import open_index
    from master.lifecycle import InitOptions, init_farm, start_master, stop_farm
    from tests.fixtures.registry import free_port, run_registry

    scratch = Path(tempfile.mkdtemp(prefix="kiln-bench-console-"))
    try:
        with run_registry(scratch / "registry") as registry:
            directory = scratch / "farm"
            farm = init_farm(directory, InitOptions(
                workers=1, registry=registry.host, www_port=free_port(), pb_port=free_port()))
            engine = open_index(farm.index, farm.path("master"))
            fill_index(engine, args.packages)
            pages = {"overview (index.html)": "index.html",
                     "a package (live provenance check)":
                         f"packages/kiln.dev/p{args.packages // 2}",
                     f"the plan of all {args.packages}": "plans/1"}
            app = Dashboard(farm, engine)
            print(f"{args.packages} packages, {3 * args.packages} publications; median of"
                  f" {args.runs}; target {TARGET * 1000:.0f} ms\n")
            print("| page | over HTTP (ms) | in-process (ms) | size (KB) | target |")
            print("| --- | --- | --- | --- | --- |")
            start_master(directory)
            try:
                for what, path in pages.items():
                    url = f"{farm.www_url}plugins/wsgi_dashboards/kiln/{path}"
                    size = len(_fetch(url))
                    http = median(args.runs, functools.partial(_fetch, url))
                    local = median(args.runs, functools.partial(_render, app, path))
                    print(f"| {what} | {http * 1000:.0f} | {local * 1000:.0f} |"
                          f" {size / 1024:.0f} | {'met' if http < TARGET else 'MISSED'} |")
                floor = median(args.runs, lambda: _fetch(f"{farm.www_url}api/v2/builders"))
                print(f"| Buildbot's REST /api/v2/builders (the floor) | {floor * 1000:.0f} |"
                      " - | - | - |")
            finally:
                stop_farm(directory)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        body: bytes = response.read()
        return body


def _render(app: Any, path: str) -> bytes:
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": f"/{path}",
               "SCRIPT_NAME": "/plugins/wsgi_dashboards/kiln", "wsgi.input": io.BytesIO()}
    return b"".join(app(environ, lambda status, headers: None))


if __name__ == "__main__":
    main()
