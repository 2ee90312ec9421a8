"""FileSet manifests: canonical, strict, and the digest is over exactly those bytes."""

from __future__ import annotations

import json

import pytest

from kiln.canonical import Digest, sha256_digest
from kiln.errors import InputError
from kiln.fileset import FileSet, Import, Metadata

TREE = Digest("sha256:" + "1" * 64)


def test_digest_is_the_sha256_of_the_manifest_bytes() -> None:
    fileset = FileSet("kiln.dev/hello", "2.10-1", TREE, metadata=Metadata({"k": "v"}))
    assert fileset.digest == sha256_digest(fileset.manifest_bytes)
    assert json.loads(fileset.manifest_bytes) == {
        "format": "kiln.fileset/v1", "name": "kiln.dev/hello", "version": "2.10-1",
        "tree": TREE, "imports": [], "metadata": {"kind": "fileset", "labels": {"k": "v"}}}
    assert FileSet.from_manifest(fileset.manifest_bytes, where="m") == fileset
    assert fileset.mount_point == "packages/kiln.dev/hello/2.10-1"


def test_name_version_tree_imports_and_metadata_all_change_the_digest() -> None:
    base = FileSet("kiln.dev/a", "1", TREE)
    other = Import("lib", "kiln.dev/b", "1", Digest("sha256:" + "2" * 64))
    variants = [
        FileSet("kiln.dev/b", "1", TREE),
        FileSet("kiln.dev/a", "2", TREE),
        FileSet("kiln.dev/a", "1", Digest("sha256:" + "3" * 64)),
        FileSet("kiln.dev/a", "1", TREE, (other,)),
        FileSet("kiln.dev/a", "1", TREE, metadata=Metadata({"x": "y"})),
    ]
    assert len({base.digest, *(v.digest for v in variants)}) == 6


@pytest.mark.parametrize(("edit", "reason"), [
    (lambda m: {**m, "extra": 1}, "unknown-key"),
    (lambda m: {**m, "format": "kiln.fileset/v9"}, "unknown-format"),
    (lambda m: {**m, "metadata": {"kind": "spaceship"}}, "bad-metadata"),
    (lambda m: {**m, "metadata": {"kind": "fileset", "labels": {"a": 1}}}, "bad-metadata"),
    (lambda m: {**m, "name": "NoDomain"}, "bad-name"),
    (lambda m: {**m, "imports": [{"path": "/abs", "name": "kiln.dev/b", "version": "1",
                                  "digest": "sha256:" + "2" * 64}]}, "bad-path"),
])
def test_malformed_manifests_are_refused(edit: object, reason: str) -> None:
    manifest = json.loads(FileSet("kiln.dev/a", "1", TREE).manifest_bytes)
    data = json.dumps(edit(manifest), sort_keys=True, separators=(",", ":")).encode()  # type: ignore[operator]
    with pytest.raises(InputError) as caught:
        FileSet.from_manifest(data, where="m")
    assert caught.value.reason == reason


def test_non_canonical_bytes_are_refused() -> None:
    data = FileSet("kiln.dev/a", "1", TREE).manifest_bytes
    with pytest.raises(InputError) as caught:
        FileSet.from_manifest(data.replace(b",", b", "), where="m")
    assert caught.value.reason == "bad-manifest"
