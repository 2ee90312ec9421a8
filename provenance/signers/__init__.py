"""Signers, chosen by URI: one backend per module (securesystemslib's shape).

    file:PATH                       an ECDSA P-256 private key (PEM)
    sigstore:production|staging     keyless, through Fulcio and Rekor
    sigstore:PATH                   keyless, against a private instance's trust config
"""

from __future__ import annotations

from typing import Protocol

from kiln.errors import InputError


class Signer(Protocol):
    """Signs an in-toto statement's bytes; returns a Sigstore bundle's bytes."""

    @property
    def description(self) -> str: ...

    def sign(self, statement: bytes) -> bytes: ...


def open_signer(uri: str) -> Signer:
    """The signer a URI names."""
    scheme, colon, rest = uri.partition(":")
    if not colon or not rest:
        raise InputError(f"signer {uri!r}: write file:KEY.pem or sigstore:production|staging|"
                         "TRUST_CONFIG", reason="bad-signer")
    if scheme == "file":
        from provenance.signers.key import KeySigner

        return KeySigner.from_file(rest)
    if scheme == "sigstore":
        from provenance.signers.keyless import KeylessSigner

        return KeylessSigner(rest)
    raise InputError(f"signer {uri!r}: unknown scheme {scheme!r} (file:, sigstore:)",
                     reason="bad-signer")
