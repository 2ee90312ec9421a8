"""Debian imports through the real apt: verified against apt's record and dpkg-deb."""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from kiln.debian.apt import Apt
from kiln.debian.importer import DebDigestMismatch, import_deb_file, suite_codename
from kiln.package import PackageMetadata
from kiln.store import Store
from tests.conftest import Kiln
from tests.fixtures.packages import ensure_apt_lists


@pytest.fixture(scope="module")
def apt_lists() -> None:
    ensure_apt_lists()


def apt_field(package: str, field: str) -> str:
    text = subprocess.run(["apt-cache", "show", "--no-all-versions", package],
                          capture_output=True, text=True, check=True).stdout
    return next(line.split(":", 1)[1].strip() for line in text.splitlines()
                if line.startswith(f"{field}:"))


def test_import_matches_apts_record_and_dpkg_deb(tmp_path: Path, kiln: Kiln,
                                                 apt_lists: None) -> None:
    result = kiln("deb", "import", "hello", "--json")
    assert result.code == 0, result.err
    (row,) = json.loads(result.out)
    suite = suite_codename()
    assert row["name"] == f"debian.org/{suite}/hello"
    assert row["version"] == apt_field("hello", "Version")
    assert row["deb_sha256"] == apt_field("hello", "SHA256")

    store = Store.open(kiln.store_dir)
    fileset = store.get(row["digest"])
    assert isinstance(fileset.metadata, PackageMetadata)
    assert fileset.metadata.labels["debian.deb-sha256"] == apt_field("hello", "SHA256")
    assert [str(group) for group in fileset.metadata.requires] == [
        f"debian.org/{suite}/libc6 (>= 2.34)"]

    # dpkg-deb, Debian's own tool, lists the same files.
    subprocess.run(["apt-get", "download", "-q", "hello"], cwd=tmp_path, check=True,
                   capture_output=True)
    (deb,) = tmp_path.glob("hello_*.deb")
    listing = subprocess.run(["dpkg-deb", "--fsys-tarfile", deb], capture_output=True,
                             check=True).stdout
    names = subprocess.run(["tar", "-t"], input=listing, capture_output=True,
                           check=True).stdout.decode().split()
    expected = {name.removeprefix("./").rstrip("/") for name in names} - {""}
    assert {entry.path for entry in store.tree(fileset).entries} == expected


def test_a_tampered_deb_is_refused_and_nothing_written(tmp_path: Path, store: Store,
                                                       apt_lists: None) -> None:
    subprocess.run(["apt-get", "download", "-q", "hello"], cwd=tmp_path, check=True,
                   capture_output=True)
    (deb,) = tmp_path.glob("hello_*.deb")
    data = bytearray(deb.read_bytes())
    data[-100] ^= 0xFF
    deb.write_bytes(bytes(data))
    record = Apt(tmp_path / "apt").show("hello")
    before = sorted(p.name for p in store.layout.filesets.iterdir())
    with pytest.raises(DebDigestMismatch) as caught:
        import_deb_file(store, deb, record, "bookworm")
    assert caught.value.reason == "deb-digest-mismatch"
    assert record.sha256 in caught.value.message
    assert sorted(p.name for p in store.layout.filesets.iterdir()) == before
    assert list(store.layout.objects.iterdir()) == []


def test_the_same_deb_is_the_same_fileset_whatever_apt_fetched(
        tmp_path: Path, store: Store, apt_lists: None) -> None:
    # A host whose apt fetched no translations has no Description in apt's record (a
    # deployed master's, say): the FileSet must not change with it, or the lock breaks.
    subprocess.run(["apt-get", "download", "-q", "hello"], cwd=tmp_path, check=True,
                   capture_output=True)
    (deb,) = tmp_path.glob("hello_*.deb")
    record = Apt(tmp_path / "apt").show("hello")
    with_translations = import_deb_file(store, deb, record, "bookworm")
    without = import_deb_file(store, deb, replace(record, summary=""), "bookworm")
    assert without.digest == with_translations.digest
    assert isinstance(without.metadata, PackageMetadata)
    assert without.metadata.summary == apt_field("hello", "Description")


def test_closure_takes_alternatives_and_virtual_packages(kiln: Kiln, apt_lists: None) -> None:
    # ucf: "debconf (>= 0.5) | debconf-2.0"; base-files: Pre-Depends on the virtual awk.
    result = kiln("deb", "import", "ucf", "base-files", "--closure", "--json")
    assert result.code == 0, result.err
    suite = suite_codename()
    names = {row["name"].rsplit("/", 1)[1] for row in json.loads(result.out)}
    assert {"ucf", "base-files", "debconf", "sensible-utils", "mawk", "libc6"} <= names
    assert "original-awk" not in names  # the essential provider, as apt would choose
    store = Store.open(kiln.store_dir)
    mawk = store.get(store.lookup(f"debian.org/{suite}/mawk", apt_field("mawk", "Version")))
    assert isinstance(mawk.metadata, PackageMetadata)
    assert f"debian.org/{suite}/awk" in mawk.metadata.provides
    for row in json.loads(result.out):  # each verified against apt's record
        assert row["deb_sha256"] == apt_field(row["name"].rsplit("/", 1)[1], "SHA256")


def test_unknown_package_is_one_clear_error(kiln: Kiln, apt_lists: None) -> None:
    result = kiln("deb", "import", "no-such-package-kiln")
    assert result.code == 2
    assert "[deb-not-found]" in result.err
