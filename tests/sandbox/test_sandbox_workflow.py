"""The seed's whole normal workflow (eksempler/normal_arbeidsflyt_eksempel.md) over loopback,
driven by a plain JOSE client: HelseID token, praksis list, submit, control result with 470 and
766, corrected resubmission, overview, shared vedtakId after 16:00, payment two working days
later. Expected values come from the documentation's example (tests/fixtures/sandbox)."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest
from support.sandbox import (  # noqa: F401 (fixtures)
    Jose,
    jose_fixture,
    keys_fixture,
    load_fixture,
    sandbox_fixture,
    serve,
)

from bridge.core.model import RegningResultat, load_json
from bridge.sandbox import RunningSandbox, SandboxSettings
from bridge.sandbox.keys import KeyMaterial

REGNING_4, REGNING_5, REGNING_6 = (
    "f0bcd358-0676-49c7-94f8-c055c4b21332",
    "b7184d58-0ed4-4277-a60c-720b1daf69f7",
    "32b24c0b-facd-4f5e-aff9-9849ae477db5",
)


@pytest.fixture(scope="module")
def served(keys: KeyMaterial) -> Iterator[RunningSandbox]:
    # Payment after exactly two working days, as in the example (the default draws 2 or 3).
    running = serve(keys, settings=SandboxSettings(seed=11, utbetaling_working_days=(2, 2)))
    yield running
    running.stop()


def _regninger(entry: dict) -> list[RegningResultat]:
    return [RegningResultat.model_validate(r) for r in entry["innsending"]["regninger"]]


def test_normal_workflow_from_the_documentation(jose: Jose) -> None:
    # Pålogging: the lege logs in with HelseID.
    token = jose.token(via="helseid")

    # Valg av praksis.
    response = jose.get("/data/praksis", token)
    assert response.status_code == 200
    assert response.json() == load_fixture("seed-praksiser.json")

    # Innsending av krav at 15:30.
    response = jose.submit(load_fixture("seed-claim.json"), token, nested=True)
    assert response.status_code == 200, response.text
    first = response.json()
    assert first["status"] == "mottatt"
    first_id = first["behandlerkravmeldingId"]

    [entry] = jose.details(first_id, token)
    assert entry["meldingsstatus"] == "mottatt"
    assert all(r.status == "behandles" for r in _regninger(entry))

    # Hente kontrollresultat: the EPJ waits a little; the control takes 10–20 s.
    jose.advance(25)
    [entry] = jose.details(first_id, token)
    expected = load_fixture("seed-control-result.json")["behandlerkravmeldinger"][0]
    for field in ("meldingsstatus", "kontrollstatus", "utbetalingsstatus", "praksisId"):
        assert entry[field] == expected[field], field
    assert entry["mottattidspunkt"].startswith("2026-01-06T15:30:")
    assert entry["mottattidspunkt"].endswith("+01:00")
    assert entry["sumKravbelop"] == 434
    assert entry["antallRegninger"] == 3
    assert entry.get("vedtakId") is None
    assert _regninger(entry) == _regninger(expected)
    statuses = {r.guid: r.status for r in _regninger(entry)}
    assert statuses == {REGNING_4: "avvist", REGNING_5: "godkjent", REGNING_6: "avvist"}

    # Rette feil og sende inn på nytt: same guid and regningsnummer, the right date.
    jose.set_clock("2026-01-06T15:45:57+01:00")
    response = jose.submit(load_fixture("seed-claim-corrected.json"), token)
    assert response.status_code == 200, response.text
    second_id = response.json()["behandlerkravmeldingId"]
    assert second_id != first_id

    jose.advance(25)
    [entry] = jose.details(second_id, token)
    assert entry["kontrollstatus"] == "ferdig_kontrollert"
    assert entry["mottattidspunkt"].startswith("2026-01-06T15:45:")
    [regning] = _regninger(entry)
    assert (regning.status, regning.guid, regning.regningsnummer) == ("godkjent", REGNING_6, "6")
    assert regning.merknader == []

    # Vise oversikt over innsendte krav, from 2026-01-01: newest first.
    rows = jose.overview(token, fomMottattdato="2026-01-01")
    assert [r["behandlerkravmeldingId"] for r in rows] == [second_id, first_id]
    assert {r["utbetalingsstatus"] for r in rows} == {"ikke_sendt_til_utbetaling"}
    assert [r["antallRegninger"] for r in rows] == [1, 3]
    assert jose.overview(token, tomMottattdato="2026-01-05") == []

    # Sendt til utbetaling: at 16:00 both share one vedtakId (same praksis, same day).
    jose.set_clock("2026-01-06T16:00:01+01:00")
    rows = {
        r["behandlerkravmeldingId"]: r for r in jose.overview(token, fomMottattdato="2026-01-01")
    }
    assert {r["utbetalingsstatus"] for r in rows.values()} == {"sendt_til_utbetaling"}
    vedtak_ids = {r["vedtakId"] for r in rows.values()}
    assert len(vedtak_ids) == 1 and None not in vedtak_ids
    assert rows[first_id]["sumUtbetaltbelop"] == 296
    assert rows[second_id]["sumUtbetaltbelop"] == 64

    # Not paid yet late on the next working day …
    jose.set_clock("2026-01-07T23:59:00+01:00")
    [entry] = jose.details(second_id, token)
    assert entry["utbetalingsstatus"] == "sendt_til_utbetaling"

    # … paid two working days after the vedtak, into the praksis's account.
    jose.set_clock("2026-01-08T12:00:00+01:00")
    response = jose.get(f"/data/behandlerkravmelding/{second_id}", token)
    [entry] = load_json(response.text)["behandlerkravmeldinger"]
    assert entry["utbetalingsstatus"] == "utbetalt"
    assert entry["vedtakId"] in vedtak_ids
    assert entry["sumUtbetaltbelop"] == 64
    utbetaling = entry["vedtak"]["utbetaling"]
    assert utbetaling["belop"] == Decimal("360")  # 296 + 64: the whole vedtak
    assert utbetaling["kontonr"] == "12345678901"
    assert utbetaling["utbetaltdato"].startswith("2026-01-08")
    assert utbetaling["kid"]

    # Every regning was accepted once, regning 6 twice (original and correction).
    stats = jose.admin("GET", "stats")
    assert stats["by_guid"] == {REGNING_4: 1, REGNING_5: 1, REGNING_6: 2}
    assert (stats["submissions_received"], stats["submissions_accepted"]) == (2, 2)
