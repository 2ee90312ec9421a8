"""`kiln source pin URI`: the pin a recipe writes for a source, as `nix-prefetch-url`
prints a hash. The source is fetched once, hashed as it arrives, and kept in the
store's source cache, so the build that follows fetches nothing.

    https://HOST/PATH, file:PATH   -> url + sha256 (file: only beneath file-sources)
    git+URL@REF                    -> git + commit (REF a branch, tag or commit)
    debian:SOURCE[=VERSION]        -> debian + version + dsc-sha256 (apt's candidate
                                      when no version is given)

Debian's patches: a `debian:` source lays the .dsc and its files in /src untouched;
the package's own patches (debian/patches, a quilt series) are applied only if the
build script does it. The pin says so, and how.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import subprocess
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from kiln.errors import InputError
from kiln.hostconfig import file_url_path, host_config
from kiln.recipes.model import UrlSource
from workers.sources import CHUNK, TIMEOUT, SourceCache

DEBIAN_PATCHES = ("Debian's patches are not applied: the build finds the .dsc and its files"
                  " in /src. To apply them, start the build with\n"
                  "    dpkg-source -x /src/*.dsc /build/src && cd /build/src\n"
                  "(dpkg-dev in build-requires), which unpacks and applies the quilt series.")


@dataclass(frozen=True)
class Pin:
    fields: dict[str, str]  # the recipe's source entry, in its order
    note: str = ""  # what the maintainer should know besides

    def yaml(self) -> str:
        """The entry as a recipe's `sources:` list holds it; values quoted, so that a
        version such as 1.10 stays a string."""
        lines = []
        for index, (key, value) in enumerate(self.fields.items()):
            lines.append(f"{'  - ' if index == 0 else '    '}{key}: {json.dumps(value)}")
        return "\n".join(lines)


def pin_source(cache: SourceCache, uri: str) -> Pin:
    if uri.startswith("git+"):
        return _pin_git(uri.removeprefix("git+"))
    if uri.startswith("debian:"):
        return _pin_debian(cache, uri.removeprefix("debian:"))
    if uri.startswith(("https://", "file:")):
        return Pin({"url": uri, "sha256": _pin_url(cache, uri)})
    raise InputError(f"{uri!r}: give https://..., file:..., git+URL@REF or"
                     " debian:SOURCE[=VERSION]", reason="bad-usage")


def _pin_url(cache: SourceCache, url: str) -> str:
    from kiln.hostconfig import local_source_problem

    host = host_config()
    if url.startswith("file:"):
        problem = local_source_problem(UrlSource(url, "0" * 64, 0), None, host)
        if problem:
            raise InputError(problem, reason="local-source-not-allowed")
        try:
            with open(file_url_path(url), "rb") as stream:
                return _keep(cache, stream, url, host.limits.source_size)
        except OSError as exc:
            raise InputError(f"{url}: cannot read: {exc.strerror}",
                             reason="source-unreachable") from exc
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
            return _keep(cache, response, url, host.limits.source_size)
    except urllib.error.HTTPError as exc:
        raise InputError(f"{url}: the server answered {exc.code} {exc.reason}",
                         reason="source-unreachable",
                         temporary=exc.code >= 500 or exc.code == 429) from exc
    except (urllib.error.URLError, OSError) as exc:
        raise InputError(f"{url}: cannot fetch: {getattr(exc, 'reason', exc)}",
                         reason="source-unreachable", temporary=True) from exc


class _Readable(Protocol):
    def read(self, size: int, /) -> bytes: ...


def _keep(cache: SourceCache, stream: _Readable, uri: str, max_size: int) -> str:
    """Hash `stream` (a file, an HTTP response) into the cache; its sha256."""
    read = stream.read
    temporary = cache.root / "tmp" / f"pin-{os.getpid()}-{secrets.token_hex(6)}"
    digest, size = hashlib.sha256(), 0
    try:
        with open(temporary, "wb") as out:
            while chunk := read(CHUNK):
                size += len(chunk)
                if size > max_size:
                    raise InputError(f"{uri}: larger than {max_size} bytes (limit"
                                     " source-size)", reason="source-too-large")
                digest.update(chunk)
                out.write(chunk)
        os.chmod(temporary, 0o444)
        os.replace(temporary, cache.file_path(digest.hexdigest()))
    finally:
        temporary.unlink(missing_ok=True)
    return digest.hexdigest()


def _pin_git(text: str) -> Pin:
    url, at, ref = text.rpartition("@")
    if not at or not url or not ref:
        raise InputError(f"git+{text}: give git+URL@REF (a branch, a tag or a commit)",
                         reason="bad-usage")
    if re.fullmatch(r"[0-9a-f]{40}", ref):
        return Pin({"git": url, "commit": ref}, "the commit as given: `kiln recipe check`"
                   " checks that the repository holds it")
    result = subprocess.run(["git", "ls-remote", "--", url, ref, f"{ref}^{{}}"],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise InputError(f"git ls-remote {url}: {result.stderr.strip() or 'failed'}",
                         reason="source-unreachable")
    found = [line.split("\t") for line in result.stdout.splitlines() if "\t" in line]
    # An annotated tag's ^{} line names the commit it points at: prefer it.
    commits = [sha for sha, name in found if name.endswith("^{}")] or [sha for sha, _ in found]
    if not commits:
        raise InputError(f"{url} has no ref {ref}", reason="source-unreachable")
    return Pin({"git": url, "commit": commits[0]}, f"{ref} at the time of pinning")


def _pin_debian(cache: SourceCache, text: str) -> Pin:
    from workers.debsource import DebianSourceApt

    package, _, version = text.partition("=")
    if not re.fullmatch(r"[a-z0-9][a-z0-9.+-]+", package):
        raise InputError(f"debian:{text}: not a Debian source package name", reason="bad-usage")
    apt = DebianSourceApt(cache.root / "apt-src")
    with tempfile.TemporaryDirectory(prefix="kiln-pin-", dir=cache.root / "tmp") as scratch:
        directory = Path(scratch)
        spec = f"{package}={version}" if version else package
        try:
            apt.download_spec(spec, directory)
        except InputError as exc:
            raise InputError(f"apt-get source {spec}: {exc.message}",
                             reason="source-unreachable") from exc
        dscs = sorted(directory.glob("*.dsc"))
        if len(dscs) != 1:
            raise InputError(f"apt-get source {spec} gave {len(dscs)} .dsc files",
                             reason="source-unreachable")
        with open(dscs[0], "rb") as stream:
            dsc_sha256 = _keep(cache, stream, f"debian:{spec}", host_config().limits.source_size)
        found = _dsc_version(dscs[0])
    return Pin({"debian": package, "version": found, "dsc-sha256": dsc_sha256}, DEBIAN_PATCHES)


def _dsc_version(dsc: Path) -> str:
    for line in dsc.read_text(errors="replace").splitlines():
        if line.startswith("Version:"):
            return line.split(":", 1)[1].strip()
    raise InputError(f"{dsc.name} names no Version", reason="bad-source")
