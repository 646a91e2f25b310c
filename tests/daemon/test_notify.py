"""Notifications from a running bridge (`[notify]`): an e-mail to a loopback SMTP sink and a
JSON POST to a loopback webhook when a claim is rejected (locally, or regninger avvist by
KUHR) and when the bridge turns unhealthy and healthy again. File names, codes and counts
only: no patient data.
"""

from __future__ import annotations

import json
import shutil
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from support.paths import FIXTURES
from support.smtp_sink import SmtpSink
from support.webhook import WebhookReceiver

from bridge.config import load_settings
from bridge.daemon.runner import Runner, RunOptions
from bridge.sandbox import start_sandbox

SEED_CLOCK = datetime.fromisoformat("2026-01-06T15:30:00+01:00")
PATIENT_IDS = ("47908702367", "47908500667")


def receipt_status(claim: Path) -> str | None:
    try:
        return json.loads(Path(f"{claim}.kvittering.json").read_text(encoding="utf-8"))["status"]
    except (OSError, ValueError, KeyError):
        return None


def test_rejected_and_unhealthy_are_notified_by_mail_and_webhook(tmp_path: Path) -> None:
    with (
        start_sandbox(state_dir=tmp_path / "sandbox", clock=SEED_CLOCK) as sandbox,
        SmtpSink() as smtp,
        WebhookReceiver() as hook,
    ):
        admin = sandbox.info["admin_url"]
        inbox = tmp_path / "inbox"
        inbox.mkdir()
        settings = load_settings(
            None,
            {
                "kuhr.sandbox_state_dir": tmp_path / "sandbox",
                # A proxy that answers nothing: the loopback webhook must not go through it.
                "kuhr.proxy": "http://192.0.2.1:3128",
                "watch.state_dir": tmp_path / "state",
                "watch.quiet_seconds": 0.2,
                "notify.check_seconds": 0.2,
                "notify.smtp_host": "127.0.0.1",
                "notify.smtp_port": smtp.port,
                "notify.smtp_security": "none",
                "notify.mail_from": "bridge@klinikk.test",
                "notify.mail_to": ["drift@klinikk.test"],
                "notify.webhook_url": hook.url,
            },
        )
        runner = Runner(settings, RunOptions(folders=(inbox,)))
        runner.start()
        try:
            (inbox / "ødelagt.xml").write_bytes(b"<BehandlerKrav>\n  <Enkeltregning>\n")
            shutil.copyfile(FIXTURES / "seed-arbeidsflyt.xml", inbox / "krav.xml")
            deadline = time.monotonic() + 60
            while receipt_status(inbox / "krav.xml") != "delvis_godkjent":
                assert time.monotonic() < deadline, "krav.xml was never controlled"
                httpx.post(f"{admin}/clock", json={"advance_seconds": 30}, timeout=10)
                time.sleep(0.2)

            def files() -> dict[str, Any]:
                return {
                    f["fil"]: f
                    for body in hook.received
                    if body["event"] == "rejected"
                    for f in body["filer"]
                }

            hook.wait_for(lambda _b: {"ødelagt.xml", "krav.xml"} <= set(files()))
            rejected = files()
            assert rejected["ødelagt.xml"]["status"] == "avvist_lokalt"
            assert rejected["ødelagt.xml"]["koder"] == ["XML_MALFORMED"]
            assert rejected["krav.xml"]["status"] == "delvis_godkjent"
            assert rejected["krav.xml"]["koder"] == ["470", "766"]
            assert rejected["krav.xml"]["avviste_regninger"] == 2
            assert len(rejected) == 2  # each file once

            # KUHR breaks: one "unhealthy" message naming the check; then one "healthy again".
            httpx.post(f"{admin}/faults", json={"error_rate": 1.0, "error_statuses": [503]})
            down = hook.wait_for(lambda b: b["event"] == "unhealthy")
            assert "kuhr" in down["failed"] and "503" in down["errors"]["kuhr"]
            httpx.post(f"{admin}/faults", json={})
            hook.wait_for(lambda b: b["event"] == "healthy")
            assert [b["event"] for b in hook.received].count("unhealthy") == 1
        finally:
            runner.stop()

        mails = smtp.messages
        assert all(rcpts == ["drift@klinikk.test"] for rcpts, _ in mails)
        subjects = [m["Subject"] for _, m in mails]
        assert any("rejected" in s for s in subjects)
        assert any("UNHEALTHY (kuhr" in s for s in subjects)
        assert any("healthy again" in s for s in subjects)
        text = "\n".join(m.get_content() for _, m in mails)
        assert "ødelagt.xml: avvist_lokalt, codes XML_MALFORMED" in text
        assert "krav.xml: delvis_godkjent, codes 470, 766, 2 regning(er) avvist" in text
        everything = text + json.dumps(hook.received, ensure_ascii=False)
        for patient_id in PATIENT_IDS:
            assert patient_id not in everything
