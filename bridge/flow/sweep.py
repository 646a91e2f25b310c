"""The sweep: what KUHR says now of claims the bridge stopped following.

The pipeline follows a claim to its final state (`follow = "control"`: ferdig_kontrollert) and
then stops asking. KUHR may still change its answer: a rebehandling (a new row with
`rebehandling = true`), a vedtak, a payment. A sweep reads KUHR's overview once, compares each
final claim's rows with the fingerprint the journal keeps of what KUHR last said, fetches the
details only of the claims whose rows changed, and rewrites their receipts and AppRecs.

Cost: one overview read per sweep (the overview lists every praksis of the actor; the bridge
reads it from the oldest swept claim's date on), plus one details read per changed claim. A
sweep with no final claim in the journal reads nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Literal

from bridge.core.model import BehandlerkravmeldingStatus, dump_json
from bridge.core.outcomes import State
from bridge.flow.delivery import Delivery
from bridge.flow.journal import Journal, JournalError, Version
from bridge.flow.options import NEVER
from bridge.flow.pipeline import TRANSIENT_ERRORS, kuhr_state
from bridge.kuhr.client import AsyncKuhrClient, original_first

log = logging.getLogger("bridge.sweep")

# Final states of a claim KUHR has: the pipeline no longer asks about these.
SWEPT_STATES = (State.CONTROLLED, State.PAID, State.NO_PAYMENT)
# The fields of an overview row (the docs' table for the overview): what a fingerprint covers.
OVERVIEW_FIELDS = frozenset(
    {
        "behandlerkravmeldingId",
        "meldingsstatus",
        "kontrollstatus",
        "utbetalingsstatus",
        "innsendingId",
        "rebehandling",
        "vedtakId",
        "praksisId",
        "mottattidspunkt",
        "sumKravbelop",
        "sumUtbetaltbelop",
        "antallRegninger",
    }
)
LAST_SWEEP_MARK = "last_sweep_at"  # the journal's mark: when the last sweep finished
PAGE_SIZE = 500  # final claims read from the journal at a time


def fingerprint(rows: list[BehandlerkravmeldingStatus]) -> str:
    """What KUHR's overview says of one melding, as a short digest: its rows (original first,
    by the `rebehandling` flag) reduced to the overview's fields. The same for an overview row
    and for the details of the same state, so a journal that never swept compares too."""
    reduced = [_reduced(row) for row in original_first(rows)]
    text = json.dumps(reduced, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def _reduced(row: BehandlerkravmeldingStatus) -> dict[str, str]:
    """A row's overview fields as text: amounts normalised (64 and 64.00 are the same), a
    missing `rebehandling` flag read as false, times as instants."""
    out: dict[str, str] = {}
    for name in OVERVIEW_FIELDS:
        value = getattr(row, name)
        if name == "rebehandling":
            value = bool(value)
        if value is None:
            continue
        if isinstance(value, Decimal):
            value = value.normalize()
        elif isinstance(value, datetime):
            value = value.timestamp()
        out[name] = str(value)
    return out


@dataclass
class SweepResult:
    """What one sweep did (for the log, the CLI and the tests)."""

    checked: int = 0  # final claims in the journal compared with the overview
    changed: int = 0  # of those, claims whose overview rows changed
    rewritten: int = 0  # claims whose receipts were rewritten (their details changed)
    missing: int = 0  # final claims the overview did not list (or listed unreadably)
    unreadable: int = 0  # overview entries left out because they could not be read
    overview_reads: int = 0
    details_reads: int = 0
    failed: int = 0  # claims whose details could not be read (tried again next sweep)
    praksiser: dict[str, int] = field(default_factory=dict)  # changed claims per praksis

    def summary(self) -> str:
        return (
            f"{self.checked} claim(s) checked, {self.changed} changed at KUHR, "
            f"{self.rewritten} receipt(s) rewritten, {self.missing} not in the overview "
            f"({self.unreadable} unreadable entries), "
            f"{self.failed} failed ({self.overview_reads} overview read(s), "
            f"{self.details_reads} details read(s))"
        )


class Sweeper:
    """Sweeps one journal against one KUHR; one sweep at a time."""

    def __init__(
        self,
        journal: Journal,
        kuhr: AsyncKuhrClient,
        delivery: Delivery,
        *,
        follow: Literal["control", "payment"] = "control",
        lease_seconds: float = 120.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.journal = journal
        self.kuhr = kuhr
        self.delivery = delivery
        self.follow = follow
        self.lease_seconds = lease_seconds
        self.clock = clock
        self._lock = asyncio.Lock()

    async def sweep(self) -> SweepResult:
        """One sweep. KUHR unavailable for the overview raises (a TRANSIENT_ERRORS error):
        nothing was changed, and the next sweep tries again."""
        async with self._lock:
            result = await self._sweep()
            self.journal.set_mark(LAST_SWEEP_MARK, self.clock())
            level = logging.INFO if result.checked else logging.DEBUG
            log.log(level, "sweep: %s", result.summary())
            return result

    async def _sweep(self) -> SweepResult:
        result = SweepResult()
        # The journal is read a page at a time, twice (the overview's first day, then the
        # comparison): a journal of many thousand claims is neither held in memory at once
        # nor read without letting the daemon's other work run in between.
        pages = 0
        fom: date | None = None
        whole = False  # a claim without KUHR's receipt time on record: the whole overview
        async for page in self._pages():
            pages += 1
            oldest = _oldest_received(page)
            if oldest is None:
                whole = True
            elif fom is None or oldest < fom:
                fom = oldest
        if not pages:
            return result
        skipped = self.kuhr.counters.unreadable_entries
        overview = await self.kuhr.hent_status(fom=None if whole else fom)
        result.overview_reads += 1
        result.unreadable = self.kuhr.counters.unreadable_entries - skipped
        rows: dict[str, list[BehandlerkravmeldingStatus]] = defaultdict(list)
        for row in overview.behandlerkravmeldinger:
            rows[row.behandlerkravmeldingId].append(row)
        async for page in self._pages():
            for version in page:
                await self._compare(version, rows, result)
        return result

    async def _pages(self) -> AsyncIterator[list[Version]]:
        after = 0
        while True:
            page = self.journal.final_at_kuhr(SWEPT_STATES, after_id=after, limit=PAGE_SIZE)
            if not page:
                return
            yield page
            after = page[-1].id
            await asyncio.sleep(0)  # the pipeline's steps run between two pages

    async def _compare(
        self,
        version: Version,
        rows: dict[str, list[BehandlerkravmeldingStatus]],
        result: SweepResult,
    ) -> None:
        """One final claim against its overview rows; its details read if they changed."""
        assert version.behandlerkravmelding_id is not None
        result.checked += 1
        found = rows.get(version.behandlerkravmelding_id)
        if not found:
            result.missing += 1
            return
        now_said = fingerprint(found)
        if now_said == _last_said(version):
            if version.detail.kuhr_fingerprint is None:  # kept from now on
                self._keep(version, now_said)
            return
        result.changed += 1
        praksis = version.praksis_id or "?"
        result.praksiser[praksis] = result.praksiser.get(praksis, 0) + 1
        await self._refresh(version, now_said, result)

    def _keep(self, version: Version, now_said: str) -> None:
        # Moved on meanwhile (JournalError): its next final state is swept again.
        with contextlib.suppress(JournalError):
            self.journal.transition(
                version.id,
                version.state,
                expect=[version.state],
                detail={"kuhr_fingerprint": now_said},
            )

    async def _refresh(self, version: Version, now_said: str, result: SweepResult) -> None:
        """Details of a claim whose overview rows changed; receipts rewritten if they did."""
        if not self.journal.acquire(version.id, seconds=self.lease_seconds):
            return  # someone else works on it now; the next sweep sees it again
        try:
            assert version.behandlerkravmelding_id is not None
            try:
                details = await self.kuhr.hent_behandlerkravmelding(version.behandlerkravmelding_id)
            except TRANSIENT_ERRORS as err:
                result.failed += 1
                log.warning("sweep: %s: details not available: %s", version.file.name, err)
                return
            finally:
                result.details_reads += 1
            current = self.journal.get(version.id)
            if current.state not in SWEPT_STATES or current.due_at < NEVER:
                return  # moved on meanwhile (a new step of its own)
            entries = details.behandlerkravmeldinger
            stored = dump_json(details, indent=None)
            changed = stored != current.detail.details
            state, final = kuhr_state(current.state, entries, self.follow)
            rebehandlinger = sum(1 for e in entries if e.rebehandling)
            updated = self.journal.transition(
                version.id,
                state,
                detail={"details": stored, "kuhr_fingerprint": now_said},
                # Not final (a rebehandling still in control): the pipeline follows it again.
                due_at=NEVER if final else self.clock(),
                note=_note(entries, rebehandlinger) if changed else None,
                receipts=changed,
            )
            if changed:
                result.rewritten += 1
                log.info(
                    "sweep: %s (%s) changed at KUHR: %s",
                    version.file.name,
                    version.behandlerkravmelding_id,
                    _note(entries, rebehandlinger),
                )
                self.delivery.deliver(updated, final=final)
        finally:
            self.journal.release(version.id)


async def sweep_periodically(
    sweeper: Sweeper, interval: float, stop: asyncio.Event, *, retry: float = 300.0
) -> None:
    """Sweep every `interval` seconds until `stop` is set. The first sweep is due `interval`
    after the last one the journal remembers (at once if there was none), so a daemon that
    restarts often still sweeps on schedule. A failed sweep is tried again after `retry`."""
    last = sweeper.journal.mark(LAST_SWEEP_MARK)
    wait = 0.0 if last is None else max(0.0, last + interval - sweeper.clock())
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), timeout=wait)
            return
        except TimeoutError:
            pass
        try:
            await sweeper.sweep()
            wait = interval
        except TRANSIENT_ERRORS as err:
            log.warning("sweep: KUHR's overview not available (%s); trying again later", err)
            wait = min(interval, retry)
        except Exception:  # a sweep's trouble never stops the daemon
            log.exception("sweep failed")
            wait = interval


def _last_said(version: Version) -> str | None:
    """The fingerprint kept of the claim, or (a journal that never swept) its details'."""
    if version.detail.kuhr_fingerprint is not None:
        return version.detail.kuhr_fingerprint
    entries = version.detail.status_details()
    return fingerprint(entries) if entries else None


def _oldest_received(versions: list[Version]) -> date | None:
    """The day before the oldest swept claim was received, on KUHR's own clock (from its
    details); None (the whole overview) when one of them has no time on record."""
    oldest: datetime | None = None
    for version in versions:
        text = version.detail.details
        received = None
        if text:
            rows = json.loads(text).get("behandlerkravmeldinger") or []
            received = rows[0].get("mottattidspunkt") if rows else None
        if not isinstance(received, str):
            return None
        try:
            moment = datetime.fromisoformat(received)
        except ValueError:
            return None
        if oldest is None or moment < oldest:
            oldest = moment
    return (oldest - timedelta(days=1)).date() if oldest is not None else None


def _note(entries: list[BehandlerkravmeldingStatus], rebehandlinger: int) -> str:
    newest = entries[-1] if entries else None
    words = [
        s
        for s in (
            (newest.meldingsstatus, newest.kontrollstatus, newest.utbetalingsstatus)
            if newest
            else ()
        )
        if s
    ]
    text = "/".join(words) or "no entries"
    return f"{text} ({rebehandlinger} rebehandling(er))" if rebehandlinger else text
