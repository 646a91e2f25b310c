"""The status endpoints' answers: a stored melding as the API shows it at a given clock time."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from bridge.core.model import (
    BehandlerkravmeldingStatus,
    Innsending,
    Kontrollstatus,
    Meldingsstatus,
    Merknad,
    RegningResultat,
    Regningsstatus,
    Utbetaling,
    Utbetalingsstatus,
    Vedtak,
)
from bridge.sandbox.clock import from_epoch
from bridge.sandbox.merknader import tekst
from bridge.sandbox.store import Behandling, Melding, RegningRecord

KREDITERT = "kreditert"  # the documented status of a regning whose kreditering was approved


def entries(
    melding: Melding, now: float, *, details: bool, kontonr: Callable[[str], str | None]
) -> list[BehandlerkravmeldingStatus]:
    """One entry per behandling (more than one after a rebehandling)."""
    if melding.feil_i_melding:
        return [
            BehandlerkravmeldingStatus(
                behandlerkravmeldingId=melding.melding_id,
                meldingsstatus=Meldingsstatus.FEIL_I_MELDING,
                praksisId=melding.praksis_id,
                mottattidspunkt=from_epoch(melding.mottatt_at),
            )
        ]
    return [_entry(melding, b, now, details, kontonr) for b in melding.behandlinger]


def _entry(
    melding: Melding,
    behandling: Behandling,
    now: float,
    details: bool,
    kontonr: Callable[[str], str | None],
) -> BehandlerkravmeldingStatus:
    entry = BehandlerkravmeldingStatus(
        behandlerkravmeldingId=melding.melding_id,
        meldingsstatus=Meldingsstatus.MOTTATT,
        praksisId=melding.praksis_id,
        mottattidspunkt=from_epoch(melding.mottatt_at),
        sumKravbelop=melding.sum_krav,
        antallRegninger=melding.antall,
        rebehandling=behandling.rebehandling,
    )
    kontrollert = now >= behandling.kontrollert_at
    if now >= behandling.sendt_at:
        entry.innsendingId = str(behandling.innsending_id)
        entry.utbetalingsstatus = Utbetalingsstatus.IKKE_SENDT_TIL_UTBETALING
        if kontrollert:
            entry.meldingsstatus = Meldingsstatus.FERDIG_BEHANDLET
            entry.kontrollstatus = Kontrollstatus.FERDIG_KONTROLLERT
        else:
            entry.meldingsstatus = Meldingsstatus.SENDT_TIL_BEHANDLING
            manuell = behandling.manuell_at is not None and now >= behandling.manuell_at
            entry.kontrollstatus = (
                Kontrollstatus.KONTROLLERES_MANUELT if manuell else Kontrollstatus.KONTROLLERES
            )
    vedtak = behandling.vedtak
    utbetalt = False
    if kontrollert and now >= vedtak.run_at:
        entry.vedtakId = vedtak.vedtak_id
        if not behandling.any_godkjent:
            entry.utbetalingsstatus = Utbetalingsstatus.INGEN_UTBETALING
            entry.sumUtbetaltbelop = Decimal(0)
        else:
            utbetalt = now >= vedtak.utbetalt_at
            entry.utbetalingsstatus = (
                Utbetalingsstatus.UTBETALT if utbetalt else Utbetalingsstatus.SENDT_TIL_UTBETALING
            )
            entry.sumUtbetaltbelop = behandling.utbetales
    if details:
        entry.innsending = Innsending(
            regninger=[_regning(r, kontrollert, now) for r in behandling.regninger], merknader=[]
        )
        if kontrollert:
            utbetaling = None
            if utbetalt:
                utbetaling = Utbetaling(
                    belop=vedtak.total,
                    utbetaltdato=from_epoch(vedtak.utbetalt_at),
                    kontonr=kontonr(vedtak.praksis_id),
                    kid=vedtak.kid,
                )
            entry.vedtak = Vedtak(utbetaling=utbetaling, merknader=[])
    return entry


def _regning(record: RegningRecord, kontrollert: bool, now: float) -> RegningResultat:
    if not kontrollert:
        status = Regningsstatus.BEHANDLES.value
        merknader: list[Merknad] = []
    else:
        status = (Regningsstatus.GODKJENT if record.godkjent else Regningsstatus.AVVIST).value
        if record.kreditert_at is not None and now >= record.kreditert_at:
            status = KREDITERT
        merknader = [Merknad(nummer=ref[0], tekst=tekst(ref)) for ref in record.merknader]
    return RegningResultat(
        status=status, guid=record.guid, regningsnummer=record.regningsnummer, merknader=merknader
    )
