"""YAML read with line numbers, so every problem in a recipe names its line.

Scalars keep their text: a recipe's `version: 2.10` is the string "2.10", not
the float 2.1 a YAML loader would make of it. Duplicate keys are problems.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

from kiln.errors import InputError

_T = TypeVar("_T")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


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

    # LibYAML's parser where PyYAML was built with it (Debian's and the wheels are):
    # the same nodes and marks, ten times faster than the pure-Python one.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        root = yaml.compose(text, Loader=loader)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else 1
        raise InputError(f"{file}:{line}: not valid YAML: {exc.problem}",
                         reason="bad-yaml") from exc
    if root is None:
        raise InputError(f"{file}:1: the file is empty", reason="bad-yaml")
    return _convert(root, file)


def yaml_problem(exc: InputError, file: str) -> Problem:
    """load_yaml's error as a Problem of `file`, at the line it names."""
    line = int(exc.message.split(":")[1]) if exc.message.startswith(file + ":") else 1
    return Problem(file, line, exc.message.removeprefix(f"{file}:{line}: "), exc.reason)


def load_yaml_file(path: Path) -> Node:
    """Read and parse one YAML file; one that cannot be read is an error naming it."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise InputError(f"cannot read {path}: {why}", reason="unreadable-file") from exc
    return load_yaml(text, str(path))


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
    # Plain style is None to the Python parser and "" to LibYAML's.
    is_null = node.tag == "tag:yaml.org,2002:null" and not node.style
    return Node("scalar", line, text=None if is_null else node.value)


class Reader:
    """Typed reads from YAML nodes; each bad value becomes a Problem, not an exception."""

    def __init__(self, file: str, default_reason: str) -> None:
        self.file = file
        self.default_reason = default_reason
        self.problems: list[Problem] = []

    def problem(self, line: int, message: str, reason: str | None = None) -> None:
        self.problems.append(Problem(self.file, line, message, reason or self.default_reason))

    def mapping(self, node: Node, what: str, known: set[str],
                required: set[str] = frozenset()) -> dict[str, Node]:  # type: ignore[assignment]
        if node.kind != "map":
            self.problem(node.line, f"{what} must be a mapping")
            return {}
        found = {key: value for key, _line, value in node.pairs}
        for key, line, _value in node.pairs:
            if key not in known:
                self.problem(line, f"unknown key {key!r} in {what}; known: "
                             f"{', '.join(sorted(known))}", "unknown-key")
        for key in sorted(required - set(found)):
            self.problem(node.line, f"{what} needs {key!r}", "missing-key")
        return found

    def string(self, node: Node | None, what: str,
               check: Callable[[str], object] | None = None) -> str | None:
        if node is None:
            return None
        if node.kind != "scalar" or node.text is None:
            self.problem(node.line, f"{what} must be a string")
            return None
        if check is not None:
            try:
                check(node.text)
            except InputError as exc:
                self.problem(node.line, f"{what}: {exc.message}", exc.reason)
                return None
        return node.text

    def strings(self, node: Node | None, what: str) -> list[str]:
        return self.parsed(node, what, str)

    def parsed(self, node: Node | None, what: str, parse: Callable[[str], _T]) -> list[_T]:
        """A list of strings, each turned into a value by `parse` (which may refuse it).

        A key left empty (`build-requires:`) is YAML's null: no entries."""
        if node is None or (node.kind == "scalar" and node.text is None):
            return []
        if node.kind != "seq":
            self.problem(node.line, f"{what} must be a list")
            return []
        out: list[_T] = []
        for item in node.items:
            text = self.string(item, f"an entry of {what}")
            if text is None:
                continue
            try:
                out.append(parse(text))
            except InputError as exc:
                self.problem(item.line, f"{what}: {exc.message}", exc.reason)
        return out

    def env(self, node: Node | None) -> dict[str, str]:
        """A mapping of environment variable names to values."""
        if node is None:
            return {}
        if node.kind != "map":
            self.problem(node.line, "env must be a mapping")
            return {}
        env = {}
        for key, line, value in node.pairs:
            if not _ENV_NAME.fullmatch(key):
                self.problem(line, f"env name {key!r} is not a valid variable name")
            text = self.string(value, f"env {key}")
            if text is not None:
                env[key] = text
        return env


def pattern_check(pattern: re.Pattern[str], what: str) -> Callable[[str], str]:
    """A check for Reader.string: the whole text must match `pattern`."""
    def check(text: str) -> str:
        if not pattern.fullmatch(text):
            raise InputError(f"{text!r} is not {what}", reason="bad-value")
        return text

    return check
