"""Verification refuses what a strict reader must: more than one subject, a malleated
(high-S) signature, duplicate JSON keys, malformed signed statements, and oversized
bundles; each with its reason, as a check that failed (exit 1), never a traceback."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from kiln.canonical import Digest, canonical_json
from kiln.errors import CheckFailed, InputError, KilnError
from provenance.bundle import parse_bundle, read_bundle_file
from provenance.dsse import P256_ORDER, is_low_s
from provenance.signers.key import KeySigner
from provenance.verify import Trust, verify_bundle
from tests.fixtures.keys import write_key

SUBJECT = Digest("sha256:" + "ab" * 32)
OTHER = "cd" * 32


def statement(subjects: Any, **extra: Any) -> dict[str, Any]:
    return {"_type": "https://in-toto.io/Statement/v1", "subject": subjects,
            "predicateType": "https://slsa.dev/provenance/v1",
            "predicate": {"buildDefinition": {}, "runDetails": {}}, **extra}


def one(digest: str = SUBJECT.removeprefix("sha256:")) -> dict[str, Any]:
    return {"name": "kiln.dev/tool", "digest": {"sha256": digest}}


@pytest.fixture
def signer(tmp_path: Path) -> tuple[KeySigner, Trust]:
    private, public = write_key(tmp_path, "farm")
    from provenance.verify import load_public_key

    return KeySigner.from_file(str(private)), Trust(keys=(load_public_key(public),))


def verify(raw: bytes, trust: Trust) -> str:
    """The reason `raw` is refused for, as the CLI would report it."""
    try:
        verify_bundle(parse_bundle(raw, "b"), trust, SUBJECT, "b")
    except CheckFailed as exc:
        return f"check:{exc.reason}"
    except KilnError as exc:
        return f"input:{exc.reason}"
    return "verified"


def test_a_well_formed_statement_verifies(signer: tuple[KeySigner, Trust]) -> None:
    key, trust = signer
    assert verify(key.sign(canonical_json(statement([one()]))), trust) == "verified"


def test_a_statement_with_two_subjects_is_refused_even_if_one_matches(
        signer: tuple[KeySigner, Trust]) -> None:
    key, trust = signer
    raw = key.sign(canonical_json(statement([one(OTHER), one()])))
    assert verify(raw, trust) == "check:bad-statement"
    assert verify(key.sign(canonical_json(statement([]))), trust) == "check:bad-statement"


def test_a_malleated_high_s_signature_is_refused(signer: tuple[KeySigner, Trust]) -> None:
    key, trust = signer
    raw = key.sign(canonical_json(statement([one()])))
    document = json.loads(raw)
    signature = base64.b64decode(document["dsseEnvelope"]["signatures"][0]["sig"])
    assert is_low_s(signature)  # what Kiln writes
    r, s = decode_dss_signature(signature)
    twin = encode_dss_signature(r, P256_ORDER - s)  # verifies with the key all the same
    document["dsseEnvelope"]["signatures"][0]["sig"] = base64.b64encode(twin).decode()
    assert verify(canonical_json(document), trust) == "check:signature-invalid"


def test_duplicate_json_keys_are_refused(signer: tuple[KeySigner, Trust]) -> None:
    key, trust = signer
    # The statement: a reader keeping the first "subject" would see another one.
    body = canonical_json(statement([one()]))[:-1]
    doubled = body + b',"subject":[' + canonical_json(one(OTHER)) + b"]}"
    assert verify(key.sign(doubled), trust) == "check:bad-statement"
    # The bundle itself.
    raw = key.sign(canonical_json(statement([one()])))
    assert verify(raw[:-1] + b',"mediaType":"x"}', trust) == "input:bad-bundle"


@pytest.mark.parametrize("payload", [
    b"not json at all",
    b"[1, 2, 3]",
    b'"a string"',
    canonical_json(statement("kiln.dev/tool")),
    canonical_json(statement(["kiln.dev/tool"])),
    canonical_json(statement([{"name": "x", "digest": "sha256:" + "ab" * 32}])),
    canonical_json(statement([{"name": "x", "digest": {"sha256": 5}}])),
    canonical_json(statement([one()], predicate="not an object")),
    canonical_json({"subject": [one()]}),
    b"\xff\xfe not utf-8",
])
def test_every_malformed_signed_statement_is_a_clean_refusal(
        signer: tuple[KeySigner, Trust], payload: bytes) -> None:
    key, trust = signer
    assert verify(key.sign(payload), trust) == "check:bad-statement"


def test_an_oversized_bundle_is_refused_without_reading_it_whole(
        signer: tuple[KeySigner, Trust], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    key, _trust = signer
    raw = key.sign(canonical_json(statement([one()])))
    padded = raw[:-1] + b',"x":"' + b"a" * (5 << 20) + b'"}'
    with pytest.raises(InputError) as raised:
        parse_bundle(padded, "big")
    assert raised.value.reason == "bad-bundle"
    huge = tmp_path / "huge.json"
    with open(huge, "wb") as handle:
        handle.truncate(100 << 20)  # 100 MB, sparse
    assert len(read_bundle_file(huge)) == (4 << 20) + 1
    config = tmp_path / "kiln.yaml"
    config.write_text("import:\n  bundle-size: 256\n")
    monkeypatch.setenv("KILN_CONFIG", str(config))
    with pytest.raises(InputError) as raised:
        parse_bundle(raw, "over the host's limit")
    assert raised.value.reason == "bad-bundle"
