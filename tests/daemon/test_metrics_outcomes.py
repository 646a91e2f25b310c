"""/metrics over loopback: KUHR's control results counted per merknad, and the age of the
oldest unfinished file version, which must not grow for a claim that only waits for its
payment (follow = payment): that wait has a gauge of its own.
"""

from __future__ import annotations

import shutil
import time
from datetime import datetime
from pathlib import Path

import httpx
from support.daemon import free_port, parse_metrics, wait_for_receipt
from support.paths import FIXTURES

from bridge.config import load_settings
from bridge.daemon.runner import Runner, RunOptions
from bridge.sandbox import start_sandbox

SEED_CLOCK = datetime.fromisoformat("2026-01-06T15:30:00+01:00")


def test_metrics_count_merknader_and_ignore_the_wait_for_payment(tmp_path: Path) -> None:
    with start_sandbox(state_dir=tmp_path / "sandbox", clock=SEED_CLOCK) as sandbox:
        admin = sandbox.info["admin_url"]
        inbox = tmp_path / "inbox"
        inbox.mkdir()
        port = free_port()
        settings = load_settings(
            None,
            {
                "kuhr.sandbox_state_dir": tmp_path / "sandbox",
                "watch.state_dir": tmp_path / "state",
                "watch.quiet_seconds": 0.2,
                "watch.http_port": port,
                "watch.follow": "payment",
            },
        )
        runner = Runner(settings, RunOptions(folders=(inbox,)))
        runner.start()
        try:
            shutil.copyfile(FIXTURES / "seed-arbeidsflyt.xml", inbox / "krav.xml")
            # Regninger 4 and 6 are rejected (merknad 470 and 766), 5 is approved; the claim
            # then waits for the 16:00 vedtak and its payment, which this test never lets come.
            wait_for_receipt(inbox / "krav.xml", lambda r: r["status"] == "delvis_godkjent", admin)
            url = f"http://127.0.0.1:{port}/metrics"
            first = parse_metrics(httpx.get(url, timeout=10).text)
            time.sleep(1.5)
            later = parse_metrics(httpx.get(url, timeout=10).text)
        finally:
            runner.stop()
    for m in (first, later):
        assert m['bkm_bridge_files{state="controlled"}'] == 1
        assert m['bkm_bridge_kuhr_merknader{merknad="470",status="avvist"}'] == 1
        assert m['bkm_bridge_kuhr_merknader{merknad="766",status="avvist"}'] == 1
        assert m['bkm_bridge_kuhr_regninger{status="avvist"}'] == 2
        assert m['bkm_bridge_kuhr_regninger{status="godkjent"}'] == 1
        assert m["bkm_bridge_oldest_unfinished_age_seconds"] == 0
    waited = later["bkm_bridge_oldest_awaiting_payment_age_seconds"]
    assert waited >= first["bkm_bridge_oldest_awaiting_payment_age_seconds"] + 1.0 > 1.0
