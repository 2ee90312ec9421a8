"""`kiln recipe new NAME --debian SOURCE[=VERSION] | --url URL | --git URL@REF`: a
recipe written from a pinned source, ready to build.

The source is pinned as `kiln source pin` pins it (and kept in the source cache, so
the first build fetches nothing), its tree listed without unpacking anything on the
host (tar members' names, git's tree), the build system guessed from it
(kiln/recipes/scaffold.py), and for a Debian source package, what Debian declares:
Build-Depends mapped to the lock's names (virtual packages to a provider), summary,
license and homepage, its patches applied (`debian-patches: true`). The lock then
gains what the recipe needs, moving nothing already locked (`kiln lock update`).
"""

from __future__ import annotations

import re
import subprocess
import tarfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from kiln.debian.apt import Apt
from kiln.errors import InputError, KilnError, NotFound
from kiln.naming import validate_name, validate_version
from kiln.recipes.lock_update import LockChange, update_lock
from kiln.recipes.model import DebianSource, GitSource
from kiln.recipes.repository import load_repository
from kiln.recipes.scaffold import (
    C_TOOLCHAIN,
    BuildSystem,
    NewRecipe,
    debian_build_depends,
    debian_license,
    debian_summary,
    decompressors,
    guess_build_system,
    upstream_version,
)
from kiln.store.store import Store
from workers.debsource import FetchedDebianSource, fetch_debian
from workers.pin import pin_source
from workers.sources import SourceCache, fetch_git

_MAX_MEMBERS = 200_000  # a listing stops here: a tree is read for its top, not in full
_MAX_READ = 1 << 20  # debian/control and debian/copyright are read up to this size
DEFAULT_PREFIX = "kiln.dev"


@dataclass(frozen=True)
class CreatedRecipe:
    """A recipe `kiln recipe new` wrote, and the lock change it made."""

    file: Path
    recipe: NewRecipe
    lock: LockChange | None  # None: not asked to update the lock
    dropped: tuple[str, ...]  # Build-Depends apt knows nothing of


def new_recipe(store: Store, repository: Path, name: str, *, debian: str | None = None,
               url: str | None = None, git: str | None = None, version: str | None = None,
               update_the_lock: bool = True) -> CreatedRecipe:
    """Write <repository>/<directory>/recipe.yaml for `name` from the one source given."""
    if sum(x is not None for x in (debian, url, git)) != 1:
        raise InputError("give one source: --debian SOURCE[=VERSION], --url URL or"
                         " --git URL@REF", reason="bad-usage")
    if version is not None:
        validate_version(version)
    package = _package_name(repository, name)
    directory = repository / package.rsplit("/", 1)[1]
    if directory.exists():
        raise InputError(f"{directory} exists: a new recipe goes in a directory of its own",
                         reason="recipe-exists")
    cache = SourceCache(store.layout.root / "sources")
    apt = Apt(store.layout.cache / "apt")
    if debian is not None:
        recipe, dropped = _from_debian(cache, apt, package, debian, version)
    elif url is not None:
        recipe, dropped = _from_url(cache, apt, package, url, version), ()
    else:
        assert git is not None
        recipe, dropped = _from_git(cache, apt, package, git, version), ()
    directory.mkdir(parents=True)
    file = directory / "recipe.yaml"
    file.write_text(recipe.text())
    change = None
    if update_the_lock:
        try:
            change = update_lock(store, repository)
        except KilnError as exc:
            # The recipe stays (it is right); the lock is the maintainer's to update.
            raise type(exc)(f"{file} is written, but kiln.lock could not gain what it needs:"
                            f" {exc.message}; then run kiln lock update --recipes"
                            f" {repository}", reason=exc.reason) from exc
    return CreatedRecipe(file, recipe, change, dropped)


def _package_name(repository: Path, name: str) -> str:
    """NAME as given when it has a domain, else under the prefix most of the
    repository's recipes use (kiln.dev when it has none)."""
    if "/" not in name:
        prefixes = Counter(recipe.package.name.rsplit("/", 1)[0]
                           for recipe in load_repository(repository).recipes.values())
        name = f"{prefixes.most_common(1)[0][0] if prefixes else DEFAULT_PREFIX}/{name}"
    validate_name(name)
    return name


