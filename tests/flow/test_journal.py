"""The journal: file versions, state transitions, leases between processes, history."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path

import pytest

from bridge.core.outcomes import State
from bridge.flow.journal import Journal, JournalError
from bridge.flow.records import Detail


class FakeClock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def journal(tmp_path: Path, clock: FakeClock) -> Journal:
    return Journal(tmp_path / "state" / "journal.db", owner="a", clock=clock)


def test_same_bytes_same_path_is_one_version(journal: Journal) -> None:
    first, created = journal.record_seen("/in/a.xml", "aa", 10)
    again, created_again = journal.record_seen("/in/a.xml", "aa", 10)
    assert created and not created_again
    assert again.id == first.id
    assert first.state is State.SEEN


def test_new_content_at_the_same_path_is_a_new_version(journal: Journal) -> None:
    old, _ = journal.record_seen("/in/a.xml", "aa", 10)
    new, created = journal.record_seen("/in/a.xml", "bb", 11)
    assert created and new.id != old.id
    assert journal.latest_for_path("/in/a.xml").id == new.id


def test_transitions_are_recorded_with_history(journal: Journal, clock: FakeClock) -> None:
    v, _ = journal.record_seen("/in/a.xml", "aa", 10)
    clock.now += 1
    journal.transition(
        v.id, State.CONVERTED, praksis_id="1004326178", detail={"praksis_how": "rule 1"}
    )
    clock.now += 1
    journal.transition(
        v.id, State.SUBMITTING, expect=[State.CONVERTED], submit_started_at=clock.now
    )
    done = journal.transition(
        v.id, State.SUBMITTED, behandlerkravmelding_id="5138fbfe", detail={"polls": 3}
    )
    assert done.state is State.SUBMITTED
    assert done.praksis_id == "1004326178"
    assert done.detail == Detail(praksis_how="rule 1", polls=3)  # merged, each kept
    assert [e.state for e in journal.events(v.id)] == [
        State.SEEN,
        State.CONVERTED,
        State.SUBMITTING,
        State.SUBMITTED,
    ]
    assert journal.by_kuhr_id("5138fbfe").id == v.id
    assert journal.counts() == {"submitted": 1}


def test_unexpected_state_is_refused(journal: Journal) -> None:
    v, _ = journal.record_seen("/in/a.xml", "aa", 10)
    with pytest.raises(JournalError, match="expected"):
        journal.transition(v.id, State.SUBMITTED, expect=[State.SUBMITTING])
    assert journal.get(v.id).state is State.SEEN


def test_unknown_fields_are_refused(journal: Journal) -> None:
    v, _ = journal.record_seen("/in/a.xml", "aa", 10)
    with pytest.raises(JournalError, match="unknown journal fields"):
        journal.transition(v.id, State.CONVERTED, colour="blue")


def test_content_already_sent_from_another_version_is_found(journal: Journal) -> None:
    a, _ = journal.record_seen("/in/a.xml", "same", 10)
    b, _ = journal.record_seen("/in/copy-of-a.xml", "same", 10)
    assert journal.sent_version_with_content("same", excluding=b.id) is None
    journal.transition(a.id, State.SUBMITTING)
    assert journal.sent_version_with_content("same", excluding=b.id).id == a.id


def test_leases_keep_two_processes_apart(tmp_path: Path, clock: FakeClock) -> None:
    db = tmp_path / "journal.db"
    one = Journal(db, owner="one", clock=clock)
    two = Journal(db, owner="two", clock=clock)
    v, _ = one.record_seen("/in/a.xml", "aa", 10)
    assert one.acquire(v.id, seconds=30)
    assert not two.acquire(v.id, seconds=30)
    assert [x.id for x in two.due([State.SEEN])] == []
    assert [x.id for x in one.due([State.SEEN])] == [v.id]
    clock.now += 31  # the lease ran out (the holder died)
    assert two.acquire(v.id, seconds=30)
    assert not one.acquire(v.id, seconds=30)
    two.release(v.id)
    assert one.acquire(v.id, seconds=30)


def _grab(db: str, owner: str, ids: list[int], out: multiprocessing.Queue) -> None:
    journal = Journal(Path(db), owner=owner)
    out.put((owner, [i for i in ids if journal.acquire(i, seconds=60)]))


def test_leases_hold_across_real_processes(tmp_path: Path) -> None:
    db = tmp_path / "journal.db"
    journal = Journal(db, owner="setup")
    ids = [journal.record_seen(f"/in/{n}.xml", f"sha{n}", 1)[0].id for n in range(200)]
    ctx = multiprocessing.get_context("spawn")
    out: multiprocessing.Queue = ctx.Queue()
    procs = [ctx.Process(target=_grab, args=(str(db), f"p{n}", ids, out)) for n in range(3)]
    for p in procs:
        p.start()
    got = dict(out.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    taken = [i for grabbed in got.values() for i in grabbed]
    assert sorted(taken) == ids  # every version leased exactly once
    assert len(set(taken)) == len(taken)


def test_due_respects_the_schedule(journal: Journal, clock: FakeClock) -> None:
    v, _ = journal.record_seen("/in/a.xml", "aa", 10)
    journal.transition(v.id, State.SUBMITTED, due_at=clock.now + 60)
    assert journal.due([State.SUBMITTED]) == []
    clock.now += 61
    assert [x.id for x in journal.due([State.SUBMITTED])] == [v.id]


def test_retry_requeues_failed_and_rejected_only(journal: Journal) -> None:
    v, _ = journal.record_seen("/in/a.xml", "aa", 10)
    journal.transition(v.id, State.FAILED, attempts=5, note="KUHR unreachable")
    again = journal.requeue(v.id, note="operator retry")
    assert again.state is State.SEEN and again.attempts == 0
    journal.transition(v.id, State.SUBMITTED)
    with pytest.raises(JournalError, match="only failed or rejected"):
        journal.requeue(v.id, note="no")


def test_journal_is_wal_and_survives_reopen(tmp_path: Path) -> None:
    db = tmp_path / "journal.db"
    first = Journal(db)
    v, _ = first.record_seen("/in/a.xml", "aa", 10)
    first.transition(v.id, State.SUBMITTING, submit_started_at=5.0, claim_digest="d1")
    first.close()
    reopened = Journal(db)
    again = reopened.get(v.id)
    assert again.state is State.SUBMITTING and again.claim_digest == "d1"
    mode = sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_oldest_unfinished(journal: Journal, clock: FakeClock) -> None:
    a, _ = journal.record_seen("/in/a.xml", "aa", 10)
    clock.now += 10
    b, _ = journal.record_seen("/in/b.xml", "bb", 10)
    assert journal.oldest_unfinished() == a.created_at
    journal.transition(a.id, State.PAID)
    assert journal.oldest_unfinished() == b.created_at


def test_a_dead_holders_lease_is_taken_over_at_once(tmp_path: Path) -> None:
    """A daemon killed with SIGKILL leaves its leases; its successor must not wait them out."""
    db = tmp_path / "journal.db"
    ctx = multiprocessing.get_context("spawn")
    out: multiprocessing.Queue = ctx.Queue()
    setup = Journal(db, owner="setup")
    version, _ = setup.record_seen("/in/a.xml", "aa", 10)
    holder = ctx.Process(target=_hold, args=(str(db), [version.id], out))
    holder.start()
    assert out.get(timeout=60)[1] == [version.id]
    holder.join(timeout=60)  # the holder is gone; its 60-second lease is not
    successor = Journal(db)
    assert [v.id for v in successor.due([State.SEEN])] == [version.id]
    assert successor.acquire(version.id, seconds=60)


def test_a_live_holders_lease_is_respected(tmp_path: Path) -> None:
    db = tmp_path / "journal.db"
    holder = Journal(db)  # this very process: alive
    version, _ = holder.record_seen("/in/a.xml", "aa", 10)
    assert holder.acquire(version.id, seconds=60)
    other = Journal(db)  # another owner in the same (live) process
    assert other.due([State.SEEN]) == []
    assert not other.acquire(version.id, seconds=60)


def _hold(db: str, ids: list[int], out: multiprocessing.Queue) -> None:
    """Take leases under the real owner id (host:pid:random) and exit without releasing."""
    journal = Journal(Path(db))
    out.put((journal.owner, [i for i in ids if journal.acquire(i, seconds=60)]))


def test_receipts_written_under_a_lease_are_said_with_its_release(
    tmp_path: Path, clock: FakeClock
) -> None:
    """One commit per step fewer, and nothing lost: until the lease is released the version
    is still owed its receipts (a process killed there writes them again on its next start),
    and new receipts owed in the same lease are not cleared by the earlier ones."""
    db = tmp_path / "journal.db"
    journal = Journal(db, owner="a", clock=clock)
    version, _ = journal.record_seen("/in/a.xml", "aa", 10)
    assert journal.acquire(version.id, seconds=60)
    journal.transition(version.id, State.REJECTED, receipts=True)
    journal.receipts_written(version.id)
    clock.now += 120  # the lease has run out, as a killed holder's would
    successor = Journal(db, owner="b", clock=clock)
    assert [v.id for v in successor.receipts_owed()] == [version.id]
    clock.now -= 120
    journal.release(version.id)
    assert successor.receipts_owed() == []

    assert journal.acquire(version.id, seconds=60)
    journal.transition(version.id, State.REJECTED, receipts=True)
    journal.receipts_written(version.id)
    journal.transition(version.id, State.REJECTED, note="newer", receipts=True)  # not written
    journal.release(version.id)
    assert [v.id for v in successor.receipts_owed()] == [version.id]

    journal.receipts_written(version.id)  # without a lease: at once
    assert successor.receipts_owed() == []
