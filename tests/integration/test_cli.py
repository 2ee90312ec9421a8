"""The `kiln` command as users meet it: output, --json, exit codes, error lines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kiln.cli.main import main
from kiln.store import Store
from tests.conftest import Kiln, run_kiln_process
from tests.golden.fixtures import HELLO
from tests.treespec import File, read_tree, with_parents, write_tree


@pytest.fixture
def hello(tmp_path: Path) -> Path:
    return write_tree(tmp_path / "hello", HELLO)


def test_add_then_export_twice_gives_identical_bytes(tmp_path: Path, kiln: Kiln,
                                                     hello: Path) -> None:
    added = kiln("fileset", "add", hello, "--name", "kiln.dev/hello", "--version", "2.10-1")
    assert added.code == 0, added.err
    name_version, digest = added.out.split()
    assert name_version == "kiln.dev/hello@2.10-1"
    assert digest.startswith("sha256:")
    assert kiln("fileset", "export", "kiln.dev/hello@2.10-1", "-o", tmp_path / "1.tar").code == 0
    assert kiln("fileset", "export", digest, "-o", tmp_path / "2.tar").code == 0
    assert (tmp_path / "1.tar").read_bytes() == (tmp_path / "2.tar").read_bytes()


def test_export_to_stdout(tmp_path: Path, hello: Path) -> None:
    store = tmp_path / "store"
    run_kiln_process(store, "fileset", "add", hello, "--name", "kiln.dev/hello", "--version", "1")
    to_file = run_kiln_process(store, "fileset", "export", "kiln.dev/hello", "-o",
                               tmp_path / "f.tar")
    assert to_file.returncode == 0
    piped = subprocess.run([sys.executable, "-m", "kiln.cli.main", "--store", store, "fileset",
                            "export", "kiln.dev/hello", "-o", "-"], capture_output=True,
                           check=True)
    assert piped.stdout == (tmp_path / "f.tar").read_bytes()


def test_json_outputs(tmp_path: Path, kiln: Kiln, hello: Path) -> None:
    added = json.loads(kiln("fileset", "add", hello, "--name", "kiln.dev/hello",
                            "--version", "1", "--label", "origin=test", "--json").out)
    assert added["files"] == 6
    assert added["size"] == sum(
        len(item.content) for item in HELLO.values() if isinstance(item, File))
    assert added["metadata"] == {"kind": "fileset", "labels": {"origin": "test"}}

    shown = json.loads(kiln("fileset", "show", "kiln.dev/hello", "--tree", "--json").out)
    assert shown["digest"] == added["digest"]
    assert {e["path"] for e in shown["entries"]} == set(with_parents(HELLO))

    listed = json.loads(kiln("fileset", "ls", "--json").out)
    assert listed == [{"name": "kiln.dev/hello", "version": "1", "digest": added["digest"]}]

    exported = json.loads(kiln("fileset", "export", "kiln.dev/hello", "-o",
                               tmp_path / "h.tar", "--json").out)
    assert exported["fileset"] == added["digest"]
    assert exported["size"] == (tmp_path / "h.tar").stat().st_size

    made = json.loads(kiln("fileset", "materialize", "kiln.dev/hello", tmp_path / "m",
                           "--json").out)
    assert made["linked"] == 6
    assert made["copied"] == 0
    assert read_tree(tmp_path / "m") == with_parents(HELLO)

    fsck = json.loads(kiln("store", "fsck", "--json").out)
    assert fsck["clean"]
    assert fsck["objects_checked"] == 5
    gc = json.loads(kiln("store", "gc", "--json").out)
    assert gc["objects_removed"] == 0


def test_name_alone_means_the_highest_version(tmp_path: Path, kiln: Kiln) -> None:
    for version in ["1.0-1", "1.0~rc1-1", "1:0.1-1", "1.0-10", "1.0-9"]:
        src = write_tree(tmp_path / version, {"v": File(version.encode())})
        assert kiln("fileset", "add", src, "--name", "kiln.dev/v", "--version", version).code == 0
    shown = json.loads(kiln("fileset", "show", "kiln.dev/v", "--json").out)
    assert shown["version"] == "1:0.1-1"  # the epoch wins
    listed = [item["version"] for item in json.loads(kiln("fileset", "ls", "--json").out)]
    assert listed == ["1.0~rc1-1", "1.0-1", "1.0-9", "1.0-10", "1:0.1-1"]


def test_rm_then_gc_frees_what_only_it_used(tmp_path: Path, kiln: Kiln) -> None:
    src = write_tree(tmp_path / "a", {"only-mine": File(b"x" * 1000)})
    digest = kiln("fileset", "add", src, "--name", "kiln.dev/a", "--version", "1").out.split()[1]
    removed = kiln("fileset", "rm", "kiln.dev/a@1", "--json")
    assert removed.code == 0
    assert json.loads(removed.out) == [{"name": "kiln.dev/a", "version": "1", "digest": digest}]
    assert kiln("fileset", "show", "kiln.dev/a").code == 2
    gc = json.loads(kiln("store", "gc", "--json").out)
    assert gc["bytes_freed"] == 1000
    assert len(gc["filesets_removed"]) == 1


def test_gc_pin_keeps_an_unnamed_fileset(tmp_path: Path, kiln: Kiln) -> None:
    src = write_tree(tmp_path / "a", {"f": File(b"keep")})
    digest = kiln("fileset", "add", src, "--name", "kiln.dev/a", "--version", "1").out.split()[1]
    assert kiln("store", "gc", "--pin", "kiln.dev/a@1").code == 0
    kiln("fileset", "rm", "kiln.dev/a@1")
    kiln("store", "gc")
    assert json.loads(kiln("fileset", "show", digest, "--json").out)["files"] == 1
    unpinned = kiln("store", "unpin", digest, "--json")
    assert json.loads(unpinned.out) == [digest]
    kiln("store", "gc")
    assert kiln("fileset", "show", digest).code == 2


@pytest.mark.parametrize(("args", "reason"), [
    (["fileset", "add", "{src}", "--name", "Bad/Name", "--version", "1"], "bad-name"),
    (["fileset", "add", "{src}", "--name", "kiln.dev/a", "--version", "v1"], "bad-version"),
    (["fileset", "add", "{tmp}/missing", "--name", "kiln.dev/a", "--version", "1"], "not-found"),
    (["fileset", "add", "{src}", "--name", "kiln.dev/a", "--version", "1", "--import",
      "lib=kiln.dev/none@1"], "not-found"),
    (["fileset", "add", "{src}", "--name", "kiln.dev/a", "--version", "1", "--import",
      "no-equals-sign"], "bad-usage"),
    (["fileset", "show", "kiln.dev/none"], "not-found"),
    (["fileset", "show", "sha256:1234"], "bad-digest"),
    (["fileset", "export", "kiln.dev/none@1", "-o", "{tmp}/x.tar"], "not-found"),
    (["fileset", "import", "{tmp}/missing.tar"], "unreadable-file"),
    (["store", "unpin", "sha256:" + "0" * 64], "not-pinned"),
])
def test_bad_input_is_one_line_with_a_reason_and_exit_2(tmp_path: Path, kiln: Kiln,
                                                        args: list[str], reason: str) -> None:
    src = write_tree(tmp_path / "src", {"f": File(b"x")})
    result = kiln(*[a.format(src=src, tmp=tmp_path) for a in args])
    assert result.code == 2
    assert result.err.startswith("kiln: error: ")
    assert result.err.endswith(f"[{reason}]\n")
    assert result.err.count("\n") == 1
    assert not (tmp_path / "x.tar").exists()


def test_usage_errors_exit_2(kiln: Kiln) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["fileset", "frobnicate"])
    assert caught.value.code == 2


def test_fsck_failure_exits_1_and_names_the_object(tmp_path: Path, kiln: Kiln) -> None:
    src = write_tree(tmp_path / "src", {"f": File(b"precious")})
    kiln("fileset", "add", src, "--name", "kiln.dev/a", "--version", "1")
    objects = [p for d in (kiln.store_dir / "objects").iterdir() for p in d.iterdir()]
    os.chmod(objects[0], 0o644)
    objects[0].write_bytes(b"Precious")
    os.chmod(objects[0], 0o444)
    result = kiln("store", "fsck")
    assert result.code == 1
    assert f"{objects[0]}: object" in result.out
    assert "kiln.dev/a@1" in result.out


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    quiet = run_kiln_process(tmp_path / "s", "fileset", "show", "kiln.dev/none")
    loud = run_kiln_process(tmp_path / "s", "--debug", "fileset", "show", "kiln.dev/none")
    assert "Traceback" not in quiet.stderr
    assert quiet.returncode == 2
    assert "Traceback" in loud.stderr
    assert "NotFound" in loud.stderr


def test_store_location_flag_env_and_default(tmp_path: Path, hello: Path) -> None:
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "xdg")}
    env.pop("KILN_STORE", None)
    base = [sys.executable, "-m", "kiln.cli.main"]
    add = ["fileset", "add", str(hello), "--name", "kiln.dev/h", "--version", "1"]
    subprocess.run([*base, *add], env=env, check=True, capture_output=True)
    assert (tmp_path / "xdg/kiln/store/kiln-store").exists()
    subprocess.run([*base, *add], env={**env, "KILN_STORE": str(tmp_path / "env")}, check=True,
                   capture_output=True)
    assert (tmp_path / "env/kiln-store").exists()
    subprocess.run([*base, "--store", str(tmp_path / "flag"), *add],
                   env={**env, "KILN_STORE": str(tmp_path / "env")}, check=True,
                   capture_output=True)
    assert (tmp_path / "flag/kiln-store").exists()
    # After the subcommand too, as users type it; there it wins over one before.
    subprocess.run([*base, "--store", str(tmp_path / "before"), *add, "--store",
                    str(tmp_path / "after")], env=env, check=True, capture_output=True)
    assert (tmp_path / "after/kiln-store").exists()
    assert not (tmp_path / "before").exists()


def test_key_generate_makes_a_pair_that_signs_and_verifies(tmp_path: Path, kiln: Kiln,
                                                             store: Store, hello: Path) -> None:
    from tests.integration.test_provenance import record_for

    made = kiln("key", "generate", tmp_path / "keys", "--name", "dev", "--json")
    assert made.code == 0, made.err
    paths = json.loads(made.out)
    private, public = Path(paths["private"]), Path(paths["public"])
    assert private.stat().st_mode & 0o777 == 0o600
    assert public.stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "keys").stat().st_mode & 0o777 == 0o700
    assert kiln("fileset", "add", hello, "--name", "kiln.dev/h", "--version", "1").code == 0
    record = record_for(store, store.get(store.lookup("kiln.dev/h", "1")), tmp_path)
    signed = kiln("attest", record, "--signer", f"file:{private}", "-o",
                  tmp_path / "bundle.json")
    assert signed.code == 0, signed.err
    verified = kiln("verify", "--bundle", tmp_path / "bundle.json", "kiln.dev/h@1", "--key",
                    public, "--json")
    assert verified.code == 0, verified.err
    assert json.loads(verified.out)["signer"] == paths["signer"]


def test_key_generate_never_overwrites_nor_follows_a_link(tmp_path: Path, kiln: Kiln) -> None:
    keys = tmp_path / "keys"
    assert kiln("key", "generate", keys).code == 0
    first = (keys / "kiln.pem").read_bytes()
    again = kiln("key", "generate", keys)
    assert again.code == 2
    assert "[key-exists]" in again.err
    assert (keys / "kiln.pem").read_bytes() == first  # the key a farm signs with is kept
    victim = tmp_path / "victim"
    victim.write_text("mine\n")
    (keys / "other.pem").symlink_to(victim)  # planted where the new key would go
    planted = kiln("key", "generate", keys, "--name", "other")
    assert planted.code == 2
    assert "[key-exists]" in planted.err
    assert victim.read_text() == "mine\n"
    hostile = kiln("key", "generate", keys, "--name", "../escape")
    assert hostile.code == 2
    assert "[bad-usage]" in hostile.err
    assert not (tmp_path / "escape.pem").exists()


def test_a_directory_that_is_not_a_store_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notastore").mkdir()
    (tmp_path / "notastore/precious.txt").write_text("mine")
    result = run_kiln_process(tmp_path / "notastore", "fileset", "ls")
    assert result.returncode == 2
    assert "[store-format]" in result.stderr
    assert sorted(p.name for p in (tmp_path / "notastore").iterdir()) == ["precious.txt"]


def test_gc_forgets_the_build_records_of_collected_packages(kiln: Kiln, tmp_path: Path) -> None:
    from kiln.store import Store
    from tests.fixtures.packages import make_package
    from tests.unit.test_record import record_json

    store = Store.open(kiln.store_dir)
    kept = make_package(store, tmp_path, "kiln.dev/kept", "1-1", {"f": "kept\n"})
    gone = make_package(store, tmp_path, "kiln.dev/gone", "1-1", {"f": "gone\n"})
    builds = kiln.store_dir / "cache" / "builds"
    builds.mkdir(parents=True)
    for name, fileset in (("a" * 64, kept), ("b" * 64, gone)):
        record = record_json()
        record["output"]["digest"] = fileset.digest
        (builds / f"{name}.json").write_text(json.dumps(record))
        (builds / f"{name}.log").write_text("the log\n")
    assert kiln("fileset", "rm", "kiln.dev/gone@1-1").code == 0
    report = json.loads(kiln("store", "gc", "--json").out)
    assert report["build_records_removed"] == 1
    assert sorted(p.name for p in builds.iterdir()) == [f"{'a' * 64}.json", f"{'a' * 64}.log"]
