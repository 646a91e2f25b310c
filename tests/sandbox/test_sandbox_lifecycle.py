"""The life of a claim on the sandbox clock: statuses within the documented times, manual
control, one vedtakId per praksis per 16:00 run on working days, payment 2–3 working days
later, ingen_utbetaling, rebehandling entries, and the overview's date filters."""

from __future__ import annotations

import pytest
from support.sandbox import (  # noqa: F401 (fixtures)
    Jose,
    jose_fixture,
    keys_fixture,
    load_fixture,
    melding,
    regning,
    sandbox_fixture,
    serve,
    served_fixture,
)

from bridge.sandbox import SandboxSettings
from bridge.sandbox.keys import KeyMaterial

LEGEVAKT = "1004326468"


@pytest.fixture
def token(jose: Jose) -> str:
    jose.admin("POST", "clock", {"speed": 0})  # a still clock: only the tests move it
    return jose.token()


def consultation(tidspunkt: str = "2026-01-06T13:35:00+01:00", **kwargs) -> dict:
    return regning("5", tidspunkt, [("2ad", "15.00"), ("L1", "26.00")], **kwargs)


def status(jose: Jose, melding_id: str, token: str) -> dict:
    [entry] = jose.details(melding_id, token)
    return entry


def test_statuses_move_within_the_documented_times(jose: Jose, token: str) -> None:
    melding_id = jose.send(melding(consultation()), token)
    entry = status(jose, melding_id, token)
    assert entry["meldingsstatus"] == "mottatt"
    assert "kontrollstatus" not in entry
    assert entry["innsending"]["regninger"][0]["status"] == "behandles"

    jose.advance(0.49)
    assert status(jose, melding_id, token)["meldingsstatus"] == "mottatt"

    # The basic technical check is done halfway to sendt_til_behandling (0.5–1 s).
    jose.advance(0.51)
    entry = status(jose, melding_id, token)
    assert entry["meldingsstatus"] == "klar_til_behandling"
    assert "kontrollstatus" not in entry and "innsendingId" not in entry

    jose.advance(1.0)  # 2 s after receipt
    entry = status(jose, melding_id, token)
    assert entry["meldingsstatus"] == "sendt_til_behandling"
    assert entry["kontrollstatus"] == "kontrolleres"
    assert entry["utbetalingsstatus"] == "ikke_sendt_til_utbetaling"
    assert entry["innsendingId"]
    assert entry["innsending"]["regninger"][0]["status"] == "behandles"

    jose.advance(8.9)  # 10.9 s: the control takes at least 10 s after sendt_til_behandling
    assert status(jose, melding_id, token)["kontrollstatus"] == "kontrolleres"

    jose.advance(11.1)  # 22 s: at most 2 + 20 s
    entry = status(jose, melding_id, token)
    assert entry["kontrollstatus"] == "ferdig_kontrollert"
    assert entry["meldingsstatus"] == "ferdig_behandlet"
    assert entry["innsending"]["regninger"][0]["status"] == "godkjent"
    assert entry["utbetalingsstatus"] == "ikke_sendt_til_utbetaling"


def test_the_clock_runs_at_the_configured_speed(keys: KeyMaterial) -> None:
    with serve(keys, speed=100.0) as running:
        client = Jose(running.base_url, running.info)
        token = client.token()
        melding_id = client.send(melding(consultation()), token)
        import time

        time.sleep(0.3)  # 30 simulated seconds
        assert status(client, melding_id, token)["kontrollstatus"] == "ferdig_kontrollert"
        client.close()


def test_a_share_goes_to_manual_control_first(keys: KeyMaterial) -> None:
    settings = SandboxSettings(manual_control_share=1.0, speed=0.0)
    with serve(keys, settings=settings) as running:
        client = Jose(running.base_url, running.info)
        token = client.token()
        melding_id = client.send(melding(consultation()), token)
        client.advance(22)
        entry = status(client, melding_id, token)
        assert entry["kontrollstatus"] == "kontrolleres_manuelt"
        assert entry["innsending"]["regninger"][0]["status"] == "behandles"
        client.advance(6 * 3600)
        assert status(client, melding_id, token)["kontrollstatus"] == "ferdig_kontrollert"
        client.close()


