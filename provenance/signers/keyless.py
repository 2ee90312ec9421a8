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
    """Signs with Sigstore: an identity token, Fulcio and Rekor."""

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
                text = Path(self.instance).read_text()
            except OSError as exc:
                raise InputError(f"cannot read the trust config {self.instance}:"
                                 f" {exc.strerror}", reason="bad-signer") from exc
            try:
                config = ClientTrustConfig.from_json(text)
            except Exception as exc:  # pydantic's ValidationError, JSON's, sigstore's
                if not from_sigstore(exc):
                    raise
                first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise InputError(f"{self.instance} is not a Sigstore client trust config:"
                                 f" {first}", reason="bad-signer") from exc
        return SigningContext.from_trust_config(config)

    def sign(self, statement: bytes) -> bytes:
        from sigstore.dsse import Statement
        from sigstore.oidc import IdentityToken, detect_credential

        try:
            raw_token = os.environ.get("SIGSTORE_ID_TOKEN") or detect_credential()
            if not raw_token:
                raise InputError("keyless signing needs an OIDC token: set SIGSTORE_ID_TOKEN",
                                 reason="no-identity-token")
            with self._context().signer(IdentityToken(raw_token)) as signer:
                bundle = signer.sign_dsse(Statement(statement))
        except Exception as exc:
            if not from_sigstore(exc):
                raise  # Kiln's own error, or a defect: not a signing failure
            detail = str(exc) or type(exc).__name__
            raise KilnError(f"sigstore ({self.instance}) could not sign: {detail}",
                            reason="signing-failed", temporary=_service_down(exc)) from exc
        encoded: bytes = bundle.to_json().encode()
        return encoded


def from_sigstore(exc: BaseException) -> bool:
    """Whether sigstore-python (or the HTTP library under it) raised `exc`.

    Its public errors derive from `sigstore.errors.Error`, but its Fulcio and Rekor
    clients raise classes of their private modules (`FulcioClientError`,
    `RekorClientError`, `ExpiredCertificate`, derived from Exception alone), and
    `ExpiredIdentity` and plain ValueErrors come from its code too. Naming the
    private classes meant importing private modules, which any release may move;
    where a class or a raise comes from is stable."""
    import requests
    import sigstore

    if isinstance(exc, requests.RequestException):
        return True
    if type(exc).__module__.split(".", maxsplit=1)[0] == "sigstore":
        return True
    package = str(Path(sigstore.__file__).parent) + os.sep
    frame = exc.__traceback__
    while frame is not None:
        if frame.tb_frame.f_code.co_filename.startswith(package):
            return True  # raised inside sigstore-python's code
        frame = frame.tb_next
    return False


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
