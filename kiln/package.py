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

    def to_json(self) -> dict[str, Any]:
        return {
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
        if set(raw) != known:
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
        )


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise InputError(f"{where} must be a string", reason="bad-metadata")
    return value


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InputError(f"{where} must be a list of strings", reason="bad-metadata")
    return tuple(value)


METADATA_KINDS[PackageMetadata.kind] = PackageMetadata
