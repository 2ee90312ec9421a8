"""The stable archive: round trips, other tools read it, and plain tars import."""

from __future__ import annotations

import gzip
import io
import subprocess
import tarfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from kiln.archive.export import write_archive
from kiln.archive.importer import import_archive
from kiln.store import Store
from kiln.store.ingest import ingest_directory
from tests.golden.fixtures import AWKWARD, HELLO
from tests.treespec import Spec, read_tree, with_parents, write_tree
from tests.unit.test_ingest import trees


def _export(store: Store, digest: str, path: Path) -> Path:
    with open(path, "wb") as out:
        write_archive(store, store.get(digest), out)  # type: ignore[arg-type]
    return path


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=trees)
def test_random_trees_survive_export_and_import(tmp_path_factory: pytest.TempPathFactory,
                                                spec: Spec) -> None:
    base = tmp_path_factory.mktemp("roundtrip")
    first = Store.open(base / "a")
    fileset = ingest_directory(first, write_tree(base / "tree", spec, seed=1),
                               name="kiln.dev/t", version="1:2.0~rc1-1").fileset
    archive = _export(first, fileset.digest, base / "a.tar")
    second = Store.open(base / "b")
    imported = import_archive(second, archive).fileset
    assert imported.digest == fileset.digest
    assert imported.tree == fileset.tree
    assert _export(second, imported.digest, base / "b.tar").read_bytes() == archive.read_bytes()


@pytest.mark.parametrize("spec", [HELLO, AWKWARD], ids=["hello", "awkward"])
def test_gnu_tar_extracts_what_kiln_ingests_back(tmp_path: Path, store: Store,
                                                 spec: Spec) -> None:
    fileset = ingest_directory(store, write_tree(tmp_path / "src", spec),
                               name="kiln.dev/t", version="1").fileset
    archive = _export(store, fileset.digest, tmp_path / "t.tar")
    (tmp_path / "x").mkdir()
    subprocess.run(["tar", "-xf", archive, "-C", tmp_path / "x"], check=True)
    mount = tmp_path / "x" / fileset.mount_point
    assert read_tree(mount) == with_parents(spec)
    assert (tmp_path / "x" / (fileset.mount_point + ".fileset.json")).read_bytes() == \
        fileset.manifest_bytes
    again = ingest_directory(store, mount, name="kiln.dev/t", version="1").fileset
    assert again.digest == fileset.digest


def test_python_tarfile_reads_it_too(tmp_path: Path, store: Store) -> None:
    fileset = ingest_directory(store, write_tree(tmp_path / "src", AWKWARD),
                               name="kiln.dev/t", version="1").fileset
    archive = _export(store, fileset.digest, tmp_path / "t.tar")
    with tarfile.open(archive) as tar:
        names = {m.name.removeprefix(fileset.mount_point + "/") for m in tar.getmembers()}
        assert set(with_parents(AWKWARD)) <= names
        assert all(m.uid == 0 and m.mtime == 0 and m.uname == "" for m in tar.getmembers())


def test_plain_tar_from_gnu_tar_imports_with_name_and_version(tmp_path: Path,
                                                              store: Store) -> None:
    src = write_tree(tmp_path / "src", HELLO, seed=3)
    subprocess.run(["tar", "-czf", tmp_path / "plain.tar.gz", "-C", src, "."], check=True)
    imported = import_archive(store, tmp_path / "plain.tar.gz", name="kiln.dev/hello",
                              version="2.10-1").fileset
    direct = ingest_directory(store, src, name="kiln.dev/hello", version="2.10-1").fileset
    assert imported.digest == direct.digest


def test_kiln_archive_gzipped_imports(tmp_path: Path, store: Store) -> None:
    fileset = ingest_directory(store, write_tree(tmp_path / "src", HELLO),
                               name="kiln.dev/hello", version="1").fileset
    raw = _export(store, fileset.digest, tmp_path / "t.tar").read_bytes()
    (tmp_path / "t.tar.gz").write_bytes(gzip.compress(raw))
    other = Store.open(tmp_path / "other")
    assert import_archive(other, tmp_path / "t.tar.gz").fileset.digest == fileset.digest


def test_export_is_identical_across_stores_paths_and_umasks(tmp_path: Path,
                                                            umask_077: None) -> None:
    outputs = []
    for index, seed in enumerate((11, 12)):
        store = Store.open(tmp_path / f"store{index}")
        src = write_tree(tmp_path / f"place{index}" / ("deeper/" * index) / "t", HELLO, seed=seed)
        fileset = ingest_directory(store, src, name="kiln.dev/hello", version="2.10-1").fileset
        buffer = io.BytesIO()
        write_archive(store, fileset, buffer)
        outputs.append(buffer.getvalue())
    assert outputs[0] == outputs[1]
