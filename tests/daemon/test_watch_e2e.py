"""The watcher end to end on the seed's workflow, against a sandbox over loopback.

The sandbox runs standalone (its own state dir) so the test can move its clock; the bridge
runs as the daemon does (Runner.start/stop) and as `watch --once` (the CLI, a subprocess).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.daemon import receipt_of, wait_for_receipt
from support.paths import FIXTURES

from bridge.config import load_settings
from bridge.daemon.runner import Runner, RunOptions
from bridge.sandbox import start_sandbox

SEED_CLOCK = datetime.fromisoformat("2026-01-06T15:30:00+01:00")
PATIENT_IDS = ("47908702367", "47908500667")


def regning_results(receipt: dict[str, Any]) -> dict[str, tuple[str, list[str]]]:
    return {
        r["regningsnummer"]: (r["status"], [str(m["nummer"]) for m in r.get("merknader") or []])
        for r in receipt["regninger"]
    }


def daemon_settings(tmp_path: Path, **extra: Any):
    """The daemon pointed at the test's standalone sandbox, with its own journal."""
    return load_settings(
        None,
        {
            "kuhr.sandbox_state_dir": tmp_path / "sandbox",
            "watch.state_dir": tmp_path / "state",
            "watch.quiet_seconds": 0.2,
            **extra,
        },
    )


@pytest.fixture
def sandbox(tmp_path: Path):
    with start_sandbox(state_dir=tmp_path / "sandbox", clock=SEED_CLOCK) as running:
        yield running


