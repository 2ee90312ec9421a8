"""Kiln's strict reader of Sigstore bundles: what it refuses, and that what Kiln
writes is also what sigstore-models (the reference models) accepts."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from sigstore_models.bundle.v1 import Bundle

from kiln.errors import InputError
from provenance.bundle import key_bundle, key_hint, parse_bundle
from provenance.dsse import Envelope


@pytest.fixture
def bundle() -> dict[str, Any]:
    key = ec.generate_private_key(ec.SECP256R1())
    raw = key_bundle(Envelope("application/vnd.in-toto+json", b"{}", (("", b"sig"),)),
                     key.public_key())
    Bundle.from_json(raw)  # the reference models accept what Kiln writes
    parsed = parse_bundle(raw, "b")
    assert parsed.key_hint == key_hint(key.public_key())
    assert parsed.envelope.payload == b"{}"
    document: dict[str, Any] = json.loads(raw)
    return document


@pytest.mark.parametrize("damage", [
    lambda b: b.update(extra=1),
    lambda b: b["dsseEnvelope"].update(payload="not base64!"),
    lambda b: b["dsseEnvelope"]["signatures"][0].update(cert="x"),
    lambda b: b["verificationMaterial"].update(certificate={"rawBytes": "AAAA"}),
    lambda b: b.update(mediaType="application/json"),
    lambda b: b["dsseEnvelope"].pop("signatures"),
    lambda b: b["verificationMaterial"]["publicKey"].update(hint=5),
])
def test_a_malformed_bundle_is_refused(bundle: dict[str, Any], damage: Any) -> None:
    damage(bundle)
    with pytest.raises(InputError) as raised:
        parse_bundle(json.dumps(bundle).encode(), "damaged")
    assert raised.value.reason == "bad-bundle"


def test_not_json_is_refused() -> None:
    with pytest.raises(InputError) as raised:
        parse_bundle(b"\x00not json", "garbage")
    assert raised.value.reason == "bad-bundle"
