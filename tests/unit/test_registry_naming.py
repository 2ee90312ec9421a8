"""Kiln names and versions map to legal OCI repository names and tags, and back."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kiln.errors import InputError
from kiln.registry.naming import (
    name_to_repository,
    repository_to_name,
    tag_to_version,
    version_to_tag,
)
from kiln.registry.reference import is_registry_reference, parse_reference

OCI_REPOSITORY = re.compile(r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
                            r"(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*")
OCI_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


@pytest.mark.parametrize(("name", "repository"), [
    ("kiln.dev/hello", "kiln.dev/hello"),
    ("debian.org/bookworm/libstdc++6", "debian.org/bookworm/libstdc_p_p6"),
    ("debian.org/bookworm/g++-12", "debian.org/bookworm/g_p_p_h12"),
    ("kiln.dev/a.-b", "kiln.dev/a_d_hb"),
    ("kiln.dev/under_score", "kiln.dev/under_uscore"),
    ("kiln.dev/gcc-12", "kiln.dev/gcc-12"),
])
def test_names_map_to_documented_repositories(name: str, repository: str) -> None:
    assert name_to_repository(name) == repository
    assert repository_to_name(repository) == name


@pytest.mark.parametrize(("version", "tag"), [
    ("2.10-3", "2.10-3"),
    ("1:1.2.13.dfsg-1", "1_c1.2.13.dfsg-1"),
    ("2.0~rc1+b1", "2.0_trc1_pb1"),
])
def test_versions_map_to_documented_tags(version: str, tag: str) -> None:
    assert version_to_tag(version) == tag
    assert tag_to_version(tag) == version


components = st.from_regex(r"[a-z0-9][a-z0-9.+_-]{0,20}", fullmatch=True)
versions = st.from_regex(r"([0-9]{1,3}:)?[0-9][A-Za-z0-9.+~]{0,15}(-[A-Za-z0-9.+~]{1,8})?",
                         fullmatch=True)


@given(st.lists(components, min_size=1, max_size=3))
def test_every_name_maps_to_a_legal_repository_and_back(parts: list[str]) -> None:
    name = "/".join(["kiln.dev", *parts])
    repository = name_to_repository(name)
    assert OCI_REPOSITORY.fullmatch(repository)
    assert repository_to_name(repository) == name


@given(versions)
def test_every_version_maps_to_a_legal_tag_and_back(version: str) -> None:
    tag = version_to_tag(version)
    assert OCI_TAG.fullmatch(tag)
    assert tag_to_version(tag) == version


def test_an_unknown_escape_is_refused() -> None:
    with pytest.raises(InputError) as raised:
        repository_to_name("kiln.dev/a_zb")
    assert raised.value.reason == "bad-reference"


def test_references_parse_and_print() -> None:
    digest = "sha256:" + "ab" * 32
    reference = parse_reference(f"127.0.0.1:5000/kiln/hello:2.10-1@{digest}")
    assert (reference.host, reference.repository, reference.tag, reference.digest) == (
        "127.0.0.1:5000", "kiln/hello", "2.10-1", digest)
    assert str(reference) == f"127.0.0.1:5000/kiln/hello:2.10-1@{digest}"
    assert is_registry_reference("localhost/x")
    assert is_registry_reference("reg.io:443/x")
    assert not is_registry_reference("kiln.dev/hello@2.10-1")
    for bad in ("hello", "127.0.0.1:5000/Upper", "127.0.0.1:5000/x:bad tag",
                "127.0.0.1:5000/x@sha256:short"):
        with pytest.raises(InputError):
            parse_reference(bad)
