"""Relations compare versions as dpkg does; package metadata survives a manifest strictly."""

from __future__ import annotations

import json

import pytest

from kiln.canonical import Digest
from kiln.errors import InputError
from kiln.fileset import FileSet
from kiln.package import PackageMetadata, Requirements
from kiln.relations import parse_alternatives


@pytest.mark.parametrize(("relation", "version", "satisfied"), [
    ("kiln.dev/z", "0.1", True),
    ("kiln.dev/z (>= 1.3)", "1.3", True),
    ("kiln.dev/z (>= 1.3)", "1.3~rc1", False),
    ("kiln.dev/z (>> 1.3)", "1.3-1", True),
    ("kiln.dev/z (<< 2)", "1:0.1", False),
    ("kiln.dev/z (= 1.0-1)", "0:1.0-1", True),
    ("kiln.dev/z (<= 1.0)", "1.0+deb12u1", False),
])
def test_relations_use_dpkg_ordering(relation: str, version: str, satisfied: bool) -> None:
    (option,) = parse_alternatives(relation).options
    assert option.satisfied_by("kiln.dev/z", version) is satisfied
    assert not option.satisfied_by("kiln.dev/other", version)


def test_alternatives_round_trip() -> None:
    group = parse_alternatives("kiln.dev/a (>= 1) | kiln.dev/b|kiln.dev/c (<< 2:0)")
    assert str(group) == "kiln.dev/a (>= 1) | kiln.dev/b | kiln.dev/c (<< 2:0)"
    assert parse_alternatives(str(group)) == group


@pytest.mark.parametrize("text", ["", "kiln.dev/a (>= )", "kiln.dev/a (=> 1)", "zlib",
                                  "kiln.dev/a (>= 1) |", "kiln.dev/a (>= x1)"])
def test_bad_relations_are_refused(text: str) -> None:
    with pytest.raises(InputError):
        parse_alternatives(text)


def test_package_metadata_survives_a_manifest() -> None:
    metadata = PackageMetadata(
        summary="GNU hello", license="GPL-3.0-or-later",
        requires=(parse_alternatives("debian.org/bookworm/libc6 (>= 2.36)"),),
        provides=("kiln.dev/greeter",), env={"GCC_EXEC_PREFIX": "/usr/lib/gcc/"},
        requirements=Requirements("5.10", ("CAP_NET_BIND_SERVICE",)))
    fileset = FileSet("kiln.dev/hello", "2.10-1", Digest("sha256:" + "1" * 64),
                      metadata=metadata)
    again = FileSet.from_manifest(fileset.manifest_bytes, where="m")
    assert again == fileset
    assert again.digest == fileset.digest
    assert isinstance(again.metadata, PackageMetadata)
    assert again.metadata.requirements.capabilities == ("CAP_NET_BIND_SERVICE",)


def test_package_metadata_is_strict() -> None:
    fileset = FileSet("kiln.dev/hello", "1", Digest("sha256:" + "1" * 64),
                      metadata=PackageMetadata())
    raw = json.loads(fileset.manifest_bytes)
    raw["metadata"]["requires"] = "not a list"
    with pytest.raises(InputError) as caught:
        FileSet.from_manifest(json.dumps(raw, sort_keys=True, separators=(",", ":")).encode(),
                              where="m")
    assert caught.value.reason == "bad-metadata"
