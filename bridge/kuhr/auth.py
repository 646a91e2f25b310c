"""Access tokens for KUHR: Maskinporten JWT grant (RFC 7523) and HelseID client credentials
with `private_key_jwt` (optionally DPoP-bound), cached and refreshed before they expire.

A provider is shared by every request of a process (CLI, daemon, bulk migration). Fetching a
token happens in a worker thread under one `threading.Lock`, so concurrent coroutines and
threads trigger exactly one refresh and the event loop never blocks on the token service.
Tokens and keys never reach a log or a repr.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, pkcs12
from jwcrypto import jwk, jwt

from bridge.config import AuthMethod, AuthSettings, ConfigError
from bridge.errors import BridgeError

log = logging.getLogger(__name__)

JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# Maskinporten refuses grants living longer than 120 s.
ASSERTION_LIFETIME = 120


class TokenError(BridgeError):
    """No token could be obtained; `hint` says what to fix."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint

    def __str__(self) -> str:
        text = super().__str__()
        return f"{text} (fix: {self.hint})" if self.hint else text


@dataclass(frozen=True, slots=True)
class AccessToken:
    value: str = field(repr=False)
    token_type: str
    expires_at: float
    lifetime: float
    scope: str | None = None


class TokenProvider(Protocol):
    """What the API client needs from a token source."""

    async def auth_headers(self, method: str, url: str) -> dict[str, str]:
        """Authorization (and, for DPoP, a proof) for one request."""
        ...

    def invalidate(self, token: str | None = None) -> None:
        """Forget the cached token (only if it is still `token`, when given): the 401 path."""
        ...


# --------------------------------------------------------------------------- signing keys


@dataclass(frozen=True, slots=True)
class SigningKey:
    """The client's private key, and how the issuer finds its public half (kid or x5c)."""

    key: jwk.JWK = field(repr=False)
    kid: str | None = None
    x5c: tuple[str, ...] | None = None

    def sign(self, claims: dict[str, Any], *, typ: str | None = None) -> str:
        header: dict[str, Any] = {"alg": "RS256"}
        if self.x5c:
            header["x5c"] = list(self.x5c)
        elif self.kid:
            header["kid"] = self.kid
        if typ:
            header["typ"] = typ
        token = jwt.JWT(header=header, claims=claims)
        token.make_signed_token(self.key)
        return token.serialize()

    @classmethod
    def from_jwk_dict(cls, data: dict[str, Any], kid: str | None = None) -> SigningKey:
        key = jwk.JWK(**data)
        if not key.has_private:
            raise ConfigError("the JWK holds no private key")
        return cls(key=key, kid=kid or data.get("kid"))


