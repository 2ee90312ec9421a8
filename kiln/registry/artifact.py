"""A FileSet as an OCI artifact, pushed and pulled.

The artifact is an OCI image manifest (OCI 1.1 artifact form):

    artifactType  application/vnd.kiln.fileset.v1
    config        the FileSet manifest (so the config digest *is* the FileSet digest)
    layers        the stable archive, uncompressed: the same blob, byte for byte,
                  that is the package's layer in every image
    annotations   dev.kiln.fileset.name / .version / .digest

The manifest is canonical JSON, so a FileSet has one artifact digest everywhere.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from kiln.canonical import Digest, canonical_json, parse_digest, sha256_digest
from kiln.errors import InputError, NotFound
from kiln.fileset import FileSet, Import
from kiln.registry.client import Body, RegistryClient, Response, bytes_body
from kiln.registry.reference import Reference
from kiln.store.layout import mark_used
from kiln.store.store import Store

ARTIFACT_TYPE = "application/vnd.kiln.fileset.v1"
CONFIG_TYPE = "application/vnd.kiln.fileset.manifest.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
ANNOTATION_NAME = "dev.kiln.fileset.name"
ANNOTATION_VERSION = "dev.kiln.fileset.version"
ANNOTATION_DIGEST = "dev.kiln.fileset.digest"
_MAX_CONFIG = 16 << 20


@dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor: media type, digest, size."""

    media_type: str
    digest: Digest
    size: int

    def to_json(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


@dataclass(frozen=True)
class Pushed:
    """A FileSet pushed as an artifact, and what each of its blobs took."""

    reference: Reference  # with the manifest digest
    fileset: FileSet
    layer: Descriptor
    blobs: dict[Digest, str]  # digest -> present / mounted / uploaded


class ArchiveCache:
    """Stable archives of a store's FileSets, kept in its cache to be pushed and composed.

    Written once per FileSet and reused: pushing or composing an image should not
    re-export every package each time."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.directory = store.layout.cache / "archives"

    def path(self, fileset: FileSet) -> Path:
        return self.directory / f"{fileset.digest.removeprefix('sha256:')}.tar"

    def layer(self, fileset: FileSet) -> tuple[Descriptor, Path]:
        """The archive's descriptor and file, exported on first need."""
        path = self.path(fileset)
        info_path = path.with_suffix(".json")
        try:
            info = json.loads(info_path.read_bytes())
            if path.stat().st_size == info["size"]:
                mark_used(path)
                return Descriptor(LAYER_TYPE, Digest(info["digest"]), info["size"]), path
        except (OSError, ValueError, KeyError):
            pass
        self.directory.mkdir(parents=True, exist_ok=True)
        temp = self.store.layout.temp_name("archive")
        from kiln.archive.export import write_archive

        with open(temp, "wb") as out:
            archive = write_archive(self.store, fileset, out)
        os.replace(temp, path)
        info_path.write_bytes(canonical_json({"digest": archive.digest, "size": archive.size}))
        return Descriptor(LAYER_TYPE, archive.digest, archive.size), path


def fileset_manifest(fileset: FileSet, layer: Descriptor) -> bytes:
    """The artifact manifest of `fileset`, whose layer is `layer`."""
    return canonical_json({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "artifactType": ARTIFACT_TYPE,
        "config": Descriptor(CONFIG_TYPE, fileset.digest, len(fileset.manifest_bytes)).to_json(),
        "layers": [layer.to_json()],
        "annotations": {ANNOTATION_NAME: fileset.name, ANNOTATION_VERSION: fileset.version,
                        ANNOTATION_DIGEST: fileset.digest},
    })


def file_body(path: Path, size: int) -> Body:
    return Body(size, lambda: open(path, "rb"))


def push_fileset(store: Store, fileset: FileSet, client: RegistryClient, target: Reference,
                 *, mount_from: str | None = None) -> Pushed:
    """Push `fileset` to `target` (a repository and tag): blobs first, then the manifest.

    Blobs this store pushed to another repository of the same registry are mounted
    from there (`mount_from`, or where the store remembers pushing them)."""
    layer, path = ArchiveCache(store).layer(fileset)
    pushed_to = PushedBlobs(store, client.host)
    mount_from = mount_from or pushed_to.repository_of(layer.digest)
    blobs = {
        fileset.digest: client.push_blob(target.repository, fileset.digest,
                                         bytes_body(fileset.manifest_bytes), mount_from),
        layer.digest: client.push_blob(target.repository, layer.digest,
                                       file_body(path, layer.size), mount_from),
    }
    manifest = fileset_manifest(fileset, layer)
    digest = sha256_digest(manifest)
    client.put_manifest(target.repository, target.tag or digest, manifest, MANIFEST_TYPE)
    pushed_to.remember(target.repository, (fileset.digest, layer.digest))
    return Pushed(target.with_digest(digest), fileset, layer, blobs)


class PushedBlobs:
    """Where this store last pushed each blob on one registry, so that the next push to
    another repository there mounts it instead of sending it again. A hint only: a
    mount the registry refuses becomes an upload."""

    _LIMIT = 100_000  # entries kept per registry; the oldest go first

    def __init__(self, store: Store, host: str) -> None:
        name = hashlib.sha256(host.encode()).hexdigest()[:32]
        self.path = store.layout.cache / "pushed" / f"{name}.json"

    def repository_of(self, digest: Digest) -> str | None:
        found = self._read().get(digest)
        return found if isinstance(found, str) else None

    def remember(self, repository: str, digests: tuple[Digest, ...]) -> None:
        known = self._read()
        for digest in digests:
            known.pop(digest, None)
            known[digest] = repository
        kept = dict(list(known.items())[-self._LIMIT:])
        self.path.parent.mkdir(parents=True, exist_ok=True)
        scratch = self.path.with_name(f"{self.path.name}.{os.getpid()}.new")
        scratch.write_text(json.dumps(kept))
        os.replace(scratch, self.path)  # a concurrent push may win: a hint lost, no harm

    def _read(self) -> dict[str, object]:
        try:
            known = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return known if isinstance(known, dict) else {}


@dataclass(frozen=True)
class FileSetArtifact:
    """A Kiln artifact manifest, parsed strictly."""

    config: Descriptor
    layer: Descriptor
    name: str
    version: str


def parse_fileset_manifest(data: bytes, where: str) -> FileSetArtifact:
    try:
        raw = json.loads(data)
        if raw.get("artifactType") != ARTIFACT_TYPE:
            raise InputError(f"{where} is not a Kiln FileSet (artifactType"
                             f" {raw.get('artifactType')!r})", reason="not-a-fileset")
        config = _descriptor(raw["config"], where)
        layers = [_descriptor(item, where) for item in raw["layers"]]
        annotations = raw["annotations"]
        name, version = annotations[ANNOTATION_NAME], annotations[ANNOTATION_VERSION]
        if annotations[ANNOTATION_DIGEST] != config.digest:
            raise InputError(f"{where}: the digest annotation does not match the config",
                             reason="bad-artifact")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InputError(f"{where}: malformed Kiln artifact manifest ({exc})",
                         reason="bad-artifact") from exc
    if len(layers) != 1 or config.media_type != CONFIG_TYPE or layers[0].media_type != LAYER_TYPE:
        raise InputError(f"{where}: a Kiln artifact has one config and one tar layer",
                         reason="bad-artifact")
    return FileSetArtifact(config, layers[0], name, version)


def _descriptor(raw: Any, where: str) -> Descriptor:
    size = raw["size"]
    if not isinstance(size, int) or size < 0 or not isinstance(raw["mediaType"], str):
        raise InputError(f"{where}: malformed descriptor", reason="bad-artifact")
    return Descriptor(raw["mediaType"], parse_digest(raw["digest"], what="descriptor digest"),
                      size)


def pull_fileset(store: Store, client: RegistryClient, reference: Reference, *,
                 fetch_import: Callable[[Import], FileSet] | None = None,
                 manifest: bytes | None = None) -> FileSet:
    """Pull the FileSet `reference` names, checking every digest; keep nothing unverified.

    The FileSets it imports must be in the store first: `fetch_import` brings the
    missing ones (each must come out with the digest the manifest names). `manifest`:
    the artifact manifest, when the caller fetched it from `reference` already."""
    data = manifest if manifest is not None else client.get_manifest(reference)[0]
    artifact = parse_fileset_manifest(data, str(reference))
    if store.has(artifact.config.digest):
        return store.get(artifact.config.digest)
    config = fetch_blob(client, reference.repository, artifact.config, _MAX_CONFIG)
    expected = FileSet.from_manifest(config, where=f"{reference} config")
    if (expected.name, expected.version) != (artifact.name, artifact.version):
        raise InputError(f"{reference}: annotations say {artifact.name}@{artifact.version},"
                         f" the config is {expected.label}", reason="bad-artifact")
    for item in expected.imports:
        if store.has(item.digest):
            continue
        if fetch_import is None:
            raise NotFound(f"{expected.label} imports {item.name}@{item.version}, which is not"
                           " in the store; pull it first", reason="import-missing")
        fetched = fetch_import(item)
        if fetched.digest != item.digest:
            raise InputError(f"{expected.label} imports {item.name}@{item.version} as"
                             f" {item.digest}; the registry has {fetched.digest}",
                             reason="fileset-digest-mismatch")
    return client.retrying(lambda: _import_layer(store, client, reference, artifact))


def _import_layer(store: Store, client: RegistryClient, reference: Reference,
                  artifact: FileSetArtifact) -> FileSet:
    response = client.open_blob(reference.repository, artifact.layer.digest)
    stream = VerifiedStream(response, artifact.layer, "layer")
    from kiln.archive.importer import import_tar_stream

    return import_tar_stream(store, stream, str(reference), expect=artifact.config.digest,
                             check_stream=stream.verify).fileset


class VerifiedStream:
    """A blob read from the registry, hashed as it goes; `verify` checks it whole."""

    def __init__(self, response: Response | BinaryIO, descriptor: Descriptor,
                 where: str) -> None:
        self._response = response
        self._descriptor = descriptor
        self._where = where
        self._hash = hashlib.sha256()
        self._size = 0

    def read(self, size: int = -1) -> bytes:
        # Never read past the descriptor's size: a longer body is refused below.
        remaining = self._descriptor.size + 1 - self._size
        data = self._response.read(min(size, remaining) if size >= 0 else remaining)
        self._hash.update(data)
        self._size += len(data)
        return data

    def readinto(self, buffer: memoryview) -> int:
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def verify(self) -> None:
        while self.read(1 << 20):
            pass
        digest = Digest("sha256:" + self._hash.hexdigest())
        if self._size != self._descriptor.size or digest != self._descriptor.digest:
            raise InputError(f"{self._where}: got {self._size} bytes with digest {digest},"
                             f" expected {self._descriptor.size} bytes with"
                             f" {self._descriptor.digest}", reason="blob-digest-mismatch")


def fetch_blob(client: RegistryClient, repository: str, descriptor: Descriptor,
               limit: int) -> bytes:
    """A small blob, read whole and checked against its descriptor."""
    if descriptor.size > limit:
        raise InputError(f"blob {descriptor.digest} is {descriptor.size} bytes, more than the"
                         f" {limit} allowed", reason="blob-too-large")

    def fetch() -> bytes:
        stream = VerifiedStream(client.open_blob(repository, descriptor.digest), descriptor,
                                f"{client.host}/{repository}@{descriptor.digest}")
        data = stream.read(descriptor.size + 1)
        while len(data) <= descriptor.size and (more := stream.read(descriptor.size + 1)):
            data += more
        stream.verify()
        return data

    return client.retrying(fetch)


def imports_first(store: Store, fileset: FileSet) -> list[FileSet]:
    """Every FileSet `fileset` imports, deepest first, each once."""
    ordered: list[FileSet] = []
    seen: set[Digest] = set()

    def visit(current: FileSet) -> None:
        for item in current.imports:
            if item.digest not in seen:
                seen.add(item.digest)
                imported = store.get(item.digest)
                visit(imported)
                ordered.append(imported)

    visit(fileset)
    return ordered
