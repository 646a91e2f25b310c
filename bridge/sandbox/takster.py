"""The sandbox's takst table, shaped like the open data API's `takstkoder`.

`takstkoder.json` beside this module is a small illustrative extract (not Helfo's normaltariff):
enough codes for the seed's workflow and the examples, with validity periods so that an expired
code can be exercised. A sandbox config file can add rows in the same shape.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from enum import Enum
from importlib import resources
from typing import Any


@dataclass(frozen=True, slots=True)
class TakstPeriode:
    takstkode: str
    fradato: date
    tildato: date | None
    beskrivelse: str

    def covers(self, day: date) -> bool:
        return self.fradato <= day and (self.tildato is None or day <= self.tildato)


class TakstValidity(Enum):
    VALID = "valid"
    UNKNOWN = "unknown"
    NOT_VALID_ON_DATE = "not_valid_on_date"


def as_date(value: Any) -> date | None:
    """A `yyyy-MM-dd` date (a date-time keeps its date part); empty is None."""
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def periode_from_row(row: Mapping[str, Any]) -> TakstPeriode:
    """One `takstkoder` row (open data field names) as a validity period."""
    fradato = as_date(row.get("fradato"))
    if not row.get("takstkode") or fradato is None:
        raise ValueError("a takst row needs takstkode and fradato")
    return TakstPeriode(
        takstkode=str(row["takstkode"]),
        fradato=fradato,
        tildato=as_date(row.get("tildato")),
        beskrivelse=str(row.get("beskrivelse") or ""),
    )


class TakstTable:
    """Takst codes and the periods each is valid in; codes compare case-sensitively, as written
    in the forskrift (2ad, L1)."""

    def __init__(self, rows: Iterable[Mapping[str, Any]]) -> None:
        self._periods: dict[str, list[TakstPeriode]] = defaultdict(list)
        self.add(rows)

    def add(self, rows: Iterable[Mapping[str, Any]]) -> None:
        for row in rows:
            periode = periode_from_row(row)
            self._periods[periode.takstkode].append(periode)

    def validity(self, kode: str, day: date) -> TakstValidity:
        periods = self._periods.get(kode)
        if not periods:
            return TakstValidity.UNKNOWN
        if any(p.covers(day) for p in periods):
            return TakstValidity.VALID
        return TakstValidity.NOT_VALID_ON_DATE


def bundled_rows() -> list[dict[str, Any]]:
    text = resources.files("bridge.sandbox").joinpath("takstkoder.json").read_text("utf-8")
    return json.loads(text)
