"""The one Norwegian vocabulary: every journal state has its status word, every status word
its Norwegian sentence for staff and its label for lines of text."""

from __future__ import annotations

import re

from bridge.core.outcomes import (
    STATE_WORDS,
    STATUS_LABELS,
    STATUS_SENTENCES,
    State,
    Status,
    state_word,
    status_label,
)


def test_every_state_has_a_norwegian_status_word() -> None:
    assert set(STATE_WORDS) == set(State)
    assert set(STATE_WORDS.values()) <= {s.value for s in Status}
    assert state_word("rejected") == "avvist_lokalt"
    assert state_word(State.CONTROLLED) == "kontrollert"


def test_every_status_word_has_a_sentence_saying_what_to_do_and_a_label() -> None:
    assert set(STATUS_SENTENCES) == {s.value for s in Status} == set(STATUS_LABELS)
    for word, sentence in STATUS_SENTENCES.items():
        assert sentence.endswith("."), word
        assert not re.search(r"\b(the|file|claim|retry)\b", sentence, re.I), word  # Norwegian
        assert not re.search(r"--[a-z]|\bbkm-bridge [a-z]+ ", sentence), word  # no CLI advice
    assert status_label("avvist_lokalt") == "avvist lokalt"
    assert status_label("delvis_godkjent") == "delvis godkjent"
    assert status_label("noe_annet") == "noe_annet"
