"""Ingest benchmark: Kiln against `nix-store --add` and `ostree commit`, same trees, one run.

    ./dev bench [--runs N] [--only usr-include|small-files|large-files]

Trees: a copy of /usr/include; 50,000 small files of 100 B to 2 KiB in 500
directories; and a few large files among small ones (gcc's lib/gcc, with its
30 MB cc1 and lto1, beside 100 MB of Python's dist-packages). The floor is the
disk itself: `cp -r` of the same tree, and `tar -x` of its archive, timed alike.
"Cold" is an empty store (the source files are in the page cache
for every tool alike: they were just copied); "warm" is the same tree added
again to the same store. Kiln is timed twice: inside the process (the ingest
call alone) and as the whole `kiln fileset add` command, which adds Python's
start-up; that start-up is reported on its own line. Durability: Kiln syncs what
it records before naming it (syncfs, its default); it is also timed with
`KILN_SYNC=fsync` (every object, file and directory fsynced) and with
`KILN_SYNC=off` (what durability costs). nix-store syncs; ostree is
timed with --fsync=false and with its fsync on.
Medians of N runs; every run of every tool starts from a fresh store.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.timing import median, timed  # noqa: E402
from kiln.store import Store  # noqa: E402
from kiln.store.ingest import ingest_directory  # noqa: E402

KILN = str(REPO / ".venv" / "bin" / "kiln")


def make_small_files(root: Path, count: int = 50_000, dirs: int = 500) -> None:
    rng = random.Random(42)
    for index in range(count):
        directory = root / f"d{index % dirs:03d}" / f"s{index % 7}"
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"f{index}.txt").write_bytes(rng.randbytes(rng.randrange(100, 2048)))


def make_large_files(root: Path, budget: int = 100 << 20) -> None:
    """gcc's lib/gcc (its large cc1, lto1) beside the first 100 MB of dist-packages."""
    gcc = sorted(Path("/usr/lib/gcc/x86_64-linux-gnu").glob("*"))
    shutil.copytree(gcc[-1], root / "lib-gcc", symlinks=True)
    packages = Path("/usr/lib/python3/dist-packages")
    taken = 0
    for entry in sorted(packages.iterdir()):
        if taken >= budget:
            break
        target = root / "dist-packages" / entry.name
        if entry.is_dir() and not entry.is_symlink():
            shutil.copytree(entry, target, symlinks=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(entry, target, follow_symlinks=False)
        taken += tree_stats(target)[1] if target.is_dir() else target.lstat().st_size


def tree_stats(root: Path) -> tuple[int, int]:
    files = size = 0
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                files += 1
                size += os.lstat(path).st_size
    return files, size


def run(*command: str | Path) -> None:
    subprocess.run([str(c) for c in command], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE)


def _kiln_in_process(store_dir: Path, tree: Path, sync: str = "syncfs") -> None:
    # Store.open each time, as a separate command would: no parsed records carried over.
    saved = os.environ.get("KILN_SYNC")
    os.environ["KILN_SYNC"] = sync
    try:
        ingest_directory(Store.open(store_dir), tree, name="bench.kiln.dev/tree", version="1")
    finally:
        if saved is None:
            os.environ.pop("KILN_SYNC", None)
        else:
            os.environ["KILN_SYNC"] = saved


def tools(tree: Path, base: Path) -> dict[str, Callable[[], object]]:
    """One action per tool, each on its own store under `base`."""
    kiln_add: list[str | Path] = [KILN, "--store", base / "kiln-cmd", "fileset", "add", tree,
                                  "--name", "bench.kiln.dev/tree", "--version", "1"]
    nix: list[str | Path] = ["nix-store", "--store", base / "nix", "--add", tree]
    # A bare repository keeps files as files, as Kiln's store does.
    run("ostree", f"--repo={base / 'ostree'}", "init", "--mode=bare")
    ostree: list[str | Path] = ["ostree", f"--repo={base / 'ostree'}", "commit",
                                "--branch=bench", "--fsync=false", f"--tree=dir={tree}"]
    run("ostree", f"--repo={base / 'ostree-fsync'}", "init", "--mode=bare")
    ostree_fsync: list[str | Path] = ["ostree", f"--repo={base / 'ostree-fsync'}", "commit",
                                      "--branch=bench", "--fsync=true", f"--tree=dir={tree}"]
    archive = base.parent / "tree.tar"
    if not archive.exists():  # made once per tree, untimed: the floor reads it
        run("tar", "-cf", archive, "-C", tree, ".")
    (base / "untarred").mkdir()
    return {
        "floor: cp -r": partial(run, "cp", "-r", tree, base / "copied"),
        "floor: tar -x": partial(run, "tar", "-xf", archive, "-C", base / "untarred"),
        "kiln (in-process)": partial(_kiln_in_process, base / "kiln-inproc", tree),
        "kiln (in-process, KILN_SYNC=fsync)": partial(_kiln_in_process, base / "kiln-fsync",
                                                      tree, "fsync"),
        "kiln (in-process, KILN_SYNC=off)": partial(_kiln_in_process, base / "kiln-off",
                                                    tree, "off"),
        "kiln fileset add": partial(run, *kiln_add),
        "nix-store --add": partial(run, *nix),
        "ostree commit": partial(run, *ostree),
        "ostree commit --fsync=true": partial(run, *ostree_fsync),
    }


def measure(tree: Path, scratch: Path, runs: int) -> dict[str, dict[str, float]]:
    """Medians of cold and warm runs; tools take turns so that drift hits all alike."""
    results: dict[str, dict[str, list[float]]] = {}
    for index in range(runs):
        base = scratch / f"run{index}"
        base.mkdir()
        actions = tools(tree, base)
        order = list(actions)
        random.Random(index).shuffle(order)
        for phase in ("cold", "warm"):
            for tool in order:
                # What the tool before left unsynced is flushed first, untimed: syncfs
                # would otherwise pay for another tool's writes.
                os.sync()
                seconds = timed(actions[tool])
                results.setdefault(tool, {}).setdefault(phase, []).append(seconds)
    # Stores are removed only at the end: deleting gigabytes between runs makes
    # this VM's disk slow for a while (it discards freed blocks), which would
    # penalise whichever tool runs next.
    return {tool: {phase: statistics.median(values) for phase, values in phases.items()}
            for tool, phases in results.items()}


def startup_seconds(runs: int = 10) -> float:
    return median(runs, lambda: run(KILN, "--version"))


def report(name: str, files: int, size: int, medians: dict[str, dict[str, float]]) -> str:
    lines = [f"## {name}: {files} files, {size / 1e6:.0f} MB", "",
             "| tool | cold (s) | warm (s) | warm/cold |", "| --- | ---: | ---: | ---: |"]
    for tool, phases in medians.items():
        lines.append(f"| {tool} | {phases['cold']:.3f} | {phases['warm']:.3f} |"
                     f" {phases['warm'] / phases['cold']:.1%} |")
    kiln_cmd = medians["kiln fileset add"]
    kiln_in = medians["kiln (in-process)"]
    lines += ["", "| ratio | cold | warm |", "| --- | ---: | ---: |"]
    for peer in ("nix-store --add", "ostree commit", "ostree commit --fsync=true"):
        for label, kiln in (("kiln fileset add", kiln_cmd), ("kiln in-process", kiln_in)):
            lines.append(f"| {peer} / {label} | {medians[peer]['cold'] / kiln['cold']:.2f}x"
                         f" | {medians[peer]['warm'] / kiln['warm']:.2f}x |")
    # Against the disk: how far Kiln's cold ingest is from copying the tree at all.
    lines += ["", "| kiln cold / the floor | kiln fileset add | kiln in-process |",
              "| --- | ---: | ---: |"]
    for floor in ("floor: cp -r", "floor: tar -x"):
        lines.append(f"| {floor.removeprefix('floor: ')} | "
                     f"{kiln_cmd['cold'] / medians[floor]['cold']:.2f}x |"
                     f" {kiln_in['cold'] / medians[floor]['cold']:.2f}x |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", choices=["usr-include", "small-files", "large-files"])
    parser.add_argument("--json", type=Path, help="also write the medians here")
    parser.add_argument("--scratch", type=Path, default=Path("/var/tmp"),
                        help="where trees and stores go (default /var/tmp, on disk);"
                             " /dev/shm measures the tools without the disk")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="kiln-bench-", dir=args.scratch) as work:
        scratch = Path(work)
        trees: dict[str, Path] = {}
        if args.only in (None, "usr-include"):
            trees["usr-include"] = scratch / "trees" / "include"
            shutil.copytree("/usr/include", trees["usr-include"], symlinks=True)
        if args.only in (None, "small-files"):
            trees["small-files"] = scratch / "trees" / "small"
            make_small_files(trees["small-files"])
        if args.only in (None, "large-files"):
            trees["large-files"] = scratch / "trees" / "large"
            make_large_files(trees["large-files"])
        # Files changed in the last two seconds are never trusted from the hash
        # cache (kiln.store.hashcache.RACY_NS); let the fresh copies age past it.
        time.sleep(2.5)
        out: dict[str, object] = {"startup_seconds": startup_seconds()}
        print(f"scratch: {args.scratch}; runs: {args.runs}")
        print(f"kiln start-up (`kiln --version`, median of 10): {out['startup_seconds']:.3f} s")
        for name, tree in trees.items():
            work_dir = scratch / f"work-{name}"
            work_dir.mkdir()
            medians = measure(tree, work_dir, args.runs)
            files, size = tree_stats(tree)
            out[name] = {"files": files, "bytes": size, "medians": medians}
            print()
            print(report(name, files, size, medians))
        if args.json:
            args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
