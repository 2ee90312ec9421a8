"""farm.yaml's `reproducibility`: how many builds of a package the gate asks for, and
how many must agree before it is published.

```yaml
reproducibility:
  builds: 2                  # N builds of every package, each on a worker of its own
  agree: 2                   # K of them must make the same FileSet, or nothing is published
  allow-unreproducible: false  # publish (built once, marked) recipes that declare
                               # `not-reproducible: REASON`; false: refuse them
  packages:                  # per package, or per name prefix ending in *
    kiln.dev/chromium: {builds: 1, agree: 1}
    "kiln.dev/lib*": {builds: 3, agree: 2}
```

The longest matching entry wins. Without the key, a farm of two or more workers
asks 2 of 2 builds, a farm of one worker 1 of 1 (nothing to compare it with).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from kiln.errors import InputError
from kiln.naming import validate_name
from kiln.recipes.yamldoc import Node, Reader, pattern_check

_COUNT = re.compile(r"[1-9][0-9]?")
_PREFIX = re.compile(r"[a-z0-9][a-z0-9.+/_-]*\*")


@dataclass(frozen=True)
class GateRule:
    """How many builds (N) are made, and how many (K) must agree."""

    builds: int  # N
    agree: int  # K

    def describe(self) -> str:
        return f"{self.agree} of {self.builds}"


@dataclass(frozen=True)
class Reproducibility:
    """farm.yaml's reproducibility: the gate's rule for each package."""

    default: GateRule = GateRule(1, 1)
    packages: dict[str, GateRule] = field(default_factory=dict)  # name, or prefix*
    allow_unreproducible: bool = False

    def rule_for(self, name: str) -> GateRule:
        """The rule of `name`: its own entry, else the longest prefix*, else the default."""
        if name in self.packages:
            return self.packages[name]
        prefixes = [key for key in self.packages
                    if key.endswith("*") and name.startswith(key[:-1])]
        if prefixes:
            return self.packages[max(prefixes, key=len)]
        return self.default


def default_rule(workers: int) -> GateRule:
    """2 of 2 where there are two workers to compare; 1 of 1 on a farm of one."""
    count = 2 if workers >= 2 else 1
    return GateRule(count, count)


def read_reproducibility(reader: Reader, node: Node | None, workers: int) -> Reproducibility:
    """farm.yaml's `reproducibility`; every problem with its line, to `reader`."""
    if node is None:
        return Reproducibility(default_rule(workers))
    fields = reader.mapping(node, "reproducibility",
                            {"builds", "agree", "allow-unreproducible", "packages"})
    fallback = default_rule(workers)
    default = _rule(reader, node, fields, workers, fallback) or fallback
    allow = reader.string(fields.get("allow-unreproducible"), "allow-unreproducible",
                          pattern_check(re.compile(r"true|false"), "true or false"))
    packages: dict[str, GateRule] = {}
    listed = fields.get("packages")
    if listed is not None and listed.kind != "map":
        reader.problem(listed.line, "reproducibility packages must be a mapping")
    elif listed is not None:
        for key, line, value in listed.pairs:
            if key.endswith("*") and not _PREFIX.fullmatch(key):
                reader.problem(line, f"{key!r} is not a name prefix ending in *", "bad-value")
                continue
            if not key.endswith("*"):
                try:
                    validate_name(key)
                except InputError as exc:
                    reader.problem(line, exc.message, exc.reason)
                    continue
            entry = reader.mapping(value, f"reproducibility of {key}", {"builds", "agree"},
                                   {"builds", "agree"})
            rule = _rule(reader, value, entry, workers, default)
            if rule is not None:
                packages[key] = rule
    return Reproducibility(default, packages, allow == "true")


def _rule(reader: Reader, node: Node, fields: dict[str, Node], workers: int,
          fallback: GateRule) -> GateRule | None:
    builds_text = reader.string(fields.get("builds"), "builds",
                                pattern_check(_COUNT, "a number of builds from 1"))
    agree_text = reader.string(fields.get("agree"), "agree",
                               pattern_check(_COUNT, "a number of builds from 1"))
    if builds_text is None and agree_text is None:
        return None
    builds = int(builds_text) if builds_text else fallback.builds
    agree = int(agree_text) if agree_text else min(builds, fallback.agree)
    if agree > builds:
        reader.problem(node.line, f"{agree} builds cannot agree out of {builds}",
                       "bad-reproducibility")
        return None
    if builds > workers:
        # Each build runs on a worker of its own: more builds than workers never start.
        reader.problem(node.line, f"{builds} builds need {builds} workers; the farm has"
                                  f" {workers}", "bad-reproducibility")
        return None
    return GateRule(builds, agree)
