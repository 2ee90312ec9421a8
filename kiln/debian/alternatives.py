"""The alternatives a Debian package's postinst would make, read without running it.

Kiln never runs maintainer scripts (a FileSet is the package's files), so the links
`update-alternatives --install` makes (`/usr/bin/awk -> /usr/bin/mawk`, `which`,
`cc`, `aclocal`) are read from the script's text and kept in the package's metadata;
a root made of packages then gets, for each group, the links of its highest
priority (kiln.install). Only literal calls are read: a call whose arguments hold
a shell variable or substitution is skipped, as is anything that is not an
absolute path in a root, so a hostile script can at most name links among its own
package's paths. Debian's own scripts are the literal kind (debhelper writes them).
"""

from __future__ import annotations

import shlex

from kiln.package import Alternative

_MAX_SCRIPT = 1 << 20
_SEPARATORS = {";", "&&", "||", "|", "&", "(", ")", "{", "}"}


def postinst_alternatives(script: str) -> tuple[Alternative, ...]:
    """Every `update-alternatives --install LINK NAME PATH PRIORITY [--slave LINK NAME
    PATH]...` of a postinst, in order, slaves with their master's group and priority."""
    found: list[Alternative] = []
    for line in script[:_MAX_SCRIPT].replace("\\\n", " ").splitlines():
        if "update-alternatives" not in line:
            continue
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
