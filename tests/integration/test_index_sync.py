"""`kiln index sync` against a real registry holding what Kiln did not make, or made
wrong: each is skipped with its reason, nothing half-indexed, the rest indexed."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from kiln.canonical import canonical_json, sha256_digest
from kiln.registry.client import RegistryClient, bytes_body
from master.index.database import open_index
from master.index.models import Image, Package
from master.index.sync import sync_registry
from tests.fixtures.registry import run_registry

MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def put(client: RegistryClient, repository: str, tag: str, manifest: dict[str, object]) -> None:
    config = b"{}"
    client.push_blob(repository, sha256_digest(config), bytes_body(config))
    client.put_manifest(repository, tag, canonical_json(manifest), MANIFEST)


def oci(annotations: dict[str, str]) -> dict[str, object]:
    config = b"{}"
    return {"schemaVersion": 2, "mediaType": MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": sha256_digest(config), "size": len(config)},
            "layers": [], "annotations": annotations}


def test_what_kiln_did_not_make_is_skipped_by_name(tmp_path: Path) -> None:
    with run_registry(tmp_path / "registry") as registry:
        client = RegistryClient(registry.host, plain_http=True)
        try:
            put(client, "others/plain", "1", oci({}))  # somebody else's image
            put(client, "images/broken", "1",  # claims to be Kiln's, with garbage in it
                oci({"dev.kiln.image.packages": "[{\"name\": 1"}))
            put(client, "images/empty", "1", oci({"dev.kiln.image.packages": "[]",
                                                  "org.opencontainers.image.title": "e"}))
            engine = open_index("sqlite:///index.sqlite", tmp_path)
            not_ours: set[tuple[str, str, str]] = set()
            report = sync_registry(engine, client, registry.host, not_ours=not_ours)
            again = sync_registry(engine, client, registry.host, not_ours=not_ours)
        finally:
            client.close()
    assert report.images == 1  # only the well-formed Kiln image
    reasons = "\n".join(report.skipped)
    assert f"{registry.host}/others/plain:1: not a Kiln package or image" in reasons
    assert f"{registry.host}/images/broken:1: " in reasons
    assert "malformed image manifest" in reasons
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(Image)) == 1
        assert session.scalar(select(func.count()).select_from(Package)) == 0
    # A second sync reads nothing it has indexed, nor what it found foreign, again; the
    # malformed one is named again (it may be mended under the same tag).
    assert (again.images, again.unchanged) == (0, 2)
    assert len(again.skipped) == 1
    assert json.dumps(again.to_json())
