"""Sigstore bundles v0.3 (`application/vnd.dev.sigstore.bundle.v0.3+json`) holding a
DSSE envelope: written for key signatures, read (strictly) for both kinds.

A key-signed bundle carries a public-key hint and no transparency-log entry, as
cosign writes with `--key`: the hint is the base64 of the sha256 of the key's
DER SubjectPublicKeyInfo. A keyless bundle carries a Fulcio certificate and a
Rekor entry, and is verified by sigstore-python. Either way the bundle's bytes
are kept as they came, and the payload is the exact bytes that were signed.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from kiln.canonical import canonical_json
from kiln.errors import InputError
from provenance.dsse import Envelope

BUNDLE_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"


def key_hint(public_key: ec.EllipticCurvePublicKey) -> str:
    der = public_key.public_bytes(serialization.Encoding.DER,
                                  serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def key_bundle(envelope: Envelope, public_key: ec.EllipticCurvePublicKey) -> bytes:
    """A bundle of a key-signed envelope: a public-key hint, no log entry."""
    return canonical_json({
        "mediaType": BUNDLE_TYPE,
        "verificationMaterial": {"publicKey": {"hint": key_hint(public_key)},
                                 "tlogEntries": []},
        "dsseEnvelope": envelope.to_json(),
    })


@dataclass(frozen=True)
class ParsedBundle:
    raw: bytes  # as it came
    envelope: Envelope
    key_hint: str | None  # a key-signed bundle's hint; None for keyless
    keyless: bool


def parse_bundle(raw: bytes, where: str) -> ParsedBundle:
    """Parse a bundle strictly (unknown fields refused) with sigstore-models."""
    from pydantic import ValidationError
    from sigstore_models.bundle.v1 import Bundle

    try:
        bundle = Bundle.from_json(raw)
    except (ValidationError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{where} is not a Sigstore bundle: {first}",
                         reason="bad-bundle") from exc
    if bundle.dsse_envelope is None:
        raise InputError(f"{where} signs a message, not a DSSE envelope", reason="bad-bundle")
    material = bundle.verification_material
    envelope = bundle.dsse_envelope
    parsed = Envelope(envelope.payload_type, bytes(envelope.payload),
                      tuple((sig.keyid or "", bytes(sig.sig)) for sig in envelope.signatures))
    hint = material.public_key.hint if material.public_key is not None else None
    return ParsedBundle(raw, parsed, hint, keyless=material.public_key is None)
