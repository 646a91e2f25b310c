"""A conversion process that dies mid-run (the OOM killer, a native crash) does not stop a
migration: the processes are started again, every file in flight is converted again, and a
file that keeps bringing the process down is reported as CONVERT_CRASHED."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import psutil
import pytest
from support import paths
from support.migrate import PRAKSIS_ID, write_claims

from bridge.config import load_settings
from bridge.files.discovery import Source
from bridge.migrate.dry_run import dry_alone
from bridge.migrate.migration import Migration
from bridge.migrate.options import MigrateOptions
from bridge.migrate.pool import CRASHES_ALLOWED


def _kill_one_worker() -> int:
    """SIGKILL one of this process's conversion processes; its pid."""
    for child in psutil.Process().children(recursive=True):
        if "spawn_main" in " ".join(child.cmdline()):
            os.kill(child.pid, signal.SIGKILL)
            return child.pid
    raise AssertionError("no conversion process to kill")


def _killing_on_row(at: int) -> tuple[Callable[[Any], None], list[int]]:
    killed: list[int] = []
    rows = 0

    def on_row(row: Any) -> None:
        nonlocal rows
        rows += 1
        if rows == at:
            killed.append(_kill_one_worker())

    return on_row, killed


def test_a_dry_run_goes_on_when_a_conversion_process_is_killed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_claims(tmp_path / "arkiv", range(600))
    settings = load_settings(None, {"watch.state_dir": tmp_path / "state"})
    options = MigrateOptions(
        paths=(tmp_path / "arkiv",),
        dry_run=True,
        out_dir=tmp_path / "json",
        praksis_id=PRAKSIS_ID,
        workers=2,
    )
    on_row, killed = _killing_on_row(at=5)  # chunks are still in flight then
    with caplog.at_level(logging.WARNING, logger="bridge.migrate"):
        result = Migration(settings, options, on_row=on_row).run()

    assert killed
    assert "a conversion process ended abruptly" in caplog.text
    assert result.summary["outcomes"] == {"konvertert": 600}
    assert len(list((tmp_path / "json").glob("*.json"))) == 600
    assert result.exit_code == 0


class _BreakingPool:
    """Stands in for the ConversionPool: every submission breaks until `breaks` run out."""

    def __init__(self, breaks: int) -> None:
        self.breaks = breaks
        self.restarts: list[int] = []
        self.generation = 0

    def current(self) -> tuple[int, _BreakingPool]:
        return self.generation, self

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        future: Future[Any] = Future()
        if self.breaks > 0:
            self.breaks -= 1
            future.set_exception(BrokenProcessPool("a child process terminated abruptly"))
        else:
            future.set_result(["converted"])
        return future

    def restart(self, generation: int) -> None:
        self.restarts.append(generation)
        self.generation += 1


def test_a_file_that_brings_the_process_down_every_time_is_reported_not_retried_forever() -> None:
    source = Source("/arkiv/giftig.xml", Path("/arkiv"), Path("giftig.xml"))
    pool = _BreakingPool(breaks=100)
    result = dry_alone(pool, source)  # type: ignore[arg-type]
    assert (result.outcome, result.problems) == ("avvist_lokalt", ("CONVERT_CRASHED",))
    assert pool.restarts == list(range(CRASHES_ALLOWED))  # one restart per breakage


def test_a_file_caught_in_someone_elses_breakage_converts_on_its_retry() -> None:
    source = Source("/arkiv/uskyldig.xml", Path("/arkiv"), Path("uskyldig.xml"))
    pool = _BreakingPool(breaks=1)
    assert dry_alone(pool, source) == "converted"  # type: ignore[arg-type, comparison-overlap]
    assert pool.restarts == [0]


def test_a_real_run_goes_on_when_a_conversion_process_is_killed_and_sends_each_claim_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import httpx
    from support.migrate import SEED_CLOCK

    from bridge.sandbox import start_sandbox

    write_claims(tmp_path / "arkiv", range(120))
    settings = load_settings(
        None,
        {"kuhr.sandbox_state_dir": tmp_path / "sandbox", "watch.state_dir": tmp_path / "state"},
    )
    options = MigrateOptions(
        paths=(tmp_path / "arkiv",), receipts_dir=tmp_path / "kvitteringer", workers=2
    )
    migration = Migration(settings, options)
    killed: list[int] = []

    def kill_when_sending_has_begun() -> None:  # most claims are still to convert then
        deadline = time.monotonic() + 60
        while migration.tally.done < 3 and time.monotonic() < deadline:
            time.sleep(0.002)
        killed.append(_kill_one_worker())

    killer = threading.Thread(target=kill_when_sending_has_begun)
    with (
        start_sandbox(state_dir=tmp_path / "sandbox", clock=SEED_CLOCK, speed=120) as sandbox,
        caplog.at_level(logging.WARNING, logger="bridge.migrate"),
    ):
        killer.start()
        result = migration.run()
        killer.join()
        stats = httpx.get(f"{sandbox.info['admin_url']}/stats", timeout=10).json()

    assert killed
    assert "a conversion process ended abruptly" in caplog.text
    assert result.summary["outcomes"] == {"sendt": 120}
    assert stats["submissions_accepted"] == stats["submissions_received"] == 120
    assert result.exit_code == 0


def _die_in_the_middle_of_sending_a_result() -> None:
    """Runs in a conversion process: start a result message on the pool's result pipe, as a
    worker killed mid-write leaves it (a length header, part of the body), and die."""
    import struct
    import sys

    results = sys._getframe(1).f_locals["result_queue"]  # concurrent.futures' worker loop
    os.write(results._writer.fileno(), struct.pack("!i", 100_000) + b"\x80" * 64)
    os._exit(1)


def test_a_worker_killed_while_sending_a_result_does_not_hang_the_pool() -> None:
    """CPython's pool waits forever for the rest of such a message; the stall watch ends the
    wait, so the breakage is seen and the pool restarted like any other."""
    from bridge.migrate.pool import ConversionPool, ConvertSettings, convert_in_worker

    pool = ConversionPool(2, ConvertSettings())
    try:
        generation, processes = pool.current()
        doomed = processes.submit(_die_in_the_middle_of_sending_a_result)
        with pytest.raises(BrokenProcessPool):
            doomed.result(timeout=30)
        pool.restart(generation)
        data = (paths.FIXTURES / "seed-arbeidsflyt.xml").read_bytes()
        result = pool.current()[1].submit(convert_in_worker, data).result(timeout=60)
        assert result.ok and result.behandlerkrav is not None
    finally:
        pool.shutdown()
