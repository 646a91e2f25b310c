"""Access tokens for KUHR: Maskinporten JWT grant (RFC 7523) and HelseID client credentials
with `private_key_jwt`, DPoP-bound (and, for a virksomhet, its organisation numbers in
`assertion_details`), cached and refreshed before they expire. The personal HelseID login
(`bridge.kuhr.login`) and HelseID's test token service (`bridge.kuhr.testtoken`) build on the
same provider.

A provider is shared by every request of a process (CLI, daemon, bulk migration). Fetching a
token happens in a worker thread under one `threading.Lock`, so concurrent coroutines and
threads trigger exactly one refresh and the event loop never blocks on the token service.
Key rotation: with a second key configured (`auth.next_key_file`) the new key is tried first
and the current one used while the issuer still refuses the new. Tokens and keys never reach a
log or a repr.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import httpx
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, pkcs12
from jwcrypto import jwk, jwt

from bridge.config import AuthMethod, AuthSettings, ConfigError
from bridge.errors import BridgeError
from bridge.kuhr.dpop import DpopProofs, nonce_challenge

log = logging.getLogger(__name__)

JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# Maskinporten refuses grants living longer than 120 s.
ASSERTION_LIFETIME = 120


class TokenError(BridgeError):
    """No token could be obtained; `hint` says what to fix, `error` is the issuer's OAuth
    error code (if it answered one), `login_due` that only a new `bkm-bridge login` helps."""

    def __init__(
        self, message: str, hint: str = "", *, error: str | None = None, login_due: bool = False
    ) -> None:
        super().__init__(message)
        self.hint = hint
        self.error = error
        self.login_due = login_due

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
    """The client's private key, how the issuer finds its public half (kid or x5c), and when
    it stops being valid (a certificate's notAfter, or the `exp` that `bkm-bridge keys new`
    writes into a JWK), so that an admin is warned in time."""

    key: jwk.JWK = field(repr=False)
    kid: str | None = None
    x5c: tuple[str, ...] | None = None
    expires_at: datetime | None = None
    source: str = ""  # where it came from, for config check: "auth.key_file /etc/…"

    @property
    def label(self) -> str:
        return self.kid or (f"certificate {self.source}" if self.x5c else self.source or "key")

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
    def from_jwk_dict(
        cls, data: dict[str, Any], kid: str | None = None, source: str = ""
    ) -> SigningKey:
        key = jwk.JWK(**{k: v for k, v in data.items() if k != "exp"})
        if not key.has_private:
            raise ConfigError("the JWK holds no private key")
        exp = data.get("exp")
        expires = datetime.fromtimestamp(exp, UTC) if isinstance(exp, int | float) else None
        return cls(key=key, kid=kid or data.get("kid"), expires_at=expires, source=source)


def _read_bytes(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from None


def load_key_file(path: Path, key_id: str | None = None, what: str = "auth.key_file") -> SigningKey:
    """A private key from a PEM file, a JWK or a JWKS holding one private key."""
    data = _read_bytes(path, what)
    source = f"{what} {path}"
    if data.lstrip().startswith(b"{"):
        try:
            parsed = json.loads(data)
        except ValueError:
            raise ConfigError(f"{what} {path} is not valid JSON") from None
        if "keys" in parsed:  # a JWKS with one private key
            parsed = parsed["keys"][0]
        return SigningKey.from_jwk_dict(parsed, kid=key_id, source=source)
    try:
        key = jwk.JWK.from_pem(data)
    except (ValueError, TypeError):
        raise ConfigError(f"{what} {path} is neither a PEM private key nor a JWK") from None
    if not key.has_private:
        raise ConfigError(f"{what} {path} holds a public key, not a private one")
    return SigningKey(key=key, kid=key_id or key.get("kid"), source=source)


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
        return SigningKey(
            key=jwk.JWK.from_pyca(private),
            kid=auth.key_id,
            x5c=x5c,
            expires_at=cert.not_valid_after_utc,
            source=f"auth.pkcs12_file {auth.pkcs12_file}",
        )
    if auth.key_file is not None:
        return load_key_file(auth.key_file, auth.key_id)
    raise ConfigError("no signing key configured: set auth.key_file or auth.pkcs12_file")


def load_next_signing_key(auth: AuthSettings) -> SigningKey | None:
    """The key being rolled in (`auth.next_key_file`), if any."""
    if auth.next_key_file is None:
        return None
    return load_key_file(auth.next_key_file, auth.next_key_id, "auth.next_key_file")


# --------------------------------------------------------------------------- providers


class _CachingTokenProvider:
    """Cache + single-flight refresh; subclasses say how to ask for a token."""

    kind = "token"

    def __init__(
        self,
        *,
        signing_key: SigningKey,
        next_signing_key: SigningKey | None = None,
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
        self._next_key = next_signing_key
        self._next_refused_at: float | None = None
        self.key_in_use: SigningKey | None = None  # the key the issuer last accepted
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

    def accept_nonce(self, url: str, response: httpx.Response) -> bool:
        """Remember a nonce the API asks for (`use_dpop_nonce`); True: repeat the request."""
        nonce = nonce_challenge(response) if self.dpop is not None else None
        if nonce is None:
            return False
        assert self.dpop is not None
        fresh = self.dpop.nonce_for(url) != nonce
        self.dpop.remember_nonce(url, nonce, whole_origin=True)
        return fresh

    # ---- signing keys (rotation)

    NEXT_KEY_RETRY_SECONDS = 900.0

    def _keys_to_try(self) -> list[SigningKey]:
        """The new key first while it may be registered by now, then the current one."""
        if self._next_key is None:
            return [self._signing_key]
        refused = self._next_refused_at
        if refused is not None and time.monotonic() - refused < self.NEXT_KEY_RETRY_SECONDS:
            return [self._signing_key]
        return [self._next_key, self._signing_key]

    def current_key(self) -> SigningKey:
        """The key to sign with now: the one last accepted, else the preferred one."""
        return self.key_in_use or self._keys_to_try()[0]

    @property
    def signing_keys(self) -> list[SigningKey]:
        return [k for k in (self._signing_key, self._next_key) if k is not None]

    @property
    def next_key_state(self) -> str | None:
        """None without a next key; else "accepted", "refused" or "untried"."""
        if self._next_key is None:
            return None
        if self.key_in_use is self._next_key:
            return "accepted"
        return "refused" if self._next_refused_at is not None else "untried"

    # ---- fetching

    def _request_data(self, key: SigningKey) -> dict[str, str]:
        raise NotImplementedError

    def _post(self, client: httpx.Client, data: dict[str, str]) -> httpx.Response:
        headers = {"Accept": "application/json"}
        if self.dpop is not None:
            headers["DPoP"] = self.dpop.proof("POST", self.token_url)
        return client.post(self.token_url, data=data, headers=headers)

    def http_client(self) -> httpx.Client:
        """A client for the issuer (its TLS verification, timeout and transport)."""
        return httpx.Client(verify=self._verify, timeout=self._timeout, transport=self._transport)

    def _fetch(self) -> AccessToken:
        self.fetch_count += 1
        keys = self._keys_to_try()
        for index, key in enumerate(keys):
            try:
                token = self._fetch_with(key)
            except TokenError as exc:
                last = index == len(keys) - 1
                if last or exc.error not in ("invalid_client", "unauthorized_client"):
                    raise
                self._next_refused_at = time.monotonic()
                log.warning(
                    "%s refused the new key %s (not registered yet?); using the current key %s",
                    self.kind,
                    key.label,
                    keys[-1].label,
                )
                continue
            if key is self._next_key:
                self._next_refused_at = None
            self.key_in_use = key
            return token
        raise AssertionError("unreachable")  # pragma: no cover

    def _fetch_with(self, key: SigningKey) -> AccessToken:
        last_error: str = ""
        with self.http_client() as client:
            for attempt in range(1, self._attempts + 1):
                try:
                    response = self._post(client, self._request_data(key))
                    if self._needs_dpop_nonce(response):
                        response = self._post(client, self._request_data(key))
                except httpx.TransportError as exc:
                    last_error = f"cannot reach {self.token_url}: {type(exc).__name__}"
                    log.info(  # the caller's one WARNING line names it with the next try
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
        nonce = nonce_challenge(response) if self.dpop is not None else None
        if nonce is None:
            return False
        assert self.dpop is not None
        self.dpop.remember_nonce(self.token_url, nonce)
        return True

    def refused(self, response: httpx.Response) -> TokenError:
        """The TokenError for an issuer's refusal (its OAuth error and what to fix)."""
        error, description = _error_of(response)
        return TokenError(
            f"{self.kind} refused the token request: HTTP {response.status_code} "
            f"{error or ''} {description or ''}".rstrip(),
            hint=self._hint(error),
            error=error,
        )

    def _parse(self, response: httpx.Response) -> AccessToken:
        if response.status_code != 200:
            raise self.refused(response)
        try:
            body = response.json()
            value = body["access_token"]
            lifetime = float(body.get("expires_in", 60))
        except (ValueError, KeyError, TypeError):
            raise TokenError(
                f"{self.kind} answered without an access_token", hint="check auth.token_url"
            ) from None
        self._answered(body)
        return AccessToken(
            value=value,
            token_type=str(body.get("token_type") or "Bearer"),
            expires_at=self._clock() + lifetime,
            lifetime=lifetime,
            scope=body.get("scope"),
        )

    def _answered(self, body: dict[str, Any]) -> None:
        """A hook for what else a token answer carries (a login's new refresh token)."""

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
        if error in ("invalid_dpop_proof", "use_dpop_nonce"):
            return "HelseID needs DPoP-bound tokens: leave auth.dpop on (the default)"
        if error == "invalid_request":
            return "check the organisation numbers (auth.tenancy, parent_orgnr, child_orgnr)"
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

    def _request_data(self, key: SigningKey) -> dict[str, str]:
        claims = {
            "iss": self.client_id,
            "aud": self.audience,
            "scope": self.scope,
            **self._assertion_times(),
        }
        if self.consumer_org:
            claims["consumer_org"] = self.consumer_org
        return {"grant_type": JWT_BEARER_GRANT, "assertion": key.sign(claims)}


