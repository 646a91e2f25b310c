"""Waiting for what a folder watcher hands over: a recording on_complete and a polling wait."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

WAIT = 10.0  # upper bound for anything that should happen "soon"; tests pass much faster


class Recorder:
    """on_complete that remembers (path, size at hand-over) and lets a test wait for calls."""

    def __init__(self, fail_for: Callable[[Path], bool] = lambda path: False) -> None:
        self.calls: list[tuple[Path, int]] = []
        self.threads: set[str] = set()
        self._fail_for = fail_for
        self._changed = threading.Condition()

    def __call__(self, path: Path) -> None:
        try:
            size = path.stat().st_size
        except OSError:
            size = -1
        with self._changed:
            self.calls.append((path, size))
            self.threads.add(threading.current_thread().name)
            self._changed.notify_all()
        if self._fail_for(path):
            raise RuntimeError("12345678901 Kari Nordmann: invented patient data in a message")

    def names(self) -> list[str]:
        with self._changed:
            return [path.name for path, _size in self.calls]

    def wait_for(self, predicate: Callable[[list[str]], bool], timeout: float = WAIT) -> bool:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate([path.name for path, _size in self.calls]):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
            return True

    def wait_for_name(self, name: str, count: int = 1, timeout: float = WAIT) -> bool:
        return self.wait_for(lambda names: names.count(name) >= count, timeout)


def wait_until(condition: Callable[[], bool], timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()
