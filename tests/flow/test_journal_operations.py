"""The journal's operator queries: search by name, id or content hash (taken literally), a
file's history over its versions, and retry (one, all) that re-queues each version once, even
when two operators press the button at the same time."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from bridge.core.outcomes import State
from bridge.flow.journal import Journal, JournalError


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    return Journal(tmp_path / "journal.db", owner="a")


def test_search_takes_the_text_literally_and_filters_by_state(journal: Journal) -> None:
    a, _ = journal.record_seen("/in/krav_100%.xml", "ab" * 32, 1)
    b, _ = journal.record_seen("/in/krav-100x.xml", "cd" * 32, 1)
    journal.transition(b.id, State.REJECTED)
    journal.transition(a.id, State.FAILED, behandlerkravmelding_id="e3e70682-c209")
    assert [v.id for v in journal.search("_100%")] == [a.id]  # not wildcards
    assert [v.id for v in journal.search("KRAV-100")] == [b.id]  # any case
    assert [v.id for v in journal.search("e3e70682")] == [a.id]
    assert [v.id for v in journal.search("CDCD")] == [b.id]
    assert [v.id for v in journal.search(None, [State.REJECTED])] == [b.id]
    assert journal.search("krav", [State.PAID]) == []


def test_history_lists_every_version_of_the_path_with_events(journal: Journal) -> None:
    old, _ = journal.record_seen("/in/a.xml", "aa", 1)
    journal.transition(old.id, State.REJECTED, note="rejected locally: XML_MALFORMED")
    new, _ = journal.record_seen("/in/a.xml", "bb", 1)
    journal.record_seen("/in/other.xml", "cc", 1)
    history = journal.history(old.id)
    assert [v.id for v, _ in history] == [new.id, old.id]
    assert [(e.state, e.note) for e in history[1][1]] == [
        (State.SEEN, None),
        (State.REJECTED, "rejected locally: XML_MALFORMED"),
    ]


def test_retry_all_requeues_each_failed_or_rejected_version_once(journal: Journal) -> None:
    ids = []
    for n, state in enumerate([State.FAILED, State.REJECTED, State.CONTROLLED]):
        version, _ = journal.record_seen(f"/in/{n}.xml", f"{n:02x}", 1)
        journal.transition(version.id, state, attempts=3, due_at=10**10)
        ids.append(version.id)
    moved = journal.requeue_all(note="operator")
    assert sorted(v.id for v in moved) == ids[:2]
    assert [journal.get(i).state for i in ids] == [State.SEEN, State.SEEN, State.CONTROLLED]
    assert journal.get(ids[0]).attempts == 0 and journal.get(ids[0]).due_at == 0
    assert journal.requeue_all(note="operator") == []
    with pytest.raises(JournalError):
        journal.requeue(ids[2], note="operator")


def test_two_retries_at_once_requeue_one_time(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    first = Journal(path, owner="a")
    version, _ = first.record_seen("/in/a.xml", "aa", 1)
    first.transition(version.id, State.FAILED)
    results: list[str] = []
    start = threading.Barrier(8)

    def press() -> None:
        mine = Journal(path, owner="b")
        start.wait()
        try:
            mine.requeue(version.id, note="operator")
            results.append("moved")
        except JournalError:
            results.append("refused")

    threads = [threading.Thread(target=press) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["moved"] + ["refused"] * 7
    seen = [e for e in first.events(version.id) if e.note == "operator"]
    assert len(seen) == 1


def test_count_due_agrees_with_due(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    mine, other = Journal(path, owner="a"), Journal(path, owner="b")
    for n in range(6):
        version, _ = mine.record_seen(f"/in/{n}.xml", f"{n:02x}", 1)
        if n == 1:
            mine.transition(version.id, State.SUBMITTED, due_at=10**10)  # not yet due
        elif n == 2:
            assert other.acquire(version.id, seconds=600)  # held by a live owner
        elif n == 3:
            mine.transition(version.id, State.PAID)  # not a state asked for
    states = [State.SEEN, State.SUBMITTED]
    assert mine.count_due(states) == len(mine.due(states)) == 3
