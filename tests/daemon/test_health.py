"""The health endpoint of a running bridge, over loopback: /healthz turns 503 when KUHR is
down, /metrics counts an end-to-end run, the status page shows it without patient data.

The sandbox runs standalone (its own state dir) so the test can break it (faults, stop) and
move its clock; the bridge runs as the daemon does (Runner.start/stop).
"""

from __future__ import annotations

import shutil
import socket
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.daemon import free_port, parse_metrics, wait_for_receipt
from support.paths import FIXTURES

from bridge import __version__
from bridge.config import load_settings
from bridge.daemon.health import HealthStartError, start_health_server
from bridge.daemon.runner import Runner, RunOptions
from bridge.sandbox import start_sandbox

SEED_CLOCK = datetime.fromisoformat("2026-01-06T15:30:00+01:00")
PATIENT_IDS = ("47908702367", "47908500667")


@pytest.fixture
def sandbox(tmp_path: Path):
    with start_sandbox(state_dir=tmp_path / "sandbox", clock=SEED_CLOCK) as running:
        yield running


def make_runner(tmp_path: Path, **extra: Any) -> tuple[Runner, Path]:
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
    return Runner(settings, RunOptions(folders=(inbox,))), inbox


def test_healthz_turns_503_naming_kuhr_when_kuhr_fails_or_is_gone(tmp_path: Path, sandbox) -> None:
    admin = sandbox.info["admin_url"]
    runner, _ = make_runner(tmp_path)
    runner.start()
    health = start_health_server(runner, "127.0.0.1", 0, kuhr_cache_seconds=0.2)
    try:
        healthy = httpx.get(f"{health.url}/healthz", timeout=10)
        assert healthy.status_code == 200, healthy.text
        body = healthy.json()
        assert body["status"] == "ok" and body["failed"] == []
        assert set(body["checks"]) == {"journal", "rescan", "pipeline", "kuhr", "token"}
        assert body["checks"]["kuhr"]["http_status"] == 200
        assert body["checks"]["token"]["expires_in_seconds"] > 0

        # KUHR answers 503 to everything: reachable network, broken service.
        httpx.post(f"{admin}/faults", json={"error_rate": 1.0, "error_statuses": [503]})
        time.sleep(0.3)
        failing = httpx.get(f"{health.url}/healthz", timeout=10)
        assert failing.status_code == 503
        assert failing.json()["failed"] == ["kuhr"]
        assert failing.json()["checks"]["kuhr"]["http_status"] == 503
        assert failing.json()["checks"]["journal"]["ok"] is True

        httpx.post(f"{admin}/faults", json={})
        time.sleep(0.3)
        assert httpx.get(f"{health.url}/healthz", timeout=10).status_code == 200

        # KUHR is gone altogether.
        sandbox.stop()
        time.sleep(0.3)
        gone = httpx.get(f"{health.url}/healthz", timeout=10)
        assert gone.status_code == 503
        assert gone.json()["failed"] == ["kuhr"]
        assert "ConnectError" in gone.json()["checks"]["kuhr"]["error"]
    finally:
        health.stop()
        runner.stop()


def test_healthz_names_the_event_loop_when_the_bridge_has_stopped(tmp_path: Path, sandbox) -> None:
    runner, _ = make_runner(tmp_path)
    runner.start()
    health = start_health_server(runner, "127.0.0.1", 0, kuhr_cache_seconds=0.2)
    try:
        assert httpx.get(f"{health.url}/healthz", timeout=10).status_code == 200
        runner.stop()
        body = httpx.get(f"{health.url}/healthz", timeout=10)
        assert body.status_code == 503
        assert "pipeline" in body.json()["failed"]
    finally:
        health.stop()


def test_metrics_and_status_page_count_an_end_to_end_run(tmp_path: Path, sandbox) -> None:
    admin = sandbox.info["admin_url"]
    port = free_port()
    runner, inbox = make_runner(tmp_path, **{"watch.http_port": port})
    runner.start()
    base = f"http://127.0.0.1:{port}"
    try:
        assert runner.health is not None and runner.health.port == port
        before = parse_metrics(httpx.get(f"{base}/metrics", timeout=10).text)
        assert before["bkm_bridge_files_seen_total"] == 0
        assert before["bkm_bridge_submit_latency_seconds_count"] == 0

        shutil.copyfile(FIXTURES / "seed-arbeidsflyt.xml", inbox / "krav.xml")
        (inbox / "broken.xml").write_bytes(b"<BehandlerKrav>\n  <Enkeltregning>\n")
        wait_for_receipt(inbox / "krav.xml", lambda r: r["status"] == "delvis_godkjent", admin)
        wait_for_receipt(inbox / "broken.xml", lambda r: r["status"] == "avvist_lokalt", admin)

        response = httpx.get(f"{base}/metrics", timeout=10)
        assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
        m = parse_metrics(response.text)
        assert m[f'bkm_bridge_info{{version="{__version__}",environment="sandbox"}}'] == 1
        assert m["bkm_bridge_files_seen_total"] == 2
        assert m["bkm_bridge_files_converted_total"] == 1
        assert m["bkm_bridge_files_rejected_total"] == 1
        assert m["bkm_bridge_files_submitted_total"] == 1
        assert m["bkm_bridge_files_controlled_total"] == 1
        assert m['bkm_bridge_files{state="controlled"}'] == 1
        assert m['bkm_bridge_files{state="rejected"}'] == 1
        assert m['bkm_bridge_files{state="failed"}'] == 0
        assert m["bkm_bridge_kuhr_submissions_total"] == 1
        assert m["bkm_bridge_kuhr_unreadable_entries_total"] == 0
        assert m["bkm_bridge_kuhr_requests_total"] >= 3  # praksis list, submit, status polls
        assert m['bkm_bridge_queue_depth{stage="due"}'] == 0
        assert m['bkm_bridge_queue_depth{stage="intake"}'] == 0
        assert m["bkm_bridge_oldest_unfinished_age_seconds"] == 0  # both are final
        assert 0 <= m["bkm_bridge_last_rescan_age_seconds"] < 60
        # One submission latency, in cumulative buckets that end at the count.
        buckets = [(k, v) for k, v in m.items() if k.startswith("bkm_bridge_submit_latency_")]
        counts = [v for k, v in buckets if "_bucket" in k]
        assert counts == sorted(counts) and counts[-1] == 1
        assert m['bkm_bridge_submit_latency_seconds_bucket{le="+Inf"}'] == 1
        assert m["bkm_bridge_submit_latency_seconds_count"] == 1
        assert 0 < m["bkm_bridge_submit_latency_seconds_sum"] < 60

        page = httpx.get(f"{base}/", timeout=10)
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "script-src" not in page.headers["content-security-policy"]  # no scripts at all
        text = page.text
        assert "krav.xml" in text and "broken.xml" in text
        assert "XML_MALFORMED" in text
        assert "<b>470</b>" in text and "<b>766</b>" in text
        for patient_id in PATIENT_IDS:
            assert patient_id not in text
    finally:
        runner.stop()
    # Stopped with the runner: the port is free again.
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{base}/healthz", timeout=2)


def test_the_endpoint_is_off_by_default_and_a_taken_port_fails_the_start(
    tmp_path: Path, sandbox
) -> None:
    runner, _ = make_runner(tmp_path)
    runner.start()
    try:
        assert runner.health is None
    finally:
        runner.stop()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        second, _ = make_runner(tmp_path, **{"watch.http_port": port})
        with pytest.raises(HealthStartError, match=f"health endpoint on 127.0.0.1:{port}"):
            second.start()
        second.stop()
