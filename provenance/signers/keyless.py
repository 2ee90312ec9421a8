"""`sigstore:...`: keyless signing through sigstore-python (Fulcio certificate, Rekor
entry). The OIDC identity token comes from `$SIGSTORE_ID_TOKEN`, else from the
ambient credential sigstore-python detects (CI providers)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from kiln.errors import InputError, KilnError

if TYPE_CHECKING:
    from sigstore.sign import SigningContext


class KeylessSigner:
    def __init__(self, instance: str) -> None:
        self.instance = instance
        self.description = f"sigstore ({instance})"

    def _context(self) -> SigningContext:
        from sigstore.models import ClientTrustConfig
        from sigstore.sign import SigningContext

        if self.instance == "production":
            config = ClientTrustConfig.production()
        elif self.instance == "staging":
            config = ClientTrustConfig.staging()
        else:
            try:
                config = ClientTrustConfig.from_json(Path(self.instance).read_text())
            except OSError as exc:
                raise InputError(f"cannot read the trust config {self.instance}:"
                                 f" {exc.strerror}", reason="bad-signer") from exc
        return SigningContext.from_trust_config(config)

    def sign(self, statement: bytes) -> bytes:
        import requests
        from sigstore._internal.fulcio.client import ExpiredCertificate, FulcioClientError
        from sigstore._internal.rekor import RekorClientError
        from sigstore.dsse import Statement
        from sigstore.errors import Error as SigstoreError
        from sigstore.oidc import ExpiredIdentity, IdentityToken, detect_credential

        # sigstore-python raises its own errors and, from its private clients, others.
        failures = (SigstoreError, FulcioClientError, RekorClientError, ExpiredIdentity,
                    ExpiredCertificate, requests.RequestException)

        try:
            raw_token = os.environ.get("SIGSTORE_ID_TOKEN") or detect_credential()
            if not raw_token:
                raise InputError("keyless signing needs an OIDC token: set SIGSTORE_ID_TOKEN",
                                 reason="no-identity-token")
            with self._context().signer(IdentityToken(raw_token)) as signer:
                bundle = signer.sign_dsse(Statement(statement))
        except failures as exc:
            detail = str(exc) or type(exc).__name__
            raise KilnError(f"sigstore ({self.instance}) could not sign: {detail}",
                            reason="signing-failed", temporary=_service_down(exc)) from exc
        encoded: bytes = bundle.to_json().encode()
        return encoded


def _service_down(exc: BaseException) -> bool:
    """Whether Fulcio, Rekor or the OIDC issuer was unreachable or failing (worth
    retrying), as opposed to refusing what was asked (a bad token stays bad)."""
    import requests

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, requests.ConnectionError | requests.Timeout):
            return True
        response = getattr(seen, "response", None)
        status = getattr(response, "status_code", None)
        if isinstance(status, int) and (status >= 500 or status == 429):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
