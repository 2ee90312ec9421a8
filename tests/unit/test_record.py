"""The build record, the wire format from worker to master: strict, typed, canonical,
and the build key it carries pinned by a golden digest."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from kiln.canonical import Digest
from kiln.errors import InputError
from kiln.record import BuildRecord, Dependency, SourceRef, build_key

D = Digest("sha256:" + "ab" * 32)
GOLDEN_KEY = "sha256:a94e6ec431a519682b05082beb95742c93ccf828b097bb5bd5a3da647e156ea0"


def record_json() -> dict[str, Any]:
    return {
        "recipe": {"repo": "https://git.example.org/recipes.git", "commit": "c" * 40,
                   "path": "hello", "tree": D, "dirty": False},
        "sources": [{"uri": "debian-source:hello=2.10-3", "sha256": "d" * 64},
                    {"uri": "git+https://example.org/lib.git", "commit": "e" * 40}],
        "build_requires": [{"name": "debian.org/bookworm/gcc-12", "version": "12.2.0-14",
                            "digest": D}],
        "lock": D, "sandbox": {"backend": "bwrap", "version": "0.8.0"},
        "kiln": {"version": "0.1.0", "commit": "f" * 40},
        "output": {"name": "kiln.dev/hello", "version": "2.10-1", "digest": D, "archive": D},
        "log": D, "build_key": D, "source_date_epoch": 1764410000,
        "started": "2026-11-29T10:00:00Z", "finished": "2026-11-29T10:01:10Z",
    }


def test_a_record_round_trips_as_canonical_bytes_and_keeps_what_it_was_read_from() -> None:
    raw = json.dumps(record_json(), indent=2).encode()
    record = BuildRecord.from_bytes(raw, "r.json")
    assert record.raw == raw
    assert record.output.name == "kiln.dev/hello"
    assert record.sources[1].commit == "e" * 40
    again = BuildRecord.from_bytes(record.to_bytes(), "again")
    assert again == record
    assert again.to_bytes() == record.to_bytes()
    assert json.loads(record.to_bytes()) == record_json()


@pytest.mark.parametrize("damage", [
    lambda r: r.update(extra=1),
    lambda r: r["recipe"].update(branch="main"),
    lambda r: r.pop("build_key"),
    lambda r: r["recipe"].update(commit="main"),
    lambda r: r["output"].update(digest="md5:abc"),
    lambda r: r["sources"].append({"uri": "x", "sha256": "d" * 64, "commit": "e" * 40}),
    lambda r: r["sources"].append({"uri": "x"}),
    lambda r: r.update(source_date_epoch="yesterday"),
    lambda r: r.update(source_date_epoch=True),
    lambda r: r["recipe"].update(dirty="no"),
    lambda r: r["kiln"].update(dirty="yes"),
    lambda r: r.update(build_requires={"name": "x"}),
])
def test_a_malformed_record_is_refused(damage: Any) -> None:
    document = record_json()
    damage(document)
    with pytest.raises(InputError) as raised:
        BuildRecord.from_bytes(json.dumps(document).encode(), "bad.json")
    assert raised.value.reason == "bad-record"
    assert "bad.json" in raised.value.message


def test_a_record_with_a_key_twice_is_refused() -> None:
    raw = json.dumps(record_json()).encode()[:-1] + b', "log": "' + D.encode() + b'"}'
    with pytest.raises(InputError) as raised:
        BuildRecord.from_bytes(raw, "twice.json")
    assert raised.value.reason == "bad-record"


def key(**change: Any) -> str:
    inputs: dict[str, Any] = {
        "recipe_tree": D,
        "sources": (SourceRef("debian-source:hello=2.10-3", sha256="d" * 64),),
        "build_requires": (Dependency("debian.org/bookworm/gcc-12", "12.2.0-14", D),
                           Dependency("debian.org/bookworm/make", "4.3-4.1", D)),
        "source_date_epoch": 1764410000, "sandbox": "bwrap"}
    inputs.update(change)
    return build_key(**inputs)


def test_the_build_key_is_pinned_and_covers_every_input() -> None:
    # Golden: a change here rebuilds every package of every farm; bump BUILD_FORMAT.
    assert key() == GOLDEN_KEY
    assert key(source_date_epoch=1764410001) != key()
    assert key(sandbox="runc") != key()
    assert key(sources=()) != key()
    assert key(recipe_tree=Digest("sha256:" + "cd" * 32)) != key()
    assert key(build_requires=(Dependency("debian.org/bookworm/gcc-12", "12.2.0-14", D),)) \
        != key()
    # The order the root was resolved in does not matter.
    reordered = (Dependency("debian.org/bookworm/make", "4.3-4.1", D),
                 Dependency("debian.org/bookworm/gcc-12", "12.2.0-14", D))
    assert key(build_requires=reordered) == key()


def test_the_kiln_commit_is_kilns_own_and_says_when_it_was_dirty(tmp_path: Path) -> None:
    from workers.execute import kiln_source

    # Kiln's sources inside some other project's repository: no commit is Kiln's.
    other = tmp_path / "project"
    (other / "vendor" / "kiln" / "kiln").mkdir(parents=True)
    (other / "vendor" / "kiln" / "kiln" / "x.py").write_text("x = 1\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q", str(other)], check=True)
    subprocess.run([*git, "-C", str(other), "add", "."], check=True)
    subprocess.run([*git, "-C", str(other), "commit", "-qm", "x"], check=True)
    assert kiln_source(other / "vendor" / "kiln") == (None, False)
    # Kiln's own checkout: its commit, and dirty once its sources change.
    root = other / "vendor" / "kiln"
    subprocess.run([*git, "init", "-q", str(root)], check=True)
    subprocess.run([*git, "-C", str(root), "add", "."], check=True)
    subprocess.run([*git, "-C", str(root), "commit", "-qm", "kiln"], check=True)
    commit, dirty = kiln_source(root)
    assert commit is not None
    assert len(commit) == 40
    assert dirty is False
    (root / "kiln" / "x.py").write_text("x = 2\n")
    assert kiln_source(root) == (commit, True)
    # The record carries it; a clean checkout's record keeps its bytes.
    document = record_json()
    document["kiln"]["dirty"] = True
    parsed = BuildRecord.from_bytes(json.dumps(document).encode(), "r.json")
    assert parsed.kiln.dirty is True
    assert json.loads(parsed.to_bytes())["kiln"]["dirty"] is True
    clean = BuildRecord.from_bytes(json.dumps(record_json()).encode(), "r.json")
    assert "dirty" not in json.loads(clean.to_bytes())["kiln"]
