"""The automatic control of each regning, producing merknader. A regning with a merknad is
avvist; one without is godkjent.

Rules (numbers as KUHR uses them where the documentation shows them, 9xxx are the sandbox's own):
766 dated after receipt, 470 1bd/1be/1bk on a separate regning within 60 minutes of a
consultation for the same patient in the same melding, 710 frikort claimed without frikort,
9001 unknown takst, 9002 takst not valid on the treatment date, 9003 older than three years,
9004 kreditering of a regning that is not approved, 9005 regning already approved.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from bridge.model import Behandlerkravmelding, Regning
from bridge.sandbox.clock import as_oslo
from bridge.sandbox.store import RegningRecord
from bridge.sandbox.takster import TakstTable, TakstValidity

ENKEL_KONTAKT = frozenset({"1bd", "1be", "1bk"})
KONSULTASJON = frozenset({"2ad", "2ae", "2ak"})
KONSULTASJON_WINDOW_SECONDS = 60 * 60

TEKST_470 = (
    "Takst 1bd/1be/1bk for enkel pasientkontakt, forespørsel, rådgivning ved papirbrev eller "
    "telefon står som ugyldig kombinasjon med alle takster. Her er takst 1bd/1bk skrevet på ny "
    "regning, og brukt 60 minutter før/etter konsultasjonstakst på regningsnummer {annen}. "
    "Refusjonskrav for takst 1bd/1bk er avslått under forutsetning av at taksten er brukt i "
    "forbindelse med konsultasjon."
)
TEKST_766 = (
    "Enkeltregning er datert frem i tid, oppgitt konsultasjonstid er {tidspunkt}, "
    "innsending er mottatt {mottatt}"
)
TEKST_710 = (
    "Samhandler har registrert at pasienten har frikort. Frikortvedtak er ikke registrert i "
    "frikortregisteret. Fra 1. april 2011 vil slike regninger bli automatisk avvist."
)
TEKST_9001 = "Takstkode {kode} finnes ikke i takstlisten."
TEKST_9002 = "Takstkode {kode} var ikke gyldig på behandlingsdatoen {dato}."
TEKST_9003 = (
    "Regningen er eldre enn tre år (behandlet {dato}, mottatt {mottatt}). Kravet er foreldet."
)
TEKST_9004 = (
    "Regningen som skal krediteres (guid {guid}) er ikke mottatt og godkjent tidligere, "
    "eller er allerede kreditert. Krediteringen er avvist."
)
TEKST_9005 = (
    "Regning med guid {guid} er allerede godkjent. Send en kreditering av den godkjente "
    "regningen før en korrigert regning sendes inn."
)

Merknad = tuple[str, str]


@dataclass(frozen=True)
class ControlContext:
    takster: TakstTable
    has_frikort: Callable[[str | None], bool]
    previous: Callable[[str], RegningRecord | None]  # the actor's latest regning with a guid


@dataclass(frozen=True, slots=True)
class Outcome:
    """The control result of one regning."""

    regning: Regning
    merknader: tuple[Merknad, ...]
    # What it adds to the payment: its belop, minus the credited regning's for a kreditering.
    utbetales: Decimal
    krediterer: RegningRecord | None = None

    @property
    def godkjent(self) -> bool:
        return not self.merknader


def _minutes(moment: datetime) -> str:
    return as_oslo(moment).strftime("%d.%m.%Y %H:%M")


def _day(moment: date) -> str:
    return moment.strftime("%d.%m.%Y")


def _three_years_before(day: date) -> date:
    try:
        return day.replace(year=day.year - 3)
    except ValueError:  # 29 February
        return day.replace(year=day.year - 3, day=28)


def _patient(regning: Regning) -> str | None:
    if regning.pasient and regning.pasient.identifikasjon:
        return regning.pasient.identifikasjon.id
    return None


def _codes(regning: Regning) -> set[str]:
    return {t.kode for t in regning.takster or ()}


def control(melding: Behandlerkravmelding, mottatt: datetime, ctx: ControlContext) -> list[Outcome]:
    regninger = melding.behandlerkrav.regninger
    return [_control_one(r, regninger, as_oslo(mottatt), ctx) for r in regninger]


def _control_one(
    regning: Regning, alle: list[Regning], mottatt: datetime, ctx: ControlContext
) -> Outcome:
    merknader: list[Merknad] = []
    tidspunkt = as_oslo(regning.tidspunkt)
    if tidspunkt.date() < _three_years_before(mottatt.date()):
        merknader.append(
            ("9003", TEKST_9003.format(dato=_day(tidspunkt.date()), mottatt=_day(mottatt.date())))
        )
    previous = ctx.previous(regning.guid)
    if regning.kreditering:
        approved_before = (
            previous is not None
            and previous.godkjent
            and not previous.kreditering
            and previous.kreditert_at is None
        )
        if not approved_before:
            merknader.append(("9004", TEKST_9004.format(guid=regning.guid)))
        if merknader or previous is None:
            return Outcome(regning, tuple(merknader), Decimal(0))
        return Outcome(regning, (), -previous.belop, krediterer=previous)
    if (
        previous is not None
        and previous.godkjent
        and not previous.kreditering
        and previous.kreditert_at is None
    ):
        merknader.append(("9005", TEKST_9005.format(guid=regning.guid)))
    if tidspunkt > mottatt:
        tekst = TEKST_766.format(tidspunkt=_minutes(tidspunkt), mottatt=_minutes(mottatt))
        merknader.append(("766", tekst))
    for takst in regning.takster or ():
        validity = ctx.takster.validity(takst.kode, tidspunkt.date())
        if validity is TakstValidity.UNKNOWN:
            merknader.append(("9001", TEKST_9001.format(kode=takst.kode)))
        elif validity is TakstValidity.NOT_VALID_ON_DATE:
            merknader.append(
                ("9002", TEKST_9002.format(kode=takst.kode, dato=_day(tidspunkt.date())))
            )
    if (regning.arsakFriEgenandel or "").strip().upper() == "F" and not ctx.has_frikort(
        _patient(regning)
    ):
        merknader.append(("710", TEKST_710))
    annen = _konsultasjon_nearby(regning, alle)
    if annen is not None:
        merknader.append(("470", TEKST_470.format(annen=annen.regningsnummer)))
    return Outcome(regning, tuple(merknader), Decimal(0) if merknader else regning.belop)


def _konsultasjon_nearby(regning: Regning, alle: list[Regning]) -> Regning | None:
    """Another regning for the same patient with a consultation takst within 60 minutes, when
    this one bills a simple contact (1bd/1be/1bk) on its own."""
    codes = _codes(regning)
    if not codes & ENKEL_KONTAKT or codes & KONSULTASJON:
        return None
    patient = _patient(regning)
    if patient is None:
        return None
    for other in alle:
        if other is regning or _patient(other) != patient or not _codes(other) & KONSULTASJON:
            continue
        gap = abs((other.tidspunkt - regning.tidspunkt).total_seconds())
        if gap <= KONSULTASJON_WINDOW_SECONDS:
            return other
    return None
