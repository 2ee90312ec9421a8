"""FileSet names (DNS-rooted) and versions (Debian's syntax and ordering)."""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING

from kiln.errors import InputError

if TYPE_CHECKING:
    from debian.debian_support import Version

# The first component is a DNS name with at least one dot (`kiln.dev`); the rest
# are path components in Debian's package-name alphabet, so `libstdc++6` fits.
_DNS_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_DOMAIN = re.compile(rf"{_DNS_LABEL}(?:\.{_DNS_LABEL})+")
_COMPONENT = re.compile(r"[a-z0-9][a-z0-9.+_-]*")
_MAX_NAME = 255

# Debian policy 5.6.12: [epoch:]upstream[-revision]; upstream starts with a digit.
_VERSION = re.compile(
    r"(?:(?P<epoch>[0-9]+):)?"
    r"(?P<upstream>[0-9][A-Za-z0-9.+~:-]*?)"
    r"(?:-(?P<revision>[A-Za-z0-9.+~]+))?"
)
_MAX_VERSION = 128

DEBIAN_DOMAIN = "debian.org"
"""Names under this domain are Debian packages, which come from the toolchain lock."""


def validate_name(name: str) -> str:
    """Return `name` if it is a valid DNS-rooted FileSet name, else raise."""
    if len(name) > _MAX_NAME:
        raise InputError(f"name {name[:40]!r}... is longer than {_MAX_NAME} characters",
                         reason="bad-name")
    parts = name.split("/")
    if len(parts) < 2 or not _DOMAIN.fullmatch(parts[0]):
        raise InputError(
            f"name {name!r} must start with a DNS domain and a slash, as in kiln.dev/hello",
            reason="bad-name",
        )
    for part in parts[1:]:
        if not _COMPONENT.fullmatch(part):
            raise InputError(
                f"name {name!r}: component {part!r} must be lowercase letters, digits and"
                " . + _ -, starting with a letter or digit",
                reason="bad-name",
            )
    return name


def validate_version(version: str) -> str:
    """Return `version` if it follows Debian's version syntax, else raise."""
    match = _VERSION.fullmatch(version) if len(version) <= _MAX_VERSION else None
    # A colon in the upstream part is only legal when there is an epoch.
    if (
        match is None
        or version.endswith("-")
        or (match["epoch"] is None and ":" in match["upstream"])
    ):
        raise InputError(
            f"version {version!r} does not follow Debian's syntax [epoch:]upstream[-revision]",
            reason="bad-version",
        )
    return version


@functools.lru_cache(maxsize=4096)
def version_key(version: str) -> Version:
    """A sortable key that orders versions as dpkg does."""
    from debian.debian_support import Version

    return Version(validate_version(version))


def is_debian(name: str) -> bool:
    """True for `debian.org/<suite>/<package>` names."""
    return name.startswith(f"{DEBIAN_DOMAIN}/")


_LAST_NUMBER = re.compile(r"([0-9]+)([^0-9]*)$")


def next_version(version: str) -> str:
    """The version after `version`, for an image updated without one given: its last
    number counted up (`1` -> `2`, `2026.12-3` -> `2026.12-4`), else `.1` appended.
    Always later in dpkg's order."""
    match = _LAST_NUMBER.search(version)
    if match is None or match.group(2):
        return validate_version(f"{version}.1")
    start = match.start(1)
    return validate_version(f"{version[:start]}{int(match.group(1)) + 1}")
