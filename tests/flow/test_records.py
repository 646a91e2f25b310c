"""The journal's typed record of a file version (bridge.flow.records.Detail) and its codec."""

from __future__ import annotations

import pytest

from bridge.core.legacy.read import Envelope
from bridge.core.outcomes import State
from bridge.core.problems import Problem, Severity
from bridge.flow.journal import Journal, JournalError
from bridge.flow.records import Detail


def test_a_detail_survives_the_journal_with_its_types(tmp_path) -> None:
    journal = Journal(tmp_path / "j.db")
    envelope = Envelope(**{name: None for name in Envelope.__slots__} | {"kind": "msghead"})
    warning = Problem("GUID_DERIVED", "derived", line=7, severity=Severity.WARNING)
    version, _ = journal.record_seen("/in/a.xml", "aa", 10, detail={"root": "/in"})
    journal.transition(
        version.id, State.REJECTED, detail={"problems": (warning,), "envelope": envelope}
    )
    again = Journal(tmp_path / "j.db").get(version.id)  # read back from disk
    assert again.detail.root_path is not None and again.detail.root_path.name == "in"
    assert again.detail.problems == (warning,)
    assert again.detail.envelope == envelope
    assert again.detail.error_codes() == []  # a warning is no error


def test_an_unknown_detail_is_refused_not_stored(tmp_path) -> None:
    journal = Journal(tmp_path / "j.db")
    version, _ = journal.record_seen("/in/a.xml", "aa", 10)
    with pytest.raises(JournalError, match="unknown detail"):
        journal.transition(version.id, State.SEEN, detail={"no_such_field": 1})
    assert journal.get(version.id).detail == Detail()


def test_old_and_unknown_keys_in_stored_json_are_ignored() -> None:
    stored = '{"claim": "{}", "polls": 2, "from_a_newer_version": true}'
    assert Detail.from_json(stored) == Detail(claim="{}", polls=2)
    assert Detail.from_json(Detail(claim="{}", polls=2).to_json()) == Detail(claim="{}", polls=2)
