"""`kiln source pin URI`: the pin a recipe writes for a source, as `nix-prefetch-url`
prints a hash. The source is fetched once, hashed as it arrives, and kept in the
store's source cache, so the build that follows fetches nothing.

    https://HOST/PATH, file:PATH   -> url + sha256 (file: only beneath file-sources)
    git+URL@REF                    -> git + commit (REF a branch, tag or commit)
    debian:SOURCE[=VERSION]        -> debian + version + dsc-sha256 (apt's candidate
                                      when no version is given)

Debian's patches: a `debian:` source lays the .dsc and its files in /src untouched;
the package's own patches (debian/patches, a quilt series) are applied only with
`debian-patches: true` on the source (workers/debian_patches.py). The pin says so.
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from kiln.errors import InputError
from kiln.hostconfig import host_config
from workers.sources import SourceCache, fetch_unpinned

DEBIAN_PATCHES = ("Debian's patches are not applied: the build finds the .dsc and its files"
                  " in /src. To apply them, add `debian-patches: true` to the source: the"
                  " build then starts in a tree unpacked as `dpkg-source -x` would, in"
                  " /build/<package>, the quilt series applied (tar, sed and patch in"
                  " build-requires).")


@dataclass(frozen=True)
class Pin:
    """A recipe's source entry as pinned, in YAML's order."""

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
        # Fetched as a build fetches it (the same checks), kept under what it is.
        return Pin({"url": uri, "sha256": fetch_unpinned(cache, uri).sha256})
    raise InputError(f"{uri!r}: give https://..., file:..., git+URL@REF or"
                     " debian:SOURCE[=VERSION]", reason="bad-usage")


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
    from kiln.recipes.model import DebianSource
    from workers.debsource import DebianSourceApt, keep_downloaded

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
            dsc_sha256 = cache.keep(stream, None, f"debian:{spec}", dscs[0].name,
                                    max_size=host_config().limits.source_size).sha256
        found = _dsc_version(dscs[0])
        # Its files too, checked against the .dsc: the build that follows fetches nothing.
        keep_downloaded(cache, DebianSource(package, found, dsc_sha256, 0), directory)
    return Pin({"debian": package, "version": found, "dsc-sha256": dsc_sha256}, DEBIAN_PATCHES)


def _dsc_version(dsc: Path) -> str:
    for line in dsc.read_text(errors="replace").splitlines():
        if line.startswith("Version:"):
            return line.split(":", 1)[1].strip()
    raise InputError(f"{dsc.name} names no Version", reason="bad-source")
