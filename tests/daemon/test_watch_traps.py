"""Hostile things at receipt paths, through the daemon as it runs in production: a FIFO, a link
to /dev/zero and a link out of the folder neither hang nor mislead the watcher (every claim is
sent and gets its receipt, SIGTERM stops it, `--once` ends), a folder in a receipt's place makes
`--once` fail naming the file, and temp files of killed receipt writes are gone at start-up."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from support.migrate import claim_xml

from bridge.config import load_settings
from bridge.daemon.runner import Runner, RunOptions

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX filesystem semantics"),
    pytest.mark.timeout(240),  # a watcher that opens a FIFO never comes back
]


def receipt_of(claim: Path) -> dict[str, Any] | None:
    path = Path(f"{claim}.kvittering.json")
    if path.is_symlink() or not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def plant_traps(inbox: Path, outside: Path) -> dict[str, Path]:
    """Four claims; three with something planted at one of their receipt paths."""
    claims = {name: inbox / f"{name}.xml" for name in ("fifo", "zero", "outside", "plain")}
    for n, path in enumerate(claims.values()):
        path.write_bytes(claim_xml(n))
    os.mkfifo(inbox / "fifo.xml.kvittering.json")
    (inbox / "zero.xml.kvittering.json").symlink_to("/dev/zero")
    outside.write_text("not the bridge's to read", encoding="utf-8")
    (inbox / "outside.apprec.xml").symlink_to(outside)
    (inbox / "outside.xml.kvittering.json").symlink_to(outside)
    return claims


def test_the_daemon_is_not_hijacked_by_things_at_receipt_paths(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    outside = tmp_path / "outside.txt"
    claims = plant_traps(inbox, outside)
    left_by_a_kill = inbox / f".plain.xml.kvittering.json.{_dead_pid()}-139876.tmp"
    left_by_a_kill.write_bytes(b'{"half": ')
    log_path = tmp_path / "daemon.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bridge", "watch", str(inbox), "--state-dir",
             str(tmp_path / "state"), "--praksis-id", "1004326178"],
            stdout=log, stderr=log, cwd=tmp_path,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        pending = dict(claims)
        while pending and time.monotonic() < deadline and proc.poll() is None:
            pending = {
                name: path
                for name, path in pending.items()
                if not (receipt_of(path) or {}).get("behandlerkravmeldingId")
            }
            time.sleep(0.1)
        assert not pending, log_path.read_text(encoding="utf-8")[-4000:]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log_path.read_text(encoding="utf-8")

    assert not left_by_a_kill.exists()
    assert "removed 1 temp file(s) left by interrupted writes" in text
    assert outside.read_text(encoding="utf-8") == "not the bridge's to read"
    for name in ("fifo.xml.kvittering.json", "zero.xml.kvittering.json", "outside.apprec.xml"):
        assert f"{name}: a " in text and "was where the receipt goes" in text, name
        assert not (inbox / name).is_symlink()
    for name in ("fifo", "zero", "outside"):
        codes = [p["kode"] for p in receipt_of(claims[name])["problemer"]]
        assert "RECEIPT_PATH_TAKEN" in codes, name
    assert "RECEIPT_PATH_TAKEN" not in json.dumps(receipt_of(claims["plain"]))
    assert "MemoryError" not in text and "Traceback" not in text


def test_once_ends_and_fails_when_a_receipt_cannot_be_written(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "fifo.xml").write_bytes(claim_xml(10))
    os.mkfifo(inbox / "fifo.xml.kvittering.json")
    (inbox / "blocked.xml").write_bytes(claim_xml(11))
    (inbox / "blocked.xml.kvittering.json").mkdir()
    settings = load_settings(
        None,
        {
            "watch.state_dir": tmp_path / "state",
            "watch.quiet_seconds": 0.1,
            "watch.praksis_id": "1004326178",
        },
    )
    runner = Runner(settings, RunOptions(folders=(inbox,), sandbox_speed=120))

    assert runner.run_once() == 1  # a file has no receipt: not a clean run

    assert receipt_of(inbox / "fifo.xml")["behandlerkravmeldingId"]
    assert (inbox / "blocked.xml.kvittering.json").is_dir()
    assert (inbox / "blocked.apprec.xml").is_file()  # the receipt that could be written
    messages = [r.getMessage() for r in caplog.records]
    assert any("blocked.xml.kvittering.json: a directory is where the receipt goes" in m
               for m in messages)  # fmt: skip
    assert any("no up-to-date receipt" in m and "blocked.xml" in m for m in messages)
