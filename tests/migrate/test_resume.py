"""An interrupted `bkm-bridge migrate` (SIGKILL, Ctrl-C) resumes where it stopped and sends
nothing twice; a run over an archive already migrated sends nothing at all.

The command runs as a subprocess against a standalone sandbox served by the test, which
outlives the killed runs and counts accepted submissions per regning guid."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import httpx
import psutil
import pytest
from support.migrate import (
    SEED_CLOCK,
    claim_guid,
    cli_env,
    read_csv,
    receipts_under,
    run_migrate,
    start_migrate,
    write_claims,
)

from bridge.sandbox import start_sandbox

FILES = 60


@pytest.fixture
def sandbox(tmp_path: Path):
    with start_sandbox(state_dir=tmp_path / "sandbox", clock=SEED_CLOCK) as running:
        yield running


def accepted(sandbox) -> dict:
    return httpx.get(f"{sandbox.info['admin_url']}/stats", timeout=10).json()


def wait_for_accepted(sandbox, at_least: int, proc, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while accepted(sandbox)["submissions_accepted"] < at_least:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "the migration sent too little"
        time.sleep(0.05)


def test_resume_after_sigkill_and_ctrl_c_sends_every_claim_exactly_once(
    tmp_path: Path, sandbox
) -> None:
    archive = tmp_path / "arkiv"
    write_claims(archive / "a", range(FILES // 2))
    write_claims(archive / "b", range(FILES // 2, FILES))
    receipts = tmp_path / "kvitteringer"
    report = tmp_path / "rapport.csv"
    env = cli_env(tmp_path / "state", tmp_path / "sandbox")
    args = [str(archive), "--receipts", str(receipts), "--report", str(report), "--json"]
    slow = [*args, "--rate", "25/s", "--concurrency", "2", "--workers", "1"]

    # 1. Killed without warning after a few submissions.
    proc = start_migrate(slow, env)
    wait_for_accepted(sandbox, 8, proc)
    workers = psutil.Process(proc.pid).children(recursive=True)
    assert workers  # the conversion processes
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    after_kill = accepted(sandbox)["submissions_accepted"]
    assert 8 <= after_kill < FILES
    _, alive = psutil.wait_procs(workers, timeout=10)
    assert not alive, "conversion processes outlived the killed migration"

    # 2. Ctrl-C: steps in flight finish, the report is written, exit code 130.
    proc = start_migrate(slow, env)
    wait_for_accepted(sandbox, after_kill + 5, proc)
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal does: to every process of the run
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-3000:]
    summary = json.loads(out)
    assert summary["interrupted"] is True
    after_stop = accepted(sandbox)["submissions_accepted"]
    assert after_kill + 5 <= after_stop < FILES
    assert summary["outcomes"]["sendt"] == after_stop
    assert summary["files"] == FILES and summary["unfinished"] == FILES - after_stop
    assert len(read_csv(report)) == FILES

    # 3. The next run completes the archive; every regning reached KUHR exactly once.
    done = run_migrate(args, env)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert summary["outcomes"] == {"sendt": FILES}
    counted = accepted(sandbox)
    assert counted["submissions_accepted"] == FILES
    assert counted["by_guid"] == {claim_guid(n): 1 for n in range(FILES)}
    # Claims in flight at the kill were found at KUHR, not sent again to be refused as
    # duplicates (the sandbox runs on simulated time, not the bridge's clock).
    assert counted["submissions_received"] == FILES
    found = receipts_under(receipts)
    assert len(found) == FILES and {r["status"] for r in found.values()} == {"sendt"}
    rows = read_csv(report)
    assert {r["behandlerkravmeldingId"] for r in rows} == {
        r["behandlerkravmeldingId"] for r in found.values()
    }

    # 4. Once more over the same archive: nothing is sent, nothing is new.
    again = run_migrate(args, env)
    assert again.returncode == 0, again.stderr[-3000:]
    summary = json.loads(again.stdout)
    assert summary["new_versions"] == 0 and summary["outcomes"] == {"sendt": FILES}
    assert accepted(sandbox)["submissions_received"] == counted["submissions_received"]
