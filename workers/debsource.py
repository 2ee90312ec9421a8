"""Debian source packages as recipe sources, fetched through apt.

apt verifies the Sources index against Debian's signed Release files, so the
.dsc it downloads is the one Debian published; Kiln then checks the .dsc against
the recipe's pinned sha256, and every file against the .dsc's Checksums-Sha256,
before keeping anything. apt needs deb-src entries, which hosts often lack: Kiln
keeps a private apt configuration (under the source cache) that mirrors the
host's `deb` entries as `deb-src`, and never touches the host's own.
"""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from kiln.errors import InputError
from kiln.recipes.model import DebianSource
from workers.sources import FetchedFile, SourceCache

SYSTEM_SOURCES = Path("/etc/apt/sources.list.d")
SYSTEM_LIST = Path("/etc/apt/sources.list")


@dataclass(frozen=True)
class FetchedDebianSource:
    """A Debian source package fetched: its .dsc and the files it lists."""

    dsc: FetchedFile
    files: tuple[FetchedFile, ...]  # what the .dsc lists: orig tarballs, debian tarball


class DebianSourceApt:
    """apt-get with a private configuration whose only entries are deb-src ones."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.parts = root / "sources.list.d"
        self.lists = root / "lists"
        for directory in (self.parts, self.lists / "partial", root / "cache"):
            directory.mkdir(parents=True, exist_ok=True)
        self.options = [
            "-o", "Dir::Etc::SourceList=/dev/null",
            "-o", f"Dir::Etc::SourceParts={self.parts}",
            "-o", f"Dir::State::Lists={self.lists}",
            "-o", f"Dir::Cache::pkgcache={root / 'cache/pkgcache.bin'}",
            "-o", f"Dir::Cache::srcpkgcache={root / 'cache/srcpkgcache.bin'}",
        ]

    def update(self) -> None:
        (self.parts / "kiln-deb-src.sources").write_text(deb_src_entries())
        self._run("update", "-q")

    def download(self, package: str, version: str, directory: Path) -> None:
        self.download_spec(f"{package}={version}", directory)

    def download_spec(self, spec: str, directory: Path) -> None:
        """`apt-get source --download-only SPEC` (NAME or NAME=VERSION) into `directory`."""
        if not any(self.lists.glob("*Sources*")):
            self.update()
        try:
            self._run("source", "--download-only", "-q", spec, cwd=directory)
        except InputError:
            self.update()  # the index may predate this version
            self._run("source", "--download-only", "-q", spec, cwd=directory)

    def _run(self, *args: str, cwd: Path | None = None) -> None:
        try:
            result = subprocess.run(["apt-get", *self.options, *args], cwd=cwd,
                                    capture_output=True, text=True, check=False)
        except FileNotFoundError as exc:
            raise InputError("apt-get is not installed; Debian sources need apt",
                             reason="apt-missing") from exc
        if result.returncode != 0:
            from kiln.debian.apt import network_failure

            raise InputError(f"apt-get {' '.join(args)}: {result.stderr.strip()}",
                             reason="source-unreachable",
                             temporary=network_failure(result.stderr))


def deb_src_entries() -> str:
    """The host's `deb` entries (deb822 .sources and one-line lists) as deb-src ones."""
    from debian.deb822 import Deb822

    stanzas = []
    for path in sorted(SYSTEM_SOURCES.glob("*.sources")):
        for entry in Deb822.iter_paragraphs(path.read_text()):
            if "deb" in entry.get("Types", "").split() and entry.get("Enabled", "yes") != "no":
                entry["Types"] = "deb-src"
                stanzas.append(entry.dump())
    lists = [SYSTEM_LIST, *sorted(SYSTEM_SOURCES.glob("*.list"))]
    for path in lists:
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            words = line.split("#", 1)[0].split()
            if words and words[0] == "deb":
                options = [w for w in words[1:] if w.startswith("[")]
                rest = [w for w in words[1:] if not w.startswith("[")]
                stanzas.append(f"Types: deb-src\nURIs: {rest[0]}\nSuites: {rest[1]}\n"
                               f"Components: {' '.join(rest[2:])}\n"
                               + ("" if not options else f"# options: {' '.join(options)}\n"))
    if not stanzas:
        raise InputError("no Debian archive is configured in apt's sources",
                         reason="apt-missing")
    return "\n".join(stanza.rstrip("\n") + "\n" for stanza in stanzas)


def fetch_debian(cache: SourceCache, source: DebianSource) -> FetchedDebianSource:
    """The source package's .dsc and files, verified; from the cache when there."""
    cached = _from_cache(cache, source)
    if cached is not None:
        return cached
    apt = DebianSourceApt(cache.root / "apt-src")
    with tempfile.TemporaryDirectory(prefix="kiln-dsc-", dir=cache.root / "tmp") as scratch:
        directory = Path(scratch)
        apt.download(source.package, source.version, directory)
        dscs = list(directory.glob("*.dsc"))
        if [p.name for p in dscs] != [_dsc_name(source)]:
            raise InputError(f"apt-get source {source.package}={source.version} gave"
                             f" {sorted(p.name for p in dscs)}, not {_dsc_name(source)}",
                             reason="source-unreachable")
        return keep_downloaded(cache, source, directory)


def keep_downloaded(cache: SourceCache, source: DebianSource,
                    directory: Path) -> FetchedDebianSource:
    """The .dsc and its files that apt downloaded into `directory`, each checked (the
    .dsc against its pin, the files against the .dsc) and kept in the cache."""
    uri = debian_source_uri(source)
    with open(directory / _dsc_name(source), "rb") as stream:
        dsc = cache.keep(stream, source.dsc_sha256, uri, _dsc_name(source))
    files = []
    for name, sha in _dsc_files(dsc.path, uri):
        with open(directory / name, "rb") as stream:
            files.append(cache.keep(stream, sha, f"{uri} ({name})", name))
    return FetchedDebianSource(dsc, tuple(files))


def _from_cache(cache: SourceCache, source: DebianSource) -> FetchedDebianSource | None:
    dsc_path = cache.file_path(source.dsc_sha256)
    if not dsc_path.exists():
        return None
    uri = debian_source_uri(source)
    files = []
    for name, sha in _dsc_files(dsc_path, uri):
        if not cache.file_path(sha).exists():
            return None
        files.append(FetchedFile(cache.file_path(sha), sha, f"{uri} ({name})", name))
    return FetchedDebianSource(FetchedFile(dsc_path, source.dsc_sha256, uri, _dsc_name(source)),
                               tuple(files))


def debian_source_uri(source: DebianSource) -> str:
    """How records name a Debian source package: `debian-source:NAME=VERSION`."""
    return f"debian-source:{source.package}={source.version}"


def _dsc_name(source: DebianSource) -> str:
    """Debian's name for a source package's .dsc: the version without its epoch."""
    return f"{source.package}_{source.version.split(':', 1)[-1]}.dsc"


def _dsc_files(dsc: Path, uri: str) -> list[tuple[str, str]]:
    """(file name, sha256) of every file the .dsc lists."""
    from debian.deb822 import Dsc

    parsed = Dsc(dsc.read_text(errors="replace"))
    entries = [(item["name"], item["sha256"]) for item in parsed.get("Checksums-Sha256", [])]
    if not entries:
        raise InputError(f"{uri}: the .dsc lists no Checksums-Sha256", reason="bad-source")
    for name, _sha in entries:
        if "/" in name or name in ("", ".", ".."):
            raise InputError(f"{uri}: the .dsc names a file {name!r}", reason="bad-source")
    return entries
