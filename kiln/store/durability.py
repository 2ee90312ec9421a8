"""Durable writes: a FileSet, a record or a name that Kiln reported written survives
a power cut.

The store names nothing before what it names is on the disk: a FileSet's
objects, tree and manifest are synced, then its name is written and synced,
then the command reports it. Two ways were measured (bench/README.md, "Ingest":
durable writes), both correct:

- `syncfs` of the store's file system, twice per record: once before the name,
  once after. It also covers objects that an earlier writer left unsynced (it
  crashed, or it was an older Kiln), which a FileSet found already stored reuses.
- `fsync` of every object the FileSet's tree holds, of the tree, the manifest, the
  name and each directory they were renamed into: correct too, but one flush of
  the journal per file for a tree of many.

syncfs is the default. `KILN_SYNC=fsync` selects the other, for the benchmark
that compares them; `KILN_SYNC=off` syncs nothing, as ostree's --fsync=false,
for a throwaway store (on tmpfs, say) and to measure what durability costs.

On a file system shared with builds that write much, syncfs also waits for their
data: a worker's store wants a disk or a file system of its own.

The crash test (tests/integration/test_power_loss.py) cuts the power of a disk
that keeps nothing it was not told to flush, and finds every reported FileSet.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from kiln.errors import StoreError

if TYPE_CHECKING:
    import ctypes


@cache
def _libc() -> ctypes.CDLL:
    """libc, for syncfs (not in Python's os); loaded by the first write, not by readers."""
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def sync_mode() -> str:
    mode = os.environ.get("KILN_SYNC", "syncfs")
    if mode not in ("syncfs", "fsync", "off"):
        raise StoreError(f"KILN_SYNC={mode!r}: syncfs, fsync or off", reason="bad-usage")
    return mode


def make_durable(store_root: Path, written: Iterable[str | Path]) -> None:
    """What was just written into the store (files, and the directories they were
    renamed into) on the disk, by the mode in force."""
    mode = sync_mode()
    if mode == "syncfs":
        sync_file_system(store_root)
    elif mode == "fsync":
        sync_files(written)


def sync_file_system(path: Path) -> None:
    """Everything written to the file system holding `path`, on the disk."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if _libc().syncfs(fd) != 0:
            import ctypes

            code = ctypes.get_errno()
            raise StoreError(f"the disk under {path} did not confirm the writes:"
                             f" {os.strerror(code)}", reason="store-write")
    finally:
        os.close(fd)


def sync_files(paths: Iterable[str | Path]) -> None:
    """Each file's data and each directory's entries on the disk (`fsync` of each)."""
    for path in dict.fromkeys(str(p) for p in paths):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue  # another writer's rename raced it; its own sync covers it
        try:
            os.fsync(fd)
        except OSError as exc:
            raise StoreError(f"the disk did not confirm {path}: {exc.strerror}",
                             reason="store-write") from exc
        finally:
            os.close(fd)
