"""What clinic staff and the log see, through `bkm-bridge watch` (issue 19):

- one log line per final state (`broken.xml: avvist lokalt: NOT_XML`), a summary at the end of
  `--once`, and JSON log records with the fields file, state and codes;
- a transient KUHR failure is one WARNING line with the next retry time, no traceback, and a
  Norwegian receipt saying what is wrong and that it is retried;
- receipts and AppRecs are Norwegian and say what to do; flag advice is in the log only; the
  AppRec follows NAV's conventions (Status 3, one Error per rejected regning, OT = RegningNr);
- a sandbox run writes no AppRec into a production folder, and says so.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from lxml import etree
from support.daemon import receipt_of, wait_for_receipt
from support.paths import FIXTURES

from bridge.core.outcomes import STATUS_SENTENCES
from bridge.core.problems import STAFF_TEXT
from bridge.files.production import PRODUCTION_MARKER
from bridge.sandbox import start_sandbox

AR = "{http://www.kith.no/xmlstds/apprec/2004-11-21}"
SEED = FIXTURES / "seed-arbeidsflyt.xml"
CLOCK = "2026-01-06T15:30:00+01:00"


def apprec_of(claim: Path) -> etree._Element:
    return etree.fromstring(claim.with_name(claim.stem + ".apprec.xml").read_bytes())


def watch(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 240):
    return subprocess.run(
        [sys.executable, "-m", "bridge", "watch", *args],
        capture_output=True, text=True, timeout=timeout, cwd=cwd,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )  # fmt: skip


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_watch_once_logs_each_outcome_a_summary_and_norwegian_receipts(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    shutil.copyfile(SEED, inbox / "good.xml")  # regninger 4 and 6 are rejected, 5 approved
    (inbox / "broken.xml").write_bytes(b"this is not XML at all\n")
    # A sender no praksis has: PRAKSIS_MISSING, whose own text is advice for the operator.
    (inbox / "ukjent.xml").write_bytes(SEED.read_bytes().replace(b"999999999", b"888888888"))
    log_file = tmp_path / "bridge.log"
    proc = watch(
        str(inbox), "--once", "--state-dir", str(tmp_path / "state"),
        "--quiet-seconds", "0.2", "--sandbox-clock", CLOCK, "--sandbox-speed", "60",
        "--log-format", "json", "--log-file", str(log_file),
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr[-3000:]  # two files were rejected locally
    records = json_lines(log_file.read_text(encoding="utf-8"))
    by_file = {r["file"]: r for r in records if "state" in r and "file" in r}

    # One line per final state, with its fields.
    broken = by_file["broken.xml"]
    assert broken["message"] == "broken.xml: avvist lokalt: NOT_XML"
    assert (broken["state"], broken["codes"], broken["level"]) == (
        "avvist_lokalt",
        ["NOT_XML"],
        "WARNING",
    )
    good = by_file["good.xml"]
    assert good["message"] == (
        "good.xml: kontrollert: 2 avvist, 1 godkjent (delvis godkjent; merknader 470, 766)"
    )
    assert (good["state"], good["codes"], good["regninger"]) == (
        "delvis_godkjent",
        ["470", "766"],
        {"avvist": 2, "godkjent": 1},
    )
    assert by_file["ukjent.xml"]["codes"] == ["PRAKSIS_MISSING"]
    # The operator's advice is in the log …
    assert any(
        "PRAKSIS_MISSING" in r["message"] and "--praksis-id" in r["message"] for r in records
    )
    # … and the end of --once says how it went, in the same words.
    [summary] = [r for r in records if "summary" in r]
    assert summary["message"] == "watch --once: 3 file(s): 2 avvist lokalt, 1 delvis godkjent"
    assert summary["summary"] == {"avvist_lokalt": 2, "delvis_godkjent": 1}

    # Receipts: Norwegian, what to do; no flag advice.
    ukjent = receipt_of(inbox / "ukjent.xml")
    assert ukjent is not None and ukjent["status"] == "avvist_lokalt"
    assert ukjent["melding"] == STATUS_SENTENCES["avvist_lokalt"]
    assert ukjent["problemer"] == [
        {"kode": "PRAKSIS_MISSING", "melding": STAFF_TEXT["PRAKSIS_MISSING"]}
    ]
    ukjent_apprec = apprec_of(inbox / "ukjent.xml")
    assert ukjent_apprec.find(f"{AR}Status").get("V") == "2"
    for text in (
        json.dumps(ukjent),
        etree.tostring(ukjent_apprec, encoding="unicode"),
        json.dumps(receipt_of(inbox / "broken.xml")),
    ):
        assert "--praksis-id" not in text and "praksis.rules" not in text
    broken_receipt = receipt_of(inbox / "broken.xml")
    assert broken_receipt is not None
    assert broken_receipt["problemer"][0]["melding"] == STAFF_TEXT["NOT_XML"]

    # The AppRec of the controlled claim: NAV's convention.
    root = apprec_of(inbox / "good.xml")
    assert root.find(f"{AR}Status").get("V") == "3"
    errors = root.findall(f"{AR}Error")
    assert [(e.get("V"), e.get("OT")) for e in errors] == [("470", "4"), ("766", "6")]
    assert all("send den på nytt" in e.get("DN") for e in errors)
    receipt = receipt_of(inbox / "good.xml")
    assert receipt is not None and receipt["melding"] == STATUS_SENTENCES["delvis_godkjent"]


def test_a_sandbox_run_writes_no_apprec_into_a_production_folder(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    shutil.copyfile(SEED, inbox / "krav.xml")
    (inbox / "broken.xml").write_bytes(b"not XML\n")
    # The production settings file, dry-run against the sandbox as service/README §1.4 says.
    config = tmp_path / "prod.toml"
    config.write_text(
        '[kuhr]\nenvironment = "prod"\n\n[watch]\nfolders = ["inbox"]\nstate_dir = "state"\n',
        encoding="utf-8",
    )
    proc = watch(
        "--config", str(config), "--env", "sandbox", "--once", "--quiet-seconds", "0.2",
        "--sandbox-clock", CLOCK, "--sandbox-speed", "60",
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr[-3000:]  # broken.xml
    for name in ("krav.xml", "broken.xml"):
        got = receipt_of(inbox / name)
        assert got is not None and got["miljo"] == "sandbox", name  # the JSON receipt is there
        assert not (inbox / name).with_suffix(".apprec.xml").exists(), name
    withheld = [line for line in proc.stderr.splitlines() if "no AppRec written" in line]
    assert len(withheld) == 2 and all("WARNING" in line for line in withheld), proc.stderr
    assert "production folder" in withheld[0] and "sandbox run" in withheld[0]

    # A folder a prod run has marked is recognised without the production settings file.
    marked = tmp_path / "marked"
    marked.mkdir()
    (marked / PRODUCTION_MARKER).write_text("prod\n", encoding="utf-8")
    shutil.copyfile(SEED, marked / "krav.xml")
    proc = watch(
        str(marked), "--once", "--state-dir", str(tmp_path / "state2"), "--quiet-seconds",
        "0.2", "--sandbox-clock", CLOCK, "--sandbox-speed", "60",
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr[-3000:]  # delvis godkjent: regninger avvist
    assert receipt_of(marked / "krav.xml")["status"] == "delvis_godkjent"
    assert not (marked / "krav.apprec.xml").exists()
    assert f"holds {PRODUCTION_MARKER}" in proc.stderr

    # The same claim in an unmarked folder gets its AppRec: the guard is not a blanket refusal.
    plain = tmp_path / "plain"
    plain.mkdir()
    shutil.copyfile(SEED, plain / "krav.xml")
    proc = watch(
        str(plain), "--once", "--state-dir", str(tmp_path / "state3"), "--quiet-seconds",
        "0.2", "--sandbox-clock", CLOCK, "--sandbox-speed", "60",
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr[-3000:]  # delvis godkjent, as above
    assert (plain / "krav.apprec.xml").exists()
    assert "no AppRec written" not in proc.stderr


# --------------------------------------------------------------------------- KUHR unreachable


@pytest.fixture
def sandbox(tmp_path: Path):
    with start_sandbox(
        state_dir=tmp_path / "sandbox", clock=datetime.fromisoformat(CLOCK)
    ) as running:
        yield running


def faults(sandbox, body: dict[str, Any]) -> None:
    url = f"{sandbox.info['admin_url']}/faults"
    httpx.post(url, json=body, timeout=10).raise_for_status()


def test_kuhr_unreachable_is_one_warning_per_retry_and_a_norwegian_receipt(
    tmp_path: Path, sandbox
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    faults(sandbox, {"drop_rate": 1.0})  # KUHR closes every connection without an answer
    log_file = tmp_path / "bridge.log"
    env = {
        "BKM_BRIDGE_KUHR__SANDBOX_STATE_DIR": str(tmp_path / "sandbox"),
        "BKM_BRIDGE_KUHR__MAX_ATTEMPTS": "2",
        "BKM_BRIDGE_KUHR__BACKOFF_BASE": "0.05",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "bridge", "watch", str(inbox), "--state-dir",
         str(tmp_path / "state"), "--quiet-seconds", "0.2", "--praksis-id", "1004326178",
         "--log-format", "json", "--log-file", str(log_file)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path,
        env={**os.environ, **env},
    )  # fmt: skip
    try:
        claim = inbox / "krav.xml"
        shutil.copyfile(SEED, claim)
        waiting = wait_for_receipt(claim, lambda r: "prøver igjen" in r["melding"], timeout=90)
        assert waiting["status"] == "venter"
        assert "KUHR (Helfo) svarte ikke" in waiting["melding"]  # what is wrong …
        assert "Du trenger ikke gjøre noe" in waiting["melding"]  # … and what to do
        assert not waiting["behandlerkravmeldingId"]
        faults(sandbox, {})  # KUHR is back
        wait_for_receipt(claim, lambda r: bool(r["behandlerkravmeldingId"]), timeout=90)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)

    records = json_lines(log_file.read_text(encoding="utf-8"))
    bridge = [r for r in records if r["logger"].startswith("bridge")]
    assert not [r for r in bridge if "exception" in r], "a transient failure logged a traceback"
    assert not [r for r in bridge if r["level"] in ("ERROR", "CRITICAL")]
    warnings = [r for r in bridge if r["level"] == "WARNING" and "SANDBOX" not in r["message"]]
    assert warnings, "expected a WARNING per failed step"
    for record in warnings:  # each one line: which file, what failed, when the next try is
        assert record["message"].startswith("krav.xml: "), record["message"]
        assert "trying again at" in record["message"], record["message"]
        assert "\n" not in record["message"]
