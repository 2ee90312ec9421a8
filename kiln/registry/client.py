"""A client for the OCI distribution API, written for Kiln's needs.

Why not oras-py: it has no cross-repository mount, no referrers (API or
tag-schema fallback), reads blobs into files without checking their digest, and
retries only around authentication; Kiln needs all four, and a client it can
count requests in. This one speaks HTTP/1.1 over one kept-alive connection per
registry (http.client), and:

- retries with exponential backoff on 5xx, 429 and dropped connections, for
  every request (uploads are restarted from their first byte);
- answers Basic and Bearer challenges (the token endpoint is asked with the
  scope the registry named, and its token reused for that repository);
- counts requests and bytes, so tests and benchmarks can say what travelled.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, BinaryIO, TypeVar

from kiln.canonical import Digest
from kiln.errors import InputError, KilnError, NotFound
from kiln.registry.config import Credentials, RegistryConfig, credentials_for
from kiln.registry.reference import Reference

if TYPE_CHECKING:
    import http.client

MANIFEST_TYPES = ("application/vnd.oci.image.manifest.v1+json",
                  "application/vnd.oci.image.index.v1+json",
                  "application/vnd.docker.distribution.manifest.v2+json",
                  "application/vnd.docker.distribution.manifest.list.v2+json")
_MAX_MANIFEST = 4 << 20
_RETRIED_STATUS = {429, 500, 502, 503, 504}
_CHUNK = 1 << 20
T = TypeVar("T")


class RegistryError(KilnError):
    """A registry refused, failed, or could not be reached."""

    default_reason = "registry-error"


@dataclass
class Traffic:
    """What a client sent and received: requests by kind, and body bytes."""

    requests: Counter[str] = field(default_factory=Counter)
    bytes_sent: int = 0
    bytes_received: int = 0
    retries: int = 0

    def total(self) -> int:
        return sum(self.requests.values())


@dataclass(frozen=True)
class Body:
    """A request body that can be sent again from its first byte (for retries)."""

    size: int
    open: Callable[[], BinaryIO]


class Response:
    """A response whose body is read by the caller (streamed for blobs)."""

    def __init__(self, raw: http.client.HTTPResponse, traffic: Traffic) -> None:
        self._raw = raw
        self._traffic = traffic
        self.status = raw.status
        self.headers = raw.headers

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size) if size >= 0 else self._raw.read()
        self._traffic.bytes_received += len(data)
        # http.client answers a body cut short with b"" (and IncompleteRead only when
        # reading all at once); a broken-off body must be retried, not taken as whole.
        if not data and size != 0 and self._raw.length:
            import http.client

            raise http.client.IncompleteRead(b"", self._raw.length)
        return data

    def read_all(self, limit: int, what: str) -> bytes:
        length = self.headers.get("Content-Length")
        if length is not None and int(length) > limit:
            raise RegistryError(f"{what} is {length} bytes, more than the {limit} allowed",
                                reason="registry-response-too-large")
        data = b""
        while len(data) <= limit and (chunk := self.read(limit + 1 - len(data))):
            data += chunk
        if len(data) > limit:
            raise RegistryError(f"{what} is more than {limit} bytes",
                                reason="registry-response-too-large")
        return data


class _Retry(Exception):
    """A failure worth another attempt."""


class RegistryClient:
    """One registry host: requests with authentication, retries and counting."""

    def __init__(self, host: str, *, plain_http: bool = False,
                 credentials: Credentials | None = None, attempts: int = 6,
                 backoff: float = 0.1, timeout: float = 60) -> None:
        self.host = host
        self.scheme = "http" if plain_http else "https"
        self.credentials = credentials
        self.attempts = attempts
        self.backoff = backoff
        self.timeout = timeout
        self.traffic = Traffic()
        self._connection: http.client.HTTPConnection | None = None
        self._basic = False
        self._tokens: dict[str, str] = {}  # repository (+ access) -> bearer token
        self.referrers_api: bool | None = None  # learnt on first use (kiln.registry.referrers)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    # The verbs Kiln uses.

    def blob_exists(self, repository: str, digest: Digest) -> bool:
        response = self.request("HEAD", f"/v2/{repository}/blobs/{digest}", kind="HEAD blob",
                                ok=(200, 404))
        return response.status == 200

    def push_blob(self, repository: str, digest: Digest, body: Body,
                  mount_from: str | None = None) -> str:
        """Make the blob present in `repository`; returns how: present, mounted, uploaded."""
        if self.blob_exists(repository, digest):
            return "present"
        start = f"/v2/{repository}/blobs/uploads/"
        if mount_from and mount_from != repository:
            query = urllib.parse.urlencode({"mount": digest, "from": mount_from})
            response = self.request("POST", f"{start}?{query}", kind="POST mount",
                                    ok=(201, 202))
            if response.status == 201:
                return "mounted"
        else:
            response = self.request("POST", start, kind="POST upload", ok=(202,))
        location = self._location(response)
        separator = "&" if "?" in location else "?"
        target = f"{location}{separator}{urllib.parse.urlencode({'digest': digest})}"
        try:
            self.request("PUT", target, body=body, kind="PUT blob", ok=(201,),
                         headers={"Content-Type": "application/octet-stream"})
        except RegistryError:
            # The upload may have landed with its answer lost; the registry knows.
            if self.blob_exists(repository, digest):
                return "uploaded"
            raise
        return "uploaded"

    def open_blob(self, repository: str, digest: Digest) -> Response:
        """A streamed blob; the caller checks its digest as it reads."""
        return self.request("GET", f"/v2/{repository}/blobs/{digest}", kind="GET blob",
                            ok=(200,))

    def get_manifest(self, reference: Reference) -> tuple[bytes, str, Digest]:
        """The manifest's bytes, media type and digest (checked against a digest reference)."""
        def fetch() -> tuple[bytes, Response]:
            response = self.request("GET", f"/v2/{reference.repository}/manifests/"
                                    f"{reference.target}", kind="GET manifest", ok=(200,),
                                    headers={"Accept": ", ".join(MANIFEST_TYPES)})
            return response.read_all(_MAX_MANIFEST, f"manifest {reference}"), response

        data, response = self.retrying(fetch)
        digest = Digest("sha256:" + hashlib.sha256(data).hexdigest())
        if reference.digest and digest != reference.digest:
            raise RegistryError(f"manifest {reference} has digest {digest}",
                                reason="manifest-digest-mismatch")
        media_type = _media_type(data, response.headers.get("Content-Type", ""))
        return data, media_type, digest

    def manifest_exists(self, repository: str, target: str) -> Digest | None:
        response = self.request("HEAD", f"/v2/{repository}/manifests/{target}",
                                kind="HEAD manifest", ok=(200, 404),
                                headers={"Accept": ", ".join(MANIFEST_TYPES)})
        found = response.headers.get("Docker-Content-Digest")
        return Digest(found) if response.status == 200 and found else None

    def put_manifest(self, repository: str, target: str, data: bytes,
                     media_type: str) -> Response:
        return self.request("PUT", f"/v2/{repository}/manifests/{target}", kind="PUT manifest",
                            ok=(201,), body=bytes_body(data),
                            headers={"Content-Type": media_type})

    def get_json(self, path: str, *, kind: str, ok: tuple[int, ...] = (200,)) -> Response:
        return self.request("GET", path, kind=kind, ok=ok)

    def retrying(self, operation: Callable[[], T]) -> T:
        """Run `operation`, again from the start when a response body breaks off."""
        import http.client  # here, not at import: a command that asks nothing is quicker

        attempt = 0
        while True:
            try:
                return operation()
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                attempt += 1
                if attempt >= self.attempts:
                    raise RegistryError(f"{self.host}: {_describe(exc)} (gave up after"
                                        f" {attempt} attempts)",
                                        reason="registry-unreachable", temporary=True) from exc
                self.traffic.retries += 1
                time.sleep(self.backoff * 2 ** (attempt - 1))

    # The machinery.

    def request(self, method: str, path: str, *, kind: str, ok: tuple[int, ...],
                body: Body | None = None, headers: dict[str, str] | None = None) -> Response:
        """Send one request, authenticating and retrying as needed; raise unless `ok`."""
        url = self._url(path)
        authenticated = False
        attempt = 0
        while True:
            try:
                response = self._send(method, url, body, headers or {}, kind)
            except _Retry as failure:
                attempt += 1
                if attempt >= self.attempts:
                    raise RegistryError(f"{method} {self._where(url)}: {failure} (gave up after"
                                        f" {attempt} attempts)", reason="registry-unreachable",
                                        temporary=True) from None
                self.traffic.retries += 1
                time.sleep(self.backoff * 2 ** (attempt - 1))
                continue
            if response.status == 401 and not authenticated:
                response.read()
                self._authenticate(response, url)
                authenticated = True
                continue
            if response.status in ok:
                return response
            raise self._failure(method, url, response)

    def _send(self, method: str, url: str, body: Body | None, headers: dict[str, str],
              kind: str) -> Response:
        import http.client
        import socket
        import ssl

        headers = {**headers, **self._authorization(url)}
        if body is not None:
            headers["Content-Length"] = str(body.size)
        elif method in ("PUT", "POST", "PATCH"):
            headers["Content-Length"] = "0"
        connection = self._connect()
        self.traffic.requests[kind] += 1
        try:
            connection.putrequest(method, url, skip_accept_encoding=True)
            for key, value in headers.items():
                connection.putheader(key, value)
            connection.endheaders()
            if body is not None:
                with body.open() as source:
                    while chunk := source.read(_CHUNK):
                        connection.send(chunk)
                        self.traffic.bytes_sent += len(chunk)
            raw = connection.getresponse()
        except ssl.SSLCertVerificationError as exc:
            # Another attempt would meet the same certificate.
            self.close()
            raise RegistryError(f"{self.host}: its TLS certificate does not verify"
                                f" ({exc.verify_message}); SSL_CERT_FILE names other CAs",
                                reason="registry-tls") from exc
        except socket.gaierror as exc:
            self.close()
            if exc.errno == socket.EAI_AGAIN:  # the resolver's own failure: it may pass
                raise _Retry(_describe(exc)) from exc
            # A name that does not resolve will not resolve on the next attempt either.
            raise RegistryError(f"{method} {self._where(url)}: the host {self.host!r} is not"
                                f" known ({exc.strerror}); check registries.yaml or the"
                                " reference", reason="registry-unknown-host") from exc
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise _Retry(_describe(exc)) from exc
        if raw.status in _RETRIED_STATUS:
            detail = _error_detail(raw.read(4096))
            self.close()
            raise _Retry(f"{raw.status} {raw.reason}{detail}")
        if method == "HEAD" or raw.status in (201, 202, 204):
            raw.read()
        return Response(raw, self.traffic)

    def _where(self, url: str) -> str:
        """The request's whole URL, host and port included, for messages."""
        return url if url.startswith(("http://", "https://")) else \
            f"{self.scheme}://{self.host}{url}"

    def _connect(self) -> http.client.HTTPConnection:
        import http.client

        if self._connection is None:
            host, _, port = self.host.rpartition(":") if self.host.count(":") == 1 else (
                self.host, "", "")
            connection_class = (http.client.HTTPConnection if self.scheme == "http"
                                else http.client.HTTPSConnection)
            self._connection = connection_class(host or self.host, int(port) if port else None,
                                                timeout=self.timeout)
        return self._connection

    def _url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            parsed = urllib.parse.urlsplit(path)
            if parsed.netloc != self.host:
                raise RegistryError(f"{self.host} redirected an upload to {parsed.netloc}",
                                    reason="registry-protocol")
            return urllib.parse.urlunsplit(("", "", parsed.path, parsed.query, ""))
        return path

    def _location(self, response: Response) -> str:
        location = response.headers.get("Location")
        if not location:
            raise RegistryError(f"{self.host} started an upload without a Location",
                                reason="registry-protocol")
        return self._url(location)

    # Authentication.

    def _authorization(self, url: str) -> dict[str, str]:
        token = self._tokens.get(_scope_key(url))
        if token:
            return {"Authorization": f"Bearer {token}"}
        if self._basic and self.credentials:
            pair = f"{self.credentials.username}:{self.credentials.password}"
            return {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode()}
        return {}

    def _authenticate(self, response: Response, url: str) -> None:
        challenge = response.headers.get("WWW-Authenticate", "")
        scheme, _, params_text = challenge.partition(" ")
        params = dict(re.findall(r'(\w+)="([^"]*)"', params_text))
        if scheme.lower() == "basic":
            if self.credentials is None:
                raise RegistryError(f"{self.host} needs a user and password; none are in the"
                                    " auth file ($REGISTRY_AUTH_FILE)",
                                    reason="registry-unauthorized")
            self._basic = True
            return
        if scheme.lower() == "bearer" and "realm" in params:
            self._tokens[_scope_key(url)] = self._fetch_token(params)
            return
        raise RegistryError(f"{self.host} asks for authentication Kiln does not speak:"
                            f" {challenge!r}", reason="registry-unauthorized")

    def _fetch_token(self, params: dict[str, str]) -> str:
        query: dict[str, str] = {key: params[key] for key in ("service", "scope")
                                 if key in params}
        realm = urllib.parse.urlsplit(params["realm"])
        if realm.scheme not in ("http", "https") or not realm.netloc:
            raise RegistryError(f"{self.host} names a token realm that is not a URL:"
                                f" {params['realm']!r}", reason="registry-unauthorized")
        token_client = RegistryClient(realm.netloc, plain_http=realm.scheme == "http",
                                      attempts=self.attempts, backoff=self.backoff,
                                      timeout=self.timeout)
        token_client.traffic = self.traffic
        headers = {}
        if self.credentials:
            pair = f"{self.credentials.username}:{self.credentials.password}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        path = realm.path + "?" + urllib.parse.urlencode(query)
        try:
            response = token_client.request("GET", path, kind="GET token", ok=(200,),
                                            headers=headers)
            answer = json.loads(response.read_all(1 << 20, "token"))
        except RegistryError as exc:
            raise RegistryError(f"the token server {realm.netloc} refused: {exc.message}",
                                reason="registry-unauthorized") from exc
        except ValueError as exc:
            raise RegistryError(f"the token server {realm.netloc} answered with no JSON",
                                reason="registry-unauthorized") from exc
        finally:
            token_client.close()
        token = answer.get("token") or answer.get("access_token")
        if not isinstance(token, str):
            raise RegistryError(f"the token server {realm.netloc} gave no token",
                                reason="registry-unauthorized")
        return token

    def _failure(self, method: str, url: str, response: Response) -> KilnError:
        detail = _error_detail(response.read(4096))
        message = f"{method} {self.host}{url.split('?', maxsplit=1)[0]}: {response.status}{detail}"
        if response.status == 401:
            return RegistryError(message, reason="registry-unauthorized")
        if response.status == 403:
            return RegistryError(message, reason="registry-forbidden")
        if response.status == 404:
            return NotFound(message, reason="registry-not-found")
        if 400 <= response.status < 500:
            return InputError(message, reason="registry-refused")
        return RegistryError(message)