def test_a_share_is_never_sent_to_control(keys: KeyMaterial) -> None:
    settings = SandboxSettings(unsent_control_share=1.0, speed=0.0)
    with serve(keys, settings=settings) as running:
        client = Jose(running.base_url, running.info)
        token = client.token()
        melding_id = client.send(melding(consultation()), token)
        for seconds in (22, 30 * 24 * 3600):  # nothing follows, however long one waits
            client.advance(seconds)
            entry = status(client, melding_id, token)
            assert (
                entry["meldingsstatus"],
                entry["kontrollstatus"],
                entry["utbetalingsstatus"],
            ) == ("klar_til_behandling", "ikke_sendt_til_kontroll", "ikke_sendt_til_utbetaling")
            assert entry["innsending"]["regninger"][0]["status"] == "behandles"
            assert "vedtakId" not in entry
        client.close()


def test_one_vedtak_per_praksis_at_16(jose: Jose, token: str) -> None:
    fale = [jose.send(melding(consultation(guid=None)), token) for _ in range(2)]
    leva = jose.send(melding(consultation(), praksis_id=LEGEVAKT), token)
    jose.set_clock("2026-01-06T15:59:59+01:00")
    assert all("vedtakId" not in status(jose, m, token) for m in [*fale, leva])

    jose.set_clock("2026-01-06T16:00:01+01:00")
    rows = {r["behandlerkravmeldingId"]: r for r in jose.overview(token)}
    assert {rows[m]["utbetalingsstatus"] for m in [*fale, leva]} == {"sendt_til_utbetaling"}
    assert rows[fale[0]]["vedtakId"] == rows[fale[1]]["vedtakId"]
    assert rows[leva]["vedtakId"] != rows[fale[0]]["vedtakId"]


def test_controlled_after_16_waits_for_the_next_working_day(jose: Jose, token: str) -> None:
    jose.set_clock("2026-01-09T16:30:00+01:00")  # a Friday afternoon
    melding_id = jose.send(melding(consultation("2026-01-09T15:00:00+01:00")), token)
    jose.set_clock("2026-01-12T15:59:00+01:00")  # Monday
    entry = status(jose, melding_id, token)
    assert entry["kontrollstatus"] == "ferdig_kontrollert"
    assert entry["utbetalingsstatus"] == "ikke_sendt_til_utbetaling"
    jose.set_clock("2026-01-12T16:00:01+01:00")
    assert status(jose, melding_id, token)["utbetalingsstatus"] == "sendt_til_utbetaling"
    # Paid two or three working days after Monday's vedtak.
    jose.set_clock("2026-01-14T07:59:00+01:00")
    assert status(jose, melding_id, token)["utbetalingsstatus"] == "sendt_til_utbetaling"
    jose.set_clock("2026-01-15T08:00:01+01:00")
    entry = status(jose, melding_id, token)
    assert entry["utbetalingsstatus"] == "utbetalt"
    assert entry["vedtak"]["utbetaling"]["utbetaltdato"][:10] in ("2026-01-14", "2026-01-15")


def test_easter_holidays_are_not_working_days(jose: Jose, token: str) -> None:
    jose.set_clock("2026-04-01T16:30:00+02:00")  # the Wednesday before Maundy Thursday
    melding_id = jose.send(melding(consultation("2026-04-01T10:00:00+02:00")), token)
    jose.set_clock("2026-04-06T16:00:01+02:00")  # Easter Monday
    assert "vedtakId" not in status(jose, melding_id, token)
    jose.set_clock("2026-04-07T16:00:01+02:00")  # Tuesday
    entry = status(jose, melding_id, token)
    assert entry["vedtakId"]
    assert entry["mottattidspunkt"] == "2026-04-01T16:30:00+02:00"  # summer time in Oslo


def test_nothing_approved_means_ingen_utbetaling(jose: Jose, token: str) -> None:
    melding_id = jose.send(melding(consultation("2026-03-01T10:00:00+01:00")), token)
    jose.set_clock("2026-01-06T16:00:01+01:00")
    entry = status(jose, melding_id, token)
    assert entry["innsending"]["regninger"][0]["status"] == "avvist"
    assert entry["utbetalingsstatus"] == "ingen_utbetaling"
    assert entry["vedtakId"]
    jose.set_clock("2026-01-20T12:00:00+01:00")
    assert status(jose, melding_id, token)["utbetalingsstatus"] == "ingen_utbetaling"


