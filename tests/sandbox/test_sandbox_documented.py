"""Sandbox behaviour the documentation describes, over loopback: the korrigering of betalt
egenandel (erBetalt only from false to true), GUID-only krediteringer and korrigeringer as the
bridge converts them, merknader on the innsending and the vedtak, the sums inside innsending,
and a rebehandling triggered through the admin API (eksempler/resultat_av_rebehandling.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import simplejson
from support.sandbox import (  # noqa: F401 (fixtures)
    FIXTURES,
    Jose,
    jose_fixture,
    keys_fixture,
    load_fixture,
    melding,
    regning,
    sandbox_fixture,
    served_fixture,
)

PRAKSIS = "1004326178"


@pytest.fixture
def token(jose: Jose) -> str:
    jose.admin("POST", "clock", {"speed": 0})  # a still clock: only the tests move it
    return jose.token()


def controlled(jose: Jose, token: str, claim: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Submit, let the control finish; the melding id and its (first) details entry."""
    melding_id = jose.send(claim, token)
    jose.advance(25)
    [entry] = jose.details(melding_id, token)
    assert entry["kontrollstatus"] == "ferdig_kontrollert"
    return melding_id, entry


def results(entry: dict[str, Any]) -> list[tuple[str, list[str]]]:
    return [
        (r["status"], [m["nummer"] for m in r["merknader"]])
        for r in entry["innsending"]["regninger"]
    ]


# --------------------------------------------------------------------------- korrigering


def test_korrigering_of_betalt_egenandel_only_from_false_to_true(jose: Jose, token: str) -> None:
    original = regning(
        "31",
        "2026-01-06T10:00:00+01:00",
        [("2ad", "15.00")],
        betaltEgenandel=False,
        korrigeringBetaltEgenandel=False,
    )
    assert results(controlled(jose, token, melding(original))[1]) == [("godkjent", [])]
    by_guid = {k: original[k] for k in ("guid", "regningsnummer", "tidspunkt")}

    # false → true: approved (and pays nothing by itself). Not 9005: a korrigering is not a
    # second claim for the same regning.
    paid = {**by_guid, "betaltEgenandel": True, "korrigeringBetaltEgenandel": True}
    _, entry = controlled(jose, token, melding({**paid, "belop": 0}))
    assert results(entry) == [("godkjent", [])]

    # true → false: "Regningen vil bli avvist".
    unpaid = {**by_guid, "betaltEgenandel": False, "korrigeringBetaltEgenandel": True}
    _, entry = controlled(jose, token, melding({**unpaid, "belop": 0}))
    [(status, merknader)] = results(entry)
    assert (status, merknader) == ("avvist", ["9007"])
    assert (
        "fra ikke betalt til betalt" in entry["innsending"]["regninger"][0]["merknader"][0]["tekst"]
    )

    # A korrigering of a regning never received: korrigering true on an original.
    stranger = {**paid, "guid": "00000000-0000-4000-8000-000000000031", "belop": 0}
    assert results(controlled(jose, token, melding(stranger))[1]) == [("avvist", ["9006"])]

    # The original is still the standing regning: sending it again is still refused (9005).
    assert results(controlled(jose, token, melding({**original, "merknad": "igjen"}))[1]) == [
        ("avvist", ["9005"])
    ]


