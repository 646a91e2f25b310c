"""Faults on demand for the API endpoints: added latency, 429 with Retry-After, 5xx answers,
dropped connections (no response at all) and lost responses (processed, then dropped).

`FaultMiddleware` sits inside the FastAPI app. A dropped connection needs the server's
transport, which only the outermost ASGI callable can reach: `ConnectionDropper` wraps the app
when it is served by uvicorn (see server.py) and closes the socket without writing a byte.
"""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import dataclass, field
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

DROP_FLAG = "sandbox.drop_connection"
DROPPER_PRESENT = "sandbox.dropper"
FAULT_PREFIXES = ("/kuhr/",)
TOKEN_PREFIXES = ("/maskinporten/", "/helseid/")


class ConnectionDroppedError(ConnectionError):
    """Raised in-process (no server transport to close) where a connection would be dropped."""


@dataclass
class FaultConfig:
    error_rate: float = 0.0
    error_statuses: tuple[int, ...] = (500, 502, 503)
    latency_ms: float = 0.0
    rate_limit_every: int = 0
    retry_after: int = 1
    drop_rate: float = 0.0
    lost_response_rate: float = 0.0
    token_endpoints: bool = False

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FaultConfig:
        """The body of POST /sandbox/admin/faults; `{}` clears every fault."""
        known = {
            "error_rate",
            "error_statuses",
            "latency_ms",
            "rate_limit",
            "drop_rate",
            "lost_response_rate",
            "token_endpoints",
        }
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown fault knob(s): {', '.join(unknown)}")
        config = cls()
        for name in ("error_rate", "drop_rate", "lost_response_rate"):
            if name in data:
                value = float(data[name])
                if not 0.0 <= value <= 1.0:
                    raise ValueError(f"{name} must be between 0 and 1")
                setattr(config, name, value)
        if "latency_ms" in data:
            config.latency_ms = max(0.0, float(data["latency_ms"]))
        if "error_statuses" in data:
            statuses = tuple(int(s) for s in data["error_statuses"])
            if not statuses or any(not 500 <= s <= 599 for s in statuses):
                raise ValueError("error_statuses must be 5xx codes")
            config.error_statuses = statuses
        rate_limit = data.get("rate_limit") or {}
        if rate_limit:
            config.rate_limit_every = int(rate_limit.get("every", 0))
            config.retry_after = int(rate_limit.get("retry_after", 1))
            if config.rate_limit_every < 0 or config.retry_after < 0:
                raise ValueError("rate_limit every and retry_after must be >= 0")
        config.token_endpoints = bool(data.get("token_endpoints", False))
        return config

    def as_json(self) -> dict[str, Any]:
        return {
            "error_rate": self.error_rate,
            "error_statuses": list(self.error_statuses),
            "latency_ms": self.latency_ms,
            "rate_limit": {"every": self.rate_limit_every, "retry_after": self.retry_after},
            "drop_rate": self.drop_rate,
            "lost_response_rate": self.lost_response_rate,
            "token_endpoints": self.token_endpoints,
        }

    @property
    def active(self) -> bool:
        return bool(
            self.error_rate
            or self.latency_ms
            or self.rate_limit_every
            or self.drop_rate
            or self.lost_response_rate
        )


@dataclass
class FaultState:
    """The current faults, their seeded RNG and what they did (reported by GET stats)."""

    config: FaultConfig = field(default_factory=FaultConfig)
    rng: random.Random = field(default_factory=random.Random)
    requests: int = 0
    counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            ("delayed", "rate_limited", "errors", "dropped", "lost_responses"), 0
        )
    )

    def configure(self, config: FaultConfig, seed: int) -> None:
        """New faults with a freshly seeded RNG; the counts keep adding up."""
        self.config = config
        self.rng = random.Random(seed)
        self.requests = 0

    def reset(self, config: FaultConfig, seed: int) -> None:
        self.configure(config, seed)
        self.counts = dict.fromkeys(self.counts, 0)


async def _send_json(send: Send, status: int, body: dict[str, Any], headers: list) -> None:
    payload = json.dumps(body).encode("utf-8")
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


class FaultMiddleware:
    def __init__(self, app: ASGIApp, state: FaultState) -> None:
        self.app = app
        self.state = state

    def _applies(self, path: str, config: FaultConfig) -> bool:
        if path.startswith(FAULT_PREFIXES):
            return True
        return config.token_endpoints and path.startswith(TOKEN_PREFIXES)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        config = self.state.config
        if scope["type"] != "http" or not config.active or not self._applies(scope["path"], config):
            await self.app(scope, receive, send)
            return
        state, counts, rng = self.state, self.state.counts, self.state.rng
        state.requests += 1
        if config.latency_ms:
            counts["delayed"] += 1
            await asyncio.sleep(config.latency_ms / 1000)
        if config.drop_rate and rng.random() < config.drop_rate:
            counts["dropped"] += 1
            self._drop(scope)
            return
        if config.rate_limit_every and state.requests % config.rate_limit_every == 0:
            counts["rate_limited"] += 1
            body = {"error": "rate_limited", "error_description": "too many requests (sandbox)"}
            await _send_json(send, 429, body, [(b"retry-after", str(config.retry_after).encode())])
            return
        if config.error_rate and rng.random() < config.error_rate:
            counts["errors"] += 1
            status = rng.choice(config.error_statuses)
            body = {"error": "server_error", "error_description": f"injected fault {status}"}
            await _send_json(send, status, body, [])
            return
        if config.lost_response_rate and rng.random() < config.lost_response_rate:
            counts["lost_responses"] += 1

            async def swallow(message: Message) -> None:
                del message

            await self.app(scope, receive, swallow)
            self._drop(scope)
            return
        await self.app(scope, receive, send)

    @staticmethod
    def _drop(scope: Scope) -> None:
        if not scope.get(DROPPER_PRESENT):
            raise ConnectionDroppedError("sandbox fault: connection dropped")
        scope[DROP_FLAG] = True


class ConnectionDropper:
    """Outermost ASGI wrapper under uvicorn: closes the connection when the app asks to drop it.

    uvicorn's `send` is a bound method of its request cycle, which holds the transport; closing
    (aborting) it before any response byte is written leaves the client with a connection error.
    If the transport is not reachable, a started-but-unfinished response is the fallback: the
    server then closes the connection mid-response, which a client also sees as a transport error.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope[DROPPER_PRESENT] = True
        await self.app(scope, receive, send)
        if not scope.get(DROP_FLAG):
            return
        transport = getattr(getattr(send, "__self__", None), "transport", None)
        if transport is not None:
            transport.abort()
            await asyncio.sleep(0)  # let the protocol see connection_lost before it answers
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
