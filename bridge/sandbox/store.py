"""What the sandbox has received, per actor, kept compactly: only what the status endpoints
and the control rules need (ids, amounts, results, times), never the claim's patient data.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal


@dataclass(slots=True)
class RegningRecord:
    guid: str
    regningsnummer: str
    belop: Decimal
    godkjent: bool
    kreditering: bool
    merknader: tuple[tuple[str, str], ...]
    # Set when a kreditering of this regning is approved: from then on its status is kreditert.
    kreditert_at: float | None = None


@dataclass(slots=True)
class Vedtak:
    """One 16:00 run for one praksis: every behandling controlled since the previous run."""

    vedtak_id: str
    praksis_id: str
    run_at: float
    utbetalt_at: float
    kid: str
    total: Decimal = Decimal(0)


@dataclass(slots=True)
class Behandling:
    """One control of a melding: the original, or a rebehandling. Times are epoch seconds on
    the sandbox clock, fixed when it starts, so statuses are read off the clock lazily."""

    innsending_id: str
    rebehandling: bool
    sendt_at: float
    manuell_at: float | None
    kontrollert_at: float
    regninger: tuple[RegningRecord, ...]
    utbetales: Decimal
    any_godkjent: bool
    vedtak: Vedtak


@dataclass(slots=True)
class Melding:
    melding_id: str
    actor: str
    praksis_id: str | None
    mottatt_at: float
    sum_krav: Decimal | None
    antall: int | None
    behandlinger: list[Behandling] = field(default_factory=list)

    @property
    def feil_i_melding(self) -> bool:
        return not self.behandlinger


@dataclass
class Stats:
    received: int = 0
    accepted: int = 0
    rejected: int = 0
    regninger_accepted: int = 0
    by_guid: Counter[str] = field(default_factory=Counter)


class ClaimStore:
    """Meldinger by id and per actor, duplicate digests per actor, and each actor's latest
    regning per guid (for corrections and krediteringer)."""

    def __init__(self) -> None:
        self.meldinger: dict[str, Melding] = {}
        self._by_actor: dict[str, list[Melding]] = {}
        self._digests: dict[str, set[bytes]] = {}
        self._regninger: dict[tuple[str, str], RegningRecord] = {}
        self.vedtak: dict[tuple[str, date], Vedtak] = {}
        self.stats = Stats()

    def is_duplicate(self, actor: str, digest: bytes) -> bool:
        return digest in self._digests.get(actor, ())

    def previous(self, actor: str, guid: str) -> RegningRecord | None:
        return self._regninger.get((actor, guid))

    def add(self, melding: Melding, digest: bytes | None = None) -> None:
        self.meldinger[melding.melding_id] = melding
        self._by_actor.setdefault(melding.actor, []).append(melding)
        if melding.feil_i_melding:
            self.stats.rejected += 1
            return
        self.stats.accepted += 1
        if digest is not None:
            self._digests.setdefault(melding.actor, set()).add(digest)
        for record in melding.behandlinger[0].regninger:
            self._regninger[(melding.actor, record.guid)] = record
            self.stats.by_guid[record.guid] += 1
            self.stats.regninger_accepted += 1

    def set_latest(self, actor: str, record: RegningRecord) -> None:
        self._regninger[(actor, record.guid)] = record

    def get(self, actor: str, melding_id: str) -> Melding | None:
        melding = self.meldinger.get(melding_id)
        return melding if melding is not None and melding.actor == actor else None

    def of_actor(self, actor: str) -> list[Melding]:
        return self._by_actor.get(actor, [])
