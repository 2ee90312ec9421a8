"""`kiln deb import`: Debian binary packages become Package FileSets.

Each .deb is downloaded by apt and checked against the sha256 of apt's record
before it is opened; its data.tar goes through Kiln's strict archive reader.
The FileSet is `debian.org/<suite>/<package>` at the Debian version; Depends
(with alternatives and versions) become `requires`, Provides `provides`, and
the .deb's sha256 stays in the metadata as its origin. Maintainer scripts are
not run (see the README for what that loses).
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from kiln.archive.importer import import_tar_stream
from kiln.debian.alternatives import postinst_alternatives
from kiln.debian.apt import Apt, AptPackage, DebRelation
from kiln.debian.deb import control_description, control_files, data_tar
from kiln.errors import InputError, NotFound
from kiln.fileset import FileSet
from kiln.naming import DEBIAN_DOMAIN
from kiln.package import PackageMetadata
from kiln.relations import Relation, parse_alternatives
from kiln.store.store import Store

_PRIORITY = {"required": 0, "important": 1, "standard": 2, "optional": 3, "extra": 4}


class DebDigestMismatch(InputError):
    """A downloaded .deb is not the one apt's signed index describes."""

    default_reason = "deb-digest-mismatch"


@dataclass(frozen=True)
class DebianImport:
    """A .deb apt found, and the FileSet it became."""

    package: AptPackage
    fileset: FileSet


def suite_codename() -> str:
    """The Debian suite of this host (VERSION_CODENAME in /etc/os-release)."""
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("VERSION_CODENAME="):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    raise InputError("cannot tell the Debian suite from /etc/os-release; give --suite",
                     reason="bad-usage")


def kiln_name(suite: str, package: str) -> str:
    return f"{DEBIAN_DOMAIN}/{suite}/{package}"


def package_name(name: str) -> str:
    """`debian.org/bookworm/gcc-12` -> `gcc-12`."""
    return name.rsplit("/", 1)[1]


def suite_of(name: str) -> str:
    """`debian.org/bookworm/gcc-12` -> `bookworm`."""
    parts = name.split("/")
    if len(parts) != 3 or parts[0] != DEBIAN_DOMAIN:
        raise InputError(f"{name} is not of the form debian.org/<suite>/<package>",
                         reason="bad-name")
    return parts[1]


def closure(apt: Apt, roots: list[AptPackage],
            already: dict[str, AptPackage] | None = None) -> list[AptPackage]:
    """The roots and everything they depend on, one version of each, sorted by name.

    Of alternatives the first that can be had wins, unless another is already
    chosen; a virtual package is satisfied by any chosen package providing it,
    else by its first provider. Records are fetched a breadth-first level at a time.
    `already`: packages that stand as chosen (a lock's kept ones), not walked again.
    """
    chosen: dict[str, AptPackage] = dict(already or {})
    provided: set[str] = {p for package in chosen.values() for p in package.provides}
    level = list(roots)
    while level:
        for package in level:
            if package.name not in chosen:
                chosen[package.name] = package
                provided.update(package.provides)
        apt.prefetch([option.name for package in level for group in package.depends
                      for option in group])
        following: list[AptPackage] = []
        for package in level:
            for group in package.depends:
                if any(satisfied(option, chosen, provided) for option in group):
                    continue
                pick = _first_available(apt, package, group)
                chosen.setdefault(pick.name, pick)
                provided.update(pick.provides)
                following.append(pick)
        level = following
    return sorted(chosen.values(), key=lambda p: p.name)


def satisfied(option: DebRelation, chosen: dict[str, AptPackage], provided: set[str]) -> bool:
    """Whether `option` is met by a chosen package (at an acceptable version) or by
    one that provides it."""
    if option.name in provided:
        return True
    package = chosen.get(option.name)
    return package is not None and Relation(option.name, option.operator,
                                            option.version).satisfied_by(package.name,
                                                                         package.version)


def _first_available(apt: Apt, parent: AptPackage, group: tuple[DebRelation, ...]
                     ) -> AptPackage:
    for option in group:
        try:
            candidate = apt.show(option.name)
        except NotFound:
            names = apt.providers(option.name)
            apt.prefetch(list(names))
            # As apt would: the most essential provider (mawk for awk, not original-awk).
            providers = sorted((apt.show(name) for name in names),
                               key=lambda p: (_PRIORITY.get(p.priority, 9), p.name))
            if providers:
                return providers[0]
            continue
        if Relation(option.name, option.operator, option.version).satisfied_by(
                candidate.name, candidate.version):
            return candidate
    wanted = " | ".join(describe_relation(option) for option in group)
    raise InputError(f"{parent.name} {parent.version} depends on {wanted}, which apt cannot"
                     " provide", reason="deb-unsatisfiable")


def describe_relation(option: DebRelation) -> str:
    return option.name if option.operator is None else \
        f"{option.name} ({option.operator} {option.version})"


def metadata_for(package: AptPackage, suite: str) -> PackageMetadata:
    requires = tuple(
        parse_alternatives(" | ".join(
            kiln_name(suite, option.name) if option.operator is None
            else f"{kiln_name(suite, option.name)} ({option.operator} {option.version})"
            for option in group))
        for group in package.depends)
    return PackageMetadata(
        labels={"origin": "debian", "debian.suite": suite,
                "debian.architecture": package.architecture,
                "debian.deb-sha256": package.sha256, "debian.filename": package.filename},
        summary=package.summary, homepage=package.homepage, requires=requires,
        provides=tuple(kiln_name(suite, name) for name in package.provides),
        install=(),  # Debian packages are installed by their paths as they stand
    )


def import_deb_file(store: Store, deb: Path, package: AptPackage, suite: str) -> FileSet:
    """Import one downloaded .deb after checking it is the one apt's record names."""
    with open(deb, "rb") as handle:
        actual = hashlib.file_digest(handle, "sha256").hexdigest()
        if actual != package.sha256:
            raise DebDigestMismatch(
                f"{deb}: sha256 is {actual}, apt's record for {package.name} {package.version}"
                f" says {package.sha256}; refused")
        handle.seek(0)
        control = control_files(handle, str(deb), {"control", "postinst"})
        if "control" not in control:
            raise InputError(f"{deb}: control.tar has no control file", reason="bad-deb")
        metadata = metadata_for(replace(package, summary=control_description(
            control["control"])), suite)
        # The links its postinst would make by update-alternatives (awk, which, cc).
        metadata = replace(metadata, alternatives=postinst_alternatives(
            control.get("postinst", "")))
        handle.seek(0)
        result = import_tar_stream(store, data_tar(handle, str(deb)), str(deb),
                                   name=kiln_name(suite, package.name), version=package.version,
                                   metadata=metadata, strip_setuid=True)
    return result.fileset


def import_debs(store: Store, specs: list[str], *, with_closure: bool,
                suite: str | None = None) -> list[DebianImport]:
    """Download and import NAME[=VERSION]... (and, with the closure, all they need)."""
    suite = suite or suite_codename()
    apt = Apt(store.layout.cache / "apt")
    roots = []
    for spec in specs:
        name, _, version = spec.partition("=")
        roots.append(apt.show(name, version or None))
    packages = closure(apt, roots) if with_closure else roots
    with tempfile.TemporaryDirectory(prefix="kiln-deb-") as scratch:
        files = apt.download(packages, Path(scratch))
        return [DebianImport(package, import_deb_file(store, files[package.name], package,
                                                      suite))
                for package in packages]

