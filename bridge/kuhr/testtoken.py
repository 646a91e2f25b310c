"""HelseID's test token service (TTT) as a token source for Helfo's DEV environment.

TTT signs tokens with HelseID's test keys for claims the caller names (Helfo's testdata.md
lists what KUHR needs: `aud` hdir:kuhr-krav-api, `pid`, security level 4, `orgnr_parent`, the
scope). For a DPoP-bound token it makes the proof itself, for one method and URL, with a key it
keeps; so every request to KUHR gets a token and a proof of its own (`auth_headers`). Meant for
testing in DEV without a real login; refused for PROD (`bridge.kuhr.target`).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from typing import Any

import httpx

from bridge.kuhr.auth import AccessToken, TokenError

log = logging.getLogger(__name__)

AUDIENCE = "hdir:kuhr-krav-api"


class TestTokenProvider:
    """Tokens (and their DPoP proofs) from the test token service, one per request."""

    kind = "HelseID test token service"
    __test__ = False  # not a pytest test class, whatever its name says

    def __init__(
        self,
        *,
        url: str,
        api_key: str,
        client_id: str,
        scope: str,
        pid: str | None,
        hpr_number: str | None = None,
        orgnr_parent: str | None = None,
        api_url: str,
        verify: bool | str = True,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url
        self._key = api_key
        self.client_id = client_id
        self.scope = scope
        self.pid, self.hpr_number, self.orgnr_parent = pid, hpr_number, orgnr_parent
        self.api_url = api_url
        self._verify, self._timeout, self._transport = verify, timeout, transport
        self.fetch_count = 0

    def _body(self, method: str, url: str) -> dict[str, Any]:
        user: dict[str, str] = {"securityLevel": "4"}
        if self.pid:
            user["pid"] = self.pid
        if self.hpr_number:
            user["hprNumber"] = self.hpr_number
        client: dict[str, Any] = {"clientId": self.client_id, "scope": self.scope.split()}
        if self.orgnr_parent:
            client["orgnrParent"] = self.orgnr_parent
        return {
            "audience": AUDIENCE,
            "userClaimsParameters": user,
            "clientClaimsParameters": client,
            "createDPoPTokenWithDPoPProof": True,
            "dPoPProofParameters": {"htmClaimValue": method.upper(), "htuClaimValue": url},
        }

    def _request(self, method: str, url: str) -> tuple[str, str]:
        self.fetch_count += 1
        try:
            with httpx.Client(
                verify=self._verify, timeout=self._timeout, transport=self._transport
            ) as client:
                response = client.post(
                    self.url, json=self._body(method, url.split("?", 1)[0]),
                    headers={"X-Auth-Key": self._key, "Accept": "application/json"},
                )  # fmt: skip
        except httpx.TransportError as exc:
            raise TokenError(
                f"cannot reach the test token service at {self.url}: {type(exc).__name__}",
                hint="check network access (and kuhr.proxy)",
            ) from None
        log.info("test token POST %s -> %d", httpx.URL(self.url).path, response.status_code)
        if response.status_code in (401, 403):
            raise TokenError(
                f"the test token service refused the API key (HTTP {response.status_code})",
                hint="make a new key in HelseID selvbetjening (TEST) and set auth.test_token.key",
            )
        try:
            answer = response.json()["successResponse"]
            return str(answer["accessTokenJwt"]), str(answer["dPoPProof"])
        except (ValueError, KeyError, TypeError):
            raise TokenError(
                f"the test token service answered HTTP {response.status_code} without a token",
                hint="check auth.test_token (pid, orgnr_parent) against testdata.md",
            ) from None

    async def auth_headers(self, method: str, url: str) -> dict[str, str]:
        token, proof = await asyncio.to_thread(self._request, method, url)
        return {"Authorization": f"DPoP {token}", "DPoP": proof}

    def invalidate(self, token: str | None = None) -> None:
        """Nothing is cached: every request has a token of its own."""

    def token_sync(self) -> AccessToken:
        """One token (for the praksis list), as `config check` shows it."""
        token, _ = self._request("GET", self.api_url + "/data/praksis")
        try:
            part = token.split(".")[1]
            claims = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
            expires = float(claims["exp"])
        except (IndexError, ValueError, KeyError, TypeError):
            expires = time.time() + 60
        return AccessToken(
            value=token, token_type="DPoP", expires_at=expires,
            lifetime=max(0.0, expires - time.time()), scope=self.scope,
        )  # fmt: skip
