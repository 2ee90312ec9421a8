"""YAML read with line numbers, so every problem in a recipe names its line.

Scalars keep their text: a recipe's `version: 2.10` is the string "2.10", not
the float 2.1 a YAML loader would make of it. Duplicate keys are problems.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from kiln.errors import InputError


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a recipe repository, where it is, and a stable reason."""

    file: str
    line: int
    message: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message} [{self.reason}]"


@dataclass(frozen=True)
class Node:
    """A YAML value and the line (1-based) it starts on."""

    kind: Literal["map", "seq", "scalar"]
    line: int
    text: str | None = None  # scalars: the text as written; None for a null
    items: tuple[Node, ...] = ()  # sequences
    pairs: tuple[tuple[str, int, Node], ...] = ()  # mappings: key, key's line, value


def load_yaml(text: str, file: str) -> Node:
    """Parse one YAML document; a syntax error or a duplicate key raises with its line."""
    import yaml

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else 1
        raise InputError(f"{file}:{line}: not valid YAML: {exc.problem}",
                         reason="bad-yaml") from exc
    if root is None:
        raise InputError(f"{file}:1: the file is empty", reason="bad-yaml")
    return _convert(root, file)


def _convert(node: object, file: str) -> Node:
    import yaml

    line = node.start_mark.line + 1  # type: ignore[attr-defined]
    if isinstance(node, yaml.MappingNode):
        pairs = []
        seen: dict[str, int] = {}
        for key, value in node.value:
            if not isinstance(key, yaml.ScalarNode):
                raise InputError(f"{file}:{key.start_mark.line + 1}: keys must be plain words",
                                 reason="bad-yaml")
            key_line = key.start_mark.line + 1
            if key.value in seen:
                raise InputError(f"{file}:{key_line}: key {key.value!r} appears twice (first"
                                 f" on line {seen[key.value]})", reason="duplicate-key")
            seen[key.value] = key_line
            pairs.append((key.value, key_line, _convert(value, file)))
        return Node("map", line, pairs=tuple(pairs))
    if isinstance(node, yaml.SequenceNode):
        return Node("seq", line, items=tuple(_convert(item, file) for item in node.value))
    assert isinstance(node, yaml.ScalarNode)
    is_null = node.tag == "tag:yaml.org,2002:null" and node.style is None
    return Node("scalar", line, text=None if is_null else node.value)
