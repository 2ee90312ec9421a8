"""Build benchmark: the sandbox's own overhead against `podman run`, and the time to
decide that nothing in the curated set needs rebuilding.

    ./dev bench build [--runs N]

The root is the one GNU hello builds in: the locked gcc-12 + libc6-dev + make +
shell closure (67 Debian FileSets joined by a symlink farm). Kiln's overhead is
composing that root, starting the sandbox, running `true` and tearing it down,
timed inside the process and as a separate Python process (start-up included).
The peer is `podman run --rm` of an image holding the same root, with the flags
found to work on these machines (runc, cgroupfs, ulimits). Medians of N runs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.timing import median  # noqa: E402
from kiln.recipes.lock import ensure_locked  # noqa: E402
from kiln.recipes.repository import load_repository  # noqa: E402
from kiln.store import Store  # noqa: E402
from workers.build import build  # noqa: E402
from workers.bwrap import BwrapSandbox  # noqa: E402
from workers.root import compose_root, forget_compositions  # noqa: E402
from workers.rootfs import cached_root, prune_roots  # noqa: E402
from workers.runc import RuncSandbox  # noqa: E402
from workers.sandbox import RunSpec  # noqa: E402

PODMAN = ["podman", "--cgroup-manager=cgroupfs", "--runtime=runc"]
PODMAN_RUN = ["run", "--rm", "--network=none", "--ulimit", "nofile=1024:1024",
              "--ulimit", "nproc=1024:1024"]


def hello_root(store: Store) -> list:  # type: ignore[type-arg]
    repository = load_repository(REPO / "recipes")
    assert repository.lock is not None
    recipe = repository.recipes["kiln.dev/hello"]
    names = {option.name for group in recipe.build_requires for option in group.options}
    return [store.get(d) for d in ensure_locked(store, repository.lock, names).values()]


def image_of_root(store: Store, filesets: list, scratch: Path) -> str:  # type: ignore[type-arg]
    """A podman image holding the same root: the FileSets at their mounts, and the farm."""
    root = scratch / "image-root"
    farm = compose_root(store, filesets)
    for mount in farm.mounts:
        shutil.copytree(mount.source, root / mount.target.lstrip("/"), symlinks=True)
    for path, target in farm.links.items():
        link = root / path.lstrip("/")
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, link)
    tar = scratch / "root.tar"
    subprocess.run(["tar", "-C", root, "-cf", tar, "."], check=True)
    subprocess.run([*PODMAN, "rmi", "-f", "kiln-bench-root"], capture_output=True, check=False)
    subprocess.run([*PODMAN, "import", tar, "kiln-bench-root"], check=True,
                   capture_output=True)
    return "kiln-bench-root"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kiln-bench-build-", dir="/var/tmp") as work:
        scratch = Path(work)
        store = Store.open(scratch / "store")
        filesets = hello_root(store)
        sandbox = BwrapSandbox()
        log = scratch / "log"

        def kiln_true(backend: object = sandbox, hard: bool = False) -> None:
            root = compose_root(store, filesets)
            result = backend.run(RunSpec(  # type: ignore[attr-defined]
                argv=("/bin/true",), env={"PATH": "/usr/bin:/bin"}, log=log,
                mounts=root.mounts, links=root.links, links_key=root.key,
                root_cache=root.cache if hard else None))
            assert result.ok, result.log_tail()

        def skeleton_first(hard: bool) -> None:
            """Make the root's skeleton afresh: symbolic links only (the host's shared
            cache), or a store's, with package files hard-linked (what builds use)."""
            root = compose_root(store, filesets)
            spec = RunSpec(argv=("/bin/true",), env={}, log=log, mounts=root.mounts,
                           links=root.links, links_key=root.key,
                           root_cache=root.cache if hard else None)
            prune_roots(None, empty=True, store_cache=root.cache)
            cached_root(spec)

        kiln_true()  # materialises the store's trees once, as a worker would have them
        def compose_first() -> None:
            forget_compositions()  # as a worker's first build of this toolchain would
            compose_root(store, filesets)

        compose = median(args.runs, compose_first)
        compose_root(store, filesets)  # from here on, remembered as a worker would
        skeleton_symlinks = median(args.runs, lambda: skeleton_first(False))
        skeleton_hard = median(args.runs, lambda: skeleton_first(True))
        in_process = median(args.runs, kiln_true)
        kiln_true(hard=True)
        in_process_hard = median(args.runs, lambda: kiln_true(hard=True))
        runc = median(args.runs, lambda: kiln_true(RuncSandbox()))
        runc_hard = median(args.runs, lambda: kiln_true(RuncSandbox(), hard=True))
        script = (f"import sys; sys.path.insert(0, {str(REPO)!r}); "
                  "from kiln.store import Store; from workers.root import compose_root; "
                  "from workers.bwrap import BwrapSandbox; from workers.sandbox import RunSpec; "
                  "from bench.build import hello_root; from pathlib import Path; "
                  f"s = Store.open({str(scratch / 'store')!r}); "
                  "r = compose_root(s, hello_root(s)); "
                  "assert BwrapSandbox().run(RunSpec(argv=('/bin/true',), env={}, "
                  f"log=Path({str(log)!r}), mounts=r.mounts, links=r.links)).ok")
        as_process = median(args.runs, lambda: subprocess.run(
            [sys.executable, "-c", script], check=True, cwd=REPO))

        image = image_of_root(store, filesets, scratch)
        podman = median(args.runs, lambda: subprocess.run(
            [*PODMAN, *PODMAN_RUN, image, "/bin/true"], check=True, capture_output=True))

        for recipe in ("hello", "zlib", "greet"):  # built once, so that all are known
            build(store, sandbox, REPO / "recipes", recipe)
        nothing = median(max(3, args.runs // 3), lambda: [
            build(store, sandbox, REPO / "recipes", r) for r in ("hello", "zlib", "greet")])

        print(f"root: {len(filesets)} FileSets, {len(compose_root(store, filesets).links)}"
              f" links; runs: {args.runs}")
        sandboxes = [
            (f"kiln bwrap sandbox, compose + start + true + tear down, the host's shared"
             f" root: {len(filesets)} binds (in-process)", in_process),
            ("the same on a store's root, packages hard-linked in: one bind (in-process)",
             in_process_hard),
            ("the same with the runc backend, shared root (in-process)", runc),
            ("the same with the runc backend, store's root (in-process)", runc_hard),
            ("the same as a Python process (start-up included)", as_process),
            ("podman run --rm, same root", podman)]
        print("| what | median (s) | podman / kiln |")
        print("| --- | ---: | ---: |")
        for what, seconds in [
                ("compose the root the first time (in-process; later: remembered)", compose),
                ("make the root's skeleton, symbolic links (once per composition)",
                 skeleton_symlinks),
                ("make the root's skeleton, package trees hard-linked (store's roots)",
                 skeleton_hard)]:
            print(f"| {what} | {seconds:.3f} | |")
        for what, seconds in sandboxes:
            print(f"| {what} | {seconds:.3f} | {podman / seconds:.1f}x |")
        print(f"| decide nothing to rebuild: hello, zlib, greet (in-process) | {nothing:.3f} | |")
        subprocess.run([*PODMAN, "rmi", "-f", image], capture_output=True, check=False)


if __name__ == "__main__":
    main()
