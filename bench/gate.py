"""Gate benchmark: push to published for one leaf that compiles C, on a farm of two
idle workers without the reproducibility gate (1 of 1) and with it (2 of 2).

    ./dev bench gate [--runs N]

The gate's second build runs on the other worker at the same time as the first,
so its cost should be the slower of two builds and a comparison, not a second
build after the first (goal: under 1.3x). Each farm has its own registry (the
same recipe has the same plan key: one farm would find the other's published).
Needs root, bubblewrap and a network path to Debian for the first toolchain.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.timing import REPO

TOOLCHAIN = ('["debian.org/bookworm/gcc-12", "debian.org/bookworm/libc6-dev",'
             ' "debian.org/bookworm/dash", "debian.org/bookworm/coreutils"]')


def write_leaf(recipes: Path, edition: int) -> None:
    (recipes / "leaf").mkdir(parents=True, exist_ok=True)
    (recipes / "leaf" / "recipe.yaml").write_text(
        "package: {name: kiln.dev/leaf, version: '1'}\n"
        f"build-requires: {TOOLCHAIN}\n"
        "env: {GCC_EXEC_PREFIX: /usr/lib/gcc/, CC: gcc-12}\n"
        "build: |\n"
        f"  printf '#include <stdio.h>\\nint main(void) {{ puts(\"%s\"); return 0; }}\\n'"
        f" {edition} > /tmp/leaf.c\n"
        "  mkdir -p /out/usr/bin\n"
        "  gcc-12 -O2 -o /out/usr/bin/leaf /tmp/leaf.c\n")


def push_to_published(builds: int, runs: int) -> list[float]:
    """Seconds from `git push` to the plan's end, `runs` times, on a fresh farm."""
    from master.lifecycle import InitOptions, init_farm, start_farm, stop_farm, wait_for_commit
    from tests.fixtures.registry import free_port, run_registry

    with tempfile.TemporaryDirectory(prefix="kiln-bench-gate-", dir="/var/tmp") as scratch:
        root = Path(scratch)
        seed = root / "seed"
        seed.mkdir()
        shutil.copy(REPO / "recipes" / "kiln.lock", seed / "kiln.lock")
        write_leaf(seed, 0)
        with run_registry(root / "registry") as registry:
            farm = init_farm(root / "farm", InitOptions(
                workers=2, registry=registry.host, seed=seed, www_port=free_port(),
                pb_port=free_port(), builds=builds))
            try:
                start_farm(root / "farm")
                clone = root / "clone"
                subprocess.run(["git", "clone", "-q", farm.recipes_url, str(clone)], check=True)
                git = ["git", "-C", str(clone), "-c", "user.name=b", "-c", "user.email=b@x"]

                def push(edition: int) -> float:
                    write_leaf(clone / "recipes", edition)
                    subprocess.run([*git, "commit", "-qam", f"edition {edition}"], check=True)
                    start = time.perf_counter()
                    subprocess.run([*git, "push", "-q", "origin", "main"], check=True,
                                   capture_output=True)
                    commit = subprocess.run([*git, "rev-parse", "HEAD"], text=True, check=True,
                                            capture_output=True).stdout.strip()
                    # Asked often: the default half second would be the figure's grain.
                    done = wait_for_commit(farm, commit, 900, poll=0.02)
                    assert done["results"] == 0, done["state_string"]
                    return time.perf_counter() - start

                push(1)  # warm: the toolchain published, both workers' stores filled
                push(2)
                return [push(10 + run) for run in range(runs)]
            finally:
                stop_farm(root / "farm")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    plain = push_to_published(1, args.runs)
    gated = push_to_published(2, args.runs)
    ratio = statistics.median(gated) / statistics.median(plain)
    print("| farm | push to published, median (s) | runs (s) |")
    print("| --- | ---: | --- |")
    for label, times in (("no gate (1 of 1)", plain), ("the gate (2 of 2, two workers)", gated)):
        print(f"| {label} | {statistics.median(times):.2f} |"
              f" {', '.join(f'{t:.2f}' for t in times)} |")
    print(f"\nthe gate costs {ratio:.2f}x (goal under 1.3x:"
          f" {'met' if ratio < 1.3 else 'MISSED'})")


if __name__ == "__main__":
    main()
