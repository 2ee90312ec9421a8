"""What `kiln recipe new` writes: a recipe guessed from a source tree and, for a Debian
source package, from what Debian declares of it.

Pure functions of what was read (file names, the .dsc's fields, debian/control and
debian/copyright): fetching and looking things up in apt is the caller's. The
guesses are the ones debhelper makes, with Debian's own Build-Depends as the
strongest hint (a package Debian builds with cmake is built with cmake here too).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from kiln.errors import InputError

# Debian's tools for making .debs, never needed to build the software itself.
_PACKAGING = re.compile(r"debhelper(-compat)?|dh-.*|dpkg-dev|quilt|cdbs|lintian|"
                        r"pkg-kde-tools|gem2deb|devscripts|po-debconf|dctrl-tools")
# Build profiles a recipe made here builds under: no upstream test suite, no docs.
PROFILES = frozenset({"nocheck", "nodoc"})
# What every C build uses (Debian's build-essential and the shell tools configure
# scripts and makefiles call), with gcc-12 as `CC`, as the curated recipes do.
C_TOOLCHAIN = ("gcc-12", "libc6-dev", "make", "dash", "coreutils", "sed", "grep", "mawk",
               "tar", "gzip", "diffutils", "findutils")
_DECOMPRESSORS = {".xz": "xz-utils", ".bz2": "bzip2", ".lzma": "xz-utils", ".zst": "zstd"}
_CXX = re.compile(r".*\.(cc|cpp|cxx|C|hpp|hh)$")
# Debian's short license names (DEP-5) as SPDX names, where they differ.
_SPDX = {"Expat": "MIT", "GPL-2": "GPL-2.0-only", "GPL-2+": "GPL-2.0-or-later",
         "GPL-3": "GPL-3.0-only", "GPL-3+": "GPL-3.0-or-later",
         "LGPL-2.1": "LGPL-2.1-only", "LGPL-2.1+": "LGPL-2.1-or-later",
         "LGPL-3+": "LGPL-3.0-or-later", "BSD-3-clause": "BSD-3-Clause",
         "BSD-2-clause": "BSD-2-Clause", "Apache-2.0": "Apache-2.0", "Zlib": "Zlib",
         "ISC": "ISC", "MIT": "MIT"}


@dataclass(frozen=True)
class BuildSystem:
    """How a tree builds: its pipeline steps (YAML flow text) and what they need."""

    name: str
    steps: tuple[str, ...]
    tools: tuple[str, ...] = ()  # Debian packages the steps run
    cxx: bool = False


def guess_build_system(files: Iterable[str], build_depends: Iterable[str],
                       directory: str, automake_api: str = "1.16") -> BuildSystem:
    """The build system of a tree whose paths (relative to its top) are `files`, to be
    built in `directory` of the build. Debian's Build-Depends decide between a
    tree's several build systems (cJSON ships a Makefile and CMakeLists.txt).
    `automake_api` is the locked automake's (1.16), for trees without a configure."""
    names = set(files)
    top = {name for name in names if "/" not in name}
    depends = set(build_depends)
    cxx = any(_CXX.match(name) for name in names)
    where = f"dir: {directory}"
    cmake = BuildSystem("cmake", (f"uses: cmake\n    with: {{{where}}}",), ("cmake", "make"), cxx)
    meson = BuildSystem("meson", (f"uses: meson\n    with: {{{where}}}",),
                        ("meson", "ninja-build"), cxx)
    # The build directory must not reach the debug info (`kiln build --check` varies it).
    flags = "opts: 'CFLAGS=\"-O2 -g -ffile-prefix-map=$PWD=.\"'"
    make = (f"uses: make/build\n    with: {{{where}}}",
            f"uses: make/install\n    with: {{{where}}}")
    if "meson" in depends and "meson.build" in top:
        return meson
    if "cmake" in depends and "CMakeLists.txt" in top:
        return cmake
    if "configure" in top:
        return BuildSystem("autoconf", (f"uses: autoconf/configure\n    with: {{{where}, {flags}}}",
                                        *make), (), cxx)
    if top & {"configure.ac", "configure.in"}:
        # Debian names aclocal and automake by their API version (1.16), `aclocal` being
        # an alternative its maintainer scripts would make: autoreconf is told the names.
        reconf = (f"runs: cd {directory} && ACLOCAL=aclocal-{automake_api}"
                  f" AUTOMAKE=automake-{automake_api} autoreconf -fi")
        return BuildSystem("autoconf", (reconf,
                                        f"uses: autoconf/configure\n    with: {{{where}, {flags}}}",
                                        *make), ("autoconf", "automake", "libtool", "m4"), cxx)
    if "meson.build" in top:
        return meson
    if "CMakeLists.txt" in top:
        return cmake
    if top & {"pyproject.toml", "setup.py"}:
        return BuildSystem("python", (f"uses: python/wheel\n    with: {{{where}}}",),
                           ("python3", "python3-pip", "python3-setuptools", "python3-wheel"))
    if top & {"Makefile", "makefile", "GNUmakefile"}:
        install = f"{where}, opts: 'PREFIX=/usr prefix=/usr'"
        return BuildSystem("make", (f"uses: make/build\n    with: {{{where}}}",
                                    f"uses: make/install\n    with: {{{install}}}"), (), cxx)
    shown = ", ".join(sorted(top)[:12]) or "nothing"
    raise InputError(f"no build system Kiln knows (configure, CMakeLists.txt, meson.build,"
                     f" setup.py or pyproject.toml, Makefile) at the tree's top, which holds"
                     f" {shown}: write the recipe's build yourself", reason="no-build-system")


