"""`bkm-bridge migrate` over several sending processes (bridge.migrate.senders): a sending
process killed mid-run is started again and nothing is sent twice; what the sending processes
log reaches this process's handlers, redacted where it was written; the journal's shares split
the versions between the processes, each exactly once.

The runs of a whole archive with two sending processes (zips, bad files, the report, a stop
and a resume) are in test_migrate_run.py, parametrised over one and two processes."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from support.migrate import SEED_CLOCK, claim_guid, settings_for, stats, write_claims

from bridge.core.outcomes import State
from bridge.flow.journal import Journal, part_of
from bridge.migrate.migration import Migration, RunResult
from bridge.migrate.options import MigrateOptions
from bridge.runtime.logs import reset_logging, setup_logging
from bridge.sandbox import start_sandbox


@pytest.fixture
def sandbox(tmp_path: Path):
    with start_sandbox(state_dir=tmp_path / "sandbox", clock=SEED_CLOCK, speed=120) as running:
        yield running


def run_in_thread(migration: Migration) -> tuple[threading.Thread, list[RunResult]]:
    results: list[RunResult] = []
    thread = threading.Thread(target=lambda: results.append(migration.run()))
    thread.start()
    return thread, results


def senders_running() -> list[multiprocessing.Process]:
    return [p for p in multiprocessing.active_children() if p.name.startswith("migrate-sender")]


def test_a_killed_sending_process_is_started_again_and_no_claim_is_sent_twice(
    tmp_path: Path, sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "inn"
    write_claims(root, range(100, 140))
    options = MigrateOptions(
        paths=(root,),
        receipts_dir=tmp_path / "kvitteringer",
        workers=1,
        senders=2,
        rate=20.0,
        concurrency=2,
    )
    thread, results = run_in_thread(Migration(settings_for(tmp_path), options))
    deadline = time.monotonic() + 60
    while stats(sandbox)["submissions_accepted"] < 6 and time.monotonic() < deadline:
        time.sleep(0.05)
    victim = next(p for p in senders_running() if p.name == "migrate-sender-0")
    os.kill(victim.pid, signal.SIGKILL)
    thread.join(120)

    assert not thread.is_alive()
    result = results[0]
    assert result.exit_code == 0
    assert result.summary["outcomes"] == {"sendt": 40}
    counted = stats(sandbox)
    assert counted["by_guid"] == {claim_guid(n): 1 for n in range(100, 140)}
    assert "sending process 0 ended unexpectedly" in caplog.text
    assert "converting in processes of its own from now on" in caplog.text
    assert not senders_running()


def test_what_the_sending_processes_log_arrives_here_redacted_where_it_was_written(
    tmp_path: Path, sandbox
) -> None:
    """The files are named after their patient, as some EPJs do: only the sending process
    that converted a claim knows that "Hansen" and "Åse" are patient data."""
    root = tmp_path / "inn"
    write_claims(root, range(200, 206), name="Hansen-Åse-{:04d}.xml")
    log_file = tmp_path / "bridge.log"
    setup_logging("INFO", file=log_file, stream=None)
    try:
        result = Migration(
            settings_for(tmp_path),
            MigrateOptions(
                paths=(root,), receipts_dir=tmp_path / "kvitteringer", workers=1, senders=2
            ),
        ).run()
    finally:
        reset_logging()
    assert result.exit_code == 0
    text = log_file.read_text(encoding="utf-8")
    mottatt = [line for line in text.splitlines() if "mottatt by KUHR" in line]
    assert len(mottatt) == 6  # one per claim, from both sending processes
    assert "sending from 2 processes" in text
    assert "Hansen" not in text and "Åse" not in text
    assert "4790870020" not in text  # the patients' fødselsnumre


def test_the_shares_of_a_journal_split_its_versions_by_content_each_into_exactly_one(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.db"
    journal = Journal(path)
    shas = [hashlib.sha256(str(n).encode()).hexdigest() for n in range(300)]
    for n, sha in enumerate(shas):
        journal.record_seen(f"/arkiv/{n}.xml", sha, 10)
    journal.close()

    count = 3
    shares = []
    for index in range(count):
        part = Journal(path, part=(index, count))
        due = part.due([State.SEEN], now=time.time() + 1)
        assert part.next_due([State.SEEN]) is not None
        part.close()
        shares.append({v.sha256 for v in due})
        # The SQL that schedules a share agrees with the function that routes files to it.
        assert all(part_of(sha, count) == index for sha in shares[-1])
    assert sorted(len(share) for share in shares)[0] > 60  # none starved, roughly even
    assert set().union(*shares) == set(shas)
    assert sum(len(share) for share in shares) == len(shas)
