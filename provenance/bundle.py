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
import binascii
import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from kiln.canonical import canonical_json, check_fields, loads_strict
from kiln.errors import InputError
from kiln.hostconfig import host_config
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
    """A Sigstore bundle as read, before its signature is checked."""

    raw: bytes  # as it came
    envelope: Envelope
    key_hint: str | None  # a key-signed bundle's hint; None for keyless
    keyless: bool


def parse_bundle(raw: bytes, where: str) -> ParsedBundle:
    """Parse a bundle strictly: unknown fields, bad base64 and missing parts refused.

    Kiln's own reader of the protobuf JSON form: pydantic (through sigstore-models)
    would cost every `kiln verify` 0.1 s of imports. The tests check the bundles
    Kiln writes with sigstore-models; a keyless bundle is read again, whole, by
    sigstore-python when it is verified."""
    limit = host_config().imports.bundle_size
    if len(raw) > limit:
        raise InputError(f"{where} is {len(raw)} bytes, more than a bundle may be ({limit};"
                         " bundle-size in the host configuration)", reason="bad-bundle")
    try:
        document = loads_strict(raw)
        check_fields(document, "the bundle", {"mediaType", "verificationMaterial"},
                {"dsseEnvelope", "messageSignature"})
        if document["mediaType"] not in BUNDLE_TYPES:
            raise _Malformed(f"media type {document['mediaType']!r}")
        if "dsseEnvelope" not in document:
            raise InputError(f"{where} signs a message, not a DSSE envelope",
                             reason="bad-bundle")
        material = document["verificationMaterial"]
        check_fields(material, "verificationMaterial", set(),
                {"publicKey", "x509CertificateChain", "certificate", "tlogEntries",
                 "timestampVerificationData"})
        kinds = [k for k in ("publicKey", "x509CertificateChain", "certificate") if k in material]
        if len(kinds) != 1:
            raise _Malformed("verificationMaterial needs exactly one of publicKey,"
                             " x509CertificateChain and certificate")
        hint = None
        if "publicKey" in material:
            check_fields(material["publicKey"], "publicKey", set(), {"hint"})
            hint = material["publicKey"].get("hint")
            if hint is not None and not isinstance(hint, str):
                raise _Malformed("publicKey.hint is not a string")
        envelope = document["dsseEnvelope"]
        check_fields(envelope, "dsseEnvelope", {"payload", "payloadType", "signatures"}, set())
        if not isinstance(envelope["payloadType"], str) or not isinstance(
                envelope["signatures"], list) or not envelope["signatures"]:
            raise _Malformed("dsseEnvelope needs a payloadType and signatures")
        signatures = []
        for signature in envelope["signatures"]:
            check_fields(signature, "a signature", {"sig"}, {"keyid"})
            signatures.append((str(signature.get("keyid") or ""), _base64(signature["sig"])))
        parsed = Envelope(envelope["payloadType"], _base64(envelope["payload"]),
                          tuple(signatures))
    except (_Malformed, ValueError, TypeError) as exc:
        raise InputError(f"{where} is not a Sigstore bundle: {exc}", reason="bad-bundle") from exc
    return ParsedBundle(raw, parsed, hint, keyless="publicKey" not in material)


def read_bundle_file(path: Path) -> bytes:
    """A bundle file's bytes, read no further than a bundle may be long."""
    limit = host_config().imports.bundle_size
    try:
        with open(path, "rb") as handle:
            raw = handle.read(limit + 1)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}", reason="unreadable-file") from exc
    return raw  # parse_bundle refuses it when it is longer than the limit


BUNDLE_TYPES = (BUNDLE_TYPE, "application/vnd.dev.sigstore.bundle+json;version=0.3")


class _Malformed(ValueError):
    pass


def _base64(value: object) -> bytes:
    if not isinstance(value, str):
        raise _Malformed("a base64 field is not a string")
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error as exc:
        raise _Malformed(f"bad base64 ({exc})") from exc