# HelseID for virksomheter: how an organisation number is named in `assertion_details`.
SINGLE_TENANT_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.101"
MULTI_TENANT_SYSTEM = "urn:oid:1.0.6523"


def assertion_details(
    tenancy: str, parent_orgnr: str | None, child_orgnr: str | None
) -> dict[str, Any] | None:
    """The `assertion_details` claim for the organisation numbers the token shall carry:
    single-tenant, the client's own underenhet (its parent HelseID knows); multi-tenant (an EPJ
    supplier's client), `NO:ORGNR:<parent>[:<child>]`. None when nothing is to be named."""
    if tenancy == "multi":
        if not parent_orgnr:
            raise ConfigError("a multi-tenant HelseID client needs auth.parent_orgnr")
        system = MULTI_TENANT_SYSTEM
        value = f"NO:ORGNR:{parent_orgnr}" + (f":{child_orgnr}" if child_orgnr else "")
    elif child_orgnr:
        system, value = SINGLE_TENANT_SYSTEM, child_orgnr
    else:
        return None
    return {
        "type": "helseid_authorization",
        "practitioner_role": {
            "organization": {"identifier": {"system": system, "type": "ENH", "value": value}}
        },
    }


class HelseIdTokenProvider(_CachingTokenProvider):
    """Client credentials with a `private_key_jwt` client assertion, DPoP-bound (HelseID
    answers the first request `use_dpop_nonce`; the nonce is sent on the repeat)."""

    kind = "HelseID"
    grant_type = "client_credentials"

    def __init__(
        self,
        *,
        dpop: bool = True,
        tenancy: str = "single",
        parent_orgnr: str | None = None,
        child_orgnr: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if dpop:
            self.dpop = DpopProofs()
        self.details = assertion_details(tenancy, parent_orgnr, child_orgnr)

    def client_assertion(self, key: SigningKey) -> dict[str, str]:
        claims: dict[str, Any] = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": self.audience,
            **self._assertion_times(),
        }
        if self.details is not None:
            claims["assertion_details"] = self.details
        return {
            "client_id": self.client_id,
            "client_assertion_type": CLIENT_ASSERTION_TYPE,
            "client_assertion": key.sign(claims, typ="client-authentication+jwt"),
        }

    def _request_data(self, key: SigningKey) -> dict[str, str]:
        return {
            "grant_type": "client_credentials",
            **self.client_assertion(key),
            "scope": self.scope,
        }

    def revoke(self, url: str, refresh_token: str) -> None:
        """Tell HelseID to end a login (RFC 7009 revocation of its refresh token)."""
        data = {
            "token": refresh_token,
            "token_type_hint": "refresh_token",
            **self.client_assertion(self.current_key()),
        }
        try:
            with self.http_client() as client:
                response = client.post(url, data=data, headers={"Accept": "application/json"})
        except httpx.TransportError as exc:
            raise TokenError(f"cannot reach {url}: {type(exc).__name__}") from None
        if response.status_code != 200:
            raise self.refused(response)

    def exchange(self, grant: dict[str, str]) -> dict[str, Any]:
        """POST `grant` to the token endpoint with a client assertion and a DPoP proof (the
        nonce challenge answered); the answer's JSON, or TokenError."""
        key = self.current_key()
        with self.http_client() as client:
            try:
                response = self._post(client, {**grant, **self.client_assertion(key)})
                if self._needs_dpop_nonce(response):
                    response = self._post(client, {**grant, **self.client_assertion(key)})
            except httpx.TransportError as exc:
                raise TokenError(
                    f"cannot reach {self.token_url}: {type(exc).__name__}",
                    hint=f"check network access to {self.token_url}",
                ) from None
        if response.status_code != 200:
            raise self.refused(response)
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or "access_token" not in body:
            raise TokenError(f"{self.kind} answered without an access_token")
        return body


def make_token_provider(
    method: AuthMethod,
    *,
    signing_key: SigningKey,
    client_id: str,
    token_url: str,
    audience: str,
    scope: str,
    consumer_org: str | None = None,
    dpop: bool = True,
    tenancy: str = "single",
    parent_orgnr: str | None = None,
    child_orgnr: str | None = None,
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
        return HelseIdTokenProvider(
            dpop=dpop, tenancy=tenancy, parent_orgnr=parent_orgnr, child_orgnr=child_orgnr,
            **common,
        )  # fmt: skip
    return MaskinportenTokenProvider(consumer_org=consumer_org, **common)