def test_rebehandling_adds_an_entry_with_its_own_result(jose: Jose, token: str) -> None:
    melding_id = jose.send(load_fixture("seed-claim.json"), token)
    jose.advance(25)
    before = status(jose, melding_id, token)
    assert [r["status"] for r in before["innsending"]["regninger"]] == [
        "avvist",
        "godkjent",
        "avvist",
    ]

    added = jose.admin("POST", f"rebehandling/{melding_id}")
    assert added["rebehandling"] is True
    assert added["behandlerkravmeldingId"] == melding_id
    entries = jose.details(melding_id, token)
    assert [e["rebehandling"] for e in entries] == [False, True]
    assert entries[1]["innsendingId"] != entries[0]["innsendingId"]
    assert entries[1]["kontrollstatus"] == "kontrolleres"

    jose.advance(25)
    original, again = jose.details(melding_id, token)
    assert original["innsending"] == before["innsending"]  # the first result stays as it was
    assert [r["status"] for r in again["innsending"]["regninger"]] == ["godkjent"] * 3
    assert all(r["merknader"] == [] for r in again["innsending"]["regninger"])
    rows = [r for r in jose.overview(token) if r["behandlerkravmeldingId"] == melding_id]
    assert [r["rebehandling"] for r in rows] == [False, True]

    jose.set_clock("2026-01-06T16:00:01+01:00")
    original, again = jose.details(melding_id, token)
    assert original["sumUtbetaltbelop"] == 296
    assert again["sumUtbetaltbelop"] == 138  # 1bd 74 + 1i 64, now approved


def test_rebehandling_can_reject(jose: Jose, token: str) -> None:
    regning_5 = consultation()
    melding_id = jose.send(melding(regning_5), token)
    jose.advance(25)
    jose.admin("POST", f"rebehandling/{melding_id}", {"regninger": {regning_5["guid"]: "avvist"}})
    jose.advance(25)
    assert jose.details(melding_id, token)[1]["innsending"]["regninger"][0]["status"] == "avvist"


def test_rebehandling_of_an_unknown_melding_is_404(jose: Jose) -> None:
    response = jose.http.post("/sandbox/admin/rebehandling/5138fbfe-3c9c-406f-b854-91177b00bb1a")
    assert response.status_code == 404


def test_overview_date_filters(jose: Jose, token: str) -> None:
    monday = jose.send(melding(consultation("2026-01-05T10:00:00+01:00")), token)
    jose.set_clock("2026-01-07T09:00:00+01:00")
    wednesday = jose.send(melding(consultation("2026-01-07T08:00:00+01:00")), token)

    def ids(**params: str) -> list[str]:
        return [r["behandlerkravmeldingId"] for r in jose.overview(token, **params)]

    assert ids() == [wednesday, monday]
    assert ids(fomMottattdato="2026-01-07") == [wednesday]
    assert ids(tomMottattdato="2026-01-06") == [monday]
    assert ids(fomMottattdato="2026-01-06", tomMottattdato="2026-01-06") == [monday]
    assert ids(fomMottattdato="2026-01-08") == []
    response = jose.get("/data/behandlerkravmelding", token, fomMottattdato="06.01.2026")
    assert response.status_code == 400
    assert "fomMottattdato" in response.json()["error_description"]


def test_admin_clock(jose: Jose) -> None:
    assert jose.admin("GET", "clock")["now"].startswith("2026-01-06T15:30")
    moved = jose.admin("POST", "clock", {"set": "2026-02-01T10:00:00", "speed": 0})
    assert moved == {"now": "2026-02-01T10:00:00+01:00", "speed": 0.0}
    assert (
        jose.admin("POST", "clock", {"advance_seconds": 3600})["now"] == "2026-02-01T11:00:00+01:00"
    )
    for bad in ({}, {"advance_seconds": -1}, {"set": "tomorrow"}):
        assert jose.http.post("/sandbox/admin/clock", json=bad).status_code == 400
    reset = jose.admin("POST", "reset")
    assert reset["now"].startswith("2026-01-06T15:30")
