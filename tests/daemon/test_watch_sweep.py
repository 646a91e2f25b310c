"""The sweep through `watch` and `bkm-bridge sweep`: a rebehandling made through the sandbox's
admin API reaches the receipt and the AppRec of a claim already final, within one sweep.

The sandbox runs standalone (its own state dir) at ×120, so the test can stop and move its
clock; the daemon's sweep interval is in the sandbox's time (360 s there: 3 s here)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.daemon import receipt_of, wait_for_receipt
from support.paths import FIXTURES

from bridge.config import ConfigError, load_settings
from bridge.daemon.runner import Runner, RunOptions
from bridge.sandbox import start_sandbox

# The morning after the seed's claims: KUHR's 16:00 vedtak run is hours (of the sandbox's
# time) away, so only the rebehandling changes anything while a test runs.
SEED_CLOCK = datetime.fromisoformat("2026-01-07T08:00:00+01:00")
SPEED = 120


@pytest.fixture
def sandbox(tmp_path: Path):
    with start_sandbox(state_dir=tmp_path / "sandbox", clock=SEED_CLOCK, speed=SPEED) as running:
        yield running


def admin(sandbox, path: str, body: dict[str, Any] | None = None) -> Any:
    url = f"{sandbox.info['admin_url']}/{path}"
    response = httpx.post(url, json=body, timeout=10) if body is not None else httpx.get(url)
    assert response.status_code == 200, response.text
    return response.json()


def apprec_of(claim: Path) -> tuple[str, str]:
    """(Status V, Id) of the claim's AppRec."""
    text = claim.with_suffix(".apprec.xml").read_text(encoding="utf-8")
    status = re.search(r'<Status V="(\d)"', text)
    ident = re.search(r"<Id>([^<]+)</Id>", text)
    assert status is not None and ident is not None
    return status.group(1), ident.group(1)


def settings_for(tmp_path: Path, **extra: Any):
    return load_settings(
        None,
        {
            "kuhr.sandbox_state_dir": tmp_path / "sandbox",
            "watch.state_dir": tmp_path / "state",
            "watch.quiet_seconds": 0.2,
            **extra,
        },
    )


def final_delvis(receipt: dict[str, Any]) -> bool:
    return receipt["status"] == "delvis_godkjent" and receipt["tilstand"] == "controlled"


def rebehandlet(receipt: dict[str, Any]) -> bool:
    done = [r for r in receipt["rebehandlinger"] if r["kontrollstatus"] == "ferdig_kontrollert"]
    return bool(done) and receipt["kontrollresultat"] == "godkjent"