def _scope_key(url: str) -> str:
    """Tokens are per repository (the path's part before /blobs/, /manifests/ ...)."""
    match = re.match(r"/v2/(.+?)/(?:blobs|manifests|tags|referrers)/", url)
    return match.group(1) if match else url


def bytes_body(data: bytes) -> Body:
    """A body held in memory."""
    return Body(len(data), lambda: io.BytesIO(data))


def _media_type(data: bytes, header: str) -> str:
    try:
        declared = json.loads(data).get("mediaType")
    except (ValueError, AttributeError):
        declared = None
    return declared if isinstance(declared, str) else header.split(";", maxsplit=1)[0].strip()


def _error_detail(body: bytes) -> str:
    try:
        errors = json.loads(body).get("errors") or []
        return ": " + "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors)
    except (ValueError, AttributeError, TypeError):
        return ""


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):  # socket.timeout, since Python 3.10
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return f"{type(exc).__name__}: {exc}".rstrip(": ")


def iter_chunks(response: Response) -> Iterator[bytes]:
    while chunk := response.read(_CHUNK):
        yield chunk


def client_for(host: str, config: RegistryConfig) -> RegistryClient:
    """A client for `host`, with its credentials from the auth file."""
    return RegistryClient(host, plain_http=config.uses_http(host),
                          credentials=credentials_for(host))