def _read_bytes(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from None


def load_signing_key(auth: AuthSettings) -> SigningKey:
    """The key named by the auth settings: a PEM or JWK file, or a PKCS#12 certificate."""
    if auth.pkcs12_file is not None:
        data = _read_bytes(auth.pkcs12_file, "auth.pkcs12_file")
        try:
            private, cert, chain = pkcs12.load_key_and_certificates(
                data, auth.pkcs12_password_value()
            )
        except ValueError:
            raise ConfigError(
                f"cannot open PKCS#12 file {auth.pkcs12_file}: wrong password or not PKCS#12 "
                "(set auth.pkcs12_password or auth.pkcs12_password_file)"
            ) from None
        if private is None or cert is None:
            raise ConfigError(f"PKCS#12 file {auth.pkcs12_file} holds no key and certificate")
        certs: list[x509.Certificate] = [cert, *chain]
        x5c = tuple(base64.b64encode(c.public_bytes(Encoding.DER)).decode() for c in certs)
        return SigningKey(key=jwk.JWK.from_pyca(private), kid=auth.key_id, x5c=x5c)
    if auth.key_file is not None:
        data = _read_bytes(auth.key_file, "auth.key_file")
        if data.lstrip().startswith(b"{"):
            try:
                parsed = json.loads(data)
            except ValueError:
                raise ConfigError(f"auth.key_file {auth.key_file} is not valid JSON") from None
            if "keys" in parsed:  # a JWKS with one private key
                parsed = parsed["keys"][0]
            return SigningKey.from_jwk_dict(parsed, kid=auth.key_id)
        try:
            key = jwk.JWK.from_pem(data)
        except (ValueError, TypeError):
            raise ConfigError(
                f"auth.key_file {auth.key_file} is neither a PEM private key nor a JWK"
            ) from None
        if not key.has_private:
            raise ConfigError(
                f"auth.key_file {auth.key_file} holds a public key, not a private one"
            )
        return SigningKey(key=key, kid=auth.key_id or key.get("kid"))
    raise ConfigError("no signing key configured: set auth.key_file or auth.pkcs12_file")


# --------------------------------------------------------------------------- DPoP


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class DpopProofs:
    """RFC 9449 proofs with a per-process EC key (the token is bound to this key)."""

    def __init__(self) -> None:
        self._key = jwk.JWK.generate(kty="EC", crv="P-256")
        self.nonce: str | None = None

    def proof(self, method: str, url: str, access_token: str | None = None) -> str:
        claims: dict[str, Any] = {
            "jti": str(uuid.uuid4()),
            "htm": method.upper(),
            "htu": url.split("?", 1)[0].split("#", 1)[0],
            "iat": int(time.time()),
        }
        if access_token is not None:
            claims["ath"] = _b64url(hashlib.sha256(access_token.encode()).digest())
        if self.nonce:
            claims["nonce"] = self.nonce
        header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": self._key.export_public(as_dict=True)}
        token = jwt.JWT(header=header, claims=claims)
        token.make_signed_token(self._key)
        return token.serialize()


# --------------------------------------------------------------------------- providers


class _CachingTokenProvider:
    """Cache + single-flight refresh; subclasses say how to ask for a token."""

    kind = "token"

    def __init__(
        self,
        *,
        signing_key: SigningKey,
        client_id: str,
        token_url: str,
        audience: str,
        scope: str,
        verify: bool | str = True,
        timeout: float = 10.0,
        refresh_margin: float = 30.0,
        clock: Callable[[], float] = time.time,
        transport: httpx.BaseTransport | None = None,
        attempts: int = 3,
    ) -> None:
        self._signing_key = signing_key
        self.client_id = client_id
        self.token_url = token_url
        self.audience = audience
        self.scope = scope
        self._verify = verify
        self._timeout = timeout
        self._margin = refresh_margin
        self._clock = clock
        self._transport = transport
        self._attempts = max(1, attempts)
        self._lock = threading.Lock()
        self._token: AccessToken | None = None
        self.fetch_count = 0
        self.dpop: DpopProofs | None = None

    # ---- cache

    def _fresh(self, token: AccessToken | None) -> bool:
        if token is None:
            return False
        margin = min(self._margin, token.lifetime * 0.1)
        return self._clock() < token.expires_at - margin

    def token_sync(self) -> AccessToken:
        """A valid token; blocks while one thread refreshes it for everybody."""
        token = self._token
        if self._fresh(token):
            assert token is not None
            return token
        with self._lock:
            token = self._token
            if self._fresh(token):
                assert token is not None
                return token
            token = self._fetch()
            self._token = token
            return token

    async def token(self) -> AccessToken:
        token = self._token
        if self._fresh(token):
            assert token is not None
            return token
        return await asyncio.to_thread(self.token_sync)

    def invalidate(self, token: str | None = None) -> None:
        with self._lock:
            if token is None or (self._token is not None and self._token.value == token):
                self._token = None

    async def auth_headers(self, method: str, url: str) -> dict[str, str]:
        token = await self.token()
        headers = {"Authorization": f"{token.token_type} {token.value}"}
        if self.dpop is not None and token.token_type.lower() == "dpop":
            headers["DPoP"] = self.dpop.proof(method, url, token.value)
        return headers

    # ---- fetching

    def _request_data(self) -> dict[str, str]:
        raise NotImplementedError

    def _post(self, client: httpx.Client, data: dict[str, str]) -> httpx.Response:
        headers = {"Accept": "application/json"}
        if self.dpop is not None:
            headers["DPoP"] = self.dpop.proof("POST", self.token_url)
        return client.post(self.token_url, data=data, headers=headers)

    def _fetch(self) -> AccessToken:
        self.fetch_count += 1
        last_error: str = ""
        with httpx.Client(
            verify=self._verify, timeout=self._timeout, transport=self._transport
        ) as client:
            for attempt in range(1, self._attempts + 1):
                try:
                    response = self._post(client, self._request_data())
                    if self._needs_dpop_nonce(response):
                        response = self._post(client, self._request_data())
                except httpx.TransportError as exc:
                    last_error = f"cannot reach {self.token_url}: {type(exc).__name__}"
                    log.warning(
                        "%s token request failed (attempt %d): %s",
                        self.kind,
                        attempt,
                        type(exc).__name__,
                    )
                    self._pause_before_retry(attempt)
                    continue
                log.info(
                    "%s token POST %s -> %d (attempt %d)",
                    self.kind,
                    httpx.URL(self.token_url).path,
                    response.status_code,
                    attempt,
                )
                if response.status_code >= 500:
                    last_error = f"{self.token_url} answered HTTP {response.status_code}"
                    self._pause_before_retry(attempt)
                    continue
                return self._parse(response)
        raise TokenError(last_error, hint=f"check network access to {self.token_url}")

    def _pause_before_retry(self, attempt: int) -> None:
        if attempt < self._attempts:
            time.sleep(min(2.0, 0.2 * 2**attempt))

    def _needs_dpop_nonce(self, response: httpx.Response) -> bool:
        if self.dpop is None or response.status_code != 400:
            return False
        nonce = response.headers.get("DPoP-Nonce")
        if nonce and _error_of(response)[0] == "use_dpop_nonce":
            self.dpop.nonce = nonce
            return True
        return False

    def _parse(self, response: httpx.Response) -> AccessToken:
        if response.status_code != 200:
            error, description = _error_of(response)
            raise TokenError(
                f"{self.kind} refused the token request: HTTP {response.status_code} "
                f"{error or ''} {description or ''}".rstrip(),
                hint=self._hint(error),
            )
        try:
            body = response.json()
            value = body["access_token"]
            lifetime = float(body.get("expires_in", 60))
        except (ValueError, KeyError, TypeError):
            raise TokenError(
                f"{self.kind} answered without an access_token", hint="check auth.token_url"
            ) from None
        return AccessToken(
            value=value,
            token_type=str(body.get("token_type") or "Bearer"),
            expires_at=self._clock() + lifetime,
            lifetime=lifetime,
            scope=body.get("scope"),
        )

    def _hint(self, error: str | None) -> str:
        if error == "invalid_scope":
            return f"ask for scope {self.scope!r} to be granted to client {self.client_id!r}"
        if error in ("invalid_client", "unauthorized_client"):
            return (
                "check auth.client_id and that the signing key (auth.key_id / certificate) "
                "is registered for this client"
            )
        if error == "invalid_grant":
            return "check auth.audience, the machine clock, and (for delegation) consumer_org"
        return "check the auth section of the configuration"

    def _assertion_times(self) -> dict[str, Any]:
        now = int(time.time())
        return {"iat": now, "nbf": now, "exp": now + ASSERTION_LIFETIME, "jti": str(uuid.uuid4())}


def _error_of(response: httpx.Response) -> tuple[str | None, str | None]:
    try:
        body = response.json()
    except ValueError:
        return None, None
    if not isinstance(body, dict):
        return None, None
    return body.get("error"), body.get("error_description")


class MaskinportenTokenProvider(_CachingTokenProvider):
    """RFC 7523 JWT grant; `consumer_org` asks for a token on behalf of a clinic."""

    kind = "Maskinporten"

    def __init__(self, *, consumer_org: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.consumer_org = consumer_org

    def _request_data(self) -> dict[str, str]:
        claims = {
            "iss": self.client_id,
            "aud": self.audience,
            "scope": self.scope,
            **self._assertion_times(),
        }
        if self.consumer_org:
            claims["consumer_org"] = self.consumer_org
        return {"grant_type": JWT_BEARER_GRANT, "assertion": self._signing_key.sign(claims)}


class HelseIdTokenProvider(_CachingTokenProvider):
    """Client credentials with a `private_key_jwt` client assertion; DPoP when asked."""

    kind = "HelseID"

    def __init__(self, *, dpop: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if dpop:
            self.dpop = DpopProofs()

    def _request_data(self) -> dict[str, str]:
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": self.audience,
            **self._assertion_times(),
        }
        return {
            "grant_type": "client_credentials",
            "client_id": self.client_id,
            "client_assertion_type": CLIENT_ASSERTION_TYPE,
            "client_assertion": self._signing_key.sign(claims, typ="client-authentication+jwt"),
            "scope": self.scope,
        }


def make_token_provider(
    method: AuthMethod,
    *,
    signing_key: SigningKey,
    client_id: str,
    token_url: str,
    audience: str,
    scope: str,
    consumer_org: str | None = None,
    dpop: bool = False,
    **kwargs: Any,
) -> MaskinportenTokenProvider | HelseIdTokenProvider:
    common = dict(
        signing_key=signing_key,
        client_id=client_id,
        token_url=token_url,
        audience=audience,
        scope=scope,
        **kwargs,
    )
    if method is AuthMethod.HELSEID:
        return HelseIdTokenProvider(dpop=dpop, **common)
    return MaskinportenTokenProvider(consumer_org=consumer_org, **common)
