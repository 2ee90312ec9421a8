"""Publishing what a worker built: check it, sign it, attach it, then move the tag.

The worker pushed the FileSet's blobs and manifest by digest, with no tag, and
handed back its build record. The master (the only holder of the signing key)
confirms that the manifest it finds under that digest is the record's output,
FileSet and archive both, and only then signs the provenance, attaches the
bundle and moves the version's tag. Blobs first, bundle next, tag last: a
consumer following the tag always finds the bundle.
"""

from __future__ import annotations

from dataclasses import dataclass

from kiln.canonical import Digest
from kiln.errors import CheckFailed, KilnError
from kiln.record import BuildRecord, Output
from kiln.registry.artifact import MANIFEST_TYPE, Descriptor, parse_fileset_manifest
from kiln.registry.client import RegistryClient
from kiln.registry.naming import version_to_tag
from kiln.registry.reference import Reference
from provenance.attest import attest
from provenance.signers import Signer
from provenance.statement import Reproduction, package_statement


class PublishRefused(CheckFailed):
    """What was pushed is not what the record says was built: nothing is published."""

    default_reason = "pushed-mismatch"


@dataclass(frozen=True)
class Published:
    """A package published under its version's tag, with its bundle."""

    reference: Reference  # the version's tag, now pointing at the package
    manifest: Digest
    manifest_bytes: bytes  # as the registry holds it, for tagging it again
    bundle: bytes
    referrer: str


def confirm_pushed(client: RegistryClient, pushed: Reference, record: BuildRecord,
                   output: Output | None = None) -> tuple[bytes, Descriptor]:
    """The pushed manifest and its descriptor, if it holds the record's output (or
    `output`, one of a split build's)."""
    where = str(pushed)
    try:
        manifest, _, digest = client.get_manifest(pushed)
    except KilnError as exc:
        raise PublishRefused(f"{where}: the pushed package cannot be read: {exc.message}",
                             reason=exc.reason) from exc
    artifact = parse_fileset_manifest(manifest, where)
    output = output or record.output
    if (artifact.name, artifact.version) != (output.name, output.version):
        raise PublishRefused(f"{where} holds {artifact.name}@{artifact.version}, the record"
                             f" {output.name}@{output.version}")
    if artifact.config.digest != output.digest:
        raise PublishRefused(f"{where} holds FileSet {artifact.config.digest}, the record"
                             f" says {output.digest}")
    if artifact.layer.digest != output.archive:
        raise PublishRefused(f"{where} holds archive {artifact.layer.digest}, the record"
                             f" says {output.archive}")
    for blob in (artifact.config.digest, artifact.layer.digest):
        if not client.blob_exists(pushed.repository, blob):
            raise PublishRefused(f"{where}: blob {blob} was never pushed")
    return manifest, Descriptor(MANIFEST_TYPE, digest, len(manifest))


def publish(client: RegistryClient, pushed: Reference, record: BuildRecord, signer: Signer,
            builder: str | None = None, reproduction: Reproduction | None = None,
            output: Output | None = None) -> Published:
    """Confirm, sign and attach the provenance, then tag `pushed` with its version; for
    a split build, `output` says which of its packages `pushed` is."""
    output = output or record.output
    manifest, subject = confirm_pushed(client, pushed, record, output)
    bundle, referrer = attest(package_statement(record, builder, reproduction, output),
                              subject, signer, client, pushed.repository)
    tag = version_to_tag(output.version)
    client.put_manifest(pushed.repository, tag, manifest, MANIFEST_TYPE)
    return Published(pushed.with_tag(tag), subject.digest, manifest, bundle, referrer)
