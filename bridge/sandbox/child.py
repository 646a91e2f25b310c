"""The embedded sandbox of the bridge's commands, served from a child process.

Started and stopped by the bridge, with no configuration, as before; but in a process of its
own, because a sandbox thread in the bridge's process shares its interpreter lock: under a
burst both event loops want it all the time (`strace` counted ~250 futex calls per file
sent), and the sandbox's work competed with the bridge's on one core (bench/README.md).

The child gets its settings and hands back `sandbox.json`'s dict over a pipe, so the client's
private key never touches the disk. It ignores Ctrl-C (the bridge decides when to stop, and
finishing in-flight work needs the sandbox) and ends when the bridge does, however it ends.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection
from datetime import datetime
from typing import Any

from bridge.runtime.childproc import (
    ask_to_stop,
    end_child,
    exit_with_parent,
    ignore_interrupts,
    start_child,
)

START_TIMEOUT_SECONDS = 60.0  # a cold start on a busy machine imports FastAPI, uvicorn …
STOP_TIMEOUT_SECONDS = 5.0


class SandboxChildError(RuntimeError):
    """The sandbox process did not come up."""


class SandboxProcess:
    """A sandbox serving from a child process: `.info` (the sandbox.json dict), `.stop()`."""

    def __init__(self, *, clock: datetime | None = None, speed: float = 1.0) -> None:
        self._process, self._pipe = start_child(
            _serve, clock, speed, name="kuhr-sandbox", daemon=True
        )
        self.info: dict[str, Any] = self._wait_for_info()

    def _wait_for_info(self) -> dict[str, Any]:
        ready = multiprocessing.connection.wait(
            [self._pipe, self._process.sentinel], START_TIMEOUT_SECONDS
        )
        message = None
        if self._pipe in ready:
            with contextlib.suppress(EOFError, OSError):  # it died before it could say why
                message = self._pipe.recv()
        if not isinstance(message, dict) or "info" not in message:
            self.stop()
            why = message.get("error") if isinstance(message, dict) else None
            raise SandboxChildError(why or "the sandbox process did not start")
        return message["info"]

    @property
    def running(self) -> bool:
        return self._process.is_alive()

    def stop(self) -> None:
        """Ask the child to stop serving; terminate it if it does not within a few seconds."""
        ask_to_stop(self._pipe)
        end_child(self._process, self._pipe, STOP_TIMEOUT_SECONDS)

    def __enter__(self) -> SandboxProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _serve(pipe: multiprocessing.connection.Connection, clock: datetime | None, speed: float):
    """The child: serve until the bridge says stop, closes its end, or dies."""
    ignore_interrupts()
    exit_with_parent()
    from bridge.runtime.logs import setup_logging
    from bridge.sandbox.server import start_sandbox

    # Its warnings go to the bridge's stderr through the bridge's redaction, as they did from
    # a thread (not to a --log-file: that belongs to the bridge's process).
    setup_logging("WARNING")

    try:
        running = start_sandbox(clock=clock, speed=speed)
    except Exception as exc:  # reported to the bridge, which says why it cannot start
        pipe.send({"error": f"{type(exc).__name__}: {exc}"})
        return
    try:
        pipe.send({"info": running.info})
        with contextlib.suppress(EOFError):  # EOF: the bridge closed its end
            pipe.recv()  # "stop"
    finally:
        running.stop()
