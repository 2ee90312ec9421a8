"""The toolchain lock (`kiln.lock` at the top of a recipe repository).

It pins every Debian FileSet the recipes build with: name, version, FileSet
digest, the .deb's sha256 as apt verified it, and what each requires within
the lock (so closures and drift are computed from the lock alone). Builds use
only locked FileSets, so a Debian point release never changes a build; a
locked FileSet missing from the store is imported again and must come out
with the same digest, or the build stops.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kiln.canonical import Digest, parse_digest, parse_json
from kiln.errors import InputError, StoreError
from kiln.naming import validate_name, validate_version
from kiln.store.store import Store

LOCK_FORMAT = "kiln.lock/v1"


@dataclass(frozen=True)
class LockedPackage:
    """A Debian package at the version the lock pins, with its FileSet and .deb digests."""

    name: str
    version: str
    digest: Digest
    deb_sha256: str
    requires: tuple[str, ...]  # names of other locked packages

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "digest": self.digest,
                "deb-sha256": self.deb_sha256, "requires": list(self.requires)}


@dataclass(frozen=True)
class Lock:
    """recipes.lock: the Debian packages builds may use, each at one version."""

    suite: str
    packages: tuple[LockedPackage, ...]

    def get(self, name: str) -> LockedPackage | None:
        return next((p for p in self.packages if p.name == name), None)

    def closure(self, names: set[str]) -> set[str]:
        """`names` and every locked package they need, transitively."""
        by_name = {p.name: p for p in self.packages}
        seen: set[str] = set()
        pending = [n for n in names if n in by_name]
        while pending:
            name = pending.pop()
            if name not in seen:
                seen.add(name)
                pending.extend(r for r in by_name[name].requires if r in by_name)
        return seen

    def to_bytes(self) -> bytes:
        data = {"format": LOCK_FORMAT, "suite": self.suite,
                "packages": [p.to_json() for p in sorted(self.packages, key=lambda p: p.name)]}
        return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()


def read_lock(path: Path) -> Lock | None:
    """The lock at `path`, or None if there is none; a malformed lock is refused."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    raw = parse_json(data, where=str(path), what="lock", reason="bad-lock")
    if (not isinstance(raw, dict) or raw.get("format") != LOCK_FORMAT
            or set(raw) != {"format", "suite", "packages"}):
        raise InputError(f"{path}: not a {LOCK_FORMAT} lock", reason="bad-lock")
    packages = []
    for item in raw["packages"]:
        if not isinstance(item, dict) or set(item) != {"name", "version", "digest",
                                                       "deb-sha256", "requires"}:
            raise InputError(f"{path}: malformed entry {item!r}", reason="bad-lock")
        packages.append(LockedPackage(
            validate_name(item["name"]), validate_version(item["version"]),
            parse_digest(item["digest"], what=f"{path}: digest"), str(item["deb-sha256"]),
            tuple(validate_name(name) for name in item["requires"])))
    return Lock(str(raw["suite"]), tuple(packages))


def write_lock(path: Path, lock: Lock) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(lock.to_bytes())
    tmp.replace(path)


def ensure_locked(store: Store, lock: Lock, names: set[str]) -> dict[str, Digest]:
    """Every locked FileSet of `names`' closure in the store, re-imported if missing.

    A re-import that does not reproduce the locked digest stops everything: the
    lock no longer describes what apt serves.
    """
    from kiln.debian.apt import Apt
    from kiln.debian.importer import import_deb_file, package_name

    by_name = {p.name: p for p in lock.packages}
    wanted = [by_name[name] for name in sorted(lock.closure(names))]  # only locked names
    missing = [p for p in wanted if not store.has(p.digest)]
    if missing:
        apt = Apt(store.layout.cache / "apt")
        records = [apt.show(package_name(p.name), p.version) for p in missing]
        with tempfile.TemporaryDirectory(prefix="kiln-lock-") as scratch:
            files = apt.download(records, Path(scratch))
            for locked, record in zip(missing, records, strict=True):
                fileset = import_deb_file(store, files[record.name], record, lock.suite)
                if fileset.digest != locked.digest:
                    raise StoreError(
                        f"{locked.name}@{locked.version} re-imported as {fileset.digest}, but"
                        f" the lock pins {locked.digest} (apt serves another .deb, or"
                        " another Kiln made the lock's FileSet); `kiln lock update --only"
                        f" {locked.name}` imports it again and pins what it makes",
                        reason="lock-digest-mismatch")
    return {p.name: p.digest for p in wanted}
