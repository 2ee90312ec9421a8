"""Hostile and broken archives: each refused with its reason, the store unchanged."""

from __future__ import annotations

import gzip
import io
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from kiln.archive.export import write_archive
from kiln.archive.tarformat import (
    DIRECTORY,
    END_OF_ARCHIVE,
    HARDLINK,
    REGULAR,
    SYMLINK,
    encode_member,
)
from kiln.store import Store
from kiln.store.ingest import ingest_directory
from tests.conftest import Kiln
from tests.golden.fixtures import HELLO
from tests.treespec import write_tree


def member(path: str, data: bytes = b"", *, typeflag: bytes = REGULAR, mode: int = 0o644,
           linkname: str = "") -> bytes:
    size = len(data) if typeflag == REGULAR else 0
    return (encode_member(path, typeflag, mode=mode, size=size, linkname=linkname)
            + data + b"\0" * (-len(data) % 512))


def tar(*members: bytes) -> bytes:
    return b"".join(members) + END_OF_ARCHIVE


def gnu_tar_with_raw_name(name: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT,
                      encoding="latin-1") as archive:
        info = tarfile.TarInfo(name.decode("latin-1"))
        info.size = 1
        archive.addfile(info, io.BytesIO(b"x"))
    return buffer.getvalue()


def kiln_archive(tmp_path: Path) -> bytes:
    store = Store.open(tmp_path / "source-store")
    fileset = ingest_directory(store, write_tree(tmp_path / "hello", HELLO),
                               name="kiln.dev/hello", version="2.10-1").fileset
    buffer = io.BytesIO()
    write_archive(store, fileset, buffer)
    return buffer.getvalue()


def flip_content_byte(data: bytes) -> bytes:
    index = data.index(b"echo 'Hello")
    return data[:index] + b"E" + data[index + 1:]


def flip_gzip_crc(data: bytes) -> bytes:
    # A gzip stream ends with CRC32 then length: damage the CRC only.
    return data[:-8] + bytes([data[-8] ^ 1]) + data[-7:]


def add_outside_member(data: bytes) -> bytes:
    return data[:-len(END_OF_ARCHIVE)] + tar(member("etc/cron.d/evil", b"* * * * * root x\n"))


def pax_size(size: str) -> bytes:
    """A pax header announcing `size` for the member after it (a one-byte file)."""
    rest = f" size={size}\n".encode()
    length = len(rest) + len(str(len(rest)))
    length = len(rest) + len(str(length))
    record = str(length).encode() + rest
    header = encode_member("pax", b"x", mode=0o644, size=len(record))
    return tar(header + record + b"\0" * (-len(record) % 512), member("f", b"x"))


def gzip_bomb(_: Path) -> bytes:
    return gzip.compress(tar(member("zeros", b"\0" * (40 << 20))))


Builder = Callable[[Path], bytes]

CASES: list[tuple[str, Builder, str]] = [
    ("dotdot", lambda _: tar(member("../escape", b"x")), "archive-dotdot"),
    ("nested-dotdot", lambda _: tar(member("a/../../escape", b"x")), "archive-dotdot"),
    ("absolute", lambda _: tar(member("/etc/passwd", b"x")), "archive-absolute-path"),
    ("through-symlink", lambda _: tar(member("link", typeflag=SYMLINK, mode=0o777,
                                             linkname="/etc"),
                                      member("link/passwd", b"root::0:0::/:/bin/sh\n")),
     "archive-through-symlink"),
    ("char-device", lambda _: tar(member("null", typeflag=b"3")), "special-file"),
    ("block-device", lambda _: tar(member("sda", typeflag=b"4")), "special-file"),
    ("fifo", lambda _: tar(member("pipe", typeflag=b"6")), "special-file"),
    ("setuid", lambda _: tar(member("su", b"x", mode=0o4755)), "setuid-file"),
    ("setgid", lambda _: tar(member("sg", b"x", mode=0o2755)), "setuid-file"),
    ("hardlink-outside", lambda _: tar(member("shadow", typeflag=HARDLINK,
                                              linkname="/etc/shadow")),
     "archive-hardlink-outside"),
    ("hardlink-to-later", lambda _: tar(member("a", typeflag=HARDLINK, linkname="b"),
                                        member("b", b"x")), "archive-hardlink-outside"),
    ("hardlink-to-dir", lambda _: tar(member("d", typeflag=DIRECTORY, mode=0o755),
                                      member("l", typeflag=HARDLINK, linkname="d")),
     "archive-hardlink-outside"),
    ("duplicate-differs", lambda _: tar(member("f", b"one"), member("f", b"two")),
     "archive-duplicate"),
    ("long-component", lambda _: tar(member("x" * 300, b"x")), "path-too-long"),
    ("long-path", lambda _: tar(member("/".join(["d" * 200] * 25), b"x")), "path-too-long"),
    ("not-utf8", lambda _: gnu_tar_with_raw_name(b"bad-\xff"), "bad-path-encoding"),
    ("truncated-data", lambda _: tar(member("f", b"x" * 5000))[:1024 + 700],
     "archive-truncated"),
    ("truncated-header", lambda _: tar(member("f", b"x"))[:700], "archive-truncated"),
    ("no-end-marker", lambda _: tar(member("f", b"x"))[:1024], "archive-truncated"),
    ("bad-checksum", lambda _: b"\x01" + tar(member("f", b"x"))[1:], "archive-corrupt"),
    ("garbage", lambda _: b"this is not a tar file at all" * 40, "archive-corrupt"),
    ("gzip-truncated", lambda _: gzip.compress(tar(member("f", b"x" * 9000)))[:60],
     "archive-corrupt"),
    ("gzip-crc", lambda _: flip_gzip_crc(gzip.compress(tar(member("f", b"x")))),
     "archive-corrupt"),
    ("kiln-content-changed", lambda p: flip_content_byte(kiln_archive(p)),
     "archive-digest-mismatch"),
    ("kiln-member-outside", lambda p: add_outside_member(kiln_archive(p)),
     "archive-outside-mount"),
    ("plain-without-name", lambda _: tar(member("f", b"x")), "archive-no-manifest"),
    ("pax-size-digits", lambda _: pax_size("9" * 5000), "archive-corrupt"),
    ("pax-size-huge", lambda _: pax_size(str(10**18)), "archive-too-large"),
    ("data-after-end", lambda _: tar(member("f", b"x")) + b"hidden member" * 100,
     "archive-trailing-data"),
    ("gzip-second-member", lambda _: gzip.compress(tar(member("f", b"x")))
     + gzip.compress(tar(member("g", b"hidden"))), "archive-trailing-data"),
    ("gzip-bomb", gzip_bomb, "archive-too-large"),
]


