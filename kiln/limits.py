"""What a build may use, and what input Kiln will read: limits with sane defaults.

Every limit has a default (`Limits()`), a host may change them in its
configuration (kiln.hostconfig), and a recipe may ask for other build limits
under `limits:`, up to the host's ceilings. Sizes are written `512M`, `4G` or in
bytes; times in seconds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING

from kiln.errors import InputError

if TYPE_CHECKING:  # a host without a configuration file reads no YAML
    from kiln.recipes.yamldoc import Node, Reader

_SIZE = re.compile(r"([0-9]+)\s*([KMGT]?)i?B?", re.IGNORECASE)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


@dataclass(frozen=True)
class Limits:
    """The bounds of one build run, each enforced by the kernel or while streaming."""

    wall_time: float = 3600.0  # seconds, the build and its test each
    memory: int = 4 << 30  # bytes of RAM, /build and /tmp included (they are tmpfs)
    pids: int = 1024
    build_size: int = 4 << 30  # the /build tmpfs
    tmp_size: int = 1 << 30  # the /tmp tmpfs
    out_size: int = 2 << 30  # the /out tmpfs, so the package's apparent size too
    out_files: int = 200_000  # entries in /out
    log_size: int = 64 << 20  # the build log kept on disk; the rest is cut with a marker
    source_size: int = 2 << 30  # one downloaded source file

    def within(self, ceiling: Limits) -> list[str]:
        """The fields of these limits above `ceiling`'s, each said as `key X > Y`."""
        above = []
        for item in fields(self):
            mine, most = getattr(self, item.name), getattr(ceiling, item.name)
            if mine > most:
                above.append(f"{item.name.replace('_', '-')} {mine:g} > {most:g}")
        return above


# The keys a recipe's `limits:` or a host's `limits:`/`ceilings:` may set.
LIMIT_KEYS = {item.name.replace("_", "-"): item.name for item in fields(Limits)}
_TIMES = {"wall_time"}


@dataclass(frozen=True)
class ImportLimits:
    """Bounds on reading an archive or a bundle someone else made."""

    archive_size: int = 16 << 30  # the bytes a FileSet archive may expand to
    archive_ratio: int = 200  # expanded bytes per compressed byte, past the first MiB
    archive_entries: int = 500_000
    bundle_size: int = 4 << 20  # a Sigstore bundle (JSON)


DEFAULT_IMPORT_LIMITS = ImportLimits()


def parse_size(text: str) -> int:
    """`512M`, `4G`, `1024` -> bytes."""
    match = _SIZE.fullmatch(text.strip())
    if not match:
        raise InputError(f"{text!r} is not a size such as 512M or 4G", reason="bad-value")
    return int(match.group(1)) * _UNITS[match.group(2).upper()]


def parse_limit(key: str, text: str) -> float | int:
    """The value of limit `key` (a field name) from its text."""
    if key in _TIMES:
        try:
            value = float(text)
        except ValueError:
            raise InputError(f"{text!r} is not a number of seconds", reason="bad-value") from None
        if value <= 0:
            raise InputError(f"{text!r} must be more than 0 seconds", reason="bad-value")
        return value
    if key in ("pids", "out_files"):
        if not text.isdigit() or int(text) == 0:
            raise InputError(f"{text!r} is not a positive whole number", reason="bad-value")
        return int(text)
    size = parse_size(text)
    if size == 0:
        raise InputError(f"{text!r} must be more than 0 bytes", reason="bad-value")
    return size


def with_values(base: Limits, values: dict[str, float | int]) -> Limits:
    """`base` with some fields changed (field names as keys)."""
    return replace(base, **values)  # type: ignore[arg-type]


def read_limits(reader: Reader, node: Node | None) -> dict[str, float | int]:
    """The limits a `limits:` mapping sets, by field name; problems go to `reader`."""
    if node is None:
        return {}
    values: dict[str, float | int] = {}
    for key, value in reader.mapping(node, "limits", set(LIMIT_KEYS)).items():
        name = LIMIT_KEYS.get(key)
        if name is None:
            continue
        text = reader.string(value, f"limit {key}")
        if text is None:
            continue
        try:
            values[name] = parse_limit(name, text)
        except InputError as exc:
            reader.problem(value.line, f"limit {key}: {exc.message}", exc.reason)
    return values
