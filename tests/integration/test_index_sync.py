"""`kiln index sync` against a real registry holding what Kiln did not make, or made
wrong: each is skipped with its reason, nothing half-indexed, the rest indexed; and
a bundle attached after its package was indexed, found by the next sync."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from kiln.canonical import canonical_json, sha256_digest
from kiln.registry.client import RegistryClient, bytes_body
from kiln.store import Store
from master.index.database import open_index
from master.index.models import Build, Image, Package, Provenance, Publication
from master.index.sync import sync_registry
from provenance.verify import Trust
from tests.conftest import Kiln
from tests.fixtures.keys import write_key
from tests.fixtures.packages import make_package
from tests.fixtures.registry import registry_config, run_registry
from tests.integration.test_provenance import record_for

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
            settled: set[tuple[str, str, str]] = set()
            report = sync_registry(engine, client, registry.host, settled=settled)
            again = sync_registry(engine, client, registry.host, settled=settled)
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


class CountingClient(RegistryClient):
    """A registry client that counts the manifests it reads."""

    reads = 0

    def get_manifest(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.reads += 1
        return super().get_manifest(*args, **kwargs)


def provenance_of(engine: Engine) -> list[tuple[str, str, bool | None]]:
    with Session(engine) as session:
        return [(p.subject, p.signer, p.verified) for p in session.scalars(select(Provenance))]


def test_a_bundle_attached_after_its_package_was_indexed_is_found_by_the_next_sync(
        kiln: Kiln, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    key, public = write_key(keys, "farm")
    trust = Trust(keys=(load_pem_public_key(public.read_bytes()),))  # type: ignore[arg-type]
    tool = make_package(store, tmp_path, "kiln.dev/tool", "1.0-1", {"usr/bin/tool*": "t\n"})
    engine = open_index("sqlite:///index.sqlite", tmp_path)
    settled: set[tuple[str, str, str]] = set()
    with run_registry(tmp_path / "registry") as registry:
        monkeypatch.setenv("KILN_REGISTRIES",
                           str(registry_config(tmp_path / "registries.yaml", registry.host)))
        client = CountingClient(registry.host, plain_http=True)
        try:
            # Pushed unsigned yesterday, indexed without provenance...
            pushed = kiln("push", "kiln.dev/tool@1.0-1")
            assert pushed.code == 0, pushed.err
            assert sync_registry(engine, client, registry.host, trust, settled).packages == 1
            assert provenance_of(engine) == []
            # ...attested today: the tag names the same manifest, its referrers moved.
            attested = kiln("attest", record_for(store, tool, tmp_path), "--signer",
                            f"file:{key}", "--json")
            assert attested.code == 0, attested.err
            again = sync_registry(engine, client, registry.host, trust, settled)
            assert (again.packages, again.unchanged) == (0, 1)
            [(subject, signer, verified)] = provenance_of(engine)
            assert signer.startswith("key ")
            assert verified is True
            with Session(engine) as session:
                publication = session.scalars(select(Publication)).one()
                assert publication.manifest == subject
                build = session.get(Build, publication.build_id)
                assert build is not None
                assert build.recipe_commit == "c" * 40
            # Once indexed, the referrers tag is not read again.
            reads = client.reads
            sync_registry(engine, client, registry.host, trust, settled)
            assert client.reads == reads
        finally:
            client.close()
