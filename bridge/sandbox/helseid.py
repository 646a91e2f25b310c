"""What HelseID keeps between the steps of a personal login, and what it reads from a client
assertion for a virksomhet:

- pushed authorization requests (PAR, mandatory for new HelseID clients), the codes the login
  page issues for them (single use, 60 s, PKCE S256), and the refresh tokens (one-time use,
  rotated on every refresh, with an absolute lifetime that `rt_expires_in` reports);
- `assertion_details` (single-tenant: an underenhet registered for the client; multi-tenant:
  `NO:ORGNR:<parent>[:<child>]`, the parent delegated to the client's supplier in Altinn).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from bridge.sandbox.registry import Client, Registry

PAR_LIFETIME_SECONDS = 60
CODE_LIFETIME_SECONDS = 60
REQUEST_URI_PREFIX = "urn:ietf:params:oauth:request_uri:"
AUTHORIZATION_TYPE = "helseid_authorization"
SINGLE_TENANT_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.101"
MULTI_TENANT_SYSTEM = "urn:oid:1.0.6523"
ORGNR_CLAIM_PREFIX = "helseid://claims/client/claims/"


class LoginError(Exception):
    """An OAuth error of the PAR, authorize or token step."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error, self.description, self.status = error, description, status


@dataclass(frozen=True)
class AuthorizationRequest:
    """What the client pushed (PAR) before sending the browser to the login page."""

    client_id: str
    redirect_uri: str
    scopes: frozenset[str]
    state: str | None
    nonce: str | None
    code_challenge: str
    expires_at: float


@dataclass(frozen=True)
class LoginSession:
    """A person logged in for a client: what its codes and refresh tokens stand for."""

    client_id: str
    pid: str
    scopes: frozenset[str]
    sid: str
    auth_time: int
    nonce: str | None = None
    refresh_expires_at: float = 0.0


@dataclass
class _Code:
    session: LoginSession
    redirect_uri: str
    code_challenge: str
    expires_at: float


@dataclass
class LoginStore:
    """PAR requests, codes and refresh tokens, by their SHA-256 (a copy of this store leaks
    no usable secret)."""

    refresh_lifetime: float
    _requests: dict[str, AuthorizationRequest] = field(default_factory=dict)
    _codes: dict[str, _Code] = field(default_factory=dict)
    _refresh: dict[str, LoginSession] = field(default_factory=dict)
    _used_refresh: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    logins: int = 0
    refreshes: int = 0

    # ------------------------------------------------------------------ PAR

    def push(self, request: AuthorizationRequest) -> str:
        request_uri = REQUEST_URI_PREFIX + secrets.token_urlsafe(24)
        with self._lock:
            now = time.time()
            self._requests = {k: r for k, r in self._requests.items() if r.expires_at > now}
            self._requests[request_uri] = request
        return request_uri

    def pending(self, request_uri: str, client_id: str) -> AuthorizationRequest:
        request = self._requests.get(request_uri)
        if request is None or request.expires_at <= time.time():
            raise LoginError("invalid_request_uri", "the request_uri is unknown or has expired")
        if request.client_id != client_id:
            raise LoginError("invalid_request", "client_id does not match the pushed request")
        return request

    # ------------------------------------------------------------------ codes

    def issue_code(
        self, request_uri: str, client_id: str, pid: str
    ) -> tuple[str, AuthorizationRequest]:
        with self._lock:
            request = self.pending(request_uri, client_id)
            del self._requests[request_uri]  # a pushed request is used once
        session = LoginSession(
            client_id=client_id,
            pid=pid,
            scopes=request.scopes,
            sid=secrets.token_hex(16),
            auth_time=int(time.time()),
            nonce=request.nonce,
        )
        code = secrets.token_urlsafe(32)
        with self._lock:
            self._codes[_digest(code)] = _Code(
                session, request.redirect_uri, request.code_challenge,
                time.time() + CODE_LIFETIME_SECONDS,
            )  # fmt: skip
        return code, request

    def redeem_code(
        self, code: str, client_id: str, redirect_uri: str, verifier: str | None
    ) -> LoginSession:
        with self._lock:
            entry = self._codes.pop(_digest(code), None)
        if entry is None or entry.expires_at <= time.time():
            raise LoginError("invalid_grant", "the authorization code is unknown, used or expired")
        if entry.session.client_id != client_id:
            raise LoginError("invalid_grant", "the code was issued to another client")
        if entry.redirect_uri != redirect_uri:
            raise LoginError("invalid_grant", "redirect_uri differs from the authorization request")
        if not verifier or pkce_challenge(verifier) != entry.code_challenge:
            raise LoginError("invalid_grant", "code_verifier does not match the code_challenge")
        self.logins += 1
        return entry.session

    # ------------------------------------------------------------------ refresh tokens

    def issue_refresh(self, session: LoginSession) -> tuple[str, int]:
        """A new refresh token for the session, and its remaining lifetime in seconds."""
        expires = session.refresh_expires_at or time.time() + self.refresh_lifetime
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._refresh[_digest(token)] = replace(session, refresh_expires_at=expires)
        return token, max(0, int(expires - time.time()))

    def redeem_refresh(self, token: str, client_id: str) -> LoginSession:
        digest = _digest(token)
        with self._lock:
            session = self._refresh.pop(digest, None)
            reused = digest in self._used_refresh
            if session is not None:
                self._used_refresh.add(digest)
        if session is None:
            what = "has been used already (they are one-time)" if reused else "is unknown"
            raise LoginError("invalid_grant", f"the refresh token {what}: log in again")
        if session.client_id != client_id:
            raise LoginError("invalid_grant", "the refresh token was issued to another client")
        if session.refresh_expires_at <= time.time():
            raise LoginError("invalid_grant", "the refresh token has expired: log in again")
        self.refreshes += 1
        return session

    def revoke(self, token: str, client_id: str) -> bool:
        """End the login a refresh token belongs to (RFC 7009: unknown tokens are no error)."""
        digest = _digest(token)
        with self._lock:
            session = self._refresh.get(digest)
            if session is None or session.client_id != client_id:
                return False
            del self._refresh[digest]
            self._used_refresh.add(digest)
        return True

    def end_all(self) -> int:
        """Revoke every login (admin: what an expired or revoked HelseID session looks like)."""
        with self._lock:
            ended = len(self._refresh)
            self._used_refresh.update(self._refresh)
            self._refresh.clear()
            self._codes.clear()
        return ended

    def active(self) -> int:
        now = time.time()
        return sum(1 for s in self._refresh.values() if s.refresh_expires_at > now)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def pkce_challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def redirect_allowed(client: Client, redirect_uri: str) -> bool:
    """Exact match, or (RFC 8252 §7.3) a loopback address whose port may differ."""
    if redirect_uri in client.redirect_uris:
        return True
    asked = urlsplit(redirect_uri)
    if asked.scheme != "http" or asked.hostname not in ("127.0.0.1", "localhost", "::1"):
        return False
    for registered in map(urlsplit, client.redirect_uris):
        if (registered.scheme, registered.hostname, registered.path) == (
            asked.scheme, asked.hostname, asked.path,
        ) and not asked.query:  # fmt: skip
            return True
    return False


