"""The automatic control of each regning, producing merknader. A regning with a merknad is
avvist; one without is godkjent. (Texts in merknader.py.)

Rules: 766 dated after receipt; 470 1bd/1be/1bk on a separate regning within 60 minutes of a
consultation for the same patient in the same melding; 710 frikort claimed without frikort;
9001 unknown takst; 9002 takst not valid on the treatment date; 9003 older than three years;
9004 kreditering of a regning that is not approved; 9005 an approved regning sent again without
a kreditering first. A korrigering of betalt egenandel follows the documented rule instead:
erBetalt may only change from false to true (9007), of a regning received and approved before
(9006). On the innsending: 458 when egenandeler are reported more than 14 days after the
treatment (and 1478 on the vedtak that pays it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from bridge.sandbox.claim import Krav, Regning
from bridge.sandbox.clock import as_oslo
from bridge.sandbox.merknader import MerknadRef, merknad
from bridge.sandbox.store import RegningRecord
from bridge.sandbox.takster import TakstTable, TakstValidity

ENKEL_KONTAKT = frozenset({"1bd", "1be", "1bk"})
KONSULTASJON = frozenset({"2ad", "2ae", "2ak"})
KONSULTASJON_WINDOW_SECONDS = 60 * 60
EGENANDEL_FRIST = timedelta(days=14)


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
    korrigerer: RegningRecord | None = None  # the original of an approved korrigering

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


def _standing(previous: RegningRecord | None) -> bool:
    """An approved original that has not been credited."""
    return (
        previous is not None
        and previous.godkjent
        and not previous.kreditering
        and previous.kreditert_at is None
    )


def control(krav: Krav, mottatt: datetime, ctx: ControlContext) -> list[Outcome]:
    return [_control_one(r, krav.regninger, as_oslo(mottatt), ctx) for r in krav.regninger]


def innsending_merknader(krav: Krav, mottatt: datetime) -> tuple[MerknadRef, ...]:
    """458 when any regning reports an egenandel more than 14 days after the treatment."""
    late = any(
        r.reports_egenandel and as_oslo(mottatt) - r.tidspunkt > EGENANDEL_FRIST
        for r in krav.regninger
    )
    return (merknad("458"),) if late else ()


def vedtak_merknader(innsending: tuple[MerknadRef, ...]) -> tuple[MerknadRef, ...]:
    """1478 on the vedtak of an innsending whose egenandeler came late."""
    return (merknad("1478"),) if any(ref[0] == "458" for ref in innsending) else ()


def _control_one(
    regning: Regning, alle: tuple[Regning, ...], mottatt: datetime, ctx: ControlContext
) -> Outcome:
    merknader: list[MerknadRef] = []
    tidspunkt = as_oslo(regning.tidspunkt)
    if tidspunkt.date() < _three_years_before(mottatt.date()):
        merknader.append(merknad("9003", _day(tidspunkt.date()), _day(mottatt.date())))
    previous = ctx.previous(regning.guid)
    if regning.kreditering:
        if not _standing(previous):
            merknader.append(merknad("9004", regning.guid))
        if merknader or previous is None:
            return Outcome(regning, tuple(merknader), Decimal(0))
        return Outcome(regning, (), -previous.belop, krediterer=previous)
    if regning.korrigering:
        return _korrigering(regning, previous, merknader)
    if _standing(previous):
        merknader.append(merknad("9005", regning.guid))
    if tidspunkt > mottatt:
        merknader.append(merknad("766", _minutes(tidspunkt), _minutes(mottatt)))
    for kode in regning.takstkoder:
        validity = ctx.takster.validity(kode, tidspunkt.date())
        if validity is TakstValidity.UNKNOWN:
            merknader.append(merknad("9001", kode))
        elif validity is TakstValidity.NOT_VALID_ON_DATE:
            merknader.append(merknad("9002", kode, _day(tidspunkt.date())))
    if (regning.arsak_fri_egenandel or "").strip().upper() == "F" and not ctx.has_frikort(
        regning.pasient_id
    ):
        merknader.append(merknad("710"))
    annen = _konsultasjon_nearby(regning, alle)
    if annen is not None:
        merknader.append(merknad("470", annen.regningsnummer))
    belop = regning.belop if regning.belop is not None else Decimal(0)
    return Outcome(regning, tuple(merknader), Decimal(0) if merknader else belop)


def _korrigering(
    regning: Regning, previous: RegningRecord | None, merknader: list[MerknadRef]
) -> Outcome:
    """A korrigering of betalt egenandel: it pays nothing by itself and changes the original's
    erBetalt, which may only go from false (or not given) to true."""
    if previous is None or not _standing(previous):
        merknader.append(merknad("9006", regning.guid))
    elif previous.betalt_egenandel is True and regning.betalt_egenandel is not True:
        merknader.append(merknad("9007", regning.guid))
    if merknader:
        return Outcome(regning, tuple(merknader), Decimal(0))
    return Outcome(regning, (), Decimal(0), korrigerer=previous)


def _konsultasjon_nearby(regning: Regning, alle: tuple[Regning, ...]) -> Regning | None:
    """Another regning for the same patient with a consultation takst within 60 minutes, when
    this one bills a simple contact (1bd/1be/1bk) on its own."""
    codes = set(regning.takstkoder)
    if not codes & ENKEL_KONTAKT or codes & KONSULTASJON:
        return None
    patient = regning.pasient_id
    if patient is None:
        return None
    for other in alle:
        if (
            other is regning
            or other.pasient_id != patient
            or not set(other.takstkoder) & KONSULTASJON
        ):
            continue
        gap = abs((other.tidspunkt - regning.tidspunkt).total_seconds())
        if gap <= KONSULTASJON_WINDOW_SECONDS:
            return other
    return None
