"""Stopping the watcher while files keep arriving logs no ERROR: watchdog's inotify emitter,
stopped in the middle of a read, reports "queue_events() called when the thread is inactive"
at ERROR level (seen on about one stop in fifteen under load); the watcher filters that
shutdown artefact out. Linux (inotify) only in effect; elsewhere the test still runs and must
log no ERROR either.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pytest

from bridge.daemon.watcher import FolderWatcher, IntakeOptions

ROUNDS = 40


def test_stopping_while_files_arrive_logs_no_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="watchdog")
    for round_ in range(ROUNDS):
        folder = tmp_path / f"inbox-{round_}"
        folder.mkdir()
        watcher = FolderWatcher(
            IntakeOptions(folders=(folder,), quiet_seconds=0.1, lock_folders=False),
            lambda _path: None,
        )
        watcher.start()
        stop = threading.Event()

        def write(folder: Path = folder, stop: threading.Event = stop) -> None:
            n = 0
            while not stop.is_set():
                (folder / f"krav-{n % 50}.xml").write_bytes(b"<x/>")
                n += 1

        writer = threading.Thread(target=write)
        writer.start()
        time.sleep(0.05)
        watcher.stop()
        stop.set()
        writer.join()
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []
