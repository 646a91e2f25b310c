"""The status endpoints' answers: a stored melding as the API shows it at a given clock time.
Fields not known yet are left out; amounts stay Decimal (written exactly by wire.dump)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, cast

from bridge.sandbox.clock import from_epoch
from bridge.sandbox.merknader import MerknadRef, tekst
from bridge.sandbox.store import Behandling, Melding, RegningRecord
from bridge.sandbox.wire import (
    BehandlerkravmeldingStatus,
    Kontrollstatus,
    Meldingsstatus,
    Merknad,
    RegningResultat,
    Regningsstatus,
    Utbetaling,
    Utbetalingsstatus,
    Vedtak,
)


def _time(seconds: float) -> str:
    return from_epoch(seconds).isoformat(timespec="seconds")


def _merknader(refs: Iterable[MerknadRef]) -> list[Merknad]:
    return [Merknad(nummer=ref[0], tekst=tekst(ref)) for ref in refs]


def entries(
    melding: Melding, now: float, *, details: bool, kontonr: Callable[[str], str | None]
) -> list[BehandlerkravmeldingStatus]:
    """One entry per behandling (more than one after a rebehandling)."""
    if melding.feil_i_melding:
        entry = BehandlerkravmeldingStatus(
            behandlerkravmeldingId=melding.melding_id,
            meldingsstatus=Meldingsstatus.FEIL_I_MELDING.value,
            mottattidspunkt=_time(melding.mottatt_at),
        )
        if melding.praksis_id is not None:
            entry["praksisId"] = melding.praksis_id
        return [entry]
    return [_entry(melding, b, now, details, kontonr) for b in melding.behandlinger]


def _entry(
    melding: Melding,
    behandling: Behandling,
    now: float,
    details: bool,
    kontonr: Callable[[str], str | None],
) -> BehandlerkravmeldingStatus:
    """The entry in the documentation's key order."""
    sendt = now >= behandling.sendt_at
    kontrollert = now >= behandling.kontrollert_at
    vedtak = behandling.vedtak
    vedtatt = kontrollert and now >= vedtak.run_at
    utbetalt = vedtatt and behandling.any_godkjent and now >= vedtak.utbetalt_at
    entry: dict[str, Any] = {
        "behandlerkravmeldingId": melding.melding_id,
        "meldingsstatus": _meldingsstatus(behandling, now).value,
    }
    if behandling.ikke_til_kontroll and now >= behandling.klar_at:
        entry["kontrollstatus"] = Kontrollstatus.IKKE_SENDT_TIL_KONTROLL.value
        entry["utbetalingsstatus"] = Utbetalingsstatus.IKKE_SENDT_TIL_UTBETALING.value
        entry["innsendingId"] = str(behandling.innsending_id)
    if sendt:
        entry["kontrollstatus"] = _kontrollstatus(behandling, now).value
        entry["utbetalingsstatus"] = _utbetalingsstatus(behandling, vedtatt, utbetalt).value
        entry["innsendingId"] = str(behandling.innsending_id)
    entry["rebehandling"] = behandling.rebehandling
    if vedtatt:
        entry["vedtakId"] = vedtak.vedtak_id
    if melding.praksis_id is not None:
        entry["praksisId"] = melding.praksis_id
    entry["mottattidspunkt"] = _time(melding.mottatt_at)
    sums = _sums(melding, behandling, vedtatt)
    entry.update(sums)
    if details:
        entry["innsending"] = {
            **sums,
            "regninger": [_regning(r, kontrollert) for r in behandling.regninger],
            "merknader": _merknader(behandling.innsending_merknader) if kontrollert else [],
        }
        if kontrollert:
            merknader = _merknader(behandling.vedtak_merknader) if vedtatt else []
            vedtak_view = Vedtak(merknader=merknader)
            if utbetalt:
                vedtak_view = Vedtak(
                    utbetaling=Utbetaling(
                        belop=vedtak.total,
                        utbetaltdato=_time(vedtak.utbetalt_at),
                        kontonr=kontonr(vedtak.praksis_id),
                        kid=vedtak.kid,
                    ),
                    merknader=merknader,
                )
            entry["vedtak"] = vedtak_view
    return cast(BehandlerkravmeldingStatus, entry)


def _meldingsstatus(behandling: Behandling, now: float) -> Meldingsstatus:
    if now >= behandling.kontrollert_at:
        return Meldingsstatus.FERDIG_BEHANDLET  # as the workflow example shows
    if now >= behandling.sendt_at:
        return Meldingsstatus.SENDT_TIL_BEHANDLING
    if now >= behandling.klar_at:
        return Meldingsstatus.KLAR_TIL_BEHANDLING
    return Meldingsstatus.MOTTATT


def _kontrollstatus(behandling: Behandling, now: float) -> Kontrollstatus:
    if now >= behandling.kontrollert_at:
        return Kontrollstatus.FERDIG_KONTROLLERT
    if behandling.manuell_at is not None and now >= behandling.manuell_at:
        return Kontrollstatus.KONTROLLERES_MANUELT
    return Kontrollstatus.KONTROLLERES


def _utbetalingsstatus(behandling: Behandling, vedtatt: bool, utbetalt: bool) -> Utbetalingsstatus:
    if not vedtatt:
        return Utbetalingsstatus.IKKE_SENDT_TIL_UTBETALING
    if not behandling.any_godkjent:
        return Utbetalingsstatus.INGEN_UTBETALING
    return Utbetalingsstatus.UTBETALT if utbetalt else Utbetalingsstatus.SENDT_TIL_UTBETALING


def _sums(melding: Melding, behandling: Behandling, vedtatt: bool) -> dict[str, Any]:
    """sumKravbelop, sumUtbetaltbelop (once the vedtak has run) and antallRegninger: on the
    entry (the tables and the workflow example) and in innsending (the details example)."""
    sums: dict[str, Any] = {}
    if melding.sum_krav is not None:
        sums["sumKravbelop"] = melding.sum_krav
    if vedtatt:
        sums["sumUtbetaltbelop"] = behandling.utbetales if behandling.any_godkjent else 0
    if melding.antall is not None:
        sums["antallRegninger"] = melding.antall
    return sums


def _regning(record: RegningRecord, kontrollert: bool) -> RegningResultat:
    if not kontrollert:
        return RegningResultat(
            status=Regningsstatus.BEHANDLES.value,
            guid=record.guid,
            regningsnummer=record.regningsnummer,
            merknader=[],
        )
    status = Regningsstatus.GODKJENT if record.godkjent else Regningsstatus.AVVIST
    return RegningResultat(
        status=status.value,
        guid=record.guid,
        regningsnummer=record.regningsnummer,
        merknader=_merknader(record.merknader),
    )
