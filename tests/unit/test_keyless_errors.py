"""Keyless signing's failures are Kiln's errors with a reason, whatever sigstore-python
raises them as (its public errors, its private clients' classes, or a plain
exception from inside its code); Kiln's own errors and defects pass through."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from kiln.errors import InputError
from provenance.signers.keyless import KeylessSigner, from_sigstore


def test_sigstores_private_client_errors_are_signing_failures() -> None:
    # Named here only to prove the point: Kiln's code imports no private module.
    from sigstore._internal.fulcio.client import FulcioClientError
    from sigstore._internal.rekor import RekorClientError

    assert from_sigstore(FulcioClientError("refused"))
    assert from_sigstore(RekorClientError(requests.HTTPError("503 from Rekor")))
    assert not from_sigstore(TypeError("a defect of Kiln's"))
    assert not from_sigstore(InputError("Kiln's own", reason="bad-usage"))


def test_a_plain_exception_raised_inside_sigstore_counts_as_its_failure() -> None:
    from pydantic import ValidationError
    from sigstore.models import ClientTrustConfig

    with pytest.raises(ValidationError) as raised:
        ClientTrustConfig.from_json('{"not": "a trust config"}')
    assert not type(raised.value).__module__.startswith("sigstore")  # pydantic's class
    assert from_sigstore(raised.value)


def test_a_trust_config_that_is_not_one_is_a_bad_signer_naming_the_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIGSTORE_ID_TOKEN", "not.a.token")
    config = tmp_path / "trust.json"
    config.write_text('{"mediaType": "nonsense"}')
    with pytest.raises(InputError) as raised:
        KeylessSigner(str(config)).sign(b"{}")
    assert raised.value.reason == "bad-signer"
    assert str(config) in raised.value.message
    assert "Traceback" not in raised.value.message
