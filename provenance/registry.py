"""Bundles in the registry: attached to their subject's manifest as referrers
(artifactType `application/vnd.dev.sigstore.bundle.v0.3+json`), fetched back."""

from __future__ import annotations

from pathlib import Path

from kiln.canonical import Digest
from kiln.registry.artifact import Descriptor
from kiln.registry.client import RegistryClient
from kiln.registry.referrers import attach, referrer_blobs
from provenance.bundle import BUNDLE_TYPE


def attach_bundle(client: RegistryClient, repository: str, subject: Descriptor,
                  bundle: bytes) -> Digest:
    """Attach `bundle` to the manifest `subject` describes; returns the referrer's digest."""
    return attach(client, repository, subject, BUNDLE_TYPE, bundle, BUNDLE_TYPE)


def fetch_bundles(client: RegistryClient, repository: str, subject: Digest,
                  remembered: Path | None = None) -> list[bytes]:
    """Every bundle attached to `subject`, each checked against its descriptor (and,
    with `remembered`, kept there to be read, not fetched, the next time)."""
    return referrer_blobs(client, repository, subject, BUNDLE_TYPE, remembered=remembered)
