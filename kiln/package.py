"""Package metadata: what makes a FileSet a Package (DESIGN.md section 2)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from kiln.errors import InputError
from kiln.fileset import METADATA_KINDS, Metadata, string_map
from kiln.relations import Alternatives, parse_alternatives

# Paths a package links into a root unless its recipe says otherwise.
DEFAULT_INSTALL = ("usr/bin/*", "usr/sbin/*", "usr/lib/**", "usr/libexec/**",
                   "usr/include/**", "usr/share/**", "etc/**")


@dataclass(frozen=True)
class Requirements:
    """What a host must offer to run the package: surfaced by images, enforced by run."""

    kernel: str | None = None
    capabilities: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"kernel": self.kernel, "capabilities": list(self.capabilities)}


@dataclass(frozen=True)
class Alternative:
    """A link a root gets by choice among its packages, as Debian's update-alternatives
    makes it (`/usr/bin/awk -> /usr/bin/mawk`): of the packages offering the group
    (`awk`), the highest priority's links are made; its slaves go with it."""

    group: str
    link: str  # absolute, in the root
    path: str  # absolute, in the root: what the link names
    priority: int

    def to_json(self) -> dict[str, Any]:
        return {"group": self.group, "link": self.link, "path": self.path,
                "priority": self.priority}


@dataclass(frozen=True)
class PackageMetadata(Metadata):
    """A FileSet that is a package: its relations, install links, env and requirements."""

    kind: ClassVar[str] = "package"
    summary: str = ""
    license: str = ""
    homepage: str = ""
    requires: tuple[Alternatives, ...] = ()
    provides: tuple[str, ...] = ()
    replaces: tuple[str, ...] = ()
    install: tuple[str, ...] = DEFAULT_INSTALL
    env: Mapping[str, str] = field(default_factory=dict)
    requirements: Requirements = field(default_factory=Requirements)
    alternatives: tuple[Alternative, ...] = ()

    def to_json(self) -> dict[str, Any]:
        # `alternatives` only where there are some: every other package keeps its digest.
        return {
            **({"alternatives": [a.to_json() for a in self.alternatives]}
               if self.alternatives else {}),
            **super().to_json(),
            "summary": self.summary,
            "license": self.license,
            "homepage": self.homepage,
            "requires": [str(item) for item in self.requires],
            "provides": list(self.provides),
            "replaces": list(self.replaces),
            "install": list(self.install),
            "env": dict(sorted(self.env.items())),
            "requirements": self.requirements.to_json(),
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any], *, where: str) -> PackageMetadata:
        known = {"kind", "labels", "summary", "license", "homepage", "requires", "provides",
                 "replaces", "install", "env", "requirements"}
        if set(raw) - {"alternatives"} != known:
            raise InputError(f"{where}: package metadata has keys {sorted(raw)},"
                             f" expected {sorted(known)}", reason="bad-metadata")
        requirements = raw["requirements"]
        if not isinstance(requirements, dict) or set(requirements) != {"kernel",
                                                                        "capabilities"}:
            raise InputError(f"{where}: requirements need kernel and capabilities",
                             reason="bad-metadata")
        kernel = requirements["kernel"]
        if kernel is not None and not isinstance(kernel, str):
            raise InputError(f"{where}: requirements.kernel must be a string",
                             reason="bad-metadata")
        return cls(
            labels=string_map(raw["labels"], f"{where}: labels"),
            summary=_string(raw["summary"], f"{where}: summary"),
            license=_string(raw["license"], f"{where}: license"),
            homepage=_string(raw["homepage"], f"{where}: homepage"),
            requires=tuple(parse_alternatives(item)
                           for item in _strings(raw["requires"], f"{where}: requires")),
            provides=_strings(raw["provides"], f"{where}: provides"),
            replaces=_strings(raw["replaces"], f"{where}: replaces"),
            install=_strings(raw["install"], f"{where}: install"),
            env=string_map(raw["env"], f"{where}: env"),
            requirements=Requirements(kernel, _strings(requirements["capabilities"],
                                                       f"{where}: capabilities")),
            alternatives=_alternatives(raw.get("alternatives", []), f"{where}: alternatives"),
        )


def _alternatives(value: Any, where: str) -> tuple[Alternative, ...]:
    if not isinstance(value, list):
        raise InputError(f"{where} must be a list", reason="bad-metadata")
    found = []
    for item in value:
        if not isinstance(item, dict) or set(item) != {"group", "link", "path", "priority"}:
            raise InputError(f"{where}: each needs group, link, path and priority",
                             reason="bad-metadata")
        priority = item["priority"]
        if not isinstance(priority, int) or isinstance(priority, bool):
            raise InputError(f"{where}: priority must be a whole number", reason="bad-metadata")
        alternative = Alternative(_string(item["group"], where), _string(item["link"], where),
                                  _string(item["path"], where), priority)
        for path in (alternative.link, alternative.path):
            if not path.startswith("/") or "/../" in f"{path}/" or "\0" in path:
                raise InputError(f"{where}: {path!r} is not an absolute path in a root",
                                 reason="bad-metadata")
        found.append(alternative)
    return tuple(found)


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise InputError(f"{where} must be a string", reason="bad-metadata")
    return value


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InputError(f"{where} must be a list of strings", reason="bad-metadata")
    return tuple(value)


METADATA_KINDS[PackageMetadata.kind] = PackageMetadata