def _from_debian(cache: SourceCache, apt: Apt, package: str, spec: str,
                 version: str | None) -> tuple[NewRecipe, tuple[str, ...]]:
    from debian.deb822 import Dsc

    pin = pin_source(cache, f"debian:{spec}")
    source = DebianSource(pin.fields["debian"], pin.fields["version"], pin.fields["dsc-sha256"],
                          0, patches=True)
    fetched = fetch_debian(cache, source)
    dsc = Dsc(fetched.dsc.path.read_text(errors="replace"))
    tarballs = [f for f in fetched.files if ".tar." in f.name]
    if not tarballs:
        raise InputError(f"debian-source:{source.package}={source.version} has no tarball"
                         " to build from", reason="bad-source")
    upstream = next((f for f in tarballs if ".orig.tar." in f.name), tarballs[0])
    files = _tar_listing(upstream.path)
    debian_files = _debian_files(fetched)
    declared = debian_build_depends(
        [dsc.get("Build-Depends", ""), dsc.get("Build-Depends-Arch", "")], _architecture())
    system = guess_build_system(files, declared, source.package, _automake_api(apt))
    mapped, dropped = _in_apt(apt, declared)
    tools = [*decompressors(f.name for f in fetched.files), "patch"]
    notes = ["Debian's patches are applied (debian-patches: true): the build starts in"
             f" {source.package}/, unpacked as dpkg-source -x would."]
    if dropped:
        notes.append(f"Build-Depends apt has no package for, left out: {', '.join(dropped)}.")
    series = debian_files.get("debian/patches/series", "")
    count = len([line for line in series.splitlines() if line.split("#", 1)[0].strip()])
    if count:
        notes.append(f"{count} patch{'es' if count != 1 else ''} in debian/patches/series.")
    recipe = _recipe(
        package, version or f"{upstream_version(source.version)}-1", system, mapped, tools,
        apt, origin=f"Made by `kiln recipe new --debian {spec}`: Debian's"
        f" {source.package} {source.version}, built with {system.name}.",
        source=pin.fields, source_options={"debian-patches": "true"}, unpack=(),
        summary=debian_summary(debian_files.get("debian/control", ""), source.package),
        license=debian_license(debian_files.get("debian/copyright", "")),
        homepage=dsc.get("Homepage", ""), notes=tuple(notes))
    return recipe, tuple(dropped)


def _from_url(cache: SourceCache, apt: Apt, package: str, url: str,
              version: str | None) -> NewRecipe:
    pin = pin_source(cache, url)
    file_name = url.rstrip("/").rsplit("/", 1)[-1]
    found = re.search(r"[-_]v?([0-9][A-Za-z0-9.+~]*?)\.(tar|tgz|tbz|txz)", file_name)
    if version is None and found is None:
        raise InputError(f"{file_name} names no version: give --version V",
                         reason="bad-usage")
    directory = package.rsplit("/", 1)[1]
    files = _tar_listing(cache.file_path(pin.fields["sha256"]))
    system = guess_build_system(files, (), directory, _automake_api(apt))
    return _recipe(package, version or f"{found.group(1) if found else ''}-1", system, [],
                   decompressors([file_name]), apt,
                   origin=f"Made by `kiln recipe new --url {url}`, built with {system.name}.",
                   source=pin.fields, summary="", license="", homepage="",
                   unpack=(f"uses: tar/unpack\n    with: {{archive: {file_name},"
                           f" into: {directory}}}",))


def _from_git(cache: SourceCache, apt: Apt, package: str, spec: str,
              version: str | None) -> NewRecipe:
    pin = pin_source(cache, f"git+{spec}")
    url, commit = pin.fields["git"], pin.fields["commit"]
    mirror = fetch_git(cache, GitSource(url, commit, 0)).mirror
    listing = subprocess.run(["git", "-C", str(mirror), "ls-tree", "-r", "--name-only",
                              commit], capture_output=True, text=True, check=False)
    if listing.returncode != 0:
        raise InputError(f"{url}: cannot list {commit}: {listing.stderr.strip()}",
                         reason="source-unreachable")
    directory = package.rsplit("/", 1)[1]
    system = guess_build_system(listing.stdout.splitlines(), (), directory, _automake_api(apt))
    return _recipe(package, version or f"0+git{commit[:12]}-1", system, [], [], apt,
                   origin=f"Made by `kiln recipe new --git {spec}`, built with {system.name}.",
                   source=pin.fields, summary="", license="",
                   homepage=url if url.startswith("https://") else "",
                   # /src is read-only, and an autoconf build writes in its tree.
                   unpack=(f"runs: cp -R /src/git {directory}",))


