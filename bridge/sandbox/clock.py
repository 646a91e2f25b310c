"""The sandbox's own clock: simulated Europe/Oslo time that runs `speed` times real time.

Claims move through their statuses on this clock; tokens do not (clients sign assertions with
the real time, so token expiry is checked against the real clock).
"""

from __future__ import annotations

import threading
import time
from datetime import datetime
from zoneinfo import ZoneInfo

OSLO = ZoneInfo("Europe/Oslo")
DEFAULT_START = datetime(2026, 1, 6, 15, 30, tzinfo=OSLO)


def as_oslo(value: datetime) -> datetime:
    """An aware datetime in Oslo time; a naive one is taken to be Oslo local time."""
    if value.tzinfo is None:
        return value.replace(tzinfo=OSLO)
    return value.astimezone(OSLO)


def from_epoch(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, OSLO)


def parse_iso(text: str) -> datetime:
    """An ISO 8601 date-time (offset optional, then Oslo local time)."""
    return as_oslo(datetime.fromisoformat(text.strip()))


class SandboxClock:
    """Simulated time: `start` at creation, advancing `speed` simulated seconds per real second.

    Times are kept as epoch seconds (floats) so the hot path does no datetime arithmetic.
    """

    def __init__(self, start: datetime = DEFAULT_START, speed: float = 1.0) -> None:
        if speed < 0:
            raise ValueError("speed must be zero or positive")
        self._lock = threading.Lock()
        self._base = as_oslo(start).timestamp()
        self._real_base = time.monotonic()
        self._speed = speed

    @property
    def speed(self) -> float:
        return self._speed

    def now(self) -> float:
        """The simulated time as epoch seconds."""
        with self._lock:
            return self._base + (time.monotonic() - self._real_base) * self._speed

    def now_datetime(self) -> datetime:
        return from_epoch(self.now())

    def set(self, when: datetime) -> None:
        with self._lock:
            self._base = as_oslo(when).timestamp()
            self._real_base = time.monotonic()

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._base += seconds

    def set_speed(self, speed: float) -> None:
        if speed < 0:
            raise ValueError("speed must be zero or positive")
        with self._lock:
            now = self._base + (time.monotonic() - self._real_base) * self._speed
            self._base, self._real_base, self._speed = now, time.monotonic(), speed