# --------------------------------------------------------------------------- organisations


@dataclass(frozen=True, slots=True)
class Organisations:
    """The organisation claims a HelseID token carries for a client."""

    parent: str | None
    child: str | None = None
    supplier: str | None = None

    def claims(self) -> dict[str, str]:
        out: dict[str, str] = {}
        if self.parent:
            out[ORGNR_CLAIM_PREFIX + "orgnr_parent"] = self.parent
        if self.child:
            out[ORGNR_CLAIM_PREFIX + "orgnr_child"] = self.child
        if self.supplier:
            out[ORGNR_CLAIM_PREFIX + "orgnr_supplier"] = self.supplier
        return out


def organisations(registry: Registry, client: Client, assertion: dict[str, Any]) -> Organisations:
    """The organisations `assertion_details` asks for, checked against the client's
    registration; LoginError (invalid_request) with the reason otherwise."""
    own = registry.actors[client.actor].orgnr
    if "authorization_details" in assertion and "assertion_details" not in assertion:
        raise LoginError(
            "invalid_request",
            "organisation numbers travel in the client assertion's assertion_details claim "
            "(authorization_details is the older name)",
        )
    details = assertion.get("assertion_details")
    if details is None:
        if client.tenancy == "multi":
            raise LoginError(
                "invalid_request",
                "a multi-tenant client must name the parent organisation in assertion_details",
            )
        return Organisations(parent=own)
    system, value = _identifier(details)
    if client.tenancy == "single":
        if system != SINGLE_TENANT_SYSTEM:
            raise LoginError(
                "invalid_request",
                f"a single-tenant client names its underenhet with system {SINGLE_TENANT_SYSTEM}",
            )
        if not _orgnr(value):
            raise LoginError("invalid_request", "the underenhet must be a 9-digit orgnr")
        if value not in client.child_orgnrs:
            raise LoginError(
                "invalid_request",
                f"underenhet {value} is not registered for client {client.client_id}",
            )
        return Organisations(parent=own, child=value)
    if system != MULTI_TENANT_SYSTEM:
        raise LoginError(
            "invalid_request",
            f"a multi-tenant client names the organisation with system {MULTI_TENANT_SYSTEM}",
        )
    parts = value.split(":")
    if len(parts) not in (3, 4) or parts[:2] != ["NO", "ORGNR"] or not _orgnr(parts[2]):
        raise LoginError(
            "invalid_request", "the value must be NO:ORGNR:<parent orgnr>[:<child orgnr>]"
        )
    parent = parts[2]
    child = parts[3] if len(parts) == 4 and parts[3] else None
    if child is not None and not _orgnr(child):
        raise LoginError("invalid_request", "the child orgnr must be 9 digits")
    if parent not in client.may_act_for and parent != own:
        raise LoginError(
            "invalid_request",
            f"organisation {parent} has not delegated access to the supplier of client "
            f"{client.client_id} (Altinn)",
        )
    return Organisations(parent=parent, child=child, supplier=own)


def _identifier(details: Any) -> tuple[str, str]:
    if isinstance(details, list) and len(details) == 1:
        details = details[0]
    try:
        if details["type"] != AUTHORIZATION_TYPE:
            raise LoginError(
                "invalid_request", f"assertion_details type must be {AUTHORIZATION_TYPE}"
            )
        identifier = details["practitioner_role"]["organization"]["identifier"]
        system, kind, value = identifier["system"], identifier["type"], identifier["value"]
    except (KeyError, TypeError):
        raise LoginError(
            "invalid_request",
            "assertion_details needs practitioner_role.organization.identifier with system, "
            "type and value",
        ) from None
    if kind != "ENH":
        raise LoginError("invalid_request", "the organisation identifier's type must be ENH")
    if not isinstance(system, str) or not isinstance(value, str):
        raise LoginError("invalid_request", "system and value must be strings")
    return system, value


def _orgnr(value: str) -> bool:
    return len(value) == 9 and value.isdigit()