def test_seed_workflow_through_the_daemon(tmp_path: Path, sandbox, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    admin = sandbox.info["admin_url"]
    settings = daemon_settings(tmp_path, **{"watch.follow": "payment"})
    runner = Runner(settings, RunOptions(folders=(inbox,)))
    runner.start()
    try:
        claim = inbox / "krav.xml"
        shutil.copyfile(FIXTURES / "seed-arbeidsflyt.xml", claim)
        first = wait_for_receipt(claim, lambda r: r["status"] == "delvis_godkjent", admin=admin)
        assert regning_results(first) == {
            "4": ("avvist", ["470"]),
            "5": ("godkjent", []),
            "6": ("avvist", ["766"]),
        }
        assert first["miljo"] == "sandbox"
        apprec = (inbox / "krav.apprec.xml").read_text(encoding="utf-8")
        assert '<Status V="3"' in apprec and 'V="470"' in apprec and 'V="766"' in apprec

        # The EPJ rewrites the file with regning 6's date corrected: a new version, sent once.
        tmp = inbox / ".krav.xml.tmp"
        shutil.copyfile(FIXTURES / "seed-arbeidsflyt-rettet.xml", tmp)
        tmp.replace(claim)
        second = wait_for_receipt(
            claim,
            lambda r: r["sha256"] != first["sha256"] and r["status"] == "godkjent",
            admin=admin,
        )
        assert regning_results(second) == {"6": ("godkjent", [])}

        # 16:00 makes a vedtak; two working days later it is paid to the praksis's account.
        paid = wait_for_receipt(
            claim, lambda r: r["status"] == "utbetalt", admin=admin, step=6 * 3600
        )
        assert paid["vedtak"]["utbetaling"]["kontonr"] == "12345678901"
    finally:
        runner.stop()

    stats = httpx.get(f"{admin}/stats", timeout=10).json()
    assert stats["by_guid"] == {
        "f0bcd358-0676-49c7-94f8-c055c4b21332": 1,
        "b7184d58-0ed4-4277-a60c-720b1daf69f7": 1,
        "32b24c0b-facd-4f5e-aff9-9849ae477db5": 2,  # the original and the corrected version
    }
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "krav.xml" in logged
    for patient_id in PATIENT_IDS:
        assert patient_id not in logged


def test_same_content_again_is_not_sent_again(tmp_path: Path, sandbox) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    admin = sandbox.info["admin_url"]
    # The claim is from 2014: no praksis period covers it, so the praksis is given.
    settings = daemon_settings(tmp_path, **{"watch.praksis_id": "1004326178"})
    runner = Runner(settings, RunOptions(folders=(inbox,)))
    runner.start()
    try:
        shutil.copyfile(FIXTURES / "alle-felter.xml", inbox / "a.xml")
        wait_for_receipt(
            inbox / "a.xml", lambda r: r["tilstand"] in {"submitted", "controlled"}, admin=admin
        )
        shutil.copyfile(FIXTURES / "alle-felter.xml", inbox / "copy-of-a.xml")
        duplicate = wait_for_receipt(inbox / "copy-of-a.xml", lambda r: r["status"] == "duplikat")
        assert duplicate["duplikatAv"].endswith("a.xml")
    finally:
        runner.stop()
    assert httpx.get(f"{admin}/stats", timeout=10).json()["submissions_accepted"] == 1


def test_watch_once_cli_with_bad_files(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    shutil.copyfile(FIXTURES / "seed-arbeidsflyt.xml", inbox / "good.xml")
    (inbox / "broken.xml").write_bytes(b"<BehandlerKrav>\n  <Enkeltregning>\n")
    (inbox / "apprec.xml").write_text(
        '<AppRec xmlns="http://www.kith.no/xmlstds/apprec/2004-11-21"/>', encoding="utf-8"
    )
    (inbox / "~lock.xml").write_text("temp file of an editor")
    env = {**os.environ, "COLUMNS": "120"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bridge",
            "watch",
            str(inbox),
            "--once",
            "--state-dir",
            str(tmp_path / "state"),
            "--quiet-seconds",
            "0.2",
            "--sandbox-clock",
            "2026-01-06T15:30:00+01:00",
            "--sandbox-speed",
            "60",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
        env=env,
    )
    assert proc.returncode == 1, proc.stderr[-3000:]  # one file failed locally
    good = receipt_of(inbox / "good.xml")
    assert good is not None and good["status"] == "delvis_godkjent", proc.stderr[-4000:]
    broken = receipt_of(inbox / "broken.xml")
    assert broken is not None and broken["status"] == "avvist_lokalt"
    assert broken["problemer"][0]["kode"] == "XML_MALFORMED"
    assert receipt_of(inbox / "apprec.xml") is None  # not a BKM: skipped quietly
    assert receipt_of(inbox / "~lock.xml") is None
    assert "SANDBOX" in proc.stderr
    for patient_id in PATIENT_IDS:
        assert patient_id not in proc.stderr + proc.stdout

    local = subprocess.run(
        [
            sys.executable,
            "-m",
            "bridge",
            "status",
            "--local",
            "--json",
            "--state-dir",
            str(tmp_path / "state"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=env,
    )
    assert local.returncode == 0, local.stderr
    states = {Path(r["fil"]).name: r["tilstand"] for r in json.loads(local.stdout)["filer"]}
    assert states == {"good.xml": "controlled", "broken.xml": "rejected", "apprec.xml": "skipped"}


def _start_watch(inbox: Path, state: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bridge",
            "watch",
            str(inbox),
            "--state-dir",
            str(state),
            "--quiet-seconds",
            "0.2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=state.parent,
    )


def _wait_for_line(proc: subprocess.Popen[str], needle: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    seen = []
    assert proc.stderr is not None
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line)
        if needle in line:
            return "".join(seen)
    raise AssertionError(f"never saw {needle!r}:\n{''.join(seen)}")


def test_sigterm_stops_the_daemon_gracefully(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    proc = _start_watch(inbox, tmp_path / "state")
    try:
        _wait_for_line(proc, "watching 1 folder")
        shutil.copyfile(FIXTURES / "seed-arbeidsflyt.xml", inbox / "krav.xml")
        _wait_for_line(proc, "krav.xml: mottatt by KUHR as")
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        assert time.monotonic() - started < 10
    finally:
        proc.kill()
    assert receipt_of(inbox / "krav.xml")["behandlerkravmeldingId"]


def test_sigterm_while_the_daemon_is_still_starting_stops_it_gracefully(tmp_path: Path) -> None:
    """A service manager may stop the bridge before it is fully up: SIGTERM then is a clean
    stop (exit 0), not death by signal."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    proc = _start_watch(inbox, tmp_path / "state")
    try:
        _wait_for_line(proc, "SANDBOX: claims go to a KUHR stand-in")  # start-up under way
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        proc.kill()


def test_a_second_bridge_on_the_same_folder_is_refused(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    first = _start_watch(inbox, tmp_path / "state-1")
    try:
        _wait_for_line(first, "watching 1 folder")
        second = subprocess.run(
            [
                sys.executable,
                "-m",
                "bridge",
                "watch",
                str(inbox),
                "--state-dir",
                str(tmp_path / "state-2"),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
        )
        assert second.returncode == 1
        assert "FolderLockedError" in second.stderr
        assert str(first.pid) in second.stderr  # names the process that holds the folder
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=15)