def _converted(tmp_path: Path, *names: str) -> list[bytes]:
    """The bridge's JSON for XML fixtures, through its CLI."""
    out = tmp_path / "json"
    paths = [str(FIXTURES.parent / name) for name in names]
    proc = subprocess.run(
        [sys.executable, "-m", "bridge", "convert", *paths, "--praksis-id", PRAKSIS, "--out",
         str(out)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return [(out / Path(name).with_suffix(".json").name).read_bytes() for name in names]


def _submit(jose: Jose, token: str, body: bytes) -> str:
    response = jose.submit_raw(jose.encrypt(body, token), token)
    assert response.status_code == 200, response.text
    return response.json()["behandlerkravmeldingId"]


def test_guid_only_kreditering_and_korrigering_from_the_bridge(
    jose: Jose, token: str, tmp_path: Path
) -> None:
    original, kreditering, unpaid, korrigering = _converted(
        tmp_path,
        "seed-arbeidsflyt-rettet.xml",
        "sandbox/kreditering-med-guid.xml",
        "sandbox/egenandel-ikke-betalt.xml",
        "sandbox/korrigering-betalt-egenandel-med-guid.xml",
    )
    assert "belop" not in simplejson.loads(kreditering)["behandlerkrav"]["regninger"][0]
    unpaid_regning = simplejson.loads(unpaid)["behandlerkrav"]["regninger"][0]
    assert unpaid_regning["korrigeringBetaltEgenandel"] is False
    assert unpaid_regning["utforendeBehandler"] == {
        "identifikasjon": {"id": "9144889", "type": "HPR"}
    }

    ids = []
    for body in (original, kreditering, unpaid, korrigering):
        ids.append(_submit(jose, token, body))
        jose.advance(25)
    statuses = [results(jose.details(i, token)[0]) for i in ids]
    assert statuses == [[("godkjent", [])]] * 4

    jose.set_clock("2026-01-06T16:00:01+01:00")
    sums = {r["behandlerkravmeldingId"]: r["sumUtbetaltbelop"] for r in jose.overview(token)}
    assert [sums[i] for i in ids] == [64, -64, 15, 0]


# --------------------------------------------------------------------------- merknader, sums


def test_innsending_and_vedtak_merknader_for_late_egenandeler(jose: Jose, token: str) -> None:
    late = regning("41", "2025-12-15T10:00:00+01:00", [("2ad", "15")], arsakFriEgenandel="B")
    recent = regning("42", "2026-01-05T10:00:00+01:00", [("2ad", "15")], arsakFriEgenandel="B")
    late_id, entry = controlled(jose, token, melding(late))
    assert [m["nummer"] for m in entry["innsending"]["merknader"]] == ["458"]
    assert "minst hver 14. dag" in entry["innsending"]["merknader"][0]["tekst"]
    assert entry["vedtak"]["merknader"] == []  # no vedtak yet
    recent_id, entry = controlled(jose, token, melding(recent))
    assert entry["innsending"]["merknader"] == []

    jose.set_clock("2026-01-06T16:00:01+01:00")
    [late_entry] = jose.details(late_id, token)
    [recent_entry] = jose.details(recent_id, token)
    assert [m["nummer"] for m in late_entry["vedtak"]["merknader"]] == ["1478"]
    assert "senest 14 dager etter behandlingen" in late_entry["vedtak"]["merknader"][0]["tekst"]
    assert recent_entry["vedtak"]["merknader"] == []
    assert late_entry["vedtakId"] == recent_entry["vedtakId"]  # one vedtak, own merknader


def test_innsending_carries_the_sums_as_the_details_example(jose: Jose, token: str) -> None:
    claim = load_fixture("seed-claim.json")  # 434 claimed, regning 5 (296) approved
    melding_id, entry = controlled(jose, token, claim)
    assert entry["innsending"]["sumKravbelop"] == 434
    assert entry["innsending"]["antallRegninger"] == 3
    assert "sumUtbetaltbelop" not in entry["innsending"]  # not known before the vedtak
    jose.set_clock("2026-01-06T16:00:01+01:00")
    [entry] = jose.details(melding_id, token)
    sums = {
        k: entry["innsending"][k] for k in ("sumKravbelop", "sumUtbetaltbelop", "antallRegninger")
    }
    assert sums == {"sumKravbelop": 434, "sumUtbetaltbelop": 296, "antallRegninger": 3}
    assert {k: entry[k] for k in sums} == sums  # and where the tables put them


# --------------------------------------------------------------------------- rebehandling


def test_rebehandling_by_regning_guid_as_in_the_example(jose: Jose, token: str) -> None:
    """Resultat av rebehandling: a krav with two regninger, one of them avvist; KUHR corrects
    its control and the avvist one is approved in a new row with rebehandling=true."""
    approved = regning("51", "2026-01-06T09:00:00+01:00", [("2ad", "15.00")])
    rejected = regning("52", "2026-01-06T09:30:00+01:00", [("9zz", "20.00")])  # 9001
    melding_id, first = controlled(jose, token, melding(approved, rejected))
    assert results(first) == [("godkjent", []), ("avvist", ["9001"])]

    response = jose.http.post("/sandbox/admin/rebehandling", json={"guid": rejected["guid"]})
    assert response.status_code == 200, response.text
    added = response.json()
    assert (added["behandlerkravmeldingId"], added["rebehandling"]) == (melding_id, True)

    jose.advance(25)
    original, again = jose.details(melding_id, token)
    assert original == first  # the first result stays as it was
    assert again["rebehandling"] is True and again["innsendingId"] != original["innsendingId"]
    assert results(again) == [("godkjent", []), ("godkjent", [])]
    rows = [r for r in jose.overview(token) if r["behandlerkravmeldingId"] == melding_id]
    assert [r["rebehandling"] for r in rows] == [False, True]
    jose.set_clock("2026-01-06T16:00:01+01:00")
    original, again = jose.details(melding_id, token)
    assert (original["sumUtbetaltbelop"], again["sumUtbetaltbelop"]) == (15, 20)


def test_rebehandling_with_new_merknader(jose: Jose, token: str) -> None:
    first = regning("61", "2026-01-06T09:00:00+01:00", [("2ad", "15.00")])
    second = regning("62", "2026-01-06T11:00:00+01:00", [("2ad", "15.00")], fnr="47908500667")
    melding_id, _ = controlled(jose, token, melding(first, second))
    tekst = "Regningen er avvist etter ny kontroll av takstbruken."
    body = {
        "behandlerkravmeldingId": melding_id,
        "regninger": {
            first["guid"]: {"status": "avvist", "merknader": [{"nummer": "812", "tekst": tekst}]},
            second["guid"]: "avvist",
        },
    }
    assert jose.admin("POST", "rebehandling", body)["rebehandling"] is True
    jose.advance(25)
    _, again = jose.details(melding_id, token)
    assert results(again) == [("avvist", ["812"]), ("avvist", ["9008"])]
    assert again["innsending"]["regninger"][0]["merknader"][0]["tekst"] == tekst
    assert again["utbetalingsstatus"] == "ikke_sendt_til_utbetaling"


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"guid": "00000000-0000-4000-8000-000000000099"}, 404),
        ({"behandlerkravmeldingId": "5138fbfe-3c9c-406f-b854-91177b00bb1a"}, 404),
        ({}, 400),
        ({"guid": 7}, 400),
    ],
)
def test_rebehandling_refuses_what_it_cannot_find(
    jose: Jose, body: dict[str, Any], status: int
) -> None:
    response = jose.http.post("/sandbox/admin/rebehandling", json=body)
    assert response.status_code == status, response.text
    assert response.json()["error_description"]


def test_rebehandling_refuses_bad_decisions(jose: Jose, token: str) -> None:
    one = regning("71", "2026-01-06T09:00:00+01:00", [("2ad", "15.00")])
    melding_id, _ = controlled(jose, token, melding(one))
    for regninger in (
        {one["guid"]: "kreditert"},
        {"00000000-0000-4000-8000-000000000071": "godkjent"},
        {one["guid"]: {"status": "godkjent", "merknader": [{"nummer": "710"}]}},
        {one["guid"]: {"status": "avvist", "merknader": [{"nummer": "4711"}]}},  # no text
    ):
        body = {"behandlerkravmeldingId": melding_id, "regninger": regninger}
        response = jose.http.post("/sandbox/admin/rebehandling", json=body)
        assert response.status_code == 400, (regninger, response.text)
    assert len(jose.details(melding_id, token)) == 1  # nothing was added
