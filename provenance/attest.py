"""Signing a statement and attaching the bundle to its subject in the registry.

`attest` needs no store: the farm's master signs what a worker pushed, reading
only the registry. `attest_fileset` is the single host's way: push from the
store, then attest.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kiln.errors import InputError
from kiln.fileset import FileSet
from kiln.registry.artifact import MANIFEST_TYPE, Descriptor, fileset_manifest, push_fileset
from kiln.registry.client import RegistryClient, client_for
from kiln.registry.config import RegistryConfig
from kiln.registry.naming import version_to_tag
from kiln.registry.reference import Reference, parse_reference
from kiln.store.store import Store
from provenance.registry import attach_bundle
from provenance.signers import Signer


@dataclass(frozen=True)
class Attested:
    """A signed statement's bundle, and where it was pushed."""

    bundle: bytes
    artifact: Reference | None  # where the FileSet and its bundle are, if pushed
    referrer: str | None
    signer: str = ""  # who signed: "key <hint> (<file>)", "sigstore (<instance>)"


def attest_fileset(store: Store, fileset: FileSet, statement: bytes, signer: Signer,
                   config: RegistryConfig, *, target: str | None = None,
                   output: Path | None = None) -> Attested:
    """Sign `statement`; push the FileSet and attach the bundle (where a registry is
    given or configured for its name); write the bundle to `output` if asked."""
    bundle = signer.sign(statement)
    if output is not None:
        output.write_bytes(bundle)
    if target is None and not _configured(config, fileset.name):
        if output is None:
            raise InputError(f"nowhere to put the bundle of {fileset.label}: map its name in"
                             " registries.yaml, or give --to or -o", reason="no-registry")
        return Attested(bundle, None, None, signer.description)
    reference = (parse_reference(target) if target
                 else config.locate(fileset.name, fileset.version))
    reference = reference.with_tag(reference.tag or version_to_tag(fileset.version))
    client = client_for(reference.host, config)
    try:
        # Blobs and manifest by digest, the bundle next, the tag last: whoever follows
        # the tag (a consumer, the farm's index) finds the bundle already attached.
        pushed = push_fileset(store, fileset, client, reference.with_tag(None))
        manifest = fileset_manifest(fileset, pushed.layer)
        assert pushed.reference.digest is not None
        subject = Descriptor(MANIFEST_TYPE, pushed.reference.digest, len(manifest))
        referrer = attach_bundle(client, reference.repository, subject, bundle)
        assert reference.tag is not None
        client.put_manifest(reference.repository, reference.tag, manifest, MANIFEST_TYPE)
    finally:
        client.close()
    return Attested(bundle, reference.with_digest(pushed.reference.digest), referrer,
                    signer.description)


def attest(statement: bytes, subject: Descriptor, signer: Signer, client: RegistryClient,
           repository: str) -> tuple[bytes, str]:
    """Sign `statement` and attach the bundle to `subject`; (bundle, referrer digest).

    Signing is apart from pushing: nothing here reads a store."""
    bundle = signer.sign(statement)
    return bundle, attach_bundle(client, repository, subject, bundle)


def _configured(config: RegistryConfig, name: str) -> bool:
    return any(name.startswith(mapping.prefix) for mapping in config.mappings)
