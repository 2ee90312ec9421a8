"""Talking to apt: package records (with the sha256 apt verified) and downloads.

apt checks its indexes against Debian's signed Release files; the sha256 in a
record is therefore Debian's word for the .deb, and every download is checked
against it before anything is unpacked.

Container images often switch apt's binary cache off, and then every apt-cache
call rebuilds it (0.75 s here); Kiln keeps one of its own, and asks for many
records in one call.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from kiln.errors import InputError, NotFound
from kiln.store.layout import mark_used


@dataclass(frozen=True)
class DebRelation:
    """One alternative of a Debian dependency: a name and an optional constraint."""

    name: str
    operator: str | None
    version: str | None


@dataclass(frozen=True)
class AptPackage:
    """One version of one binary package, as apt's index describes it."""

    name: str
    version: str
    architecture: str
    sha256: str
    filename: str
    size: int
    depends: tuple[tuple[DebRelation, ...], ...]  # Pre-Depends and Depends, in order
    provides: tuple[str, ...]
    summary: str
    homepage: str
    priority: str = "optional"

    @property
    def download_name(self) -> str:
        """The file name `apt-get download` gives it (an epoch's colon is escaped)."""
        return f"{self.name}_{self.version.replace(':', '%3a')}_{self.architecture}.deb"


class Apt:
    """apt-cache and apt-get, with a binary cache kept under `cache_dir`."""

    def __init__(self, cache_dir: Path) -> None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        for binary in ("pkgcache.bin", "srcpkgcache.bin"):
            mark_used(cache_dir / binary)  # in use: the caches' bounds keep them
        self._options = ["-o", f"Dir::Cache::pkgcache={cache_dir / 'pkgcache.bin'}",
                         "-o", f"Dir::Cache::srcpkgcache={cache_dir / 'srcpkgcache.bin'}"]
        self._records: dict[str, AptPackage] = {}
        self._missing: set[str] = set()

    def prefetch(self, names: list[str]) -> None:
        """Learn the candidate records of many packages in one call."""
        unknown = sorted({n for n in names if n not in self._records and n not in self._missing})
        if not unknown:
            return
        # apt-cache fails for names it has no record of (virtual packages), but
        # still prints the others.
        text = self._run("apt-cache", *self._options, "show", "--no-all-versions", *unknown,
                         check=False)
        for record in _parse(text):
            self._records.setdefault(record.name, record)
        self._missing.update(n for n in unknown if n not in self._records)

    def show(self, name: str, version: str | None = None) -> AptPackage:
        """apt's record for NAME (its candidate version) or NAME=VERSION."""
        if version is not None:
            records = _parse(self._run("apt-cache", *self._options, "show",
                                       f"{name}={version}"))
            if records:
                return records[0]
        else:
            self.prefetch([name])
            if name in self._records:
                return self._records[name]
        spec = f"{name}={version}" if version else name
        raise NotFound(f"apt knows no package {spec} (is `apt-get update` done?)",
                       reason="deb-not-found")

    def providers(self, virtual: str) -> tuple[str, ...]:
        """Packages that provide a virtual package, as `apt-cache showpkg` lists them."""
        lines = self._run("apt-cache", *self._options, "showpkg", virtual).splitlines()
        start = next((i + 1 for i, line in enumerate(lines)
                      if line.startswith("Reverse Provides:")), len(lines))
        return tuple(dict.fromkeys(line.split()[0] for line in lines[start:] if line.strip()))

    def download(self, packages: list[AptPackage], directory: Path) -> dict[str, Path]:
        """Download the .deb files with apt-get; returns name -> path."""
        directory.mkdir(parents=True, exist_ok=True)
        self._run("apt-get", *self._options, "download", "-q",
                  *[f"{p.name}={p.version}" for p in packages], cwd=directory)
        return {p.name: directory / p.download_name for p in packages}

    @staticmethod
    def _run(*command: str, check: bool = True, cwd: Path | None = None) -> str:
        try:
            result = subprocess.run(command, capture_output=True, text=True, check=False,
                                    cwd=cwd)
        except FileNotFoundError as exc:
            raise InputError(f"{command[0]} is not installed; Debian imports need apt",
                             reason="apt-missing") from exc
        if check and result.returncode != 0:
            raise NotFound(f"{command[0]} {' '.join(command[5:])}: "
                           f"{result.stderr.strip() or 'failed'}", reason="apt-failed",
                           temporary=network_failure(result.stderr))
        return result.stdout


def _parse(text: str) -> list[AptPackage]:
    from debian.deb822 import Packages

    packages = []
    for record in Packages.iter_paragraphs(text, use_apt_pkg=False):
        if not record.get("Package"):
            continue
        depends = []
        for field in ("pre-depends", "depends"):
            for group in record.relations[field] or []:
                depends.append(tuple(
                    DebRelation(option["name"], *(option["version"] or (None, None)))
                    for option in group))
        packages.append(AptPackage(
            name=record["Package"],
            version=record["Version"],
            architecture=record["Architecture"],
            sha256=record["SHA256"],
            filename=record["Filename"],
            size=int(record["Size"]),
            depends=tuple(depends),
            provides=tuple(option["name"] for group in record.relations["provides"] or []
                           for option in group),
            summary=record.get("Description", "").split("\n", 1)[0],
            homepage=record.get("Homepage", ""),
            priority=record.get("Priority", "optional"),
        ))
    return packages


# What apt says when the mirror, not the request, is at fault.
_NETWORK_FAILURES = ("Failed to fetch", "Temporary failure", "Could not connect",
                     "Connection failed", "Connection timed out", "Could not resolve")


def network_failure(stderr: str) -> bool:
    """Whether apt failed for the network (worth retrying), not for what was asked."""
    return any(marker in stderr for marker in _NETWORK_FAILURES)
