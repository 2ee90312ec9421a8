"""Provenance verification benchmark: one package, and a 100-package image.

    ./dev bench verify [--runs N]

A registry (Debian's docker-registry on loopback) holds 100 made-up packages,
each with its signed provenance (a farm key, attached as a referrer), and an
image of all of them with its own signed statement. Timed:

- one package's provenance, in-process and warm (the FileSet already in the
  store, as on a consumer that pulled it before): fetch the artifact manifest,
  its referrers and bundle, check the signature, subject, predicate and policy;
- the whole image (its statement, then every package as above), in-process and
  as `kiln verify` (Python's start-up included);
- the peer: `sigstore verify identity --offline` (sigstore-python's own CLI) of
  one keyless bundle from ../shared/testdata/sigstore, when that data is there.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


from bench.timing import kiln, median  # noqa: E402
from kiln.image.location import open_location  # noqa: E402
from kiln.package import PackageMetadata  # noqa: E402
from kiln.registry.config import load_config  # noqa: E402
from kiln.store import Store  # noqa: E402
from kiln.store.ingest import ingest_directory  # noqa: E402
from provenance.check import Checker  # noqa: E402
from provenance.policy import load_policy  # noqa: E402
from tests.fixtures.keys import write_key  # noqa: E402
from tests.fixtures.registry import run_registry  # noqa: E402

PACKAGES = 100
SHARED = REPO.parent / "shared" / "testdata" / "sigstore"
WHEEL_IDENTITY = ("https://github.com/trailofbits/rfc8785.py/.github/workflows/release.yml"
                  "@refs/tags/v0.1.2")
WHEEL_ISSUER = "https://token.actions.githubusercontent.com"


def record(fileset_name: str, version: str, digest: str, archive: str) -> dict[str, object]:
    fake = "sha256:" + "ab" * 32
    return {"recipe": {"repo": "https://git.example.org/recipes.git", "commit": "c" * 40,
                       "path": fileset_name.rsplit("/", 1)[-1], "tree": fake},
            "sources": [], "build_requires": [], "lock": fake,
            "sandbox": {"backend": "bwrap", "version": "0.8.0"},
            "kiln": {"version": "0.1.0", "commit": "f" * 40},
            "output": {"name": fileset_name, "version": version, "digest": digest,
                       "archive": archive},
            "log": fake, "build_key": fake, "source_date_epoch": 1764410400,
            "started": "2026-11-29T10:00:00Z", "finished": "2026-11-29T10:00:01Z"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="kiln-bench-verify-"))
    try:
        with run_registry(scratch / "registry") as registry:
            run(args, scratch, registry.host)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def run(args: argparse.Namespace, scratch: Path, host: str) -> None:
    from kiln.registry.artifact import ArchiveCache

    config_file = scratch / "registries.yaml"
    config_file.write_text(json.dumps({"registries": [{"prefix": "",
                                                       "location": f"{host}/kiln"}]}))
    env = {"KILN_REGISTRIES": str(config_file)}
    os.environ.update(env)
    private, public = write_key(scratch, "farm")
    store_dir = scratch / "farm-store"
    store = Store.open(store_dir)
    names = []
    for index in range(PACKAGES):
        root = scratch / "trees" / f"p{index:03d}"
        (root / "usr/bin").mkdir(parents=True)
        (root / "usr/bin" / f"p{index:03d}").write_text(f"#!/bin/sh\necho {index}\n")
        name = f"kiln.dev/bench/p{index:03d}"
        fileset = ingest_directory(store, root, name=name, version="1-1",
                                   metadata=PackageMetadata()).fileset
        archive = ArchiveCache(store).layer(fileset)[0].digest
        path = scratch / f"record-{index}.json"
        path.write_text(json.dumps(record(name, "1-1", fileset.digest, archive)))
        kiln(store_dir, "attest", path, "--signer", f"file:{private}", env=env)
        names.append(name)
    spec = scratch / "image.yaml"
    spec.write_text(json.dumps({"name": "kiln.dev/images/bench", "version": "1",
                                "packages": names}))
    image = f"{host}/images/bench:1"
    kiln(store_dir, "image", "build", spec, "--push", image, "--sign", f"file:{private}",
         env=env)
    policy = scratch / "policy.yaml"
    policy.write_text(json.dumps({"trust": [{"prefix": "", "keys": [str(public)]}],
                                  "builders": ["https://kiln.dev/builders/local"]}))

    consumer_dir = scratch / "consumer"
    kiln(consumer_dir, "verify", image, "--policy", policy, env=env)  # pulls: now warm
    consumer = Store.open(consumer_dir)
    config = load_config()
    checker = Checker(consumer, config, load_policy(policy))
    package_ref = config.locate(names[0], "1-1")
    one = median(args.runs, lambda: checker.package(package_ref))
    whole = median(max(3, args.runs // 4),
                   lambda: checker.image(open_location(image, config)))
    command = median(max(3, args.runs // 4),
                     lambda: kiln(consumer_dir, "verify", image, "--policy", policy, env=env))
    one_command = median(max(3, args.runs // 4),
                         lambda: kiln(consumer_dir, "verify", f"{names[0]}@1-1", "--policy",
                                      policy, env=env))
    checker.close()
    print("provenance verification (key-signed, warm store, registry on loopback):")
    print(f"  one package, in-process        {one * 1000:8.1f} ms")
    print(f"  one package, kiln verify        {one_command * 1000:8.1f} ms")
    print(f"  {PACKAGES}-package image, in-process  {whole * 1000:8.1f} ms"
          f"  ({whole / (PACKAGES + 1) * 1000:.1f} ms per statement)")
    print(f"  {PACKAGES}-package image, kiln verify  {command * 1000:8.1f} ms")
    peer(args, one_command)


def peer(args: argparse.Namespace, kiln_one: float) -> None:
    bundle = SHARED / "bundle_v3_github.whl.sigstore"
    if not bundle.exists():
        print("  (no ../shared/testdata/sigstore: the sigstore CLI peer is skipped)")
        return
    command = [sys.executable, "-m", "sigstore", "verify", "identity", "--offline",
               "--bundle", str(bundle), "--cert-identity", WHEEL_IDENTITY,
               "--cert-oidc-issuer", WHEEL_ISSUER, str(SHARED / "bundle_v3_github.whl")]

    def verify() -> None:
        subprocess.run(command, check=True, capture_output=True)

    seconds = median(max(3, args.runs // 4), verify)
    print(f"  peer: sigstore verify identity --offline (one keyless bundle)"
          f" {seconds * 1000:8.1f} ms")
    print(f"  ratio sigstore CLI / kiln verify, one artifact each: {seconds / kiln_one:.1f}x")


if __name__ == "__main__":
    main()
