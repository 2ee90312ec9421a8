"""Index benchmark: the blast radius of a fix, asked of the index and of SBOMs.

    ./dev bench index [--runs N] [--images N] [--no-postgres]

A synthetic index of 10,000 images of 100 packages each, drawn from 50,000 package
versions (5,000 names, ten versions each; a few names, like a TLS library, sit in
a third of the images, most in a few), on SQLite and on PostgreSQL (a throwaway
cluster, as the tests start one). Measured in-process: `kiln query affected NAME
--below VERSION` for the most common name (the worst case: thousands of images
carry it), the median of N. The anchor: what syft/grype-style tools do, one SBOM
per image scanned for the package and its version compared, on the same 10,000
images' SPDX-style SBOMs, read from disk (the page cache warm).
"""

from __future__ import annotations

import argparse
import functools
import json
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.timing import median

NAMES = 5000
VERSIONS = 10
PER_IMAGE = 100
TARGET = 0.050


def version(index: int) -> str:
    # Debian-shaped versions that need dpkg's ordering: epochs, tildes, revisions.
    return ["1.0~rc1-1", "1.0-1", "1.0-1+deb12u1", "1.0.1-1", "1.1~beta-1", "1.1-1",
            "1.1-2", "2.0-1", "1:0.9-1", "1:1.0-1"][index]


def synthetic_images(count: int, seed: int = 7) -> Iterator[list[tuple[str, str]]]:
    """Each image: 100 (name, version) pairs; name 0 is in about a third of them, every
other name in about 2% (the long tail of a distribution)."""
    rng = random.Random(seed)
    for _ in range(count):
        chosen = rng.sample(range(1, NAMES), PER_IMAGE)
        if rng.random() < 1 / 3:  # the common library, in a third of the images
            chosen[0] = 0
        yield [(f"kiln.dev/p{n}", version(rng.randrange(VERSIONS))) for n in chosen]


def fill(engine: Any, images: list[list[tuple[str, str]]]) -> None:
    from sqlalchemy import insert

    from master.index.models import Image, ImagePackage

    when = datetime(2026, 12, 3)
    with engine.begin() as connection:
        connection.execute(insert(Image), [
            {"id": i + 1, "repository": "registry.example/images/app", "tag": f"v{i}",
             "digest": f"sha256:{i:064x}", "name": f"app{i}", "version": "1",
             "indexed": when} for i in range(len(images))])
        rows = [{"image_id": i + 1, "name": name, "version": v,
                 "fileset": f"sha256:{hash((name, v)) & (2**64 - 1):064x}",
                 "overridden": False}
                for i, packages in enumerate(images) for name, v in packages]
        for start in range(0, len(rows), 50_000):
            connection.execute(insert(ImagePackage), rows[start:start + 50_000])


def write_sboms(directory: Path, images: list[list[tuple[str, str]]]) -> None:
    for i, packages in enumerate(images):
        (directory / f"app{i}.spdx.json").write_text(json.dumps({
            "spdxVersion": "SPDX-2.3", "name": f"app{i}",
            "packages": [{"name": name, "versionInfo": v, "SPDXID": f"SPDXRef-{n}"}
                         for n, (name, v) in enumerate(packages)]}))


def scan_sboms(directory: Path, name: str, below: str) -> list[str]:
    """The anchor: every SBOM read, every package compared (as grype does per image)."""
    from kiln.naming import version_key

    limit = version_key(below)
    found = []
    for path in sorted(directory.iterdir()):
        document = json.loads(path.read_bytes())
        for package in document["packages"]:
            if package["name"] == name and version_key(package["versionInfo"]) < limit:
                found.append(document["name"])
    return found


@contextmanager
def engines(scratch: Path, postgres: bool) -> Iterator[list[tuple[str, Any]]]:
    from master.index.database import open_index

    found = [("SQLite", open_index(f"sqlite:///{scratch / 'index.sqlite'}"))]
    if not postgres:
        yield found
        return
    from tests.fixtures.postgres import run_postgres

    with run_postgres() as pg:
        found.append(("PostgreSQL", open_index(pg.url("kiln_index"))))
        try:
            yield found
        finally:
            found[-1][1].dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()

    from sqlalchemy import text

    from master.index import queries

    scratch = Path(tempfile.mkdtemp(prefix="kiln-bench-index-"))
    try:
        images = list(synthetic_images(args.images))
        name, below = "kiln.dev/p0", "1.1-1"
        carriers = sum(1 for image in images for n, v in image if n == name)
        print(f"{args.images} images x {PER_IMAGE} packages from {NAMES * VERSIONS} versions;"
              f" {name} is in {carriers} images; median of {args.runs}\n")
        print("| what | fill (s) | affected (ms) | images found | target |")
        print("| --- | ---: | ---: | ---: | --- |")
        expected = None
        with engines(scratch, not args.no_postgres) as found:
            for label, engine in found:
                started = time.perf_counter()
                fill(engine, images)
                if engine.dialect.name == "postgresql":
                    with engine.begin() as connection:
                        connection.execute(text("ANALYZE"))
                filled = time.perf_counter() - started
                answer = queries.affected(engine, name, below)
                expected = expected or sorted(c["name"] for c in answer["images"])
                assert sorted(c["name"] for c in answer["images"]) == expected
                took = median(args.runs, functools.partial(queries.affected, engine, name,
                                                           below))
                print(f"| index on {label} | {filled:.1f} | {took * 1000:.1f} |"
                      f" {len(answer['images'])} | {'met' if took < TARGET else 'MISSED'} |")
        sboms = scratch / "sboms"
        sboms.mkdir()
        write_sboms(sboms, images)
        scanned = scan_sboms(sboms, name, below)
        assert sorted(scanned) == expected, "the index and the SBOMs disagree"
        scan = median(max(1, args.runs // 5), lambda: scan_sboms(sboms, name, below))
        print(f"| scanning {args.images} SBOMs (the anchor) | - | {scan * 1000:.0f} |"
              f" {len(scanned)} | - |")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
