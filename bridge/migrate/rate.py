"""`--rate`: submissions per second, as a limiter the KUHR client waits on (status polls
never wait)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bridge.core.model import Behandlerkravmelding
from bridge.kuhr.client import AsyncKuhrClient


class RateLimiter:
    """At most `per_second` starts per second, evenly spaced (no bursts)."""

    def __init__(
        self,
        per_second: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        if per_second <= 0:
            raise ValueError("the rate must be positive")
        self._interval = 1.0 / per_second
        self._clock = clock
        self._sleep = sleep
        self._next = 0.0

    async def wait(self) -> None:
        """Take the next slot (no await before that: slots are handed out in call order)."""
        now = self._clock()
        start = max(now, self._next)
        self._next = start + self._interval
        if start > now:
            await self._sleep(start - now)


def parse_rate(text: str) -> float:
    """`50`, `50/s`, `600/min`, `10000/h` → per second."""
    value, _, unit = text.strip().lower().partition("/")
    seconds = {"": 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}.get(unit.strip())
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if seconds is None or number <= 0:
        raise ValueError(f"--rate {text!r}: give a positive number per second, e.g. 50/s")
    return number / seconds


def rate_limited_client(api_url: str, tokens: Any, rate: float | None, options: dict[str, Any]):
    """The KUHR client; with a rate, submissions wait their turn (polls do not)."""

    if rate is None:
        return AsyncKuhrClient(api_url, tokens, **options)

    class RateLimitedClient(AsyncKuhrClient):
        limiter = RateLimiter(rate)

        async def send_inn(self, melding: Behandlerkravmelding | str):  # type: ignore[override]
            await self.limiter.wait()
            return await super().send_inn(melding)

    return RateLimitedClient(api_url, tokens, **options)