def snapshot(store_dir: Path) -> list[tuple[str, int]]:
    """Everything in the store but its lock and advisory cache."""
    return sorted((p.relative_to(store_dir).as_posix(), p.lstat().st_size)
                  for p in store_dir.rglob("*") if "cache" not in p.parts and p.name != "lock")


@pytest.mark.parametrize(("label", "build", "reason"), CASES, ids=[c[0] for c in CASES])
def test_hostile_archive_is_refused_and_nothing_is_written(
        tmp_path: Path, kiln: Kiln, store_dir: Path, label: str, build: Builder,
        reason: str) -> None:
    archive = tmp_path / f"{label}.tar"
    archive.write_bytes(build(tmp_path))
    kiln("fileset", "ls")  # creates the store
    before = snapshot(store_dir)

    args: list[str | Path] = ["fileset", "import", archive]
    if label != "plain-without-name" and not label.startswith("kiln-"):
        args += ["--name", "kiln.dev/hostile", "--version", "1"]
    result = kiln(*args)

    assert result.code == 2
    assert f"[{reason}]" in result.err
    assert result.err.count("\n") == 1
    assert "Traceback" not in result.err
    assert str(archive) in result.err
    assert snapshot(store_dir) == before


def test_identical_duplicate_members_are_accepted(tmp_path: Path, kiln: Kiln) -> None:
    archive = tmp_path / "dup.tar"
    archive.write_bytes(tar(member("f", b"same"), member("f", b"same")))
    result = kiln("fileset", "import", archive, "--name", "kiln.dev/dup", "--version", "1")
    assert result.code == 0, result.err


def test_name_given_for_a_kiln_archive_must_match(tmp_path: Path, kiln: Kiln) -> None:
    archive = tmp_path / "hello.tar"
    archive.write_bytes(kiln_archive(tmp_path))
    result = kiln("fileset", "import", archive, "--name", "kiln.dev/other", "--version", "1")
    assert result.code == 2
    assert "[archive-manifest-mismatch]" in result.err


def test_the_hosts_import_limits_bound_members_and_size(
        tmp_path: Path, kiln: Kiln, store_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "kiln.yaml"
    config.write_text("import:\n  archive-entries: 3\n  archive-size: 64K\n")
    monkeypatch.setenv("KILN_CONFIG", str(config))
    many = tmp_path / "many.tar"
    many.write_bytes(tar(*(member(f"f{i}", b"x") for i in range(5))))
    large = tmp_path / "large.tar"
    large.write_bytes(tar(member("big", b"x" * (100 << 10))))
    kiln("fileset", "ls")
    before = snapshot(store_dir)
    for archive in (many, large):
        result = kiln("fileset", "import", archive, "--name", "kiln.dev/x", "--version", "1")
        assert result.code == 2
        assert "[archive-too-large]" in result.err
    assert snapshot(store_dir) == before
    small = tmp_path / "small.tar"
    small.write_bytes(tar(member("a", b"x"), member("b", b"y")))
    assert kiln("fileset", "import", small, "--name", "kiln.dev/x", "--version", "1").code == 0
