"""`bkm-bridge status --local`: what the journal knows, with the Norwegian status words, the
time of the last change in Norwegian local time with its offset, and why a file failed.

A real `watch --once` (in-process, against a standalone sandbox) fills the journal: one file
rejected locally, one that could not be sent because KUHR answered 503 to everything.
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.paths import FIXTURES
from typer.testing import CliRunner

from bridge.cli import app as cli
from bridge.core.timezone import OSLO
from bridge.sandbox import start_sandbox

SEED_CLOCK = datetime.fromisoformat("2026-01-06T15:30:00+01:00")
PATIENT_IDS = ("47908702367", "47908500667")


def bkm_bridge(*args: str) -> Any:
    """The CLI in this process, every command registered (as `main()` does)."""
    if not any(group.name == "service" for group in cli.app.registered_groups):
        cli._register_subsystem_commands()
    return CliRunner().invoke(cli.app, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def journal_with_failures(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state folder whose journal holds a rejected and a failed file version."""
    tmp_path = tmp_path_factory.mktemp("status-local")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "ødelagt.xml").write_bytes(b"<BehandlerKrav>\n  <Enkeltregning>\n")
    shutil.copyfile(FIXTURES / "seed-arbeidsflyt.xml", inbox / "krav.xml")
    with start_sandbox(state_dir=tmp_path / "sandbox", clock=SEED_CLOCK) as sandbox:
        admin = sandbox.info["admin_url"]
        httpx.post(f"{admin}/faults", json={"error_rate": 1.0, "error_statuses": [503]}, timeout=10)
        config = tmp_path / "bridge.toml"
        config.write_text(
            f"[kuhr]\nsandbox_state_dir = {json.dumps(str(tmp_path / 'sandbox'))}\n",
            encoding="utf-8",
        )
        result = bkm_bridge(
            "watch", str(inbox), "--once", "--config", str(config),
            "--state-dir", str(tmp_path / "state"), "--quiet-seconds", "0.2",
        )  # fmt: skip
    assert result.exit_code == 1, result.output  # files failed
    return tmp_path / "state"


def status_local(state: Path, *extra: str) -> str:
    result = bkm_bridge("status", "--local", "--state-dir", str(state), *extra)
    assert result.exit_code == 0, result.output
    return result.output


def test_status_local_json_has_status_words_local_time_with_offset_and_reason(
    journal_with_failures: Path,
) -> None:
    rows = {
        Path(r["fil"]).name: r
        for r in json.loads(status_local(journal_with_failures, "--json"))["filer"]
    }
    broken, krav = rows["ødelagt.xml"], rows["krav.xml"]
    assert (broken["tilstand"], broken["status"]) == ("rejected", "avvist_lokalt")
    assert broken["arsak"].startswith("XML_MALFORMED: ")
    assert (krav["tilstand"], krav["status"]) == ("failed", "feilet_midlertidig")
    assert "503" in krav["arsak"] and "retried" in krav["arsak"]
    for row in rows.values():
        changed = datetime.fromisoformat(row["endret"])
        assert changed.utcoffset() == changed.astimezone(OSLO).utcoffset()
        assert row["endret"][-6:] in ("+01:00", "+02:00")
        assert abs((changed - datetime.now(OSLO)).total_seconds()) < 600


def test_status_local_table_shows_reason_and_offset(journal_with_failures: Path) -> None:
    out = status_local(journal_with_failures)
    assert "Journal (sandbox)" in out
    for column in ("status", "last change", "reason"):
        assert column in out
    assert "avvist_lokalt" in out and "XML_MALFORMED" in out
    assert "feilet_midlertidig" in out and "503" in out
    offset = datetime.now(OSLO).strftime("%z")
    assert f"{offset[:3]}:{offset[3:]}" in out
    for patient_id in PATIENT_IDS:
        assert patient_id not in out


def test_retry_all_requeues_the_failed_and_rejected_files(
    journal_with_failures: Path, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    shutil.copytree(journal_with_failures, state)  # the module's journal stays as it was
    result = bkm_bridge("retry", "--all", "--state-dir", str(state))
    assert result.exit_code == 0, result.output
    assert "2 file(s) re-queued" in result.output
    rows = json.loads(status_local(state, "--json"))["filer"]
    assert {r["status"] for r in rows} == {"venter"}
    again = bkm_bridge("retry", "--all", "--state-dir", str(state))
    assert "0 file(s) re-queued" in again.output
    both = bkm_bridge("retry", "x.xml", "--all", "--state-dir", str(state))
    assert both.exit_code == 2