def _recipe(package: str, version: str, system: BuildSystem, declared: list[str],
            tools: list[str], apt: Apt, *, origin: str, source: dict[str, str],
            unpack: tuple[str, ...], summary: str, license: str, homepage: str,
            notes: tuple[str, ...] = (), source_options: dict[str, str] | None = None
            ) -> NewRecipe:
    validate_version(version)
    python = system.name == "python"
    base = ["dash", "coreutils", "sed", "grep", "tar", "gzip"] if python else list(C_TOOLCHAIN)
    wanted = [*base, *(["g++-12"] if system.cxx else []), *tools, *system.tools, *declared]
    names = list(dict.fromkeys(wanted))
    env = {} if python else {"GCC_EXEC_PREFIX": "/usr/lib/gcc/", "CC": "gcc-12",
                             **({"CXX": "g++-12"} if system.cxx else {})}
    requires = (["debian.org/bookworm/python3"] if python
                else ["debian.org/bookworm/libc6", *_runtime_libraries(apt, declared)])
    return NewRecipe(package, version, summary, license, homepage, origin, source,
                     source_options or {}, unpack=unpack, system=system,
                     build_requires=tuple(f"debian.org/bookworm/{n}" for n in names),
                     requires=tuple(dict.fromkeys(requires)), env=env, notes=notes)


def _in_apt(apt: Apt, names: list[str]) -> tuple[list[str], list[str]]:
    """`names` as real packages (a virtual one as its first provider), and the names
    apt has nothing for."""
    apt.prefetch(names)
    found: list[str] = []
    missing: list[str] = []
    for name in names:
        try:
            apt.show(name)
            found.append(name)
        except NotFound:
            providers = apt.providers(name)
            (found if providers else missing).append(providers[0] if providers else name)
    return list(dict.fromkeys(found)), missing


def _runtime_libraries(apt: Apt, declared: list[str]) -> list[str]:
    """The shared libraries a -dev build dependency stands for (libssl-dev: libssl3): a
    guess at what the built package links, for its requires."""
    found = []
    for name in declared:
        if not name.endswith("-dev") or name == "libc6-dev":
            continue
        for group in apt.show(name).depends:
            option = group[0].name
            if option.startswith("lib") and not option.endswith(("-dev", "-common")) \
                    and option != "libc6":
                found.append(f"debian.org/bookworm/{option}")
    return found


def _automake_api(apt: Apt) -> str:
    """automake's API version (1.16 for 1:1.16.5-1.3), which names its programs."""
    found = re.match(r"(?:[0-9]+:)?([0-9]+\.[0-9]+)", apt.show("automake").version)
    return found.group(1) if found else "1.16"


def _architecture() -> str:
    result = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True,
                            check=False)
    return result.stdout.strip() or "amd64"


def _tar_listing(archive: Path) -> list[str]:
    """The member names of a tarball without its top directory; nothing is unpacked."""
    names = []
    try:
        with tarfile.open(archive, "r|*") as stream:
            for index, member in enumerate(stream):
                if index >= _MAX_MEMBERS:
                    break
                _top, _, rest = member.name.lstrip("./").partition("/")
                if rest:
                    names.append(rest.rstrip("/"))
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise InputError(f"{archive.name}: not a tarball Kiln can list: {exc}",
                         reason="bad-source") from exc
    return names


def _debian_files(fetched: FetchedDebianSource) -> dict[str, str]:
    """debian/control, debian/copyright and debian/patches/series, read (not unpacked)
    from the debian tarball; empty for a source package without one."""
    wanted = {"debian/control", "debian/copyright", "debian/patches/series"}
    found: dict[str, str] = {}
    for item in fetched.files:
        if not re.search(r"\.debian\.tar\.|\.tar\.", item.name) or ".orig" in item.name:
            continue
        try:
            with tarfile.open(item.path, "r|*") as stream:
                for member in stream:
                    name = member.name.lstrip("./")
                    name = name if name.startswith("debian/") else name.partition("/")[2]
                    if name in wanted and member.isfile() and member.size <= _MAX_READ:
                        extracted = stream.extractfile(member)
                        if extracted is not None:
                            found[name] = extracted.read(_MAX_READ).decode(errors="replace")
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise InputError(f"{item.name}: not a tarball Kiln can read: {exc}",
                             reason="bad-source") from exc
    return found
