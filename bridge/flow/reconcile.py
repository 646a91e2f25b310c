"""Finding a claim at KUHR after an interrupted submission, or after KUHR said DUPLIKAT_KRAV.

KUHR has no look-up by guid: a claim is matched in the overview by praksis, count and sum, and
then by the guids of its regninger in the details of the candidates. What was read is kept for
the run, so a burst of claims KUHR already has (a journal lost, an archive migrated twice)
costs each detail once and the overview about once, not once per claim.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from bridge.core.model import Behandlerkravmelding, BehandlerkravmeldingListe
from bridge.core.timezone import OSLO
from bridge.flow.journal import Journal, Version
from bridge.kuhr.client import AsyncKuhrClient


@dataclass
class _KuhrSeen:
    """What reconciliation has read from KUHR in this run: the regning guids of each
    behandlerkravmelding whose details it fetched, and the last full overview."""

    by_guids: dict[frozenset[str], list[str]] = field(default_factory=dict)
    read: set[str] = field(default_factory=set)
    overview: BehandlerkravmeldingListe | None = None
    overview_at: float = 0.0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def add(self, melding_id: str, guids: frozenset[str]) -> None:
        if melding_id not in self.read:
            self.read.add(melding_id)
            self.by_guids.setdefault(guids, []).append(melding_id)


class Reconciler:
    """Matches journal versions to what KUHR has; one per pipeline (its reads are shared)."""

    def __init__(
        self,
        journal: Journal,
        kuhr: AsyncKuhrClient,
        *,
        environment: str,
        clock: Callable[[], float],
    ) -> None:
        self.journal = journal
        self.kuhr = kuhr
        self._simulated = environment == "sandbox"
        self._now = clock
        self._seen = _KuhrSeen()

    async def find(self, version: Version, melding: Behandlerkravmelding) -> str | None:
        """The behandlerkravmeldingId KUHR gave this claim (matched by its regninger's guids),
        or None. KUHR has no look-up by guid, so this reads the overview and the details of
        the candidates; what it reads is kept (`_KuhrSeen`), so that a burst of claims KUHR
        already has (a journal lost, an archive migrated twice) costs each detail once and
        the overview about once, not once per claim. One search at a time: concurrent ones
        would each read the same details."""
        async with self._seen.lock:
            return await self._search_kuhr(version, melding)

    async def _search_kuhr(self, version: Version, melding: Behandlerkravmelding) -> str | None:
        wanted = frozenset(r.guid for r in melding.behandlerkrav.regninger)
        seen = self._seen
        for known in seen.by_guids.get(wanted, ()):
            if self.journal.by_kuhr_id(known) is None:
                return known
        duplicate_at = version.detail.duplicate_answer_at
        if duplicate_at is None:
            started = version.submit_started_at or version.created_at
            since = datetime.fromtimestamp(started - 300, OSLO)
            # KUHR's clock is ours give or take minutes; the sandbox's runs on simulated time
            # (the seed's January 2026, sped up), so a window on our clock would miss it there.
            simulated = self._simulated
            fom = None if version.detail.duplicate_answer or simulated else since
            overview = await self.kuhr.hent_status(fom=fom.date() if fom else None)
            return await self._match(overview, melding, wanted, since=fom)
        # KUHR had it when it answered DUPLIKAT_KRAV: an overview read since then has it; an
        # older one most likely too (it was stored long before), so that one is tried first.
        if seen.overview is not None:
            found = await self._match(seen.overview, melding, wanted)
            if found is not None or seen.overview_at >= duplicate_at:
                return found
        seen.overview = await self.kuhr.hent_status()
        seen.overview_at = self._now()
        return await self._match(seen.overview, melding, wanted)

    async def _match(
        self,
        overview: BehandlerkravmeldingListe,
        melding: Behandlerkravmelding,
        wanted: frozenset[str],
        *,
        since: datetime | None = None,
    ) -> str | None:
        """The first behandlerkravmelding in `overview` (received after `since`) that carries
        exactly the `wanted` regning guids and no version in the journal has claimed."""
        seen = self._seen
        for entry in overview.behandlerkravmeldinger:
            if entry.behandlerkravmeldingId in seen.read:
                continue  # its guids are indexed: not this claim, or already claimed
            if entry.praksisId not in (None, melding.praksisId):
                continue
            if entry.antallRegninger not in (None, melding.behandlerkrav.antallRegninger):
                continue
            if entry.sumKravbelop is not None and Decimal(entry.sumKravbelop) != Decimal(
                melding.behandlerkrav.belop
            ):
                continue
            received = entry.mottattidspunkt
            if since is not None and received is not None and received < since:
                continue
            if self.journal.by_kuhr_id(entry.behandlerkravmeldingId) is not None:
                continue
            details = await self.kuhr.hent_behandlerkravmelding(entry.behandlerkravmeldingId)
            for detail in details.behandlerkravmeldinger[:1]:
                got = frozenset(
                    r.guid for r in (detail.innsending.regninger if detail.innsending else [])
                )
                seen.add(entry.behandlerkravmeldingId, got)
                if got == wanted:
                    return entry.behandlerkravmeldingId
        return None
