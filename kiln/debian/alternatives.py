"""The alternatives a Debian package's postinst would make, read without running it.

Kiln never runs maintainer scripts (a FileSet is the package's files), so the links
`update-alternatives --install` makes (`/usr/bin/awk -> /usr/bin/mawk`, `which`,
`cc`, `aclocal`) are read from the script's text and kept in the package's metadata;
a root made of packages then gets, for each group, the links of its highest
priority (kiln.install). Only literal calls are read: a call whose arguments hold
a command substitution, or a variable the script does not set once to a literal
(`ver=1.16` at the start of a line, as automake's postinst does), is skipped, as is
anything that is not an absolute path in a root, so a hostile script can at most
name links among its own package's paths. Debian's own scripts are of these kinds
(debhelper writes literal calls).
"""

from __future__ import annotations

import re
import shlex

from kiln.package import Alternative

_MAX_SCRIPT = 1 << 20
_SEPARATORS = {";", "&&", "||", "|", "&", "(", ")", "{", "}"}
# `NAME=VALUE` alone on a line, unindented, VALUE a plain word: a literal the shell
# would keep as written. Anything else (quotes, `$`, a command) is not read.
_ASSIGNMENT = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=([A-Za-z0-9_.,:+@%/-]*)")
_SETTING = re.compile(r"(?<![\w$-])([A-Za-z_][A-Za-z0-9_]*):?=")
_READ_OR_FOR = re.compile(r"\b(?:read(?:\s+-\w+)*|for)\s+([A-Za-z_][\w ]*)")
_EXPANSION = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


def postinst_alternatives(script: str) -> tuple[Alternative, ...]:
    """Every `update-alternatives --install LINK NAME PATH PRIORITY [--slave LINK NAME
    PATH]...` of a postinst, in order, slaves with their master's group and priority."""
    found: list[Alternative] = []
    lines = script[:_MAX_SCRIPT].replace("\\\n", " ").splitlines()
    literals = _literal_variables(lines)
    for line in lines:
        if "update-alternatives" not in line:
            continue
        if "'" not in line:  # in single quotes the shell would not expand: leave those
            line = _EXPANSION.sub(lambda m: literals.get(m[1] or m[2], m[0]), line)
        try:
            lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            words = list(lexer)
        except ValueError:
            continue  # unbalanced quotes: not a call Kiln can read
        for start, word in enumerate(words):
            if word == "update-alternatives":
                found.extend(_call(words[start + 1:]))
    return tuple(found)


def _literal_variables(lines: list[str]) -> dict[str, str]:
    """The variables the script sets exactly once, each to a literal word on a line of
    its own; one set anywhere else too (indented, `${x:=...}`, `read x`, `for x in`)
    is not one of them."""
    values: dict[str, str] = {}
    sets: dict[str, int] = {}
    for line in lines:
        for name in _SETTING.findall(line):
            sets[name] = sets.get(name, 0) + 1
        for names in _READ_OR_FOR.findall(line):
            for name in names.split():
                sets[name] = sets.get(name, 0) + 2
        assignment = _ASSIGNMENT.fullmatch(line.rstrip())
        if assignment is not None:
            values[assignment[1]] = assignment[2]
    return {name: value for name, value in values.items() if sets.get(name) == 1}


def _call(words: list[str]) -> list[Alternative]:
    command = []
    for word in words:
        if word in _SEPARATORS:
            break
        command.append(word)
    if "--install" not in command or any("$" in word or "`" in word for word in command):
        return []
    at = command.index("--install")
    try:
        link, group, path, priority_text = command[at + 1:at + 5]
        priority = int(priority_text)
    except ValueError:
        return []
    found = [Alternative(group, link, path, priority)]
    rest = command[at + 5:]
    while len(rest) >= 4 and rest[0] == "--slave":
        found.append(Alternative(group, rest[1], rest[3], priority))
        rest = rest[4:]
    return [alternative for alternative in found
            if _in_root(alternative.link) and _in_root(alternative.path)]


def _in_root(path: str) -> bool:
    parts = path.split("/")
    return (path.startswith("/") and len(path) > 1 and "\0" not in path
            and not {".", ".."} & set(parts) and "" not in parts[1:])
