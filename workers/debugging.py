"""What a failed build leaves its maintainer: `kiln build --keep-failed` keeps the
failed run's /build and /out, and `--shell` opens a shell in the same sandbox (the same
root, sources and environment) on that state, as melange's --debug and Nix's
--keep-failed do.

The kept trees are under the store's cache (`cache/builds/kept/`, root's only, bounded
by `kiln store gc` as the failed builds' logs are). They came from a build, which may be
hostile: they are copied without following a link, and no setuid or setgid bit
survives the copy.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from kiln.errors import InputError
from kiln.store.store import Store

if TYPE_CHECKING:
    from workers.sandbox import RunSpec, Sandbox


@dataclass(frozen=True)
class Debugging:
    """What to do with a failed build: keep its state, open a shell in it."""

    keep: bool = False  # keep a failed run's /build and /out
    shell: bool = False  # and open a shell in its sandbox, on this process's terminal

    @property
    def keeping(self) -> bool:
        return self.keep or self.shell


NO_DEBUGGING = Debugging()


def kept_directory(store: Store) -> Path:
    return store.layout.cache / "builds" / "kept"


def keep_failed_tree(store: Store, name: str, version: str, key: str, build: Path,
                     out: Path) -> Path:
    """Copy a failed run's /build and /out into the store's cache; where they are."""
    parent = kept_directory(store)
    parent.mkdir(parents=True, exist_ok=True)
    os.chmod(parent, 0o700)  # what a build wrote is for root to read, not to run
    kept = parent / f"{name.rsplit('/', 1)[-1]}-{version}-{key.removeprefix('sha256:')[:12]}"
    shutil.rmtree(kept, ignore_errors=True)
    kept.mkdir()
    for tree, place in ((build, "build"), (out, "out")):
        copied = subprocess.run(["cp", "-a", "--no-dereference", "--", f"{tree}/.",
                                 str(kept / place)], capture_output=True, text=True,
                                check=False)
        if copied.returncode != 0:
            raise InputError(f"cannot keep the failed build's /{place}:"
                             f" {copied.stderr.strip()}", reason="build-failed")
    subprocess.run(["chmod", "-R", "u-s,g-s", "--", str(kept)], capture_output=True,
                   check=False)
    return kept


def open_shell(sandbox: Sandbox, failed: RunSpec, kept: Path, directory: str) -> int | None:
    """A shell in the failed run's sandbox: its root, /src, environment and limits, with
    the kept /build (at `directory`) and /out writable; on this process's stdin and
    stdout. Its exit status (None if it outlived the run's time limit)."""
    from workers.sandbox import Mount

    mounts = tuple(mount for mount in failed.mounts if mount.target not in ("/out", directory))
    spec = replace(failed, argv=("/bin/sh", "-i"), cwd=directory, input_fd=0, output_fd=1,
                   mounts=(*mounts, Mount(directory, kept / "build", writable=True),
                           Mount("/out", kept / "out", writable=True)),
                   log=kept / "shell.log")
    return sandbox.run(spec).exit_code
