"""Where images go and come from: an OCI image layout (`oci:DIR[:TAG]`, as skopeo
spells it) or a registry (`HOST/REPO[:TAG][@DIGEST]`), behind one small interface."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from kiln.canonical import Digest, canonical_json, sha256_digest
from kiln.errors import InputError, NotFound
from kiln.fileset import FileSet
from kiln.image.spec import LockedPackage
from kiln.registry.artifact import Descriptor, VerifiedStream, fetch_blob
from kiln.registry.client import Body, RegistryClient, client_for
from kiln.registry.config import RegistryConfig
from kiln.registry.reference import Reference, parse_reference
from kiln.registry.referrers import (
    EMPTY,
    INDEX_TYPE,
    MANIFEST_TYPE,
    attach,
    list_referrers,
    referrer_blobs,
    referrer_manifest,
)
from kiln.store.store import Store

if TYPE_CHECKING:  # composing is not verifying: `kiln verify` imports neither
    from kiln.image.compose import Blob, Image

REF_NAME = "org.opencontainers.image.ref.name"
_MAX_SMALL_BLOB = 16 << 20


@dataclass(frozen=True)
class Attachment:
    """An artifact to attach to the image (an SBOM; provenance later)."""

    artifact_type: str
    blob: bytes
    blob_type: str


class ImageStore(Protocol):
    """Somewhere an image can be written to and read back from."""

    def describe(self) -> str: ...

    def put(self, image: Image, attachments: list[Attachment], mounts: Mapping[Digest, str],
            present: frozenset[Digest] = frozenset()) -> Digest: ...

    def manifest(self) -> tuple[bytes, Digest]: ...

    def blob(self, descriptor: Descriptor) -> bytes: ...

    def import_layer(self, store: Store, descriptor: Descriptor, expect: Digest) -> FileSet: ...

    def attachments(self, subject: Digest, artifact_type: str) -> list[bytes]: ...

    def attached(self, subject: Digest) -> list[tuple[str, Digest]]: ...

    def close(self) -> None: ...


class LayoutStore:
    """An OCI image layout directory; the tag names the image in index.json."""

    def __init__(self, directory: Path, tag: str | None) -> None:
        self.directory = directory
        self.tag = tag

    def describe(self) -> str:
        return f"oci:{self.directory}" + (f":{self.tag}" if self.tag else "")

    def _blob_path(self, digest: Digest) -> Path:
        return self.directory / "blobs" / "sha256" / digest.removeprefix("sha256:")

    def _write_blob(self, blob: Blob) -> None:
        path = self._blob_path(blob.descriptor.digest)
        if path.exists():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{path.name}.tmp")
        if blob.path is not None:
            try:
                os.link(blob.path, temp)  # archives are immutable: share them
            except OSError:
                shutil.copyfile(blob.path, temp)
        else:
            assert blob.data is not None
            temp.write_bytes(blob.data)
        temp.replace(path)

    def _data(self, data: bytes, media_type: str) -> Blob:
        from kiln.image.compose import Blob

        return Blob(Descriptor(media_type, sha256_digest(data), len(data)), data=data)

    def put(self, image: Image, attachments: list[Attachment], mounts: Mapping[Digest, str],
            present: frozenset[Digest] = frozenset()) -> Digest:
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
        for blob in (*image.layers, image.config_blob):
            self._write_blob(blob)
        self._write_blob(self._data(image.manifest, MANIFEST_TYPE))
        entries = [{**image.descriptor.to_json(),
                    "annotations": {REF_NAME: self.tag or image.version}}]
        for attachment in attachments:
            self._write_blob(self._data(EMPTY, "application/vnd.oci.empty.v1+json"))
            self._write_blob(self._data(attachment.blob, attachment.blob_type))
            manifest = referrer_manifest(image.descriptor, attachment.artifact_type,
                                         attachment.blob, attachment.blob_type)
            self._write_blob(self._data(manifest, MANIFEST_TYPE))
            entries.append({"mediaType": MANIFEST_TYPE, "digest": sha256_digest(manifest),
                            "size": len(manifest), "artifactType": attachment.artifact_type})
        index = self._index()
        names = {e["annotations"][REF_NAME] for e in entries if "annotations" in e}
        kept = [m for m in index["manifests"]
                if m.get("annotations", {}).get(REF_NAME) not in names
                and m["digest"] not in {e["digest"] for e in entries}]
        index["manifests"] = kept + entries
        temp = self.directory / ".index.json.tmp"
        temp.write_bytes(canonical_json(index))
        temp.replace(self.directory / "index.json")
        return image.digest

    def _index(self) -> dict[str, Any]:
        try:
            index: dict[str, Any] = json.loads((self.directory / "index.json").read_bytes())
            return index
        except FileNotFoundError:
            return {"schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": []}
        except ValueError as exc:
            raise InputError(f"{self.directory}/index.json is not JSON",
                             reason="bad-layout") from exc

    def manifest(self) -> tuple[bytes, Digest]:
        images = [m for m in self._index()["manifests"]
                  if m.get("mediaType") == MANIFEST_TYPE and "artifactType" not in m]
        if self.tag:
            images = [m for m in images if m.get("annotations", {}).get(REF_NAME) == self.tag]
        if len(images) != 1:
            raise NotFound(f"{self.describe()} holds {len(images)} images; name one with"
                           " :TAG", reason="image-not-found")
        descriptor = Descriptor(MANIFEST_TYPE, Digest(images[0]["digest"]), images[0]["size"])
        return self.blob(descriptor), descriptor.digest

    def blob(self, descriptor: Descriptor) -> bytes:
        try:
            data = self._blob_path(descriptor.digest).read_bytes()
        except FileNotFoundError as exc:
            raise NotFound(f"{self.describe()} lacks blob {descriptor.digest}",
                           reason="blob-missing") from exc
        if sha256_digest(data) != descriptor.digest or len(data) != descriptor.size:
            raise InputError(f"{self.describe()}: blob {descriptor.digest} is corrupt",
                             reason="blob-digest-mismatch")
        return data

    def import_layer(self, store: Store, descriptor: Descriptor, expect: Digest) -> FileSet:
        with open(self._blob_path(descriptor.digest), "rb") as raw:
            stream = VerifiedStream(raw, descriptor, f"{self.describe()} layer")
            from kiln.archive.importer import import_tar_stream

            return import_tar_stream(store, stream, self.describe(), expect=expect,
                                     check_stream=stream.verify).fileset

    def attachments(self, subject: Digest, artifact_type: str) -> list[bytes]:
        """The blobs of the artifacts of one type that refer to `subject`."""
        found = []
        for _, manifest in self._referrers(subject):
            if manifest.get("artifactType") == artifact_type:
                layer = manifest["layers"][0]
                found.append(self.blob(Descriptor(layer["mediaType"], Digest(layer["digest"]),
                                                  int(layer["size"]))))
        return found

    def attached(self, subject: Digest) -> list[tuple[str, Digest]]:
        """The type and manifest digest of every artifact that refers to `subject`."""
        return [(str(m.get("artifactType")), digest) for digest, m in self._referrers(subject)]

    def _referrers(self, subject: Digest) -> list[tuple[Digest, dict[str, Any]]]:
        found = []
        for entry in self._index()["manifests"]:
            if "artifactType" not in entry:
                continue
            descriptor = Descriptor(MANIFEST_TYPE, Digest(entry["digest"]), int(entry["size"]))
            manifest: dict[str, Any] = json.loads(self.blob(descriptor))
            if manifest.get("subject", {}).get("digest") == subject:
                found.append((descriptor.digest, manifest))
        return found

    def close(self) -> None:
        pass


class RegistryImageStore:
    """An image in a registry repository, with its attachments as referrers."""

    def __init__(self, reference: Reference, client: RegistryClient) -> None:
        self.reference = reference
        self.client = client

    def describe(self) -> str:
        return str(self.reference)

    def put(self, image: Image, attachments: list[Attachment], mounts: Mapping[Digest, str],
            present: frozenset[Digest] = frozenset()) -> Digest:
        """Push blobs, then the manifest; `present` are blobs known to be in the repository
        already (an update's unchanged layers), which are not even asked about."""
        repository = self.reference.repository
        for blob in (*image.layers, image.config_blob):
            if blob.descriptor.digest in present:
                continue
            self.client.push_blob(repository, blob.descriptor.digest,
                                  Body(blob.descriptor.size, blob.open),
                                  mounts.get(blob.descriptor.digest))
        # The manifest by digest, its attachments next, the tag last: whoever follows
        # the tag (a consumer verifying, a farm's index) finds the provenance attached.
        self.client.put_manifest(repository, image.digest, image.manifest, MANIFEST_TYPE)
        for attachment in attachments:
            attach(self.client, repository, image.descriptor, attachment.artifact_type,
                   attachment.blob, attachment.blob_type)
        if self.reference.tag:
            self.client.put_manifest(repository, self.reference.tag, image.manifest,
                                     MANIFEST_TYPE)
        return image.digest

    def manifest(self) -> tuple[bytes, Digest]:
        data, _, digest = self.client.get_manifest(self.reference)
        return data, digest

    def blob(self, descriptor: Descriptor) -> bytes:
        return fetch_blob(self.client, self.reference.repository, descriptor, _MAX_SMALL_BLOB)

    def import_layer(self, store: Store, descriptor: Descriptor, expect: Digest) -> FileSet:
        def attempt() -> FileSet:
            response = self.client.open_blob(self.reference.repository, descriptor.digest)
            stream = VerifiedStream(response, descriptor, f"{self.reference} layer")
            from kiln.archive.importer import import_tar_stream

            return import_tar_stream(store, stream, str(self.reference), expect=expect,
                                     check_stream=stream.verify).fileset

        return self.client.retrying(attempt)

    def attachments(self, subject: Digest, artifact_type: str) -> list[bytes]:
        return referrer_blobs(self.client, self.reference.repository, subject, artifact_type)

    def attached(self, subject: Digest) -> list[tuple[str, Digest]]:
        return [(r.artifact_type, r.digest)
                for r in list_referrers(self.client, self.reference.repository, subject)]

    def close(self) -> None:
        self.client.close()


def open_location(text: str, config: RegistryConfig) -> LayoutStore | RegistryImageStore:
    """`oci:DIR[:TAG]` or a registry reference."""
    if text.startswith("oci:"):
        path, _, tag = text[4:].partition(":")
        if not path:
            raise InputError(f"{text!r}: give a directory, as in oci:out/hello",
                             reason="bad-reference")
        return LayoutStore(Path(path), tag or None)
    reference = parse_reference(text)
    return RegistryImageStore(reference, client_for(reference.host, config))


def packages_from_layers(store: Store, location: LayoutStore | RegistryImageStore,
                         layers: Sequence[tuple[Descriptor, tuple[LockedPackage, ...]]],
                         ) -> Callable[[str, str], FileSet]:
    """A fetcher that imports a package the store lacks from the image's own layer
    (a single-package layer is the package's stable archive)."""
    homes = {(packages[0].name, packages[0].version): (descriptor, packages[0].digest)
             for descriptor, packages in layers if len(packages) == 1}

    def fetch(name: str, version: str) -> FileSet:
        home = homes.get((name, version))
        if home is None:
            raise NotFound(f"{name}@{version} shares a layer with others in"
                           f" {location.describe()}; pull it (kiln pull) first",
                           reason="package-missing")
        return location.import_layer(store, *home)

    return fetch
