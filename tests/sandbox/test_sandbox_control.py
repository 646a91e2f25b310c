"""The control rules and their merknader: 766, 470, 710, unknown and expired takst, claims
older than three years, corrections, and krediteringer (as behandlerkravmelding_json.md says)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from support.sandbox import (  # noqa: F401 (fixtures)
    Jose,
    jose_fixture,
    keys_fixture,
    melding,
    regning,
    sandbox_fixture,
    serve,
)

from bridge.sandbox import RunningSandbox
from bridge.sandbox.keys import KeyMaterial

FRIKORT_HOLDER = "01010012345"
OTHER_PATIENT = "47908500667"
TEKST_710 = (
    "Samhandler har registrert at pasienten har frikort. Frikortvedtak er ikke registrert i "
    "frikortregisteret. Fra 1. april 2011 vil slike regninger bli automatisk avvist."
)


@pytest.fixture(scope="module")
def served(keys: KeyMaterial, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    config = tmp_path_factory.mktemp("control") / "sandbox.toml"
    config.write_text(
        f"""
[frikort]
holders = ["{FRIKORT_HOLDER}"]

[[takster]]
takstkode = "ZZ9"
fagomraade = "LE"
fradato = "2026-01-01"
beskrivelse = "A takst only this test's config knows"
""",
        encoding="utf-8",
    )
    running = serve(keys, config=config)
    yield running
    running.stop()


@pytest.fixture
def token(jose: Jose) -> str:
    jose.admin("POST", "clock", {"speed": 0})
    return jose.token()


def controlled(jose: Jose, token: str, *regninger: dict[str, Any]) -> list[dict[str, Any]]:
    """Submit, let the control finish, return the regninger results."""
    melding_id = jose.send(melding(*regninger), token)
    jose.advance(25)
    [entry] = jose.details(melding_id, token)
    assert entry["kontrollstatus"] == "ferdig_kontrollert"
    return entry["innsending"]["regninger"]


def merknader(result: dict[str, Any]) -> dict[str, str]:
    return {m["nummer"]: m["tekst"] for m in result["merknader"]}


def test_766_dated_after_receipt(jose: Jose, token: str) -> None:
    [result] = controlled(jose, token, regning("7", "2026-01-07T08:05:00+01:00", [("2ad", "15")]))
    assert result["status"] == "avvist"
    assert merknader(result) == {
        "766": "Enkeltregning er datert frem i tid, oppgitt konsultasjonstid er 07.01.2026 08:05, "
        "innsending er mottatt 06.01.2026 15:30"
    }


@pytest.mark.parametrize(
    ("phone_call", "fnr", "rejected"),
    [
        ("2026-01-06T12:36:00+01:00", "47908702367", True),  # 59 minutes before
        ("2026-01-06T14:35:00+01:00", "47908702367", True),  # 60 minutes after
        ("2026-01-06T12:34:00+01:00", "47908702367", False),  # 61 minutes before
        ("2026-01-06T13:10:00+01:00", OTHER_PATIENT, False),  # another patient
    ],
)
def test_470_simple_contact_near_a_consultation(
    jose: Jose, token: str, phone_call: str, fnr: str, rejected: bool
) -> None:
    call = regning("41", phone_call, [("1bd", "74.00")], fnr=fnr)
    visit = regning("42", "2026-01-06T13:35:00+01:00", [("2ad", "15.00")])
    call_result, visit_result = controlled(jose, token, call, visit)
    assert visit_result["status"] == "godkjent"
    if rejected:
        assert call_result["status"] == "avvist"
        assert list(merknader(call_result)) == ["470"]
        assert "konsultasjonstakst på regningsnummer 42." in merknader(call_result)["470"]
    else:
        assert call_result["status"] == "godkjent"


def test_710_frikort_without_frikort(jose: Jose, token: str) -> None:
    without = regning("71", "2026-01-06T10:00:00+01:00", [("2ad", "15")], arsakFriEgenandel="F")
    holder = regning(
        "72",
        "2026-01-06T10:20:00+01:00",
        [("2ad", "15")],
        arsakFriEgenandel="F",
        fnr=FRIKORT_HOLDER,
    )
    child = regning("73", "2026-01-06T10:40:00+01:00", [("2ad", "15")], arsakFriEgenandel="B")
    results = controlled(jose, token, without, holder, child)
    assert [r["status"] for r in results] == ["avvist", "godkjent", "godkjent"]
    assert merknader(results[0]) == {"710": TEKST_710}


def test_unknown_and_expired_takst(jose: Jose, token: str) -> None:
    unknown = regning("81", "2026-01-06T09:00:00+01:00", [("9zz", "10")])
    expired = regning("82", "2026-01-06T09:30:00+01:00", [("1ad", "62")])  # ended 30.06.2022
    configured = regning("83", "2026-01-06T10:00:00+01:00", [("ZZ9", "10")])
    bundled = regning("84", "2026-01-06T10:30:00+01:00", [("2ad", "15"), ("2cd", "255")])
    results = controlled(jose, token, unknown, expired, configured, bundled)
    assert [r["status"] for r in results] == ["avvist", "avvist", "godkjent", "godkjent"]
    assert list(merknader(results[0])) == ["9001"] and "9zz" in merknader(results[0])["9001"]
    assert list(merknader(results[1])) == ["9002"]
    assert "06.01.2026" in merknader(results[1])["9002"]


def test_the_same_takst_in_an_older_period(jose: Jose, token: str) -> None:
    # 2ad has two rows in the bundled table (2024-07-01..2025-06-30 and from 2025-07-01).
    [result] = controlled(jose, token, regning("85", "2024-09-02T10:00:00+02:00", [("2ad", "14")]))
    assert result["status"] == "godkjent"


def test_older_than_three_years(jose: Jose, token: str) -> None:
    old = regning("91", "2023-01-05T10:00:00+01:00", [("2ad", "15")])
    just_in = regning("92", "2023-01-06T10:00:00+01:00", [("1bd", "74")])
    old_result, in_result = controlled(jose, token, old, just_in)
    assert old_result["status"] == "avvist" and "9003" in merknader(old_result)
    assert "9003" not in merknader(in_result)


def test_kreditering_of_an_approved_regning(jose: Jose, token: str) -> None:
    original = regning("101", "2026-01-06T11:00:00+01:00", [("2ad", "15.00"), ("L1", "26.00")])
    [first] = controlled(jose, token, original)
    assert first["status"] == "godkjent"
    original_id = jose.overview(token)[0]["behandlerkravmeldingId"]

    # Same guid, kreditering true, a minus amount; pasient may be left out when guid is used.
    kreditering = {
        "guid": original["guid"],
        "kreditering": True,
        "regningsnummer": "101",
        "tidspunkt": original["tidspunkt"],
        "belop": -41.0,
    }
    kreditering_id = jose.send(melding(kreditering), token)
    jose.advance(25)
    [result] = jose.details(kreditering_id, token)[0]["innsending"]["regninger"]
    assert result["status"] == "godkjent"
    # The credited regning keeps its result: the documented regning statuses are behandles,
    # godkjent and avvist (there is no "kreditert").
    [was] = jose.details(original_id, token)[0]["innsending"]["regninger"]
    assert was["status"] == "godkjent"

    # After the kreditering the corrected regning may be sent with the same guid.
    corrected = {
        **original,
        "takster": [{"belop": 15.0, "kode": "2ad", "antall": 1}],
        "belop": 15.0,
    }
    [again] = controlled(jose, token, corrected)
    assert again["status"] == "godkjent"

    jose.set_clock("2026-01-06T16:00:01+01:00")
    sums = {r["behandlerkravmeldingId"]: r["sumUtbetaltbelop"] for r in jose.overview(token)}
    assert sums[original_id] == 41
    assert sums[kreditering_id] == -41


def test_kreditering_of_what_was_never_approved_is_rejected(jose: Jose, token: str) -> None:
    rejected = regning("111", "2026-02-01T10:00:00+01:00", [("2ad", "15")])  # 766
    [first] = controlled(jose, token, rejected)
    assert first["status"] == "avvist"
    for guid in (rejected["guid"], "00000000-0000-4000-8000-000000000000"):
        kreditering = {
            "guid": guid,
            "kreditering": True,
            "regningsnummer": "111",
            "tidspunkt": "2026-01-06T10:00:00+01:00",
            "belop": -15.0,
        }
        [result] = controlled(jose, token, kreditering)
        assert result["status"] == "avvist"
        assert list(merknader(result)) == ["9004"]


def test_an_approved_regning_cannot_be_sent_again_without_kreditering(
    jose: Jose, token: str
) -> None:
    original = regning("121", "2026-01-06T12:00:00+01:00", [("2ad", "15")])
    [first] = controlled(jose, token, original)
    assert first["status"] == "godkjent"
    changed = {**original, "merknad": "sent again"}
    [again] = controlled(jose, token, changed)
    assert again["status"] == "avvist"
    assert list(merknader(again)) == ["9005"]


def test_a_corrected_rejected_regning_is_controlled_again(jose: Jose, token: str) -> None:
    wrong_date = regning("6", "2026-02-06T15:00:00+01:00", [("1i", "64.00")], fnr=OTHER_PATIENT)
    [first] = controlled(jose, token, wrong_date)
    assert first["status"] == "avvist"
    right_date = {**wrong_date, "tidspunkt": "2026-01-06T15:00:00+01:00"}
    [second] = controlled(jose, token, right_date)
    assert (second["status"], second["guid"]) == ("godkjent", wrong_date["guid"])
