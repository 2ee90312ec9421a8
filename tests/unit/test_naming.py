"""Names are DNS-rooted; versions follow Debian's syntax and dpkg's ordering."""

from __future__ import annotations

import pytest

from kiln.errors import InputError
from kiln.naming import next_version, validate_name, validate_version, version_key


@pytest.mark.parametrize("name", [
    "kiln.dev/hello",
    "debian.org/bookworm/libc6",
    "debian.org/bookworm/libstdc++6",
    "example.co.uk/team/tool_x",
    "kiln.dev/python3.11",
])
def test_valid_names(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize("name", [
    "hello",                      # no domain
    "localhost/hello",            # a domain needs a dot
    "Kiln.dev/hello",             # uppercase
    "kiln.dev/",                  # empty component
    "kiln.dev//hello",
    "kiln.dev/Hello",
    "kiln.dev/-hello",            # must start with a letter or digit
    "kiln.dev/hel lo",
    "kiln.dev/hello@1",           # @ separates references
    "-kiln.dev/hello",
    "kiln.dev/" + "a" * 300,
])
def test_invalid_names(name: str) -> None:
    with pytest.raises(InputError) as caught:
        validate_name(name)
    assert caught.value.reason == "bad-name"


@pytest.mark.parametrize("version", [
    "1", "2.10-1", "1:1.2.13.dfsg-1", "12.2.0-14+deb12u1", "1.0~rc1-1", "2:1.0-1:2-3",
    "0.1+git20260101.abc", "3.0-1~bpo12+1",
])
def test_valid_versions(version: str) -> None:
    assert validate_version(version) == version


@pytest.mark.parametrize("version", [
    "", "a1", "1.0 beta", "1.0-", "1:a", ":1.0", "1.0_1", "x:1.0", "1/2",
])
def test_invalid_versions(version: str) -> None:
    with pytest.raises(InputError) as caught:
        validate_version(version)
    assert caught.value.reason == "bad-version"


# Each pair is (lower, higher), from Debian policy 5.6.12 and dpkg's own tests.
@pytest.mark.parametrize(("lower", "higher"), [
    ("1.0", "1:0.1"),              # any epoch beats no epoch
    ("1:9.9", "2:0.1"),
    ("1.0~rc1", "1.0"),            # ~ sorts before everything, even the end
    ("1.0~~", "1.0~"),
    ("1.0~", "1.0"),
    ("1.0", "1.0a"),
    ("1.0", "1.0+deb12u1"),
    ("1.0-1", "1.0-2"),            # revisions
    ("1.0-9", "1.0-10"),           # digits compare as numbers
    ("1.0-1", "1.0.1-1"),
    ("2.9", "2.10"),
    ("1.0-1~bpo12+1", "1.0-1"),
    ("12.2.0-14", "12.2.0-14+deb12u1"),
])
def test_version_ordering(lower: str, higher: str) -> None:
    assert version_key(lower) < version_key(higher)
    assert sorted([higher, lower], key=version_key) == [lower, higher]


def test_equal_versions_compare_equal() -> None:
    assert version_key("1.0-1") == version_key("0:1.0-1")


@pytest.mark.parametrize(("version", "after"), [
    ("1", "2"), ("1.4", "1.5"), ("2026.12.1-3", "2026.12.1-4"), ("1.0-1", "1.0-2"),
    ("1.0~rc1", "1.0~rc2"), ("2:1.0-9", "2:1.0-10"), ("1a", "1a.1"), ("1.0+git", "1.0+git.1"),
])
def test_an_updated_image_gets_the_next_version(version: str, after: str) -> None:
    assert next_version(version) == after
    assert version_key(after) > version_key(version)  # later in dpkg's order, always
