"""What the sandbox has received, per actor, kept compactly: only what the status endpoints
and the control rules need (ids, amounts, results, times), never the claim's patient data.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from bridge.sandbox.merknader import MerknadRef


@dataclass(slots=True)
class RegningRecord:
    guid: str
    regningsnummer: str
    belop: Decimal  # 0 where a kreditering or korrigering left it out
    godkjent: bool
    kreditering: bool
    merknader: tuple[MerknadRef, ...]
    # The regning's betaltEgenandel; an approved korrigering of it updates the original's.
    betalt_egenandel: bool | None = None
    # A korrigering of betalt egenandel refers to the original and never takes its place.
    korrigering: bool = False
    # Set when a kreditering of this regning is approved: it cannot be credited again, and a
    # corrected regning may then be sent with its guid. (Its status stays godkjent: the
    # documented regning statuses are behandles, godkjent and avvist.)
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

    innsending_id: int
    rebehandling: bool
    klar_at: float
    sendt_at: float
    manuell_at: float | None
    kontrollert_at: float
    regninger: tuple[RegningRecord, ...]
    utbetales: Decimal
    any_godkjent: bool
    vedtak: Vedtak
    # Merknader on the innsending, and on the vedtak (shown once the vedtak has run).
    innsending_merknader: tuple[MerknadRef, ...] = ()
    vedtak_merknader: tuple[MerknadRef, ...] = ()
    ikke_til_kontroll: bool = False  # never sent to control (kontrollstatus says so)


@dataclass(slots=True)
class Melding:
    melding_id: str
    actor: str
    praksis_id: str | None
    mottatt_at: float
    sum_krav: Decimal | None
    antall: int | None
    behandlinger: tuple[Behandling, ...] = ()

    @property
    def feil_i_melding(self) -> bool:
        return not self.behandlinger


@dataclass
class Stats:
    received: int = 0
    accepted: int = 0
    rejected: int = 0
    regninger_accepted: int = 0


class ClaimStore:
    """Meldinger by id and per actor, duplicate digests per actor, and each actor's latest
    regning per guid (for corrections and krediteringer)."""

    def __init__(self) -> None:
        self.meldinger: dict[str, Melding] = {}
        self._by_actor: dict[str, list[Melding]] = {}
        self._digests: dict[str, set[bytes]] = {}
        self._regninger: dict[str, dict[str, RegningRecord]] = {}  # actor → guid → latest
        self.vedtak: dict[tuple[str, date], Vedtak] = {}
        self.stats = Stats()
        self._amounts: dict[str, Decimal] = {}

    def amount(self, value: Decimal) -> Decimal:
        """One shared object per distinct amount as written (74.00 and 74.0 stay apart):
        takst amounts repeat across claims, and a Decimal costs 104 bytes."""
        key = str(value)
        shared = self._amounts.get(key)
        if shared is None:
            shared = value
            if len(self._amounts) < 100_000:
                self._amounts[key] = value
        return shared

    def is_duplicate(self, actor: str, digest: bytes) -> bool:
        return digest in self._digests.get(actor, ())

    def previous(self, actor: str, guid: str) -> RegningRecord | None:
        return self._regninger.get(actor, {}).get(guid)

    def add(self, melding: Melding, digest: bytes | None = None) -> None:
        self.meldinger[melding.melding_id] = melding
        self._by_actor.setdefault(melding.actor, []).append(melding)
        if melding.feil_i_melding:
            self.stats.rejected += 1
            return
        self.stats.accepted += 1
        if digest is not None:
            self._digests.setdefault(melding.actor, set()).add(digest)
        latest = self._regninger.setdefault(melding.actor, {})
        for record in melding.behandlinger[0].regninger:
            if not record.korrigering:
                latest[record.guid] = record
            self.stats.regninger_accepted += 1

    def set_latest(self, actor: str, record: RegningRecord) -> None:
        self._regninger.setdefault(actor, {})[record.guid] = record

    def accepted_by_guid(self) -> Counter[str]:
        """How many accepted meldinger carried each regning guid (counted when asked: a
        counter kept per guid would cost more memory than the records themselves)."""
        counts: Counter[str] = Counter()
        for melding in self.meldinger.values():
            if melding.behandlinger:
                counts.update(record.guid for record in melding.behandlinger[0].regninger)
        return counts

    def get(self, actor: str, melding_id: str) -> Melding | None:
        melding = self.meldinger.get(melding_id)
        return melding if melding is not None and melding.actor == actor else None

    def of_actor(self, actor: str) -> list[Melding]:
        return self._by_actor.get(actor, [])
