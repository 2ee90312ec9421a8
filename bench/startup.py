"""Start-up benchmark: what the commands a user or a worker runs often spend before
their work starts (Python's start-up, imports, configuration), against podman.

    ./dev bench startup [--runs N]

Each command is timed as a process (`.venv/bin/kiln ...`, as a user meets it), once
run by itself and once served by a resident `kiln server` (a fork of a warm process
runs it), and in-process (`kiln.cli.main.main(...)` in this warm process: the work
alone); the difference is what being a command costs. The goal is under 0.100 s
each. The commands, on a store of their own, with stdin not a terminal (a served
command's stdin must not be one):

- `kiln run IMAGE.yaml -- /bin/busybox true`: an image of Debian's busybox-static;
- `kiln image build IMAGE.yaml -o oci:DIR`: the same image;
- `kiln verify NAME@VERSION --bundle FILE --key PUB`: busybox-static's signed
  import statement, checked against the store;
- `kiln build hello` that finds it built already (the curated recipes);
- `kiln --version`: Python and Kiln's entry point alone.

The peer: `podman run --rm` of the same busybox root, `/bin/busybox true`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from functools import partial
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.build import PODMAN, PODMAN_RUN  # noqa: E402
from bench.timing import median  # noqa: E402
from kiln.cli.main import main as kiln_main  # noqa: E402

GOAL = 0.100
KILN = Path(sys.executable).parent / "kiln"


def in_process(store: Path, args: list[str]) -> None:
    # A file with a descriptor: `kiln run` hands its run the terminal's.
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink), \
            contextlib.redirect_stderr(sink):
        code = kiln_main(["--store", str(store), *args])
    if code != 0:
        raise SystemExit(f"kiln {' '.join(args)} failed in-process ({code})")


def as_command(store: Path, args: list[str], server: Path | None = None) -> None:
    """`kiln ARGS` as a process: by itself, or served by the server listening in
    `server`."""
    env = {**os.environ, "KILN_SERVER": "off"} if server is None else \
        {**os.environ, "KILN_SERVER": "on", "KILN_SERVER_DIR": str(server)}
    subprocess.run([str(KILN), "--store", str(store), *args], check=True,
                   capture_output=True, cwd=REPO, stdin=subprocess.DEVNULL, env=env)


@contextlib.contextmanager
def resident_server(directory: Path) -> Iterator[Path]:
    """`kiln server start` listening in `directory`, stopped after."""
    env = {**os.environ, "KILN_SERVER_DIR": str(directory)}
    subprocess.run([str(KILN), "server", "start"], check=True, capture_output=True, env=env)
    try:
        yield directory
    finally:
        subprocess.run([str(KILN), "server", "stop"], check=True, capture_output=True,
                       env=env)


def prepare(scratch: Path, store: Path) -> dict[str, list[str]]:
    """The store, image, bundle and built recipe the commands work on."""
    imported = json.loads(subprocess.run(
        [str(KILN), "--store", str(store), "deb", "import", "busybox-static", "--json"],
        check=True, capture_output=True, text=True).stdout)[0]
    busybox = f"{imported['name']}@{imported['version']}"
    spec = scratch / "image.yaml"
    spec.write_text(json.dumps({"name": "kiln.dev/images/busybox", "version": "1",
                                "packages": [imported["name"]]}))
    keys = json.loads(subprocess.run([str(KILN), "key", "generate", scratch / "keys",
                                      "--json"], check=True, capture_output=True,
                                     text=True).stdout)
    bundle = scratch / "busybox.bundle.json"
    as_command(store, ["attest", busybox, "--signer", f"file:{keys['private']}", "-o",
                       str(bundle)])
    as_command(store, ["build", "hello", "--recipes", str(REPO / "recipes")])
    return {
        "kiln run": ["run", str(spec), "--", "/bin/busybox", "true"],
        "kiln image build": ["image", "build", str(spec), "-o", f"oci:{scratch / 'oci'}"],
        "kiln verify": ["verify", busybox, "--bundle", str(bundle), "--key", keys["public"]],
        "kiln build (already built)": ["build", "hello", "--recipes", str(REPO / "recipes")],
        "kiln --version": ["--version"],
    }


def podman_image(store: Path, scratch: Path, busybox: str) -> str:
    tree = scratch / "busybox-root"
    subprocess.run([str(KILN), "--store", str(store), "fileset", "materialize", busybox,
                    str(tree)], check=True, capture_output=True)
    subprocess.run([*PODMAN, "import", "-", "kiln-bench-busybox"], check=True,
                   capture_output=True, input=subprocess.run(
                       ["tar", "-C", str(tree), "-c", "."], check=True,
                       capture_output=True).stdout)
    return "kiln-bench-busybox"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kiln-bench-startup-", dir="/var/tmp") as work:
        scratch = Path(work)
        store = scratch / "store"
        commands = prepare(scratch, store)
        rows = []
        with resident_server(scratch / "server") as server:
            for label, command in commands.items():
                if label == "kiln --version":
                    inside = 0.0  # no work: all of it is start-up
                else:
                    in_process(store, command)  # warm: imports and caches, as a worker's
                    inside = median(args.runs, partial(in_process, store, command))
                outside = median(args.runs, partial(as_command, store, command))
                served = median(args.runs, partial(as_command, store, command, server))
                rows.append((label, outside, served, inside))
        busybox = commands["kiln verify"][1]
        podman = None
        if shutil.which("podman"):
            image = podman_image(store, scratch, busybox)
            podman = median(args.runs, lambda: subprocess.run(
                [*PODMAN, *PODMAN_RUN, image, "/bin/busybox", "true"], check=True,
                capture_output=True, stdin=subprocess.DEVNULL))
            subprocess.run([*PODMAN, "rmi", "-f", image], capture_output=True, check=False)
        print(f"runs: {args.runs}; goal: under {GOAL:.3f} s before the work")
        print("| command | by itself (s) | served (s) | in-process (s) |"
              " before its work, by itself / served (s) | goal |")
        print("| --- | ---: | ---: | ---: | ---: | --- |")
        for label, outside, served, inside in rows:
            before, served_before = outside - inside, served - inside
            print(f"| `{label}` | {outside:.3f} | {served:.3f} | {inside:.3f} |"
                  f" {before:.3f} / **{served_before:.3f}** |"
                  f" {'met' if served_before < GOAL else 'not met'} served |")
        if podman is not None:
            run = next(row for row in rows if row[0] == "kiln run")
            print(f"| `podman run --rm`, the same busybox | {podman:.3f} | | | |"
                  f" kiln run: {podman / run[1]:.1f}x podman by itself,"
                  f" **{podman / run[2]:.1f}x** served |")


if __name__ == "__main__":
    main()
