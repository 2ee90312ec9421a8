"""Artifacts attached to a subject (SBOMs, provenance): the OCI referrers API where
the registry has one, the tag-schema fallback (`sha256-<hex>`, an index of the
referrers) where it does not, as OCI distribution 1.1 describes."""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kiln.canonical import Digest, canonical_json, digest_hex, sha256_digest
from kiln.errors import NotFound
from kiln.registry.artifact import Descriptor
from kiln.registry.client import RegistryClient, bytes_body
from kiln.store.layout import mark_used

EMPTY_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY = b"{}"
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"


@dataclass(frozen=True)
class Referrer:
    """A manifest that refers to another (a bundle to its package)."""

    digest: Digest
    artifact_type: str
    annotations: dict[str, str]


def referrer_manifest(subject: Descriptor, artifact_type: str, blob: bytes, blob_type: str,
                      annotations: dict[str, str] | None = None) -> bytes:
    """An artifact manifest of one blob, pointing at `subject`."""
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "artifactType": artifact_type,
        "config": {"mediaType": EMPTY_TYPE, "digest": sha256_digest(EMPTY), "size": len(EMPTY)},
        "layers": [{"mediaType": blob_type, "digest": sha256_digest(blob), "size": len(blob)}],
        "subject": subject.to_json(),
    }
    if annotations:
        manifest["annotations"] = annotations
    return canonical_json(manifest)


def attach(client: RegistryClient, repository: str, subject: Descriptor, artifact_type: str,
           blob: bytes, blob_type: str, annotations: dict[str, str] | None = None) -> Digest:
    """Push an artifact that refers to `subject`; returns the artifact manifest's digest."""
    client.push_blob(repository, sha256_digest(EMPTY), bytes_body(EMPTY))
    client.push_blob(repository, sha256_digest(blob), bytes_body(blob))
    manifest = referrer_manifest(subject, artifact_type, blob, blob_type, annotations)
    digest = sha256_digest(manifest)
    response = client.put_manifest(repository, digest, manifest, MANIFEST_TYPE)
    if response.headers.get("OCI-Subject") != subject.digest:
        _add_to_fallback(client, repository, subject.digest, {
            "mediaType": MANIFEST_TYPE, "digest": digest, "size": len(manifest),
            "artifactType": artifact_type, **({"annotations": annotations} if annotations
                                               else {})})
    return digest


def _fallback_tag(subject: Digest) -> str:
    return subject.replace(":", "-")


def _add_to_fallback(client: RegistryClient, repository: str, subject: Digest,
                     entry: dict[str, Any]) -> None:
    index = _fallback_index(client, repository, subject)
    manifests = [m for m in index["manifests"] if m.get("digest") != entry["digest"]]
    manifests.append(entry)
    index["manifests"] = sorted(manifests, key=lambda m: str(m.get("digest")))
    client.put_manifest(repository, _fallback_tag(subject), canonical_json(index), INDEX_TYPE)


def _fallback_index(client: RegistryClient, repository: str, subject: Digest) -> dict[str, Any]:
    from kiln.registry.reference import Reference

    try:
        data, _, _ = client.get_manifest(Reference(client.host, repository,
                                                   _fallback_tag(subject)))
    except NotFound:
        return {"schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": []}
    index: dict[str, Any] = json.loads(data)
    return index


def list_referrers(client: RegistryClient, repository: str, subject: Digest,
                   artifact_type: str | None = None) -> list[Referrer]:
    """The artifacts attached to `subject` (optionally of one type)."""
    index: dict[str, Any] | None = None
    if client.referrers_api is not False:
        try:
            response = client.get_json(f"/v2/{repository}/referrers/{subject}",
                                       kind="GET referrers")
            index = json.loads(response.read_all(4 << 20, "referrers"))
            client.referrers_api = True
        except NotFound:
            # A registry without the API answers 404 for every subject: this client
            # asks the fallback tag from now on (a verification asks it per package).
            client.referrers_api = client.referrers_api or False
    if index is None:
        index = _fallback_index(client, repository, subject)
    found = [Referrer(Digest(m["digest"]), m.get("artifactType", ""), m.get("annotations", {}))
             for m in index.get("manifests", [])]
    return [r for r in found if artifact_type is None or r.artifact_type == artifact_type]


def referrer_blobs(client: RegistryClient, repository: str, subject: Digest,
                   artifact_type: str, limit: int = 4 << 20,
                   remembered: Path | None = None) -> list[bytes]:
    """The blob of every artifact of one type attached to `subject`, each checked.

    With `remembered` (a directory of the consumer's store), each blob fetched is kept
    under its referrer manifest's digest (which fixes the blob's own), and the list
    under the subject's, for `remembered_blobs`. What is kept is never read here:
    a caller that found it wanting fetches afresh, and the copy is replaced."""
    from kiln.errors import InputError
    from kiln.registry.artifact import fetch_blob
    from kiln.registry.reference import Reference

    blobs = []
    referrers = list_referrers(client, repository, subject, artifact_type)
    for referrer in referrers:
        manifest, _, _ = client.get_manifest(Reference(client.host, repository, None,
                                                       referrer.digest))
        try:
            layer = json.loads(manifest)["layers"][0]
            descriptor = Descriptor(layer["mediaType"], Digest(layer["digest"]),
                                    int(layer["size"]))
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise InputError(f"referrer {referrer.digest} of {subject} is malformed",
                             reason="bad-referrer") from exc
        blob = fetch_blob(client, repository, descriptor, limit)
        if remembered is not None:
            _remember(remembered / digest_hex(referrer.digest), blob)
        blobs.append(blob)
    if remembered is not None and referrers:
        _remember(remembered / "subjects" / digest_hex(subject),
                  "".join(f"{r.digest}\n" for r in referrers).encode())
    return blobs


def remembered_blobs(remembered: Path, subject: Digest) -> list[bytes]:
    """The blobs `referrer_blobs` kept for `subject` when it last listed them (none if
    it never did): a verification that finds one to verify lists no referrers."""
    try:
        listed = (remembered / "subjects" / digest_hex(subject)).read_text().split()
    except (FileNotFoundError, ValueError):
        return []
    blobs = []
    for referrer in listed:
        try:
            path = remembered / digest_hex(Digest(referrer))
            blobs.append(path.read_bytes())
        except (FileNotFoundError, ValueError):
            continue
        mark_used(path)
    return blobs


def _remember(path: Path, blob: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    temporary.write_bytes(blob)
    os.replace(temporary, path)
