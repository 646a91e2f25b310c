"""A failing token endpoint (or KUHR) is a transient failure, not a crash: one WARNING line per
failed step with the time of the next try, no traceback, a receipt that says in Norwegian what
is wrong and that it is retried; once the other side is back the claim is sent, once.

The daemon runs as in production (Runner.start/stop) against a standalone sandbox on loopback
whose faults the test switches through the sandbox's admin API.
"""

from __future__ import annotations

import logging
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.daemon import wait_for_receipt
from support.paths import FIXTURES

from bridge.config import load_settings
from bridge.daemon.runner import Runner, RunOptions
from bridge.sandbox import start_sandbox

SEED_CLOCK = datetime.fromisoformat("2026-01-06T15:30:00+01:00")


@pytest.fixture
def sandbox(tmp_path: Path):
    with start_sandbox(state_dir=tmp_path / "sandbox", clock=SEED_CLOCK) as running:
        yield running


def faults(sandbox, body: dict[str, Any]) -> None:
    httpx.post(f"{sandbox.info['admin_url']}/faults", json=body, timeout=10).raise_for_status()


def stats(sandbox) -> dict[str, Any]:
    return httpx.get(f"{sandbox.info['admin_url']}/stats", timeout=10).json()


def test_a_failing_token_endpoint_is_retried_with_a_receipt_that_says_so(
    tmp_path: Path, sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    # Every token request fails (5xx) from the start: the bridge has no token yet.
    faults(sandbox, {"error_rate": 1.0, "token_endpoints": True})
    settings = load_settings(
        None,
        {
            "kuhr.sandbox_state_dir": tmp_path / "sandbox",
            "watch.state_dir": tmp_path / "state",
            "watch.quiet_seconds": 0.2,
            "watch.praksis_id": "1004326178",
        },
    )
    runner = Runner(settings, RunOptions(folders=(inbox,)))
    runner.start()
    try:
        claim = inbox / "krav.xml"
        shutil.copyfile(FIXTURES / "seed-arbeidsflyt.xml", claim)
        waiting = wait_for_receipt(claim, lambda r: "prøver igjen" in r["melding"])
        assert waiting["status"] == "venter"
        assert "innloggingstjenesten" in waiting["melding"]  # what is wrong …
        assert "Du trenger ikke gjøre noe" in waiting["melding"]  # … and what to do
        assert not waiting["behandlerkravmeldingId"]

        retries = [
            r
            for r in caplog.records
            if r.name == "bridge.pipeline" and "trying again at" in r.getMessage()
        ]
        assert retries and all(r.levelno == logging.WARNING for r in retries)
        assert "krav.xml" in retries[0].getMessage()
        assert "token" in retries[0].getMessage().lower()

        faults(sandbox, {})  # the token service is back
        sent = wait_for_receipt(claim, lambda r: bool(r["behandlerkravmeldingId"]))
        assert sent["status"] in ("sendt", "delvis_godkjent", "kontrollert")
        assert "prøver igjen" not in sent["melding"]
    finally:
        runner.stop()

    assert stats(sandbox)["submissions_accepted"] == 1
    pipeline_records = [r for r in caplog.records if r.name.startswith("bridge")]
    assert not [r for r in pipeline_records if r.exc_info], "a transient failure logged a traceback"
    assert not [r for r in pipeline_records if "unexpected" in r.getMessage()]


def test_kuhr_answering_5xx_is_retried_the_same_way(
    tmp_path: Path, sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    faults(sandbox, {"error_rate": 1.0})  # KUHR's API fails; the token endpoint works
    settings = load_settings(
        None,
        {
            "kuhr.sandbox_state_dir": tmp_path / "sandbox",
            "kuhr.max_attempts": 2,
            "kuhr.backoff_base": 0.05,
            "watch.state_dir": tmp_path / "state",
            "watch.quiet_seconds": 0.2,
            "watch.praksis_id": "1004326178",
        },
    )
    runner = Runner(settings, RunOptions(folders=(inbox,)))
    runner.start()
    try:
        claim = inbox / "krav.xml"
        shutil.copyfile(FIXTURES / "seed-arbeidsflyt.xml", claim)
        waiting = wait_for_receipt(claim, lambda r: "prøver igjen" in r["melding"])
        assert "KUHR (Helfo) svarte ikke" in waiting["melding"]
        faults(sandbox, {})
        wait_for_receipt(claim, lambda r: bool(r["behandlerkravmeldingId"]))
    finally:
        runner.stop()
    assert stats(sandbox)["submissions_accepted"] == 1
    assert not [r for r in caplog.records if r.name.startswith("bridge") and r.exc_info]
