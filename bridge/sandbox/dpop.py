"""DPoP (RFC 9449) as HelseID and the KUHR API check it: the proof's header (`typ dpop+jwt`, an
asymmetric `alg`, a public `jwk`), its signature by that key, `htm` and `htu` against the
request, `iat` within a short window, a `jti` never seen before, a server `nonce` at the token
endpoint (the first request is answered `use_dpop_nonce`), and `ath` at the API.

The proof's key thumbprint (`jkt`) is what an access token is bound to (`cnf.jkt`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from jwcrypto import jwk, jws
from jwcrypto.common import JWException

PROOF_ALGS = ("ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
# How old a proof may be, and how far ahead of our clock (seconds).
MAX_AGE_SECONDS = 60
MAX_AHEAD_SECONDS = 10
NONCE_LIFETIME_SECONDS = 300


class DpopError(Exception):
    """A proof that does not hold; `error` is the RFC 9449 error code."""

    def __init__(self, description: str, error: str = "invalid_dpop_proof") -> None:
        super().__init__(description)
        self.error = error
        self.description = description


@dataclass(frozen=True, slots=True)
class Proof:
    jkt: str  # base64url SHA-256 thumbprint of the proof's key (RFC 7638)
    claims: dict[str, Any]


def access_token_hash(token: str) -> str:
    digest = hashlib.sha256(token.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def normalized_uri(url: str) -> str:
    """Scheme, host, port and path, lower-cased where case does not matter; no query/fragment."""
    parts = urlsplit(url)
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    port = parts.port
    default = {"http": 80, "https": 443}.get(scheme)
    netloc = host if port in (None, default) else f"{host}:{port}"
    if ":" in host and not host.startswith("["):
        netloc = f"[{host}]" + ("" if port in (None, default) else f":{port}")
    return urlunsplit((scheme, netloc, parts.path or "/", "", ""))


def _b64json(part: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


class DpopVerifier:
    """Checks proofs; remembers used `jti`s for as long as a proof could be replayed, and the
    nonces it handed out."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[str, float] = {}
        self._nonces: dict[str, float] = {}
        self.checked = 0

    # ------------------------------------------------------------------ nonces

    def new_nonce(self) -> str:
        now = time.time()
        nonce = secrets.token_urlsafe(24)
        with self._lock:
            self._nonces = {n: t for n, t in self._nonces.items() if t > now}
            self._nonces[nonce] = now + NONCE_LIFETIME_SECONDS
        return nonce

    def _nonce_valid(self, nonce: Any) -> bool:
        if not isinstance(nonce, str):
            return False
        with self._lock:
            return self._nonces.get(nonce, 0.0) > time.time()

    # ------------------------------------------------------------------ the check

    def verify(
        self,
        proof: str | None,
        *,
        method: str,
        url: str,
        access_token: str | None = None,
        require_nonce: bool = False,
    ) -> Proof:
        """The proof's key thumbprint and claims, or DpopError (`use_dpop_nonce` when only the
        server's nonce is missing or stale)."""
        if not proof:
            raise DpopError("a DPoP proof (header DPoP) is required")
        if "," in proof:
            raise DpopError("exactly one DPoP header is allowed")
        parts = proof.split(".")
        if len(parts) != 3:
            raise DpopError("the DPoP proof is not a signed JWT")
        try:
            header, claims = _b64json(parts[0]), _b64json(parts[1])
        except (ValueError, UnicodeDecodeError):
            raise DpopError("the DPoP proof is not a signed JWT") from None
        if not isinstance(header, dict) or not isinstance(claims, dict):
            raise DpopError("the DPoP proof's header and claims must be JSON objects")
        if header.get("typ") != "dpop+jwt":
            raise DpopError("the DPoP proof needs typ dpop+jwt")
        alg = header.get("alg")
        if alg not in PROOF_ALGS:
            raise DpopError(f"DPoP proof alg {alg!r} is not allowed (use ES256 or RS256)")
        key_data = header.get("jwk")
        if not isinstance(key_data, dict):
            raise DpopError("the DPoP proof header needs the public jwk")
        try:
            key = jwk.JWK(**key_data)
        except (JWException, ValueError, TypeError):
            raise DpopError("the DPoP proof's jwk is not a JWK") from None
        if key.has_private:
            raise DpopError("the DPoP proof's jwk must not hold a private key")
        try:
            signed = jws.JWS()
            signed.deserialize(proof)
            signed.verify(key, alg=alg)
        except (JWException, ValueError):
            raise DpopError("the DPoP proof's signature does not verify") from None
        if claims.get("htm") != method.upper():
            raise DpopError(f"DPoP htm must be {method.upper()}")
        htu = claims.get("htu")
        if not isinstance(htu, str) or normalized_uri(htu) != normalized_uri(url):
            raise DpopError(f"DPoP htu must be {normalized_uri(url)}")
        iat = claims.get("iat")
        now = time.time()
        if not isinstance(iat, int | float):
            raise DpopError("the DPoP proof needs a numeric iat")
        if iat < now - MAX_AGE_SECONDS or iat > now + MAX_AHEAD_SECONDS:
            raise DpopError("the DPoP proof's iat is too far from the server's clock")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti:
            raise DpopError("the DPoP proof needs a jti")
        if access_token is not None and claims.get("ath") != access_token_hash(access_token):
            raise DpopError("DPoP ath does not match the access token")
        if require_nonce and not self._nonce_valid(claims.get("nonce")):
            raise DpopError("a fresh server nonce is required in the DPoP proof", "use_dpop_nonce")
        self._remember(jti, now)
        self.checked += 1
        return Proof(jkt=key.thumbprint(), claims=claims)

    def _remember(self, jti: str, now: float) -> None:
        with self._lock:
            if jti in self._seen:
                raise DpopError("the DPoP proof's jti has been used before")
            if len(self._seen) > 50_000:
                cutoff = now - MAX_AGE_SECONDS - MAX_AHEAD_SECONDS
                self._seen = {k: t for k, t in self._seen.items() if t >= cutoff}
            self._seen[jti] = now
