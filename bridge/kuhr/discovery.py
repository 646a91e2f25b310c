"""HelseID's endpoints, read from its OpenID Connect discovery document
(`<authority>/.well-known/openid-configuration`), as HelseID's functional requirements ask, and
kept for a day in the process."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from bridge.errors import BridgeError

CACHE_SECONDS = 24 * 3600.0
_cache: dict[str, tuple[float, Endpoints]] = {}
_lock = threading.Lock()


class DiscoveryError(BridgeError):
    """HelseID's discovery document could not be read."""


@dataclass(frozen=True)
class Endpoints:
    issuer: str
    authorization_endpoint: str
    pushed_authorization_request_endpoint: str
    token_endpoint: str
    revocation_endpoint: str | None = None


def discovery_url(authority: str) -> str:
    return authority.rstrip("/") + "/.well-known/openid-configuration"


def endpoints(authority: str, http: Callable[[], httpx.Client]) -> Endpoints:
    """The endpoints of the HelseID at `authority` (cached for a day)."""
    url = discovery_url(authority)
    with _lock:
        cached = _cache.get(url)
        if cached is not None and time.monotonic() - cached[0] < CACHE_SECONDS:
            return cached[1]
    try:
        with http() as client:
            response = client.get(url, headers={"Accept": "application/json"})
    except httpx.HTTPError as exc:
        raise DiscoveryError(f"cannot read {url}: {type(exc).__name__}") from None
    if response.status_code != 200:
        raise DiscoveryError(f"{url} answered HTTP {response.status_code}")
    try:
        data = response.json()
        found = Endpoints(
            issuer=str(data["issuer"]),
            authorization_endpoint=str(data["authorization_endpoint"]),
            pushed_authorization_request_endpoint=str(
                data["pushed_authorization_request_endpoint"]
            ),
            token_endpoint=str(data["token_endpoint"]),
            revocation_endpoint=data.get("revocation_endpoint"),
        )
    except (ValueError, KeyError, TypeError):
        raise DiscoveryError(f"{url} is not a discovery document with a PAR endpoint") from None
    with _lock:
        _cache[url] = (time.monotonic(), found)
    return found
