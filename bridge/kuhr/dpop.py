"""DPoP proofs (RFC 9449) for HelseID tokens: one EC key per process, to which the tokens are
bound, and a fresh signed proof for every request (`htm`, `htu`, `iat`, a new `jti`; `ath`
towards the API; the server's `nonce` once it has asked for one).

Nonces are kept apart: HelseID's token endpoint and the KUHR API each hand out their own (a
`use_dpop_nonce` answer with a `DPoP-Nonce` header), and one must not travel to the other. A
token endpoint's nonce is kept for its URL, an API's for its origin.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
import uuid
from typing import Any

import httpx
from jwcrypto import jwk, jwt


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _bare(url: str) -> str:
    return url.split("?", 1)[0].split("#", 1)[0]


def _origin(url: str) -> str:
    parsed = httpx.URL(url)
    return f"{parsed.scheme}://{parsed.host}:{parsed.port or ''}"


class DpopProofs:
    """Proofs signed with this process's DPoP key (ES256)."""

    def __init__(self) -> None:
        self._key = jwk.JWK.generate(kty="EC", crv="P-256")
        self._public = self._key.export_public(as_dict=True)
        self._nonces: dict[str, str] = {}
        self._lock = threading.Lock()

    @property
    def thumbprint(self) -> str:
        """What a bound token's `cnf.jkt` names."""
        return self._key.thumbprint()

    def remember_nonce(self, url: str, nonce: str, *, whole_origin: bool = False) -> None:
        key = "origin " + _origin(url) if whole_origin else _bare(url)
        with self._lock:
            self._nonces[key] = nonce

    def nonce_for(self, url: str) -> str | None:
        return self._nonces.get(_bare(url)) or self._nonces.get("origin " + _origin(url))

    def proof(self, method: str, url: str, access_token: str | None = None) -> str:
        claims: dict[str, Any] = {
            "jti": str(uuid.uuid4()),
            "htm": method.upper(),
            "htu": _bare(url),
            "iat": int(time.time()),
        }
        if access_token is not None:
            claims["ath"] = b64url(hashlib.sha256(access_token.encode()).digest())
        nonce = self.nonce_for(url)
        if nonce:
            claims["nonce"] = nonce
        header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": self._public}
        token = jwt.JWT(header=header, claims=claims)
        token.make_signed_token(self._key)
        return token.serialize()


def nonce_challenge(response: httpx.Response) -> str | None:
    """The nonce a server asks for (`use_dpop_nonce`, RFC 9449 §8–9), else None."""
    nonce = response.headers.get("DPoP-Nonce")
    if not nonce:
        return None
    if response.status_code == 401:
        challenge = response.headers.get("WWW-Authenticate", "")
        return nonce if "use_dpop_nonce" in challenge else None
    if response.status_code == 400:
        try:
            body = response.json()
        except ValueError:
            return None
        if isinstance(body, dict) and body.get("error") == "use_dpop_nonce":
            return nonce
    return None
