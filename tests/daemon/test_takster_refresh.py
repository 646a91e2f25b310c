"""The running bridge keeps its takst tables fresh by itself (`[precheck] refresh_hours`): it
syncs them from the (sandbox's) open data API at start when it has no copy, and again when its
copy is older than the setting; with the setting 0 it never does.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from bridge.config import load_settings
from bridge.daemon.runner import Runner, RunOptions
from bridge.sandbox import start_sandbox

SEED_CLOCK = datetime.fromisoformat("2026-01-06T15:30:00+01:00")


def make_runner(tmp_path: Path, **extra: Any) -> Runner:
    inbox = tmp_path / "inbox"
    inbox.mkdir(exist_ok=True)
    settings = load_settings(
        None,
        {
            "kuhr.sandbox_state_dir": tmp_path / "sandbox",
            "watch.state_dir": tmp_path / "state",
            "watch.quiet_seconds": 0.2,
            **extra,
        },
    )
    return Runner(settings, RunOptions(folders=(inbox,)))


def wait_until(what: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = what()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out")


def test_the_daemon_syncs_the_takst_tables_at_start_and_on_schedule(tmp_path: Path) -> None:
    cache = tmp_path / "state" / "opendata" / "takster-sandbox.json"
    with start_sandbox(state_dir=tmp_path / "sandbox", clock=SEED_CLOCK) as sandbox:
        runner = make_runner(tmp_path, **{"precheck.refresh_hours": 2 / 3600})  # 2 s
        runner.start()
        try:
            wait_until(cache.exists)
            data = json.loads(cache.read_text(encoding="utf-8"))
            assert data["nlkkoder"]["url"] == sandbox.info["opne_data_url"]
            assert data["takstkoder"] and all(s["rows"] for s in data["takstkoder"].values())
            first = cache.stat().st_mtime_ns
            wait_until(lambda: cache.stat().st_mtime_ns > first, timeout=20)
            assert runner.takster is not None and runner.takster.syncs >= 2
        finally:
            runner.stop()


def test_refresh_hours_zero_leaves_the_tables_alone(tmp_path: Path) -> None:
    cache = tmp_path / "state" / "opendata" / "takster-sandbox.json"
    with start_sandbox(state_dir=tmp_path / "sandbox", clock=SEED_CLOCK):
        runner = make_runner(tmp_path, **{"precheck.refresh_hours": 0})
        runner.start()
        try:
            time.sleep(1.0)
            assert runner.takster is None and not cache.exists()
        finally:
            runner.stop()
