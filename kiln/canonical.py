"""Canonical JSON (RFC 8785) and sha256 digests.

Kiln's documents hold only strings, integers, booleans, null, lists and objects
with ASCII keys. For that subset RFC 8785 is exactly `json.dumps` with sorted
keys, no whitespace and no ASCII escaping: both escape only `"`, `\\` and
control characters (as \\b \\t \\n \\f \\r or lowercase \\u00xx), and integers
below 2**53 print the same. The C encoder is some fifty times faster than a
pure-Python RFC 8785 encoder on a 50,000-file tree, so we use it and refuse
anything outside the subset; a property test checks both agree.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, NewType

from kiln.errors import InputError

Digest = NewType("Digest", str)
"""A content digest spelled `sha256:<64 lowercase hex>`."""

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_MAX_SAFE_INTEGER = 2**53 - 1


def canonical_json(value: Any, *, check: bool = True) -> bytes:
    """Serialise `value` as RFC 8785 canonical JSON (UTF-8 bytes).

    `check=False` skips the walk that refuses values outside the subset, for
    values built from already validated models (a tree of 50,000 entries).
    """
    if check:
        _check_subset(value)
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def _check_subset(value: Any) -> None:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, child in item.items():
                if not isinstance(key, str) or not key.isascii():
                    raise TypeError(f"canonical JSON keys must be ASCII strings, not {key!r}")
                stack.append(child)
        elif isinstance(item, list | tuple):
            stack.extend(item)
        elif isinstance(item, bool) or item is None or isinstance(item, str):
            continue
        elif isinstance(item, int):
            if abs(item) > _MAX_SAFE_INTEGER:
                raise TypeError(f"integer {item} is outside canonical JSON's exact range")
        else:
            raise TypeError(f"canonical JSON cannot hold {type(item).__name__}")


def parse_json(data: bytes, *, where: str, what: str, reason: str) -> Any:
    """Load JSON that must be valid, or raise an InputError naming `where`."""
    try:
        return loads_strict(data)
    except ValueError as exc:
        raise InputError(f"{where}: {what} is not valid JSON: {exc}", reason=reason) from exc


def loads_strict(data: bytes | str) -> Any:
    """json.loads, refusing an object with a key twice (ValueError).

    Two parsers that keep different copies of a duplicate key would read one signed
    document two ways: Python keeps the last, others the first."""
    return json.loads(data, object_pairs_hook=_unique_keys)


def check_fields(value: object, what: str, required: set[str],
                 optional: set[str] | frozenset[str] = frozenset()) -> dict[str, Any]:
    """`value` as a JSON object with every `required` field and no other than `optional`
    ones; ValueError naming `what` otherwise (strict wire formats refuse the unknown)."""
    if not isinstance(value, dict):
        raise ValueError(f"{what} is not an object")
    unknown = set(value) - required - optional
    if unknown:
        raise ValueError(f"{what} has unknown fields {sorted(unknown)}")
    missing = required - set(value)
    if missing:
        raise ValueError(f"{what} lacks {sorted(missing)}")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"key {key!r} appears twice")
        result[key] = value
    return result


def sha256_digest(data: bytes) -> Digest:
    """The `sha256:` digest of some bytes."""
    return Digest("sha256:" + hashlib.sha256(data).hexdigest())


def parse_digest(text: str, *, what: str = "digest") -> Digest:
    """Validate a `sha256:<hex>` string."""
    if not _DIGEST.fullmatch(text):
        raise InputError(f"{what} {text!r} is not of the form sha256:<64 hex digits>",
                         reason="bad-digest")
    return Digest(text)


def digest_hex(digest: Digest) -> str:
    """The hex part of a digest, as used in file names."""
    return digest.split(":", 1)[1]
