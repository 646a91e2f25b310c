"""What the control reads from a melding that passed the schema: a few facts per regning, in
the sandbox's own small types. The claim's other content (names, diagnoses) is never kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any


@dataclass(frozen=True, slots=True)
class Regning:
    guid: str
    regningsnummer: str
    tidspunkt: datetime
    belop: Decimal | None  # left out on a kreditering or korrigering that refers by guid
    kreditering: bool
    korrigering: bool  # korrigeringBetaltEgenandel
    betalt_egenandel: bool | None
    arsak_fri_egenandel: str | None
    pasient_id: str | None
    takstkoder: tuple[str, ...]

    @property
    def reports_egenandel(self) -> bool:
        """The regning says something about the patient's egenandel (paid, or why it is free)."""
        return self.betalt_egenandel is not None or bool(self.arsak_fri_egenandel)


@dataclass(frozen=True, slots=True)
class Krav:
    praksis_id: str
    antall_regninger: int
    belop: Decimal
    regninger: tuple[Regning, ...]


def _amount(value: Any) -> Decimal | None:
    return None if value is None else Decimal(value)


def _regning(data: dict[str, Any]) -> Regning:
    pasient = data.get("pasient") or {}
    ident = pasient.get("identifikasjon") or {}
    return Regning(
        guid=data["guid"],
        regningsnummer=data["regningsnummer"],
        tidspunkt=datetime.fromisoformat(data["tidspunkt"]),
        belop=_amount(data.get("belop")),
        kreditering=data.get("kreditering") is True,
        korrigering=data.get("korrigeringBetaltEgenandel") is True,
        betalt_egenandel=data.get("betaltEgenandel"),
        arsak_fri_egenandel=data.get("arsakFriEgenandel") or None,
        pasient_id=ident.get("id"),
        takstkoder=tuple(t["kode"] for t in data.get("takster") or ()),
    )


def read_krav(data: dict[str, Any]) -> Krav:
    """The facts of a melding already checked against the schema (so the keys are there)."""
    krav = data["behandlerkrav"]
    return Krav(
        praksis_id=data["praksisId"],
        antall_regninger=int(krav["antallRegninger"]),
        belop=Decimal(krav["belop"]),
        regninger=tuple(_regning(r) for r in krav["regninger"]),
    )
