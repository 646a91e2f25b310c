"""The automatic control of each regning, producing merknader. A regning with a merknad is
avvist; one without is godkjent. (Texts in merknader.py.)

Rules: 766 dated after receipt; 470 1bd/1be/1bk on a separate regning within 60 minutes of a
consultation for the same patient in the same melding; 710 frikort claimed without frikort;
9001 unknown takst; 9002 takst not valid on the treatment date; 9003 older than three years;
9004 kreditering of a regning that is not approved; 9005 regning already approved.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from bridge.core.model import Behandlerkravmelding, Regning
from bridge.sandbox.clock import as_oslo
from bridge.sandbox.merknader import MerknadRef, merknad
from bridge.sandbox.store import RegningRecord
from bridge.sandbox.takster import TakstTable, TakstValidity

ENKEL_KONTAKT = frozenset({"1bd", "1be", "1bk"})
KONSULTASJON = frozenset({"2ad", "2ae", "2ak"})
KONSULTASJON_WINDOW_SECONDS = 60 * 60


@dataclass(frozen=True)
class ControlContext:
    takster: TakstTable
    has_frikort: Callable[[str | None], bool]
    previous: Callable[[str], RegningRecord | None]  # the actor's latest regning with a guid


@dataclass(frozen=True, slots=True)
class Outcome:
    """The control result of one regning."""

    regning: Regning
    merknader: tuple[MerknadRef, ...]
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
    merknader: list[MerknadRef] = []
    tidspunkt = as_oslo(regning.tidspunkt)
    if tidspunkt.date() < _three_years_before(mottatt.date()):
        merknader.append(merknad("9003", _day(tidspunkt.date()), _day(mottatt.date())))
    previous = ctx.previous(regning.guid)
    if regning.kreditering:
        approved_before = (
            previous is not None
            and previous.godkjent
            and not previous.kreditering
            and previous.kreditert_at is None
        )
        if not approved_before:
            merknader.append(merknad("9004", regning.guid))
        if merknader or previous is None:
            return Outcome(regning, tuple(merknader), Decimal(0))
        return Outcome(regning, (), -previous.belop, krediterer=previous)
    if (
        previous is not None
        and previous.godkjent
        and not previous.kreditering
        and previous.kreditert_at is None
    ):
        merknader.append(merknad("9005", regning.guid))
    if tidspunkt > mottatt:
        merknader.append(merknad("766", _minutes(tidspunkt), _minutes(mottatt)))
    for takst in regning.takster or ():
        validity = ctx.takster.validity(takst.kode, tidspunkt.date())
        if validity is TakstValidity.UNKNOWN:
            merknader.append(merknad("9001", takst.kode))
        elif validity is TakstValidity.NOT_VALID_ON_DATE:
            merknader.append(merknad("9002", takst.kode, _day(tidspunkt.date())))
    if (regning.arsakFriEgenandel or "").strip().upper() == "F" and not ctx.has_frikort(
        _patient(regning)
    ):
        merknader.append(merknad("710"))
    annen = _konsultasjon_nearby(regning, alle)
    if annen is not None:
        merknader.append(merknad("470", annen.regningsnummer))
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
