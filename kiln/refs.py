"""References on the command line: NAME, NAME@VERSION, NAME@sha256:HEX, sha256:HEX."""

from __future__ import annotations

from kiln.canonical import parse_digest
from kiln.errors import InputError, NotFound
from kiln.fileset import FileSet
from kiln.naming import validate_name, validate_version
from kiln.store.store import Store


def resolve(store: Store, ref: str) -> FileSet:
    """The FileSet a reference names; NAME alone means its highest version."""
    if ref.startswith("sha256:"):
        return store.get(parse_digest(ref, what="reference"))
    name, at, rest = ref.partition("@")
    validate_name(name)
    if not at:
        versions = store.versions(name)
        if not versions:
            raise NotFound(f"no FileSet named {name} in the store", reason="not-found")
        return store.get(store.lookup(name, versions[-1]))
    if rest.startswith("sha256:"):
        fileset = store.get(parse_digest(rest, what="reference"))
        if fileset.name != name:
            raise InputError(f"{rest} is {fileset.name}, not {name}", reason="name-mismatch")
        return fileset
    return store.get(store.lookup(name, validate_version(rest)))
