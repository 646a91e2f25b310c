"""End-to-end encryption of a claim for KUHR (POST/JWE) and the cache of KUHR's public keys.

Two profiles:
- `direct` (default): the JSON BKM is the JWE plaintext.
- `nested`: the plaintext is an unsigned JWT (`alg: none`) whose payload is the JSON BKM, and
  the JWE header says `cty: JWT` – the shape the KUHR JWE page describes. `zip: DEF` optional.
Both use RSA-OAEP-256 for the key and A256GCM for the content, with KUHR's `kid`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from jwcrypto import jwe, jwk

from bridge.core.model import Behandlerkravmelding, dump_json
from bridge.errors import BridgeError

ALG = "RSA-OAEP-256"
ENC = "A256GCM"
Profile = Literal["direct", "nested"]


class JwksError(BridgeError):
    """KUHR's key set is unusable (empty, no RSA encryption key, or the kid is unknown)."""


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned_jwt(payload: str) -> str:
    """`header.payload.` with `alg: none`: KUHR wants the claim wrapped, not signed."""
    header = _b64url(json.dumps({"alg": "none", "typ": "JWT"}, separators=(",", ":")).encode())
    return f"{header}.{_b64url(payload.encode('utf-8'))}."


def encrypt_claim(
    melding: Behandlerkravmelding | str,
    key: jwk.JWK,
    profile: Profile = "direct",
    zip: bool = False,
) -> str:
    """The compact JWE KUHR's submit endpoint takes as its body. `melding` may already be its
    JSON text (as the journal keeps it): what was journaled is what is sent."""
    plaintext = melding if isinstance(melding, str) else dump_json(melding, indent=None)
    header: dict[str, Any] = {"alg": ALG, "enc": ENC}
    kid = key.get("kid")
    if kid:
        header["kid"] = kid
    if profile == "nested":
        header["typ"] = "JWT"
        header["cty"] = "JWT"
        plaintext = unsigned_jwt(plaintext)
    elif profile != "direct":
        raise ValueError(f"unknown JWE profile {profile!r}")
    if zip:
        header["zip"] = "DEF"
    token = jwe.JWE(plaintext.encode("utf-8"), protected=json.dumps(header))
    token.add_recipient(key)
    return token.serialize(compact=True)


def _usable(key: dict[str, Any]) -> bool:
    return key.get("kty") == "RSA" and key.get("use", "enc") == "enc" and key.get("alg", ALG) == ALG


class JwksCache:
    """KUHR's JWKS, fetched on first use and kept for `max_age` seconds.

    `key(kid)` refetches once when asked for a kid it does not hold; `refresh_if_stale(kid)`
    refetches after a rejection and says whether the key really changed (so the caller
    re-encrypts only when that can help).
    """

    def __init__(
        self,
        fetch: Callable[[], Awaitable[dict[str, Any]]],
        *,
        max_age: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._max_age = max_age
        self._clock = clock
        self._keys: list[dict[str, Any]] = []
        # The JWK objects built from `_keys`, by position: building one parses the RSA key,
        # which cost more than the encryption itself when done for every claim.
        self._built: dict[int, jwk.JWK] = {}
        self._fetched_at: float | None = None
        self._lock: asyncio.Lock | None = None
        self.fetch_count = 0

    async def _load(self) -> None:
        if self._lock is None:
            self._lock = asyncio.Lock()
        fetched_before = self.fetch_count
        async with self._lock:
            if self.fetch_count != fetched_before:  # someone else just refetched
                return
            data = await self._fetch()
            self.fetch_count += 1
            keys = data.get("keys") if isinstance(data, dict) else None
            if not isinstance(keys, list):
                raise JwksError("KUHR's JWKS answer has no 'keys' list")
            self._keys = [k for k in keys if isinstance(k, dict) and _usable(k)]
            self._built = {}
            self._fetched_at = self._clock()
            if not self._keys:
                raise JwksError("KUHR's JWKS holds no RSA encryption key for RSA-OAEP-256")

    def _expired(self) -> bool:
        return self._fetched_at is None or self._clock() - self._fetched_at > self._max_age

    def _index(self, kid: str | None) -> int | None:
        if kid is None:
            return 0 if self._keys else None
        return next((i for i, k in enumerate(self._keys) if k.get("kid") == kid), None)

    async def key(self, kid: str | None = None) -> jwk.JWK:
        """The encryption key (the first usable one, or the one with `kid`)."""
        if self._expired():
            await self._load()
        index = self._index(kid)
        if index is None:
            await self._load()
            index = self._index(kid)
        if index is None:
            raise JwksError(f"KUHR's JWKS has no key with kid {kid!r}")
        built = self._built.get(index)
        if built is None:
            built = self._built[index] = jwk.JWK(**self._keys[index])
        return built

    @property
    def current_kid(self) -> str | None:
        return self._keys[0].get("kid") if self._keys else None

    async def refresh_if_stale(self, used_kid: str | None) -> bool:
        """Refetch; True when the key to use now differs from `used_kid`."""
        await self._load()
        return self.current_kid != used_kid
