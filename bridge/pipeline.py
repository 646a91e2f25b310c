"""One file version through convert → submit → track, driven by its journal state.

The pipeline never trusts memory: every step reads the version from the journal, does one
thing, and commits the next state. The POST happens only after `submitting` is durably on disk;
a version found in `submitting` (a crash, a lost answer) is reconciled against KUHR's overview
before anything is sent again, and KUHR's DUPLIKAT_KRAV is read as "already there, find it".
Receipts are rewritten after every step from what the journal holds, so they survive restarts.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, TypeVar
from zoneinfo import ZoneInfo

from bridge.convert import ConvertContext, ConvertResult, convert, too_large, unreadable
from bridge.fsutil import atomic_write
from bridge.group_sync import GroupSync
from bridge.journal import Journal, State, Version
from bridge.kuhr.client import AsyncKuhrClient, KuhrError
from bridge.kuhr.praksis import PraksisResolutionError, Sender, resolve_praksis
from bridge.legacy.read import Envelope
from bridge.legacy.schemas import SchemaRegistry, default_registry
from bridge.model import (
    Behandlerkravmelding,
    BehandlerkravmeldingListe,
    BehandlerkravmeldingStatus,
    Feilkode,
    Kontrollstatus,
    Meldingsstatus,
    PraksisListe,
    SendInnResponse,
    Utbetalingsstatus,
    dump_json,
    load_json,
)
from bridge.precheck import Prechecker, PrecheckOutcome
from bridge.problems import Problem, Severity
from bridge.receipts import (
    JSON_SUFFIX,
    ReceiptFacts,
    build_receipt,
    receipt_paths,
    write_receipts,
)
from bridge.redaction import remember_patient_data

log = logging.getLogger("bridge.pipeline")
OSLO = ZoneInfo("Europe/Oslo")

# States the pipeline still has work for, by how far it follows a claim.
WORKING_STATES = (State.SEEN, State.CONVERTED, State.SUBMITTING, State.FAILED)
TRACKED_STATES = (State.SUBMITTED, State.CONTROLLED)
T = TypeVar("T")
NEVER = 1e18  # due_at of a version nothing more will be done for
RECENT_CLAIMS = 64  # parsed claims kept for their receipts (a miss costs one parse)


@dataclass(frozen=True)
class PipelineOptions:
    environment: str = "sandbox"  # "sandbox" | "dev" | "prod" (goes into every receipt)
    follow: Literal["control", "payment"] = "control"
    praksis_id: str | None = None  # one praksis for every claim (else rules, else automatic)
    praksis_rules: tuple[Any, ...] = ()  # bridge.config.PraksisRule
    receipts_dir: Path | None = None  # None: beside the originals
    archive_dir: Path | None = None  # move originals here once final and accepted
    error_dir: Path | None = None  # move originals here once rejected
    allow_mismatch: bool = False
    max_bytes: int = 32 * 1024 * 1024
    xsd_dirs: tuple[Path, ...] = ()  # extra schema folders, winning over the built-in ones
    concurrency: int = 8
    lease_seconds: float = 60.0  # renewed every third of this while a step is running
    retry_base: float = 2.0  # first transient retry after this many seconds, doubling
    retry_max: float = 600.0
    poll_first: float = 2.0  # first status poll after submission
    poll_max: float = 300.0  # longest wait between polls for the control result
    poll_max_payment: float = 3600.0  # longest wait between polls for the payment
    praksis_cache_seconds: float = 600.0
    # Bulk runs (bridge.migrate) set these; the defaults are the watcher's behaviour.
    track: bool = True  # False: leave claims at mottatt (submitted); a later run follows them
    read_source: Callable[[str], bytes] | None = None  # a version's bytes by its journal path
    receipt_source: Callable[[str], Path] | None = None  # the path its receipts are named for
    converter: Callable[[bytes], Awaitable[ConvertResult]] | None = None  # e.g. a process pool
    # How the blocking steps (reading a file, converting it, the pre-control) leave the event
    # loop: a thread, or `run_inline` in a process that is one of several per core.
    offload: Callable[..., Awaitable[Any]] = asyncio.to_thread
    # A "venter" receipt between converted and sent. Off by default: the "sendt" receipt follows
    # within milliseconds, and each receipt write costs a file creation (the watcher's largest
    # cost per file); a submission that gets no answer writes one anyway.
    interim_receipts: bool = False


async def run_inline(func: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """`PipelineOptions.offload` for a process that is one of several per core: threads add
    no parallelism there, only handoffs (each costs the GIL and a wake-up). In migrate's
    sending processes: ~10 % less CPU per file, +11 % to +25 % files/s (paired runs)."""
    return func(*args, **kwargs)


@dataclass
class PipelineStats:
    """Counters for metrics and the --once summary."""

    converted: int = 0
    rejected: int = 0
    submitted: int = 0
    controlled: int = 0
    failed_attempts: int = 0
    submit_latency: list[float] = field(default_factory=list)  # seconds, file seen → mottatt


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


class Pipeline:
    def __init__(
        self,
        journal: Journal,
        kuhr: AsyncKuhrClient,
        options: PipelineOptions,
        *,
        wall_clock: Callable[[], float] = time.time,
        prechecker: Prechecker | None = None,
    ) -> None:
        self.journal = journal
        self.kuhr = kuhr
        self.options = options
        self.prechecker = prechecker  # the pre-control (None: none)
        self.stats = PipelineStats()
        self._now = wall_clock
        self._wakeup = asyncio.Event()
        self._inflight: dict[int, asyncio.Task[None]] = {}
        self._praksiser: tuple[float, PraksisListe] | None = None
        self._praksis_lock = asyncio.Lock()
        self._leases_renewed_at = 0.0
        self._owed_checked_at: float | None = None
        self._kuhr_seen = _KuhrSeen()
        self._durable = GroupSync(journal.make_durable)
        # The last claims converted, by the JSON text journaled for them: the receipt written
        # a moment later reuses the parsed claim instead of parsing the journal's copy again.
        self._recent_claims: dict[str, Behandlerkravmelding] = {}
        self._once_attempts = 3  # `--once`: transient failures tried this often
        registry = SchemaRegistry(extra_dirs=options.xsd_dirs) if options.xsd_dirs else None
        self._context = ConvertContext(
            allow_mismatch=options.allow_mismatch, max_bytes=options.max_bytes, registry=registry
        )
        # Compiled here, once, before conversions start on worker threads (and a broken
        # drop-in XSD stops the start instead of failing every file).
        (registry or default_registry()).compile_all()

    # ------------------------------------------------------------------ intake

    def offer(self, path: Path, root: Path | None = None) -> Version | None:
        """A complete file: register this version of it (by content) and wake the workers."""
        try:
            stat = path.stat()
            known = self.journal.latest_for_path(str(path))
            if (
                known is not None
                and known.size == stat.st_size
                and known.detail.get("mtime_ns") == stat.st_mtime_ns
            ):
                return known  # unchanged since it was seen (a restart hands every file over)
            size = stat.st_size
            data = path.read_bytes() if size <= self.options.max_bytes else None
            sha = _sha256_of_file(path) if data is None else hashlib.sha256(data).hexdigest()
        except OSError as err:
            return self._offer_unreadable(path, root, err)
        version, created = self.journal.record_seen(
            str(path),
            sha,
            size,
            detail={"root": str(root) if root else None, "mtime_ns": stat.st_mtime_ns},
            # Due from now, not from 0: new files and status polls take turns by time, so
            # a burst of files does not starve the claims already at KUHR.
            due_at=self._now(),
        )
        if created:
            log.info("new file version %s (%s…)", path.name, sha[:12])
            self._wakeup.set()
        return version

    def _offer_unreadable(self, path: Path, root: Path | None, err: OSError) -> Version | None:
        """A file that vanished or cannot be read still gets a receipt saying so. Its version
        key is a placeholder; `bkm-bridge retry` re-reads it once the cause is fixed."""
        log.warning("cannot read %s: %s", path.name, err.strerror or type(err).__name__)
        marker = hashlib.sha256(f"unreadable:{path}:{type(err).__name__}".encode()).hexdigest()
        where = {"root": str(root) if root else None}
        version, created = self.journal.record_seen(str(path), marker, 0, detail=where)
        if not created:
            if version.state is not State.SEEN:
                return version
            self.journal.transition(version.id, State.SEEN, detail=where)
        self._reject(self.journal.get(version.id), [unreadable(err)])
        return version

    def offer_content(
        self, key: str, sha256: str, size: int, root: Path | None = None
    ) -> tuple[Version, bool]:
        """Register a version the caller has read and hashed itself (a bulk run; a zip member,
        whose key is `ZIP!MEMBER`, is read back through `read_source`). (version, created)."""
        detail = {"root": str(root) if root else None}
        version, created = self.journal.record_seen(key, sha256, size, detail=detail)
        if created:
            self._wakeup.set()
        return version, created

    def wake(self) -> None:
        self._wakeup.set()

    # ------------------------------------------------------------------ driving

    async def run(self, stop: asyncio.Event) -> None:
        """Work on due versions until `stop` is set; finishes steps already started."""
        while not stop.is_set():
            self._deliver_owed()
            self._start_due()
            self._wakeup.clear()
            waiter = asyncio.ensure_future(self._wakeup.wait())
            stopper = asyncio.ensure_future(stop.wait())
            await asyncio.wait(
                {waiter, stopper}, timeout=self._sleep_for(), return_when=asyncio.FIRST_COMPLETED
            )
            waiter.cancel()
            stopper.cancel()
        await self.drain_inflight()

    async def run_until_settled(self, *, max_transient_attempts: int = 3) -> None:
        """For `--once`: work until no version has anything left to do at this depth of
        following (transient failures are retried a few times, then left failed)."""
        self._once_attempts = max_transient_attempts
        while True:
            self._deliver_owed()
            self._start_due(once=True)
            if not self._inflight and not self._unsettled():
                return
            self._wakeup.clear()
            waiter = asyncio.ensure_future(self._wakeup.wait())
            await asyncio.wait({waiter}, timeout=min(self._sleep_for(), 0.5))
            waiter.cancel()

    async def drain_inflight(self) -> None:
        if self._inflight:
            await asyncio.gather(*self._inflight.values(), return_exceptions=True)

    def _unsettled(self) -> list[Version]:
        states = [*WORKING_STATES]
        if self.options.track:
            states.append(State.SUBMITTED)
        if self.options.track and self.options.follow == "payment":
            states.append(State.CONTROLLED)
        pending = self.journal.versions(states)
        limit = self._once_attempts
        return [v for v in pending if not (v.state is State.FAILED and v.attempts >= limit)]

    def _active_states(self) -> list[State]:
        return [*WORKING_STATES, *(TRACKED_STATES if self.options.track else ())]

    def _sleep_for(self) -> float:
        upcoming = self.journal.next_due(self._active_states())
        if upcoming is None:
            return 1.0
        return max(0.01, min(1.0, upcoming - self._now()))

    def _renew_leases(self) -> None:
        """Keep the leases of steps still running (a POST with retries can outlast one)."""
        now = self._now()
        if now - self._leases_renewed_at < self.options.lease_seconds / 3:
            return
        self._leases_renewed_at = now
        for version_id in list(self._inflight):
            self.journal.acquire(version_id, seconds=self.options.lease_seconds)

    def _start_due(self, *, once: bool = False) -> None:
        self._renew_leases()
        free = self.options.concurrency - len(self._inflight)
        if free <= 0:
            return
        due = self.journal.due(
            self._active_states(),
            now=self._now(),
            limit=free,
            skip=self._inflight.keys(),
            failed_below=self._once_attempts if once else None,
        )
        for version in due:
            if not self.journal.acquire(version.id, seconds=self.options.lease_seconds):
                continue
            task = asyncio.create_task(self._step(version.id))
            self._inflight[version.id] = task
            task.add_done_callback(lambda _t, vid=version.id: self._done(vid))

    def _done(self, version_id: int) -> None:
        self._inflight.pop(version_id, None)
        self._wakeup.set()

    async def _step(self, version_id: int) -> None:
        try:
            version = self.journal.get(version_id)
            handler = {
                State.SEEN: self._convert,
                State.FAILED: self._retry,
                State.CONVERTED: self._submit,
                State.SUBMITTING: self._reconcile,
                State.SUBMITTED: self._track,
                State.CONTROLLED: self._track,
            }.get(version.state)
            if handler is not None:
                await handler(version)
        except Exception:  # one file's trouble never stops the others
            log.exception("unexpected error on file version %s", version_id)
            self._transient(self.journal.get(version_id), "unexpected internal error")
        finally:
            self.journal.release(version_id)

    # ------------------------------------------------------------------ steps

    async def _retry(self, version: Version) -> None:
        """A transient failure is due again: start over from the step that failed."""
        resume = State(version.detail.get("resume", State.SEEN.value))
        self.journal.transition(version.id, resume, note="retrying after a transient failure")
        await self._step_inline(version.id)

    async def _step_inline(self, version_id: int) -> None:
        version = self.journal.get(version_id)
        handler = {
            State.SEEN: self._convert,
            State.CONVERTED: self._submit,
            State.SUBMITTING: self._reconcile,
        }.get(version.state)
        if handler is not None:
            await handler(version)

    async def _convert(self, version: Version) -> None:
        path = Path(version.path)
        if version.size > self.options.max_bytes:
            # Refused without reading it into memory.
            self._reject(version, [too_large(version.size, self.options.max_bytes)])
            return
        read = self.options.read_source or _read_file
        try:
            data = await self.options.offload(read, version.path)
        except OSError as err:
            self._reject(version, [unreadable(err)])
            return
        if hashlib.sha256(data).hexdigest() != version.sha256:
            # Changed since it was seen: this version no longer exists on disk.
            self.journal.transition(
                version.id,
                State.SKIPPED,
                note="replaced by newer content before it was read",
                due_at=NEVER,
            )
            if self.options.read_source is None:  # a bulk run re-reads on its next run
                self.offer(path, _root_of(version))
            return
        earlier = self.journal.sent_version_with_content(version.sha256, excluding=version.id)
        if earlier is not None:
            self._finish(
                version,
                State.DUPLICATE,
                duplicate_of=earlier.id,
                note=f"same content as {earlier.path}, already sent",
                detail={"duplicate_of_path": earlier.path},
            )
            return
        if self.options.converter is not None:
            result = await self.options.converter(data)
        else:
            result = await self.options.offload(convert, data, self._context)
        envelope = _envelope_dict(result.envelope)
        if any(p.code == "NOT_A_BKM" for p in result.problems):
            self.journal.transition(
                version.id, State.SKIPPED, note="not a behandlerkravmelding", due_at=NEVER
            )
            return
        if not result.ok or result.behandlerkrav is None:
            self._reject(version, result.problems, envelope=envelope)
            return
        try:
            resolution = await self._resolve_praksis(result, version)
        except PraksisResolutionError as err:
            problem = Problem("PRAKSIS_MISSING", str(err).replace("\n", " "))
            self._reject(version, [*result.problems, problem], envelope=envelope)
            return
        except KuhrError as err:
            self._transient(version, f"could not fetch the praksis list: {err}", resume=State.SEEN)
            return
        melding = Behandlerkravmelding(
            praksisId=resolution.praksis_id, behandlerkrav=result.behandlerkrav
        )
        # The log redaction learns this claim's names and diagnoses, so that free text
        # mentioning them (an exception message, say) is scrubbed too.
        remember_patient_data(melding)
        precheck = await self._precheck(version, melding, resolution)
        if precheck is not None and precheck.blocks:
            self._reject(
                version,
                [*result.problems, *precheck.problems()],
                envelope=envelope,
                precheck=precheck.dicts(),
                claim=dump_json(melding, indent=None),
            )
            return
        self.stats.converted += 1
        claim_text = dump_json(melding, indent=None)
        self._remember_claim(claim_text, melding)
        converted = {
            "praksis_id": resolution.praksis_id,
            "detail": {
                "claim": claim_text,
                "envelope": envelope,
                "problems": [_problem_dict(p) for p in result.problems],
                "praksis_how": resolution.how,
                "precheck": precheck.dicts() if precheck is not None else [],
            },
        }
        if not self.options.interim_receipts:
            await self._submit(version, converted=converted)  # converted and submitting at once
            return
        version = self.journal.transition(
            version.id, State.CONVERTED, receipts=True, expect=[State.SEEN], **converted
        )
        self._deliver(version)
        await self._submit(version)

    async def _precheck(
        self, version: Version, melding: Behandlerkravmelding, resolution: Any
    ) -> PrecheckOutcome | None:
        """The pre-control, offline from the takst cache; None when it is off."""
        checker = self.prechecker
        if checker is None or not checker.enabled:
            return None
        praksis = resolution.praksis
        if praksis is None and self._praksiser is not None:  # a praksisId given by flag/rule
            known = self._praksiser[1].praksiser
            praksis = next((p for p in known if p.praksisId == resolution.praksis_id), None)
        now = await checker.now()
        outcome = await self.options.offload(
            checker.check, melding, now=now, praksistype=praksis.type if praksis else None
        )
        if outcome.findings:
            codes = ", ".join(sorted({f.code for f in outcome.findings}))
            log.info(
                "pre-control of %s: %d finding(s): %s",
                Path(version.path).name,
                len(outcome.findings),
                codes,
            )
        return outcome

    async def _submit(self, version: Version, converted: dict[str, Any] | None = None) -> None:
        """POST a converted version; `converted`: the fields of a version still `seen`, which
        passes through `converted` in the same transaction (one commit fewer per file)."""
        detail = converted["detail"] if converted else version.detail
        claim_text = detail["claim"]  # sent as journaled, not parsed and re-encoded
        # Durably "in flight" before the POST: a crash from here on is reconciled, not resent.
        version = self.journal.transition(
            version.id,
            State.SUBMITTING,
            expect=[State.SEEN] if converted else [State.CONVERTED],
            via=State.CONVERTED if converted else None,
            submit_started_at=self._now(),
            claim_digest=hashlib.sha256(claim_text.encode()).hexdigest(),
            **(converted or {}),
        )
        await self._durable.wait()
        try:
            answer = await self.kuhr.send_inn(claim_text)
        except KuhrError as err:
            # Unknown whether it landed: reconcile later, never blindly resend.
            self.stats.failed_attempts += 1
            self._deliver(self._later(version, f"no answer from KUHR: {err}", receipts=True))
            return
        await self._after_answer(version, answer)

    async def _after_answer(self, version: Version, answer: SendInnResponse) -> None:
        answer_json = answer.model_dump(
            mode="json",
            exclude_none=True,
            include={"behandlerkravmeldingId", "status", "feilmeldinger"},
        )
        codes = {f.kode for f in answer.feilmeldinger or []}
        if answer.behandlerkravmeldingId and not answer.feilmeldinger:
            self.stats.submitted += 1
            self.stats.submit_latency.append(self._now() - version.created_at)
            version = self.journal.transition(
                version.id,
                State.SUBMITTED,
                expect=[State.SUBMITTING],
                behandlerkravmelding_id=answer.behandlerkravmeldingId,
                due_at=self._now() + self.options.poll_first,
                attempts=0,
                detail={"submit": answer_json},
                note="mottatt",
                receipts=True,
            )
            log.info(
                "%s: mottatt by KUHR as %s", Path(version.path).name, answer.behandlerkravmeldingId
            )
            self._deliver(version)
            return
        if codes == {Feilkode.DUPLIKAT_KRAV.value}:
            # KUHR already has exactly this message: it is there, find it.
            self.journal.transition(
                version.id,
                State.SUBMITTING,
                note="KUHR says DUPLIKAT_KRAV: finding it",
                detail={"duplicate_answer": True, "duplicate_answer_at": self._now()},
                due_at=0.0,
            )
            await self._reconcile(self.journal.get(version.id))
            return
        self._finish(
            version,
            State.FEIL_I_MELDING,
            detail={"submit": answer_json},
            behandlerkravmelding_id=answer.behandlerkravmeldingId,
            note="KUHR's technical control rejected the message",
        )

    async def _reconcile(self, version: Version) -> None:
        """A version left `submitting`: find it at KUHR, or send it (again) if it is not there."""
        melding = Behandlerkravmelding.model_validate(load_json(version.detail["claim"]))
        try:
            found = await self._find_at_kuhr(version, melding)
        except KuhrError as err:
            self._later(version, f"cannot reconcile yet: {err}")
            return
        if found is not None:
            self.stats.submitted += 1
            version = self.journal.transition(
                version.id,
                State.SUBMITTED,
                behandlerkravmelding_id=found,
                due_at=self._now(),
                attempts=0,
                note="found at KUHR after an interrupted submission",
                detail={"submit": {"behandlerkravmeldingId": found, "status": "mottatt"}},
                receipts=True,
            )
            self._deliver(version)
            return
        if version.detail.get("duplicate_answer"):
            self._transient(
                version,
                "KUHR reports the claim as a duplicate but it is not in the overview yet",
                resume=State.SUBMITTING,
                keep_state=True,
            )
            return
        log.info(
            "%s: not at KUHR after an interrupted submission; sending it", Path(version.path).name
        )
        version = self.journal.transition(version.id, State.CONVERTED, note="not at KUHR: resend")
        await self._submit(version)

    async def _find_at_kuhr(self, version: Version, melding: Behandlerkravmelding) -> str | None:
        """The behandlerkravmeldingId KUHR gave this claim (matched by its regninger's guids),
        or None. KUHR has no look-up by guid, so this reads the overview and the details of
        the candidates; what it reads is kept (`_KuhrSeen`), so that a burst of claims KUHR
        already has (a journal lost, an archive migrated twice) costs each detail once and
        the overview about once, not once per claim. One search at a time: concurrent ones
        would each read the same details."""
        async with self._kuhr_seen.lock:
            return await self._search_kuhr(version, melding)

    async def _search_kuhr(self, version: Version, melding: Behandlerkravmelding) -> str | None:
        wanted = frozenset(r.guid for r in melding.behandlerkrav.regninger)
        seen = self._kuhr_seen
        for known in seen.by_guids.get(wanted, ()):
            if self.journal.by_kuhr_id(known) is None:
                return known
        duplicate_at = version.detail.get("duplicate_answer_at")
        if duplicate_at is None:
            started = version.submit_started_at or version.created_at
            since = datetime.fromtimestamp(started - 300, OSLO)
            # KUHR's clock is ours give or take minutes; the sandbox's runs on simulated time
            # (the seed's January 2026, sped up), so a window on our clock would miss it there.
            simulated = self.options.environment == "sandbox"
            fom = None if version.detail.get("duplicate_answer") or simulated else since
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
        seen = self._kuhr_seen
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

    async def _track(self, version: Version) -> None:
        assert version.behandlerkravmelding_id is not None
        try:
            details = await self.kuhr.hent_behandlerkravmelding(version.behandlerkravmelding_id)
        except KuhrError as err:
            self._later(version, f"status not available: {err}")
            return
        entries = details.behandlerkravmeldinger
        stored = _details_json(details)
        changed = stored != version.detail.get("details")
        main = entries[0] if entries else None
        state, final = self._state_from(version.state, main)
        polls = int(version.detail.get("polls", 0)) + 1
        due = NEVER if final else self._now() + self._poll_interval(polls, state)
        previous = version.state
        version = self.journal.transition(
            version.id,
            state,
            detail={"details": stored, "polls": polls},
            due_at=due,
            attempts=0,
            note=_status_note(main) if changed else None,
            receipts=changed or final,
        )
        if previous is State.SUBMITTED and state in (
            State.CONTROLLED,
            State.PAID,
            State.NO_PAYMENT,
        ):
            self.stats.controlled += 1
        if changed or final:
            self._deliver(version, final=final)

    def _state_from(
        self, current: State, main: BehandlerkravmeldingStatus | None
    ) -> tuple[State, bool]:
        if main is None:
            return current, False
        if main.meldingsstatus == Meldingsstatus.FEIL_I_MELDING:
            return State.FEIL_I_MELDING, True
        controlled = main.kontrollstatus == Kontrollstatus.FERDIG_KONTROLLERT
        if not controlled:
            return current, False
        if self.options.follow == "control":
            return State.CONTROLLED, True
        if main.utbetalingsstatus == Utbetalingsstatus.UTBETALT:
            return State.PAID, True
        if main.utbetalingsstatus == Utbetalingsstatus.INGEN_UTBETALING:
            return State.NO_PAYMENT, True
        return State.CONTROLLED, False

    # ------------------------------------------------------------------ helpers

    async def _resolve_praksis(self, result: ConvertResult, version: Version):
        env = result.envelope
        sender = Sender(
            orgnr=env.sender_orgnr if env else None, hpr=env.sender_hpr if env else None
        )
        listing = None
        if not self.options.praksis_id and not _rule_matches(
            self.options, sender, Path(version.path)
        ):
            listing = await self._praksis_list()
        assert result.behandlerkrav is not None
        return resolve_praksis(
            result.behandlerkrav,
            sender=sender,
            explicit=self.options.praksis_id,
            rules=self.options.praksis_rules,
            folder=Path(version.path).parent,
            praksiser=listing,
        )

    async def _praksis_list(self) -> PraksisListe:
        async with self._praksis_lock:
            cached = self._praksiser
            if cached is not None and self._now() - cached[0] < self.options.praksis_cache_seconds:
                return cached[1]
            listing = await self.kuhr.hent_praksiser()
            self._praksiser = (self._now(), listing)
            return listing

    def _reject(
        self,
        version: Version,
        problems: list[Problem],
        envelope: dict | None = None,
        **more_detail: Any,
    ) -> None:
        self.stats.rejected += 1
        codes = ", ".join(sorted({p.code for p in problems if p.is_error}))
        self._finish(
            version,
            State.REJECTED,
            note=f"rejected locally: {codes}",
            detail={
                "problems": [_problem_dict(p) for p in problems],
                "envelope": envelope,
                **more_detail,
            },
        )

    def _finish(
        self,
        version: Version,
        state: State,
        *,
        note: str,
        detail: dict | None = None,
        **fields: Any,
    ) -> None:
        version = self.journal.transition(
            version.id, state, note=note, detail=detail or {}, due_at=NEVER, receipts=True, **fields
        )
        self._deliver(version, final=True)

    def _transient(
        self,
        version: Version,
        reason: str,
        *,
        resume: State | None = None,
        keep_state: bool = False,
    ) -> None:
        self.stats.failed_attempts += 1
        if keep_state or version.state in (State.SUBMITTING, State.SUBMITTED, State.CONTROLLED):
            # Never "failed" once it may be at KUHR: keep the state, try again later.
            self._later(version, reason)
            return
        version = self.journal.transition(
            version.id,
            State.FAILED,
            note=reason,
            due_at=self._now() + self._backoff(version.attempts),
            attempts=version.attempts + 1,
            detail={"resume": (resume or State.SEEN).value, "message": reason},
            receipts=True,
        )
        self._deliver(version)

    def _later(self, version: Version, note: str, *, receipts: bool = False) -> Version:
        """Keep the state and try the same step again after a backoff."""
        return self.journal.transition(
            version.id,
            version.state,
            note=note,
            attempts=version.attempts + 1,
            due_at=self._now() + self._backoff(version.attempts),
            receipts=receipts,
        )

    def _backoff(self, attempts: int) -> float:
        return min(self.options.retry_max, self.options.retry_base * (2 ** min(attempts, 20)))

    def _poll_interval(self, polls: int, state: State) -> float:
        cap = self.options.poll_max_payment if state is State.CONTROLLED else self.options.poll_max
        return min(cap, self.options.poll_first * (1.5 ** min(polls, 40)))

    def facts(self, version: Version) -> ReceiptFacts:
        """Everything the journal knows about a version, as receipt facts."""
        detail = version.detail
        claim = self._claim_from(detail["claim"]) if detail.get("claim") else None
        submit = SendInnResponse.model_validate(detail["submit"]) if detail.get("submit") else None
        details = (
            BehandlerkravmeldingListe.model_validate(
                load_json(detail["details"])
            ).behandlerkravmeldinger
            if detail.get("details")
            else []
        )
        timestamps = {
            e.state.value: datetime.fromtimestamp(e.at, OSLO)
            for e in self.journal.events(version.id)
        }
        return ReceiptFacts(
            source=(self.options.receipt_source or Path)(version.path),
            sha256=version.sha256,
            size=version.size,
            environment=self.options.environment,
            state=version.state.value,
            envelope=_envelope_from(detail.get("envelope")),
            problems=[_problem_from(p) for p in detail.get("problems") or []],
            praksis_id=version.praksis_id,
            claim=claim,
            submit=submit,
            details=details,
            duplicate_of=detail.get("duplicate_of_path"),
            precheck=detail.get("precheck") or [],
            timestamps=timestamps,
            message=detail.get("message") if version.state is State.FAILED else None,
        )

    def _remember_claim(self, text: str, melding: Behandlerkravmelding) -> None:
        self._recent_claims[text] = melding
        if len(self._recent_claims) > RECENT_CLAIMS:
            del self._recent_claims[next(iter(self._recent_claims))]  # the oldest

    def _claim_from(self, text: str) -> Behandlerkravmelding:
        known = self._recent_claims.get(text)
        if known is not None:
            return known
        return Behandlerkravmelding.model_validate(load_json(text))

    def _deliver(self, version: Version, *, final: bool = False) -> bool:
        """Write the receipts of the state just committed (and move a final original), then
        tell the journal they are written. Killed before that, the version stays owed.
        False if the receipts could not be written."""
        if not self._write_receipts(version):
            return False
        if final:
            self._move_original(version)
        self.journal.receipts_written(version.id)
        return True

    def _deliver_owed(self) -> None:
        """Receipts a killed process did not write, or a full or unreachable folder refused:
        at start, then once a minute. A pass stops at the first receipt that still cannot be
        written (the folder is most likely still unreachable: one log line, not thousands)."""
        now = self._now()
        if self._owed_checked_at is not None and now - self._owed_checked_at < 60.0:
            return
        self._owed_checked_at = now
        for version in self.journal.receipts_owed(skip=self._inflight.keys()):
            if not self.journal.acquire(version.id, seconds=self.options.lease_seconds):
                continue
            try:
                current = self.journal.get(version.id)
                if current.receipts_pending:
                    log.info("writing the receipts of %s", Path(current.path).name)
                    if not self._deliver(current, final=current.due_at >= NEVER):
                        return
            finally:
                self.journal.release(version.id)

    def _write_receipts(self, version: Version) -> bool:
        """True once this version's receipts are on disk (or it gets none)."""
        if version.state is State.SKIPPED:
            return True
        facts = self.facts(version)
        root = _root_of(version) if self.options.receipts_dir else None
        try:
            latest = self.journal.latest_for_path(version.path)
            if latest is not None and latest.id != version.id:
                # The EPJ has written newer content to this path: the receipts beside the file
                # belong to that version now. This one keeps a JSON receipt named by its content.
                path = superseded_receipt_path(
                    facts.source, version.sha256, self.options.receipts_dir, root
                )
                atomic_write(path, (dump_json(build_receipt(facts)) + "\n").encode("utf-8"))
                return True
            write_receipts(facts, receipts_dir=self.options.receipts_dir, root=root)
        except (OSError, ValueError) as err:
            log.error("cannot write receipts for %s: %s", Path(version.path).name, err)
            return False
        return True

    def _move_original(self, version: Version) -> None:
        target_dir = None
        if version.state in (State.REJECTED, State.FEIL_I_MELDING):
            target_dir = self.options.error_dir
        elif version.state in (State.CONTROLLED, State.PAID, State.NO_PAYMENT, State.DUPLICATE):
            target_dir = self.options.archive_dir
        if target_dir is None:
            return
        _move_with_receipts(
            Path(version.path), target_dir, _root_of(version), self.options.receipts_dir is None
        )


# --------------------------------------------------------------------------- small helpers


def superseded_receipt_path(
    source: Path, sha256: str, receipts_dir: Path | None, root: Path | None
) -> Path:
    """`NAME.xml.<sha256[:12]>.kvittering.json`: the receipt of an earlier version of NAME.xml."""
    json_path, _ = receipt_paths(source, receipts_dir, root)
    return json_path.with_name(f"{source.name}.{sha256[:12]}{JSON_SUFFIX}")


def _read_file(path: str) -> bytes:
    return Path(path).read_bytes()


def _sha256_of_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _root_of(version: Version) -> Path | None:
    root = version.detail.get("root")
    return Path(root) if root else None


def _rule_matches(options: PipelineOptions, sender: Sender, path: Path) -> bool:
    from bridge.kuhr.praksis import matching_rule

    return matching_rule(options.praksis_rules, sender, path.parent) is not None


def _problem_dict(problem: Problem) -> dict[str, Any]:
    return {
        "code": problem.code,
        "message": problem.message,
        "line": problem.line,
        "path": problem.path,
        "severity": problem.severity.value,
    }


def _problem_from(data: dict[str, Any]) -> Problem:
    return Problem(
        data["code"],
        data["message"],
        line=data.get("line"),
        path=data.get("path"),
        severity=Severity(data.get("severity", "error")),
    )


def _envelope_dict(envelope: Envelope | None) -> dict[str, Any] | None:
    if envelope is None:
        return None
    return {name: getattr(envelope, name) for name in Envelope.__slots__}


def _envelope_from(data: dict[str, Any] | None) -> Envelope | None:
    return Envelope(**data) if data else None


def _details_json(details: BehandlerkravmeldingListe) -> str:
    return dump_json(details, indent=None)


def _status_note(main: BehandlerkravmeldingStatus | None) -> str | None:
    if main is None:
        return None
    return "/".join(
        s for s in (main.meldingsstatus, main.kontrollstatus, main.utbetalingsstatus) if s
    )


def _move_with_receipts(source: Path, target_dir: Path, root: Path | None, beside: bool) -> None:
    relative = source.name
    if root is not None:
        try:
            relative = str(source.relative_to(root))
        except ValueError:
            relative = source.name
    destination = target_dir / relative
    destination.parent.mkdir(parents=True, exist_ok=True)
    moves = [(source, destination)]
    if beside:
        for receipt in receipt_paths(source):
            moves.append((receipt, destination.parent / receipt.name))
    for old, new in moves:
        try:
            old.replace(new)
        except FileNotFoundError:
            continue
        except OSError as err:
            log.error("cannot move %s to %s: %s", old.name, target_dir, err.strerror)
