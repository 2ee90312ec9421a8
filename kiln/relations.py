"""Relations between packages, in Debian's syntax: `name (>= 1.2) | other`.

Used by `requires`, `build-requires`, `test-requires` and image constraints, so
that every place compares versions one way (dpkg's, through python-debian).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from kiln.errors import InputError
from kiln.naming import validate_name, validate_version, version_key

_RELATION = re.compile(r"\s*(?P<name>[^\s(|]+)\s*(?:\(\s*(?P<op><<|<=|=|>=|>>)\s*"
                       r"(?P<version>[^\s)]+)\s*\))?\s*")


@dataclass(frozen=True)
class Relation:
    """One package name with an optional version constraint."""

    name: str
    operator: str | None = None
    version: str | None = None

    def satisfied_by(self, name: str, version: str) -> bool:
        if name != self.name:
            return False
        if self.operator is None or self.version is None:
            return True
        have, want = version_key(version), version_key(self.version)
        return {
            "<<": have < want, "<=": have <= want, "=": have == want,
            ">=": have >= want, ">>": have > want,
        }[self.operator]

    def __str__(self) -> str:
        if self.operator is None:
            return self.name
        return f"{self.name} ({self.operator} {self.version})"


@dataclass(frozen=True)
class Alternatives:
    """Relations of which any one satisfies the requirement (`a | b`)."""

    options: tuple[Relation, ...]

    def __str__(self) -> str:
        return " | ".join(str(option) for option in self.options)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(option.name for option in self.options)


def parse_alternatives(text: str) -> Alternatives:
    """Parse `name [(op version)] [| name ...]`, validating names and versions."""
    options = []
    for part in text.split("|"):
        match = _RELATION.fullmatch(part)
        if match is None:
            raise InputError(f"{text!r} is not a relation like 'kiln.dev/zlib (>= 1.3)'",
                             reason="bad-relation")
        version = match["version"]
        options.append(Relation(validate_name(match["name"]), match["op"],
                                validate_version(version) if version else None))
    return Alternatives(tuple(options))
