"""What every helper process of the bridge does first (conversion workers, the sandbox)."""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import signal
import threading


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
