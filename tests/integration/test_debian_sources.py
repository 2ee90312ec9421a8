"""Debian source packages through the real apt, verified against the pin and the .dsc."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from kiln.errors import InputError
from kiln.recipes.model import DebianSource
from tests.integration.test_debian import apt_lists  # noqa: F401 - fixture
from workers.debsource import fetch_debian
from workers.sources import SourceCache

# GNU hello in Debian 12: the .dsc's sha256 as the Sources index gives it.
HELLO_DSC = "75296f5ef618ae2f1849e22b142a2b5ab52c452ebefa4e7b0564c44617db3790"


def test_source_package_is_verified_then_served_from_the_cache(
        tmp_path: Path, apt_lists: None) -> None:  # noqa: F811
    cache = SourceCache(tmp_path / "cache")
    fetched = fetch_debian(cache, DebianSource("hello", "2.10-3", HELLO_DSC, 1))
    assert hashlib.sha256(fetched.dsc.path.read_bytes()).hexdigest() == HELLO_DSC
    assert fetched.dsc.name == "hello_2.10-3.dsc"
    names = sorted(f.name for f in fetched.files)
    assert names == ["hello_2.10-3.debian.tar.xz", "hello_2.10.orig.tar.gz",
                     "hello_2.10.orig.tar.gz.asc"]
    dsc_text = fetched.dsc.path.read_text()
    for item in fetched.files:
        actual = hashlib.sha256(item.path.read_bytes()).hexdigest()
        assert actual == item.sha256
        assert f" {actual} " in dsc_text  # the .dsc's own checksum line
    # With apt's private configuration gone, the cache alone answers.
    shutil.rmtree(cache.root / "apt-src")
    again = fetch_debian(cache, DebianSource("hello", "2.10-3", HELLO_DSC, 1))
    assert again == fetched
    assert not (cache.root / "apt-src").exists()


def test_a_wrong_dsc_pin_is_refused_and_nothing_kept(tmp_path: Path,
                                                     apt_lists: None) -> None:  # noqa: F811
    cache = SourceCache(tmp_path / "cache")
    with pytest.raises(InputError) as caught:
        fetch_debian(cache, DebianSource("hello", "2.10-3", "0" * 64, 1))
    assert caught.value.reason == "source-digest-mismatch"
    assert HELLO_DSC in caught.value.message
    assert list((cache.root / "sha256").iterdir()) == []


def test_a_version_debian_does_not_have(tmp_path: Path, apt_lists: None) -> None:  # noqa: F811
    cache = SourceCache(tmp_path / "cache")
    with pytest.raises(InputError) as caught:
        fetch_debian(cache, DebianSource("hello", "9.99-1", HELLO_DSC, 1))
    assert caught.value.reason == "source-unreachable"
