"""Where things live inside a store directory, and how they are written atomically.

    kiln-store                 format marker
    lock                       flock: shared by writers and readers, exclusive by gc
    objects/<aa>/<sha256>      file contents, mode 0444; `.x` suffix: mode 0555
    trees/<sha256>.json        canonical tree JSON (its own digest names it)
    filesets/<sha256>.json     canonical FileSet manifest (its own digest names it)
    refs/<name>/@<version>     the FileSet digest NAME@VERSION currently means
    pins/<sha256>              FileSets kept by gc whether named or not
    materialized/<sha256>/     read-only joined trees, hard links to objects
    tmp/                       staging; anything here is garbage once no writer runs
    cache/                     the ingest hash cache (advisory)

Names cannot contain `@`, so `@<version>` files never collide with the
directories of longer names.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from kiln.canonical import Digest, digest_hex

STORE_FORMAT = b"kiln.store/v1\n"
OBJECT_MODE = 0o444
EXECUTABLE_OBJECT_MODE = 0o555


class StoreLayout:
    """Paths inside one store directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._objects_prefix = f"{root}/objects/"
        self.marker = root / "kiln-store"
        self.lock = root / "lock"
        self.objects = root / "objects"
        self.trees = root / "trees"
        self.filesets = root / "filesets"
        self.refs = root / "refs"
        self.pins = root / "pins"
        self.materialized = root / "materialized"
        self.tmp = root / "tmp"
        self.cache = root / "cache"

    def directories(self) -> list[Path]:
        return [self.objects, self.trees, self.filesets, self.refs, self.pins,
                self.materialized, self.tmp, self.cache]

    def object_path(self, sha256_hex: str, executable: bool) -> Path:
        return Path(self.object_file(sha256_hex, executable))

    def object_file(self, sha256_hex: str, executable: bool) -> str:
        """The object's path as a string: ingest asks this once per file, so no Path."""
        suffix = ".x" if executable else ""
        return f"{self._objects_prefix}{sha256_hex[:2]}/{sha256_hex}{suffix}"

    def tree_path(self, digest: Digest) -> Path:
        return self.trees / f"{digest_hex(digest)}.json"

    def fileset_path(self, digest: Digest) -> Path:
        return self.filesets / f"{digest_hex(digest)}.json"

    def ref_path(self, name: str, version: str) -> Path:
        return self.refs / name / f"@{version}"

    def pin_path(self, digest: Digest) -> Path:
        return self.pins / digest_hex(digest)

    def materialized_path(self, digest: Digest) -> Path:
        return self.materialized / digest_hex(digest)

    def temp_name(self, prefix: str) -> Path:
        return self.tmp / f"{prefix}-{os.getpid()}-{unique_part()}"


def mark_used(path: Path) -> None:
    """Mark a cache entry used now: its mtime is its age to the caches' bounds
    (kiln.store.caches), which keep the recently used longest."""
    with contextlib.suppress(OSError):  # a cache is advisory: at worst collected sooner
        os.utime(path)


def write_atomically(path: Path, data: bytes, tmp_dir: Path, *, mode: int = 0o444) -> None:
    """Write a whole file so that readers see either nothing or all of it."""
    tmp = tmp_dir / f"write-{os.getpid()}-{unique_part()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        write_all(fd, data)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
    try:
        os.rename(tmp, path)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.rename(tmp, path)


def write_all(fd: int, data: bytes | memoryview) -> None:
    """os.write may write less than asked; loop until all of it is written."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def unique_part(size: int = 6) -> str:
    """A unique part for a temporary name: `size` random bytes in hex (os.urandom, as
    `secrets` uses, whose import of hmac and random costs every command)."""
    return os.urandom(size).hex()
