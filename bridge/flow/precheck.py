"""The pre-control as a pipeline step: which mode, which takst table (the cache on disk), which
clock (the wall clock, or a sandbox's simulated one read over HTTP). The rules themselves are
pure and live in bridge.core.precheck."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from bridge.config import Settings
from bridge.core.model import Behandlerkrav, Behandlerkravmelding
from bridge.core.precheck import (
    TAKSTER_UNAVAILABLE,
    Finding,
    Mode,
    PrecheckOutcome,
    fagomraade_for,
    precheck_melding,
)
from bridge.core.takster import CacheError, TakstTable
from bridge.core.timezone import OSLO
from bridge.files.takstcache import cache_file, default_cache_dir, load_table

log = logging.getLogger(__name__)

Clock = Callable[[], datetime | Awaitable[datetime]]


def wall_clock() -> datetime:
    return datetime.now(OSLO)


def sandbox_clock(
    admin_url: str, *, reread_seconds: float = 0.25
) -> Callable[[], Awaitable[datetime]]:
    """The clock of a sandbox running elsewhere, read from its admin API (GET …/clock).

    One HTTP client serves every read (building one costs an SSL context, ~26 ms, which was a
    third of the watcher's CPU per file), one read runs at a time (a burst of claims asking
    together shares it; each used to send its own), and between reads the time is
    extrapolated at the sandbox's speed; a jump made through the admin API shows within
    `reread_seconds`."""
    import httpx

    client: httpx.AsyncClient | None = None
    last: tuple[float, datetime, float] | None = None  # (monotonic, sandbox time, speed)
    reading: asyncio.Lock | None = None

    def recent() -> datetime | None:
        tick = time.monotonic()
        if last is None or tick - last[0] >= reread_seconds:
            return None
        return last[1] + timedelta(seconds=(tick - last[0]) * last[2])

    async def now() -> datetime:
        nonlocal client, last, reading
        if (known := recent()) is not None:
            return known
        reading = reading or asyncio.Lock()
        async with reading:
            if (known := recent()) is not None:  # read while this call waited
                return known
            tick = time.monotonic()
            try:
                if client is None:
                    client = httpx.AsyncClient(timeout=5.0, trust_env=False)  # loopback
                answer = await client.get(f"{admin_url.rstrip('/')}/clock")
                answer.raise_for_status()
                data = answer.json()
                last = (tick, datetime.fromisoformat(data["now"]), float(data.get("speed", 1.0)))
                return last[1]
            except (httpx.HTTPError, KeyError, ValueError) as exc:
                log.warning("sandbox clock not readable (%s); using the wall clock", exc)
                return wall_clock()

    return now


class Prechecker:
    """The pre-control as a step: which mode, which table, which clock."""

    def __init__(
        self,
        mode: Mode | str,
        table: Callable[[], TakstTable],
        *,
        fagomraade: str | None = None,
        clock: Clock = wall_clock,
    ) -> None:
        self.mode = Mode(mode)
        self._table = table
        self.fagomraade = fagomraade  # used when the praksis type is not known
        self._clock = clock

    @classmethod
    def from_settings(cls, settings: Settings, *, clock: Clock = wall_clock) -> Prechecker:

        p = settings.precheck
        directory = p.cache_dir or default_cache_dir(settings.watch.state_dir)
        environment = settings.kuhr.environment.value
        path = cache_file(directory, environment)
        # The bundled snapshot is the sandbox's table: right for the sandbox, not for Helfo.
        snapshot = environment == "sandbox"
        return cls(
            p.mode,
            lambda: load_table(path, snapshot=snapshot),
            fagomraade=p.fagomraade,
            clock=clock,
        )

    @classmethod
    def for_target(cls, settings: Settings, admin_url: str | None) -> Prechecker:
        """The pre-control of a daemon: on a sandbox (whose admin API is `admin_url`) it dates
        claims by the sandbox's clock, elsewhere by the wall clock."""
        return cls.from_settings(
            settings, clock=sandbox_clock(admin_url) if admin_url else wall_clock
        )

    @property
    def enabled(self) -> bool:
        return self.mode is not Mode.OFF

    async def now(self) -> datetime:
        value = self._clock()
        return await value if inspect.isawaitable(value) else value

    def now_sync(self) -> datetime:
        value = self._clock()
        if inspect.isawaitable(value):
            raise TypeError("this clock is asynchronous: use `await prechecker.now()`")
        return value

    def table(self) -> TakstTable:
        return self._table()

    def fagomraade_of(self, praksistype: str | None) -> str | None:
        return fagomraade_for(praksistype) or self.fagomraade

    def check(
        self,
        melding: Behandlerkravmelding | Behandlerkrav,
        *,
        now: datetime,
        praksistype: str | None = None,
    ) -> PrecheckOutcome:
        """The findings for one claim (none when the mode is off). A cache that cannot be read
        is itself a finding, never an exception: the claim is not lost over it."""
        if not self.enabled:
            return PrecheckOutcome([], self.mode)

        try:
            findings = precheck_melding(
                melding, self._table(), now=now, praksis_fagomraade=self.fagomraade_of(praksistype)
            )
        except CacheError as exc:
            text = f"The pre-control could not run: {exc}; run `bkm-bridge takster sync`."
            return PrecheckOutcome([Finding(TAKSTER_UNAVAILABLE, text)], self.mode)
        return PrecheckOutcome(findings, self.mode)