def test_a_rebehandling_reaches_receipt_and_apprec_within_one_sweep(
    tmp_path: Path, sandbox
) -> None:
    """`bkm-bridge watch` as it runs on a server (a process of its own, stopped by SIGTERM)."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    log_file = tmp_path / "bridge.log"
    env = {
        **os.environ,
        "BKM_BRIDGE_KUHR__SANDBOX_STATE_DIR": str(tmp_path / "sandbox"),
        "BKM_BRIDGE_KUHR__SWEEP_INTERVAL": "6m",
    }
    command = [
        sys.executable,
        "-m",
        "bridge",
        "watch",
        str(inbox),
        "--state-dir",
        str(tmp_path / "state"),
        "--quiet-seconds",
        "0.2",
        "--log-file",
        str(log_file),
    ]
    daemon = subprocess.Popen(
        command, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )  # fmt: skip
    try:
        claim = inbox / "krav.xml"
        shutil.copyfile(FIXTURES / "seed-arbeidsflyt.xml", claim)
        first = wait_for_receipt(claim, final_delvis)
        assert apprec_of(claim)[0] == "3"  # OK, feil i delmelding
        old_id = apprec_of(claim)[1]

        # KUHR re-runs the control and approves every regning (its clock stopped meanwhile,
        # then moved past the control: the rebehandling is done before a sweep can see it).
        admin(sandbox, "clock", {"speed": 0})
        made = admin(
            sandbox, "rebehandling", {"behandlerkravmeldingId": first["behandlerkravmeldingId"]}
        )
        assert made["rebehandling"] is True
        admin(sandbox, "clock", {"advance_seconds": 120})
        overview_before = admin(sandbox, "stats")["overview_requests"]

        after = wait_for_receipt(claim, rebehandlet, timeout=30)
        assert admin(sandbox, "stats")["overview_requests"] > overview_before  # a sweep did it
        assert [r["status"] for r in after["regninger"]] == ["godkjent"] * 3
        assert after["status"] == "godkjent" and after["tilstand"] == "controlled"
        status, new_id = apprec_of(claim)
        assert status == "1" and new_id != old_id
    finally:
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(timeout=30)
        if log_file.exists():  # shown by pytest if the test fails
            print(log_file.read_text(encoding="utf-8")[-6000:])
    assert code == 0
    logged = log_file.read_text(encoding="utf-8")
    changed = [line for line in logged.splitlines() if "changed at KUHR:" in line]
    # Within one sweep: the one sweep that saw a change saw the rebehandling done.
    assert len(changed) == 1, logged[-4000:]
    assert "krav.xml" in changed[0] and "ferdig_kontrollert" in changed[0], changed[0]
    assert "(1 rebehandling(er))" in changed[0], changed[0]
    assert "47908702367" not in logged


def test_sweep_command_on_demand(tmp_path: Path, sandbox) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    claim = inbox / "krav.xml"
    shutil.copyfile(FIXTURES / "seed-arbeidsflyt.xml", claim)
    # `watch --once` follows the claim to its control result; no sweeps of its own.
    settings = settings_for(tmp_path, **{"kuhr.sweep_interval": "1s"})
    # delvis godkjent: regninger avvist need someone to act (the exit-code rule)
    assert Runner(settings, RunOptions(folders=(inbox,))).run_once() == 1
    first = receipt_of(claim)
    assert first is not None and final_delvis(first)

    env = {
        **os.environ,
        "BKM_BRIDGE_KUHR__SANDBOX_STATE_DIR": str(tmp_path / "sandbox"),
        "BKM_BRIDGE_WATCH__STATE_DIR": str(tmp_path / "state"),
    }

    def sweep() -> dict[str, Any]:
        done = subprocess.run(
            [sys.executable, "-m", "bridge", "sweep", "--json"],
            capture_output=True, text=True, env=env, timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    quiet = sweep()
    assert (quiet["checked"], quiet["changed"], quiet["details_reads"]) == (1, 0, 0)
    admin(sandbox, "clock", {"speed": 0})
    admin(sandbox, "rebehandling", {"behandlerkravmeldingId": first["behandlerkravmeldingId"]})
    admin(sandbox, "clock", {"advance_seconds": 120})
    result = sweep()
    assert (result["changed"], result["rewritten"], result["overview_reads"]) == (1, 1, 1)
    after = receipt_of(claim)
    assert after is not None and rebehandlet(after)
    assert apprec_of(claim)[0] == "1"


@pytest.mark.parametrize(
    ("given", "seconds"),
    [("24h", 86400.0), ("30m", 1800.0), ("90s", 90.0), ("2d", 172800.0), ("off", 0.0), (0, 0.0)],
)
def test_sweep_interval_setting(given: Any, seconds: float) -> None:
    assert load_settings(None, {"kuhr.sweep_interval": given}).kuhr.sweep_interval == seconds


def test_sweep_interval_default_and_nonsense() -> None:
    assert load_settings(None, {}).kuhr.sweep_interval == 86400.0
    for bad in ("daily", "-1h", "inf"):
        with pytest.raises(ConfigError, match="sweep_interval"):
            load_settings(None, {"kuhr.sweep_interval": bad})
