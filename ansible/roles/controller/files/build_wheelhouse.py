"""Build what the hosts install Kiln from, on the controller: Kiln's own wheel and a tar of
every dependency's wheel at the versions constraints.txt pins.

    python build_wheelhouse.py SOURCE OUT    ->  OUT/build.json, one line of JSON on stdout

The dependencies' tar is named by the constraints' hash and made only when missing
(minutes, once). Kiln's wheel is built from a clean copy of the source (a stale
build/ directory cannot leak into it) with a fixed SOURCE_DATE_EPOCH, so the same
source makes the same bytes: the wheel on disk is replaced only when Kiln changed,
and its sha256 (the release) is what the hosts' units carry, so a service restarts
exactly when the Kiln it runs changed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

PACKAGES = ("kiln", "workers", "provenance", "master")
TOP_FILES = ("pyproject.toml", "README.md")
EPOCH = "315532800"  # 1980-01-01, the earliest time a zip entry can hold


def main(source: Path, out: Path) -> dict[str, object]:
    out.mkdir(parents=True, exist_ok=True)
    constraints = (source / "constraints.txt").read_bytes()
    pins = hashlib.sha256(constraints).hexdigest()[:16]
    changed = False
    with tempfile.TemporaryDirectory(prefix="kiln-wheelhouse-") as scratch:
        tree = _clean_copy(source, Path(scratch) / "src")
        wheel = _kiln_wheel(tree, Path(scratch) / "kiln")
        deps = out / f"deps-{pins}.tar"
        if not deps.exists():
            _dependency_tar(tree, source / "constraints.txt", Path(scratch), deps)
            changed = True
        target = out / wheel.name
        if not target.exists() or target.read_bytes() != wheel.read_bytes():
            shutil.copyfile(wheel, target)
            changed = True
    for stale in out.glob("kiln-*.whl"):
        if stale.name != wheel.name:
            stale.unlink()
    shutil.copyfile(source / "constraints.txt", out / "constraints.txt")
    build = {"wheel": wheel.name, "release": _sha256(target), "deps": deps.name,
             "pins": pins}
    (out / "build.json").write_text(json.dumps(build, indent=2) + "\n")
    return {"changed": changed, **build}


def _clean_copy(source: Path, tree: Path) -> Path:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for package in PACKAGES:
        shutil.copytree(source / package, tree / package, ignore=ignore)
    for name in TOP_FILES:
        shutil.copyfile(source / name, tree / name)
    return tree


def _kiln_wheel(tree: Path, out: Path) -> Path:
    env = {**os.environ, "SOURCE_DATE_EPOCH": EPOCH, "PYTHONHASHSEED": "0"}
    _pip(["wheel", "--no-deps", "-w", str(out), str(tree)], env)
    (wheel,) = out.glob("kiln-*.whl")
    return wheel


def _dependency_tar(tree: Path, constraints: Path, scratch: Path, deps: Path) -> None:
    wheels = scratch / "deps"
    _pip(["wheel", "-c", str(constraints), "-w", str(wheels), str(tree)], dict(os.environ))
    for own in wheels.glob("kiln-*.whl"):
        own.unlink()
    partial = deps.with_suffix(".partial")
    with tarfile.open(partial, "w") as tar:
        for wheel in sorted(wheels.iterdir()):
            tar.add(wheel, arcname=wheel.name)
    partial.rename(deps)


def _pip(arguments: list[str], env: dict[str, str]) -> None:
    done = subprocess.run([sys.executable, "-m", "pip", "-q", *arguments], env=env,
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"pip {arguments[0]} failed:\n{done.stdout[-2000:]}{done.stderr[-4000:]}")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve())))
