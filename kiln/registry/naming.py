"""Kiln names and versions as OCI repository names and tags, reversibly.

OCI repository components are `[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*`; tags are
`[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`. Kiln names may hold `+` and `_` (`libstdc++6`)
and versions `+`, `~` and `:` (`1:1.2.13.dfsg-1`), so both are escaped with `_`:

- a name component is kept as it is when it is already a legal OCI component
  with no `_`; otherwise every `.`, `-`, `+` and `_` in it becomes `_d`, `_h`,
  `_p`, `_u` (`libstdc++6` -> `libstdc_p_p6`, `c.-d` -> `c_d_hd`). A component
  with a `_` was therefore escaped, and decoding is unambiguous;
- a version's `+`, `~` and `:` become `_p`, `_t`, `_c` (`1:1.2.13.dfsg-1` ->
  `1_c1.2.13.dfsg-1`, `2.0~rc1+b1` -> `2.0_trc1_pb1`); versions never hold `_`.
"""

from __future__ import annotations

import re

from kiln.errors import InputError
from kiln.naming import validate_name, validate_version

_OCI_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*")
_OCI_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_COMPONENT_ESCAPES = {".": "_d", "-": "_h", "+": "_p", "_": "_u"}
_VERSION_ESCAPES = {"+": "_p", "~": "_t", ":": "_c"}


def _decoder(escapes: dict[str, str]) -> dict[str, str]:
    return {code[1]: char for char, code in escapes.items()}


def component_to_oci(component: str) -> str:
    """One name component as a legal OCI repository component."""
    if "_" not in component and _OCI_COMPONENT.fullmatch(component):
        return component
    return "".join(_COMPONENT_ESCAPES.get(char, char) for char in component)


def component_from_oci(component: str) -> str:
    return _unescape(component, _decoder(_COMPONENT_ESCAPES)) if "_" in component else component


def name_to_repository(name: str) -> str:
    """A Kiln name (`debian.org/bookworm/libstdc++6`) as an OCI repository path."""
    return "/".join(component_to_oci(part) for part in validate_name(name).split("/"))


def repository_to_name(repository: str) -> str:
    return validate_name("/".join(component_from_oci(part) for part in repository.split("/")))


def version_to_tag(version: str) -> str:
    """A Debian version as an OCI tag."""
    tag = "".join(_VERSION_ESCAPES.get(char, char) for char in validate_version(version))
    if not _OCI_TAG.fullmatch(tag):
        raise InputError(f"version {version!r} is too long for an OCI tag ({len(tag)} > 128"
                         " characters once escaped)", reason="bad-version")
    return tag


def tag_to_version(tag: str) -> str:
    return validate_version(_unescape(tag, _decoder(_VERSION_ESCAPES)))


def _unescape(text: str, decode: dict[str, str]) -> str:
    out = []
    chars = iter(text)
    for char in chars:
        if char != "_":
            out.append(char)
            continue
        code = next(chars, "")
        if code not in decode:
            raise InputError(f"{text!r} holds an unknown escape _{code}", reason="bad-reference")
        out.append(decode[code])
    return "".join(out)
