"""The bridge's helper processes (conversion workers, the sandbox, migrate's sending
processes): what each does first, and how one with a control pipe is started and ended."""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
from collections.abc import Callable
from multiprocessing.context import SpawnProcess
from typing import Any

Pipe = multiprocessing.connection.Connection


def ignore_interrupts() -> None:
    """Ctrl-C in a terminal reaches the whole process group: the bridge's main process decides
    how to stop (finishing what is in flight needs its helpers)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def exit_with_parent() -> None:
    """A helper whose bridge process was killed (SIGKILL, a crash) ends too, instead of
    waiting forever on a queue or pipe it still holds both ends of."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def start_child(
    target: Callable[..., object], *args: Any, name: str, daemon: bool
) -> tuple[SpawnProcess, Pipe]:
    """Start `target(pipe, *args)` in a fresh process (`spawn`: no inherited threads or event
    loop); returns the process and this end of its pipe."""
    context = multiprocessing.get_context("spawn")
    pipe, child_end = context.Pipe()
    process = context.Process(target=target, args=(child_end, *args), name=name, daemon=daemon)
    process.start()
    child_end.close()
    return process, pipe


def ask_to_stop(pipe: Pipe) -> None:
    """Tell a child to stop (it is gone already if the pipe is closed)."""
    with contextlib.suppress(OSError):
        pipe.send("stop")


def end_child(process: SpawnProcess, pipe: Pipe, timeout: float) -> None:
    """Wait up to `timeout` for a child asked to stop, terminate it if it is still there."""
    process.join(timeout)
    if process.is_alive():
        process.terminate()
        process.join(5.0)
    pipe.close()
