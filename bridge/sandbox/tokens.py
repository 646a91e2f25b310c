"""The two token endpoints (Maskinporten JWT grant, HelseID client credentials with
private_key_jwt) and the API's check of the access tokens they issue.

Token times are real (wall-clock) times: clients sign their assertions with the real clock,
whatever the sandbox clock says. A verified access token is cached until it expires, so the
API pays the RSA signature check once per token, not once per request.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from jwcrypto import jwk, jws, jwt
from jwcrypto.common import JWException

from bridge.sandbox.registry import Client, Registry
from bridge.sandbox.settings import (
    HELSEID_AUDIENCE,
    SCOPE_HELSEID,
    SCOPE_MASKINPORTEN,
    SandboxSettings,
)

JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
JWT_BEARER_ASSERTION = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_ALGS = ("RS256", "RS384", "RS512")
API_SCOPES = frozenset({SCOPE_MASKINPORTEN, SCOPE_HELSEID})
CLOCK_SKEW_SECONDS = 10
ORGNR_AUTHORITY = "iso6523-actorid-upis"


class OAuthError(Exception):
    """An RFC 6749 error answer of a token endpoint."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status, self.error, self.description = status, error, description

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


class AuthError(Exception):
    """The API refuses a request's token: 401 (missing, bad, expired) or 403 (wrong scope)."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status, self.error, self.description = status, error, description

    def www_authenticate(self) -> str:
        text = f'Bearer realm="kuhr-krav-api", error="{self.error}"'
        if self.status == 403:
            return text + f', scope="{SCOPE_MASKINPORTEN} {SCOPE_HELSEID}"'
        return text + f', error_description="{self.description}"'


@dataclass(frozen=True, slots=True)
class AccessGrant:
    """Who a verified access token speaks for."""

    actor: str
    client_id: str
    scopes: frozenset[str]
    expires: float


def _b64json(part: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def _unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError("not a JWS compact serialization")
    header, claims = _b64json(parts[0]), _b64json(parts[1])
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise ValueError("header and claims must be JSON objects")
    return header, claims


class TokenService:
    def __init__(self, settings: SandboxSettings, registry: Registry, issuer_key: jwk.JWK) -> None:
        self._settings = settings
        self._registry = registry
        self._issuer_key = issuer_key
        self._issuer_kid = issuer_key["kid"]
        self._seen_jti: dict[tuple[str, str], float] = {}
        self._verified: dict[str, AccessGrant] = {}
        self.lifetime = settings.token_lifetime_seconds
        self.issued = 0

    # ------------------------------------------------------------------ token endpoints

    def maskinporten(self, form: Mapping[str, str]) -> dict[str, Any]:
        if form.get("grant_type") != JWT_BEARER_GRANT:
            raise OAuthError(
                400, "unsupported_grant_type", f"grant_type must be {JWT_BEARER_GRANT}"
            )
        assertion = form.get("assertion")
        if not assertion:
            raise OAuthError(400, "invalid_request", "assertion is missing")
        # The issuer identifier, with or without its trailing slash.
        audiences = (self._settings.maskinporten_issuer, self._settings.maskinporten_issuer[:-1])
        client, claims = self._check_assertion(assertion, audiences, error="invalid_grant")
        scopes = self._granted_scopes(client, claims.get("scope"))
        actor = self._registry.actors[client.actor]
        supplier = actor.orgnr
        consumer = supplier
        if claims.get("consumer_org"):
            wanted = str(claims["consumer_org"])
            if wanted != supplier and wanted not in client.may_act_for:
                raise OAuthError(
                    400, "invalid_grant", f"client may not act for consumer_org {wanted}"
                )
            consumer = wanted
        if not consumer:
            raise OAuthError(401, "invalid_client", "client has no organisation number")
        access = {
            "iss": self._settings.maskinporten_issuer,
            "client_id": client.client_id,
            "scope": " ".join(sorted(scopes)),
            "consumer": {"authority": ORGNR_AUTHORITY, "ID": f"0192:{consumer}"},
            "token_type": "Bearer",
        }
        if consumer != supplier and supplier:
            access["supplier"] = {"authority": ORGNR_AUTHORITY, "ID": f"0192:{supplier}"}
        return self._issue(access, scopes)

    def helseid(self, form: Mapping[str, str]) -> dict[str, Any]:
        if form.get("grant_type") != "client_credentials":
            raise OAuthError(400, "unsupported_grant_type", "grant_type must be client_credentials")
        if form.get("client_assertion_type") != JWT_BEARER_ASSERTION:
            raise OAuthError(
                401, "invalid_client", f"client_assertion_type must be {JWT_BEARER_ASSERTION}"
            )
        assertion = form.get("client_assertion")
        if not assertion:
            raise OAuthError(401, "invalid_client", "client_assertion is missing")
        # The token endpoint, as HelseID asks; its issuer is accepted too.
        audiences = (self._settings.helseid_token_url, self._settings.helseid_issuer)
        client, claims = self._check_assertion(assertion, audiences, error="invalid_client")
        if claims.get("sub") != client.client_id:
            raise OAuthError(401, "invalid_client", "client assertion sub must equal iss")
        if form.get("client_id") and form["client_id"] != client.client_id:
            raise OAuthError(401, "invalid_client", "client_id does not match the assertion")
        scopes = self._granted_scopes(client, form.get("scope"))
        actor = self._registry.actors[client.actor]
        access: dict[str, Any] = {
            "iss": self._settings.helseid_issuer,
            "aud": HELSEID_AUDIENCE,
            "client_id": client.client_id,
            "scope": " ".join(sorted(scopes)),
            "helseid://claims/identity/security_level": "4",
        }
        if actor.pid:
            access["pid"] = actor.pid
        if actor.orgnr:
            access["helseid://claims/client/claims/orgnr_parent"] = actor.orgnr
        return self._issue(access, scopes)

    def _check_assertion(
        self, assertion: str, audiences: tuple[str, ...], *, error: str
    ) -> tuple[Client, dict[str, Any]]:
        """The client and claims of a valid, unused assertion; OAuthError otherwise."""
        status = 401 if error == "invalid_client" else 400
        try:
            header, claims = _unverified(assertion)
        except (ValueError, UnicodeDecodeError):
            raise OAuthError(status, error, "assertion is not a signed JWT") from None
        alg = header.get("alg")
        if alg not in ASSERTION_ALGS:
            raise OAuthError(status, error, f"assertion alg {alg!r} not allowed (use RS256)")
        client = self._registry.clients.get(str(claims.get("iss")))
        if client is None:
            raise OAuthError(401, "invalid_client", f"unknown client {claims.get('iss')!r}")
        key = self._client_key(client, header)
        try:
            signed = jws.JWS()
            signed.deserialize(assertion)
            signed.verify(key, alg=alg)
        except (JWException, ValueError):
            raise OAuthError(status, error, "assertion signature does not verify") from None
        now = time.time()
        aud = claims.get("aud")
        aud_values = aud if isinstance(aud, list) else [aud]
        if not set(audiences).intersection(a for a in aud_values if isinstance(a, str)):
            raise OAuthError(status, error, f"assertion aud must be {audiences[0]}")
        exp, iat = claims.get("exp"), claims.get("iat")
        if not isinstance(exp, int | float) or not isinstance(iat, int | float):
            raise OAuthError(status, error, "assertion needs numeric exp and iat")
        if exp < now - CLOCK_SKEW_SECONDS:
            raise OAuthError(status, error, "assertion has expired")
        if iat > now + CLOCK_SKEW_SECONDS:
            raise OAuthError(status, error, "assertion iat is in the future")
        if exp - iat > self._settings.max_assertion_lifetime_seconds:
            raise OAuthError(
                status,
                error,
                f"assertion lifetime exceeds {self._settings.max_assertion_lifetime_seconds} s",
            )
        jti = claims.get("jti")
        if not jti or not isinstance(jti, str):
            raise OAuthError(status, error, "assertion needs a jti")
        if (client.client_id, jti) in self._seen_jti:
            raise OAuthError(status, error, "assertion jti has been used before")
        self._remember_jti(client.client_id, jti, float(exp))
        return client, claims

    def _client_key(self, client: Client, header: Mapping[str, Any]) -> jwk.JWK:
        if header.get("kid"):
            key = client.key_for(str(header["kid"]))
            if key is None:
                raise OAuthError(401, "invalid_client", f"unknown kid {header['kid']!r} for client")
            return key
        if header.get("x5c"):
            try:
                der = base64.b64decode(header["x5c"][0])
                cert_key = jwk.JWK.from_pyca(x509.load_der_x509_certificate(der).public_key())
            except (ValueError, TypeError, IndexError):
                raise OAuthError(401, "invalid_client", "x5c is not a DER certificate") from None
            thumb = cert_key.thumbprint()
            for key in client.public_keys:
                if key.thumbprint() == thumb:
                    return key
            raise OAuthError(401, "invalid_client", "x5c certificate is not registered for client")
        if len(client.public_keys) == 1:
            return client.public_keys[0]
        raise OAuthError(401, "invalid_client", "assertion header needs kid or x5c")

    def _granted_scopes(self, client: Client, requested: Any) -> frozenset[str]:
        if not isinstance(requested, str) or not requested.strip():
            raise OAuthError(400, "invalid_scope", "scope is required")
        scopes = frozenset(requested.split())
        refused = sorted(scopes - client.scopes)
        if refused:
            raise OAuthError(400, "invalid_scope", f"client may not have scope {' '.join(refused)}")
        return scopes

    def _remember_jti(self, client_id: str, jti: str, exp: float) -> None:
        if len(self._seen_jti) > 10_000:
            cutoff = time.time() - CLOCK_SKEW_SECONDS
            self._seen_jti = {k: v for k, v in self._seen_jti.items() if v >= cutoff}
        self._seen_jti[(client_id, jti)] = exp

    def _issue(self, claims: dict[str, Any], scopes: frozenset[str]) -> dict[str, Any]:
        now = int(time.time())
        claims.update({"iat": now, "exp": now + self.lifetime, "jti": str(uuid.uuid4())})
        token = jwt.JWT(
            header={"alg": "RS256", "kid": self._issuer_kid, "typ": "at+jwt"}, claims=claims
        )
        token.make_signed_token(self._issuer_key)
        self.issued += 1
        return {
            "access_token": token.serialize(),
            "token_type": "Bearer",
            "expires_in": self.lifetime,
            "scope": " ".join(sorted(scopes)),
        }

    # ------------------------------------------------------------------ the API's check

    def authenticate(self, authorization: str | None) -> AccessGrant:
        """The grant behind an `Authorization: Bearer …` header, or AuthError (401/403)."""
        if not authorization:
            raise AuthError(401, "invalid_token", "Authorization: Bearer <token> is required")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthError(401, "invalid_token", "expected Authorization: Bearer <token>")
        grant = self._verified.get(token)
        if grant is None:
            grant = self._verify(token)
        if grant.expires <= time.time():
            self._verified.pop(token, None)
            raise AuthError(401, "invalid_token", "the access token has expired")
        if not grant.scopes & API_SCOPES:
            raise AuthError(
                403,
                "insufficient_scope",
                f"the token needs scope {SCOPE_MASKINPORTEN} or {SCOPE_HELSEID}",
            )
        return grant

    def _verify(self, token: str) -> AccessGrant:
        try:
            header, claims = _unverified(token)
        except (ValueError, UnicodeDecodeError):
            raise AuthError(401, "invalid_token", "the access token is not a JWT") from None
        if header.get("kid") != self._issuer_kid or header.get("alg") != "RS256":
            raise AuthError(401, "invalid_token", "the access token is not issued by this sandbox")
        try:
            signed = jws.JWS()
            signed.deserialize(token)
            signed.verify(self._issuer_key, alg="RS256")
        except (JWException, ValueError):
            raise AuthError(401, "invalid_token", "the access token signature is invalid") from None
        grant = AccessGrant(
            actor=self._actor_of(claims),
            client_id=str(claims.get("client_id")),
            scopes=frozenset(str(claims.get("scope", "")).split()),
            expires=float(claims.get("exp", 0)),
        )
        if len(self._verified) > 10_000:
            now = time.time()
            self._verified = {k: g for k, g in self._verified.items() if g.expires > now}
        self._verified[token] = grant
        return grant

    def _actor_of(self, claims: Mapping[str, Any]) -> str:
        """The actor key: a registered actor's name, else `pid:…` / `org:…` (no praksiser)."""
        iss = claims.get("iss")
        if iss == self._settings.helseid_issuer:
            aud = claims.get("aud")
            if aud != HELSEID_AUDIENCE and not (isinstance(aud, list) and HELSEID_AUDIENCE in aud):
                raise AuthError(
                    401, "invalid_token", f"the token audience must be {HELSEID_AUDIENCE}"
                )
            pid = claims.get("pid")
            orgnr = claims.get("helseid://claims/client/claims/orgnr_parent")
            if pid:
                actor = self._registry.actor_by_pid(str(pid))
                return actor.name if actor else f"pid:{pid}"
            if orgnr:
                actor = self._registry.actor_by_orgnr(str(orgnr))
                return actor.name if actor else f"org:{orgnr}"
            raise AuthError(401, "invalid_token", "the token names neither pid nor orgnr_parent")
        if iss == self._settings.maskinporten_issuer:
            consumer = claims.get("consumer") or {}
            orgnr = str(consumer.get("ID", "")).rpartition(":")[2]
            if not orgnr:
                raise AuthError(401, "invalid_token", "the token has no consumer")
            actor = self._registry.actor_by_orgnr(orgnr)
            return actor.name if actor else f"org:{orgnr}"
        raise AuthError(401, "invalid_token", "the token issuer is unknown")