def debian_build_depends(fields: Iterable[str], architecture: str) -> list[str]:
    """The Debian packages a source package's Build-Depends (and -Arch) fields name that
    a recipe needs: the first alternative of each, for `architecture`, under PROFILES,
    without Debian's packaging tools. Versions are left to the lock."""
    from debian.deb822 import PkgRelation

    chosen: list[str] = []
    for text in fields:
        if not text.strip():
            continue
        for group in PkgRelation.parse_relations(text):
            for option in group:
                if not _for_architecture(option.get("arch"), architecture):
                    continue
                if not _under_profiles(option.get("restrictions")):
                    continue
                name = option["name"]
                if not _PACKAGING.fullmatch(name) and name not in chosen:
                    chosen.append(name)
                break
    return chosen


def _for_architecture(arches: Sequence[Any] | None, architecture: str) -> bool:
    """Whether an `[arch ...]` list (python-debian's ArchRestriction tuples) admits it."""
    if not arches:
        return True
    wanted = {architecture, "any", f"linux-{architecture}", "linux-any", f"any-{architecture}"}
    positive = [a.arch for a in arches if a.enabled]
    if positive:
        return any(arch in wanted for arch in positive)
    return not any(a.arch in wanted for a in arches)


def _under_profiles(restrictions: Sequence[Sequence[Any]] | None) -> bool:
    """A restriction formula (python-debian's BuildRestriction tuples) is a disjunction
    of conjunctions of profiles, each active or not."""
    if not restrictions:
        return True
    return any(all((term.profile in PROFILES) == term.enabled for term in conjunction)
               for conjunction in restrictions)


def debian_summary(control: str, source: str) -> str:
    """The synopsis of the source package's main binary package in debian/control: the
    one named as the source, else the first that is not -dev, -doc or -dbg."""
    from debian.deb822 import Deb822

    binaries = [p for p in Deb822.iter_paragraphs(control) if "Package" in p]
    binaries.sort(key=lambda p: (p["Package"] != source,
                                 bool(re.search(r"-(dev|doc|dbg|data|common)$", p["Package"]))))
    for paragraph in binaries:
        synopsis = str(paragraph.get("Description", "")).split("\n", 1)[0].strip()
        if synopsis:
            return synopsis
    return ""


def debian_license(copyright_text: str) -> str:
    """The license of `Files: *` in a machine-readable debian/copyright (DEP-5), as an
    SPDX name where Kiln knows one; empty when the file is not machine-readable."""
    from debian.deb822 import Deb822

    for paragraph in Deb822.iter_paragraphs(copyright_text):
        if paragraph.get("Files", "").split() == ["*"] and "License" in paragraph:
            short = str(paragraph["License"]).split("\n", 1)[0].strip()
            return _SPDX.get(short, short)
    return ""


def upstream_version(debian_version: str) -> str:
    """A Debian version's upstream part: no epoch, no Debian revision."""
    without_epoch = debian_version.split(":", 1)[-1]
    return without_epoch.rsplit("-", 1)[0] if "-" in without_epoch else without_epoch


def decompressors(file_names: Iterable[str]) -> list[str]:
    """The Debian packages that unpack these archives (gzip is in the toolchain)."""
    found: list[str] = []
    for name in file_names:
        for suffix, package in _DECOMPRESSORS.items():
            if name.endswith(suffix) and package not in found:
                found.append(package)
    return found


@dataclass(frozen=True)
class NewRecipe:
    """Everything the written recipe says, each part decided by the caller."""

    name: str
    version: str
    summary: str
    license: str
    homepage: str
    origin: str  # how it was made, for the file's first comment
    source: dict[str, str]  # the source entry, in its order (kiln.workers.pin's fields)
    source_options: dict[str, str] = field(default_factory=dict)
    unpack: tuple[str, ...] = ()  # steps laying the tree out, before the build system's
    system: BuildSystem = BuildSystem("none", ())
    build_requires: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()  # comments for the maintainer, at the top

    def text(self) -> str:
        """The recipe.yaml, commented where a maintainer should look again."""
        lines = [f"# {self.origin}", *(f"# {note}" for note in self.notes),
                 "package:", f"  name: {self.name}", f"  version: {_quoted(self.version)}",
                 f"  summary: {_quoted(self.summary)}", f"  license: {_quoted(self.license)}",
                 f"  homepage: {_quoted(self.homepage)}", "sources:"]
        entry = {**self.source, **self.source_options}
        for index, (key, value) in enumerate(entry.items()):
            shown = value if key in self.source_options else _quoted(value)
            lines.append(f"{'  - ' if index == 0 else '    '}{key}: {shown}")
        lines.append("build-requires:")
        lines += [f"  - {name}" for name in self.build_requires]
        lines.append("requires:" if self.requires else "requires: []")
        lines += [f"  - {name}" for name in self.requires]
        if self.env:
            lines.append("env:")
            lines += [f"  {key}: {_quoted(value)}" for key, value in self.env.items()]
        lines.append(f"# Built with {self.system.name}: the repository's pipelines"
                     " (pipelines/), each a build input.")
        lines.append("build:")
        lines += [f"  - {step}" for step in (*self.unpack, *self.system.steps)]
        lines += ["# The test runs in a root of the package, its requires and test-requires",
                  "# ($PACKAGE is where the package is): add one that proves it works.",
                  "# test: |", "#   ..."]
        return "\n".join(lines) + "\n"


def _quoted(value: str) -> str:
    """A YAML scalar as a JSON string: a version such as 1.10 stays a string."""
    return json.dumps(value)
