"""Image benchmark: composing by set against building by steps (`buildah bud`).

    ./dev bench image [--runs N] [--images N]

The packages: 100 made-up packages of about 220 KB each (22 MB in all), already
in a scratch store. Kiln composes them into an image (resolve + layers + install
links + config + manifest + SBOM, written as an OCI layout) in-process and as a
`kiln image build` command; buildah builds an equivalent Containerfile (FROM
scratch, one COPY per package) with its own storage. Then:

- a one-package update: `kiln image update` of the pushed image against a
  rebuild and push with buildah, as bytes that reached the registry (blobs it
  did not hold before), Kiln's requests, and time;
- registry storage for N images (default 20) that share all but one package
  each, pushed by Kiln and by buildah to two fresh registries.

Every figure is measured in this one run; the registries are Debian's
docker-registry on loopback, started here.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.timing import kiln, median  # noqa: E402
from kiln.image.build import build_from_spec  # noqa: E402
from kiln.image.location import Attachment, LayoutStore  # noqa: E402
from kiln.image.sbom import SBOM_TYPE, spdx_document  # noqa: E402
from kiln.image.spec import load_image_spec  # noqa: E402
from kiln.package import PackageMetadata  # noqa: E402
from kiln.store import Store  # noqa: E402
from kiln.store.ingest import ingest_directory  # noqa: E402
from tests.fixtures.registry import Registry, run_registry  # noqa: E402

PACKAGES = 100
PACKAGE_BYTES = 220_000
BUILDAH_FLAGS = ["bud", "--ulimit", "nofile=1024:1024", "--layers"]


def make_packages(store: Store, scratch: Path) -> list[str]:
    """100 packages of a few files each, deterministic content."""
    rng = random.Random(42)
    names = []
    for index in range(PACKAGES):
        root = scratch / "trees" / f"p{index:03d}"
        for part in range(4):
            path = root / "usr" / "lib" / f"p{index:03d}" / f"part{part}.bin"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(rng.randbytes(PACKAGE_BYTES // 4))
        (root / "usr" / "bin").mkdir(parents=True, exist_ok=True)
        (root / "usr" / "bin" / f"p{index:03d}").write_text("#!/bin/sh\necho p\n")
        name = f"kiln.dev/bench/p{index:03d}"
        ingest_directory(store, root, name=name, version="1-1", metadata=PackageMetadata())
        names.append(name)
    return names


def write_spec(directory: Path, names: list[str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "image.yaml"
    path.write_text(json.dumps({"name": "kiln.dev/images/bench", "version": "1",
                                "packages": names, "entrypoint": ["/usr/bin/p000"]}))
    return path


def write_containerfile(scratch: Path, indexes: list[int], changed: int | None = None) -> Path:
    lines = ["FROM scratch"]
    for index in indexes:
        tree = f"trees/p{index:03d}" if index != changed else f"trees-v2/p{index:03d}"
        lines.append(f"COPY {tree}/ /packages/kiln.dev/bench/p{index:03d}/1-1/")
    path = scratch / f"Containerfile.{changed}"
    path.write_text("\n".join(lines) + "\n")
    return path


class Buildah:
    def __init__(self, scratch: Path) -> None:
        self.root = scratch / "buildah"
        self.runroot = Path(tempfile.mkdtemp(prefix="kiln-bb-"))  # podman's 50-char limit

    def run(self, *args: str) -> None:
        subprocess.run(["buildah", "--root", str(self.root), "--runroot", str(self.runroot),
                        *args], check=True, capture_output=True)

    def build(self, scratch: Path, containerfile: Path, tag: str) -> None:
        self.run(*BUILDAH_FLAGS, "-f", str(containerfile), "-t", tag, str(scratch))

    def push(self, tag: str, target: str) -> None:
        self.run("push", "--tls-verify=false", tag, f"docker://{target}")

    def close(self) -> None:
        for path in (self.root, self.runroot):
            subprocess.run(["umount", "-R", str(path)], capture_output=True, check=False)
            shutil.rmtree(path, ignore_errors=True)


def blob_bytes(registry: Registry) -> int:
    base = registry.root / "docker/registry/v2/blobs"
    return sum(p.stat().st_size for p in base.rglob("data")) if base.exists() else 0


def changed_package(store: Store, scratch: Path, index: int) -> None:
    """Version 2-1 of package `index`: one file changed."""
    source = scratch / "trees" / f"p{index:03d}"
    target = scratch / "trees-v2" / f"p{index:03d}"
    if not target.exists():
        shutil.copytree(source, target)
        (target / "usr" / "lib" / f"p{index:03d}" / "part0.bin").write_bytes(
            random.Random(index).randbytes(PACKAGE_BYTES // 4))
    ingest_directory(store, target, name=f"kiln.dev/bench/p{index:03d}", version="2-1",
                     metadata=PackageMetadata())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--scratch", type=Path, help="where to work (default: a temp dir)")
    args = parser.parse_args()
    if shutil.which("buildah") is None:
        raise SystemExit("buildah is missing: ./dev bench installs it")
    scratch = Path(tempfile.mkdtemp(prefix="kiln-bench-image-", dir=args.scratch))
    buildah = Buildah(scratch)
    try:
        run(args, scratch, buildah)
    finally:
        buildah.close()
        shutil.rmtree(scratch, ignore_errors=True)


def run(args: argparse.Namespace, scratch: Path, buildah: Buildah) -> None:
    store_dir = scratch / "store"
    store = Store.open(store_dir)
    names = make_packages(store, scratch)
    spec_path = write_spec(scratch / "image", names)
    containerfile = write_containerfile(scratch, list(range(PACKAGES)))
    bench_compose(args, scratch, store, spec_path, containerfile, buildah)
    with run_registry(scratch / "registry-kiln") as kiln_registry, \
            run_registry(scratch / "registry-buildah") as buildah_registry:
        config = scratch / "registries.yaml"
        config.write_text(json.dumps({"registries": [
            {"prefix": "", "location": f"{kiln_registry.host}/kiln"}]}))
        env = {"KILN_REGISTRIES": str(config)}
        registries = (kiln_registry, buildah_registry)
        bench_update(scratch, store, spec_path, containerfile, buildah, registries, env)
        bench_storage(args, scratch, store, names, buildah, registries, env)


def bench_compose(args: argparse.Namespace, scratch: Path, store: Store, spec_path: Path,
                  containerfile: Path, buildah: Buildah) -> None:
    spec = load_image_spec(spec_path)

    def compose() -> None:
        composed = build_from_spec(store, spec)
        sbom = Attachment(SBOM_TYPE, spdx_document(composed.image), SBOM_TYPE)
        LayoutStore(scratch / "oci", "1").put(composed.image, [sbom], {})

    compose()  # the archives are exported once, as a push of the packages would have
    in_process = median(args.runs, compose)
    command = median(args.runs, lambda: kiln(store.layout.root, "image", "build", spec_path,
                                             "-o", f"oci:{scratch / 'oci-cli'}:1"))
    buildah_times = []
    for run_index in range(max(1, args.runs // 2)):
        buildah.run("rmi", "--all", "--force")
        start = time.perf_counter()
        buildah.build(scratch, containerfile, f"bench:{run_index}")
        buildah_times.append(time.perf_counter() - start)
    buildah_time = statistics.median(buildah_times)
    size = sum(p.stat().st_size for p in (scratch / "trees").rglob("*") if p.is_file())
    print(f"compose {PACKAGES} packages ({size / 1e6:.1f} MB):")
    print(f"  kiln in-process   {in_process * 1000:8.1f} ms")
    print(f"  kiln command      {command * 1000:8.1f} ms")
    print(f"  buildah bud       {buildah_time * 1000:8.1f} ms")
    print(f"  ratio buildah / kiln: {buildah_time / in_process:.1f}x in-process,"
          f" {buildah_time / command:.1f}x as commands")


def bench_update(scratch: Path, store: Store, spec_path: Path, containerfile: Path,
                 buildah: Buildah, registries: tuple[Registry, Registry],
                 env: dict[str, str]) -> None:
    kiln_registry, buildah_registry = registries
    target = f"{kiln_registry.host}/images/bench:1"
    kiln(store.layout.root, "image", "build", spec_path, "--push", target, env=env)
    buildah.build(scratch, containerfile, "bench:base")
    buildah.push("bench:base", f"{buildah_registry.host}/images/bench:1")

    changed = PACKAGES // 2
    changed_package(store, scratch, changed)
    before = blob_bytes(kiln_registry)
    start = time.perf_counter()
    report = json.loads(kiln(store.layout.root, "image", "update", target, "--set",
                             f"kiln.dev/bench/p{changed:03d}=2-1", "--json", env=env))
    kiln_update = time.perf_counter() - start
    kiln_sent = blob_bytes(kiln_registry) - before

    before = blob_bytes(buildah_registry)
    start = time.perf_counter()
    buildah.build(scratch, write_containerfile(scratch, list(range(PACKAGES)), changed),
                  "bench:updated")
    buildah.push("bench:updated", f"{buildah_registry.host}/images/bench:1")
    buildah_update = time.perf_counter() - start
    buildah_sent = blob_bytes(buildah_registry) - before
    requests = sum(report["requests"].values())
    print(f"one-package update (p{changed:03d} of {PACKAGES}):")
    print(f"  kiln    {kiln_update * 1000:8.1f} ms, {kiln_sent / 1e3:9.1f} kB of new blobs,"
          f" {report['bytes_sent'] / 1e3:.1f} kB sent in {requests} requests")
    print(f"  buildah {buildah_update * 1000:8.1f} ms, {buildah_sent / 1e3:9.1f} kB of"
          " new blobs (rebuild from the changed COPY on, then push)")
    print(f"  ratio buildah / kiln: {buildah_update / kiln_update:.1f}x time,"
          f" {buildah_sent / max(kiln_sent, 1):.1f}x bytes")


def bench_storage(args: argparse.Namespace, scratch: Path, store: Store, names: list[str],
                  buildah: Buildah, registries: tuple[Registry, Registry],
                  env: dict[str, str]) -> None:
    kiln_registry, buildah_registry = registries
    for image in range(1, args.images - 1):  # with the base and its update: N images
        index = (image * 37) % PACKAGES  # spread the changed package through the list
        changed_package(store, scratch, index)
        variant = [n if n != f"kiln.dev/bench/p{index:03d}" else f"{n} (>= 2-1)"
                   for n in names]
        spec_file = write_spec(scratch / f"image-{image}", variant)
        kiln(store.layout.root, "image", "build", spec_file, "--push",
             f"{kiln_registry.host}/images/bench:v{image}", env=env)
        buildah.build(scratch, write_containerfile(scratch, list(range(PACKAGES)), index),
                      f"bench:v{image}")
        buildah.push(f"bench:v{image}", f"{buildah_registry.host}/images/bench:v{image}")
    kiln_total = blob_bytes(kiln_registry)
    buildah_total = blob_bytes(buildah_registry)
    print(f"registry storage, {args.images} images sharing all but one package each:")
    print(f"  kiln    {kiln_total / 1e6:8.1f} MB")
    print(f"  buildah {buildah_total / 1e6:8.1f} MB")
    print(f"  ratio buildah / kiln: {buildah_total / kiln_total:.1f}x")


if __name__ == "__main__":
    main()
