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
from pathlib import Path
from typing import Any, Literal

from bridge.core.convert import ConvertContext, ConvertResult, convert, too_large, unreadable
from bridge.core.legacy.read import Envelope
from bridge.core.legacy.schemas import SchemaRegistry, default_registry
from bridge.core.model import (
    Behandlerkravmelding,
    BehandlerkravmeldingListe,
    BehandlerkravmeldingStatus,
    Feilkode,
    Kontrollstatus,
    Meldingsstatus,
    Praksis,
    PraksisListe,
    SendInnResponse,
    Utbetalingsstatus,
    dump_json,
    load_json,
)
from bridge.core.outcomes import State
from bridge.core.praksis import PraksisResolutionError, Sender, resolve_praksis
from bridge.core.precheck import PrecheckOutcome
from bridge.core.problems import Problem, has_errors
from bridge.core.rules import praksis_rules
from bridge.files.reading import read_limited
from bridge.flow.delivery import Delivery
from bridge.flow.journal import Journal, Version
from bridge.flow.options import NEVER, PipelineOptions
from bridge.flow.precheck import Prechecker
from bridge.flow.reconcile import Reconciler
from bridge.kuhr.auth import TokenError
from bridge.kuhr.client import (
    AsyncKuhrClient,
    KuhrAuthError,
    KuhrError,
    KuhrResponseError,
    KuhrUnavailable,
)
from bridge.kuhr.jwe import JwksError
from bridge.runtime.group_sync import GroupSync

log = logging.getLogger("bridge.pipeline")

# Failures of KUHR, of its key set or of the token service: not the claim's fault, and over
# once the other side is back. A step that meets one tries again after a backoff; never a crash.
TRANSIENT_ERRORS = (KuhrError, TokenError, JwksError)

# States the pipeline still has work for, by how far it follows a claim.
WORKING_STATES = (State.SEEN, State.CONVERTED, State.SUBMITTING, State.FAILED)
TRACKED_STATES = (State.SUBMITTED, State.CONTROLLED)


@dataclass
class PipelineStats:
    """Counters for metrics and the --once summary."""

    converted: int = 0
    rejected: int = 0
    submitted: int = 0
    controlled: int = 0
    failed_attempts: int = 0
    submit_latency: list[float] = field(default_factory=list)  # seconds, file seen → mottatt


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
        self.reconciler = Reconciler(
            journal, kuhr, environment=options.environment, clock=wall_clock
        )
        self.delivery = Delivery(journal, options, clock=wall_clock)
        self._durable = GroupSync(journal.make_durable)
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
                and known.detail.mtime_ns == stat.st_mtime_ns
            ):
                return known  # unchanged since it was seen (a restart hands every file over)
            size = stat.st_size
            data = read_limited(path, None) if size <= self.options.max_bytes else None
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
            # DEBUG: the claim's one INFO line is its outcome (mottatt, avvist, …); a line per
            # intake step cost a redaction pass each in a burst.
            log.debug("new file version %s (%s…)", path.name, sha[:12])
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
            self.delivery.deliver_owed(self._inflight.keys())
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
            self.delivery.deliver_owed(self._inflight.keys())
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
        return [
            v
            for v in pending
            if v.due_at < NEVER  # e.g. a claim KUHR never sent to control: no longer followed
            and not (v.state is State.FAILED and v.attempts >= limit)
        ]

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
            await self._step_now(self.journal.get(version_id))
        except Exception:  # one file's trouble never stops the others
            log.exception("unexpected error on file version %s", version_id)
            self._transient(
                self.journal.get(version_id), "unexpected internal error", failure="internal"
            )
        finally:
            self.journal.release(version_id)

    # ------------------------------------------------------------------ steps

    async def _retry(self, version: Version) -> None:
        """A transient failure is due again: start over from the step that failed."""
        resume = State(version.detail.resume or State.SEEN.value)
        self.journal.transition(version.id, resume, note="retrying after a transient failure")
        await self._step_now(self.journal.get(version.id), retrying=True)

    async def _step_now(self, version: Version, *, retrying: bool = False) -> None:
        """The step of the version's state (a retry only resumes converting or sending)."""
        handler = {
            State.SEEN: self._convert,
            State.CONVERTED: self._submit,
            State.SUBMITTING: self._reconcile,
            **({} if retrying else self._later_steps()),
        }.get(version.state)
        if handler is not None:
            await handler(version)

    def _later_steps(self) -> dict[State, Callable[[Version], Awaitable[None]]]:
        return {
            State.FAILED: self._retry,
            State.SUBMITTED: self._track,
            State.CONTROLLED: self._track,
        }

    async def _convert(self, version: Version) -> None:
        path = version.file
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
                self.offer(path, version.detail.root_path)
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
        envelope = result.envelope
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
        except TRANSIENT_ERRORS as err:
            self._transient(
                version,
                f"could not fetch the praksis list: {err}",
                resume=State.SEEN,
                failure=failure_kind(err),
            )
            return
        # The documented rules that depend on the praksis type (bridge.core.rules), now that
        # the praksis is chosen; the others ran in convert.
        praksis = self._praksis_of(resolution)
        rule_problems = praksis_rules(result.behandlerkrav, praksis.type if praksis else None)
        if rule_problems:
            result.problems.extend(rule_problems)
            if has_errors(rule_problems):
                self._reject(version, result.problems, envelope=envelope)
                return
        melding = Behandlerkravmelding(
            praksisId=resolution.praksis_id, behandlerkrav=result.behandlerkrav
        )
        # The log redaction learns this claim's names and diagnoses, so that free text
        # mentioning them (an exception message, say) is scrubbed too.
        if self.options.learn_patient_data is not None:
            self.options.learn_patient_data(melding)
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
        self.delivery.remember_claim(claim_text, melding)
        converted = {
            "praksis_id": resolution.praksis_id,
            "detail": {
                "claim": claim_text,
                "envelope": envelope,
                "problems": tuple(result.problems),
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
        self.delivery.deliver(version)
        await self._submit(version)

    def _praksis_of(self, resolution: Any) -> Praksis | None:
        """The chosen praksis, also when its praksisId came by flag or rule (if listed)."""
        praksis = resolution.praksis
        if praksis is None and self._praksiser is not None:  # a praksisId given by flag/rule
            known = self._praksiser[1].praksiser
            praksis = next((p for p in known if p.praksisId == resolution.praksis_id), None)
        return praksis

    async def _precheck(
        self, version: Version, melding: Behandlerkravmelding, resolution: Any
    ) -> PrecheckOutcome | None:
        """The pre-control, offline from the takst cache; None when it is off."""
        checker = self.prechecker
        if checker is None or not checker.enabled:
            return None
        praksis = self._praksis_of(resolution)
        now = await checker.now()
        outcome = await self.options.offload(
            checker.check, melding, now=now, praksistype=praksis.type if praksis else None
        )
        if outcome.findings:
            # DEBUG: the findings are in the receipt, and their codes in the claim's one INFO
            # line (mottatt, or the rejection's problems).
            codes = ", ".join(sorted({f.code for f in outcome.findings}))
            log.debug(
                "pre-control of %s: %d finding(s): %s",
                version.file.name,
                len(outcome.findings),
                codes,
            )
        return outcome

    async def _submit(self, version: Version, converted: dict[str, Any] | None = None) -> None:
        """POST a converted version; `converted`: the fields of a version still `seen`, which
        passes through `converted` in the same transaction (one commit fewer per file)."""
        claim_text = converted["detail"]["claim"] if converted else version.detail.claim
        assert claim_text is not None  # sent as journaled, not parsed and re-encoded
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
        except TRANSIENT_ERRORS as err:
            # Unknown whether it landed: reconcile later, never blindly resend.
            self.stats.failed_attempts += 1
            self.delivery.deliver(
                self._later(
                    version, f"submission failed: {err}", receipts=True, failure=failure_kind(err)
                )
            )
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
            findings = version.detail.precheck
            log.info(
                "%s: mottatt by KUHR as %s%s",
                version.file.name,
                answer.behandlerkravmeldingId,
                f" (pre-control: {len(findings)} finding(s): "
                f"{', '.join(sorted({str(f.get('kode')) for f in findings}))})"
                if findings
                else "",
            )
            self.delivery.deliver(version)
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
        melding = Behandlerkravmelding.model_validate(load_json(version.detail.claim or "{}"))
        try:
            found = await self.reconciler.find(version, melding)
        except TRANSIENT_ERRORS as err:
            # The receipt says why it waits and when it is tried next: keep that time true.
            self.delivery.deliver(
                self._later(
                    version,
                    f"cannot reconcile yet: {err}",
                    receipts=True,
                    failure=failure_kind(err),
                )
            )
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
            self.delivery.deliver(version)
            return
        if version.detail.duplicate_answer:
            self._transient(
                version,
                "KUHR reports the claim as a duplicate but it is not in the overview yet",
                resume=State.SUBMITTING,
                keep_state=True,
                failure="kuhr_answer",
            )
            return
        log.info("%s: not at KUHR after an interrupted submission; sending it", version.file.name)
        version = self.journal.transition(version.id, State.CONVERTED, note="not at KUHR: resend")
        await self._submit(version)

    async def _track(self, version: Version) -> None:
        assert version.behandlerkravmelding_id is not None
        try:
            details = await self.kuhr.hent_behandlerkravmelding(version.behandlerkravmelding_id)
        except TRANSIENT_ERRORS as err:
            self._later(version, f"status not available: {err}", failure=failure_kind(err))
            return
        entries = details.behandlerkravmeldinger
        stored = _details_json(details)
        changed = stored != version.detail.details
        main = entries[0] if entries else None
        state, final = kuhr_state(version.state, entries, self.options.follow)
        polls = version.detail.polls + 1
        stopped = not final and self._unsent_too_long(version, main)
        final = final or stopped
        due = NEVER if final else self._now() + self._poll_interval(polls, state)
        previous = version.state
        detail: dict[str, Any] = {"details": stored, "polls": polls}
        if stopped:
            detail["unsent_control_stopped"] = True
            log.warning(
                "%s: KUHR has not sent claim %s to control %s after it was sent "
                "(kontrollstatus %s); the bridge stops polling it. `bkm-bridge status %s` "
                "shows KUHR's view; ask Helfo if it stays so",
                version.file.name,
                version.behandlerkravmelding_id,
                _duration(self.options.unsent_control_max),
                (main.kontrollstatus if main else None) or "none",
                version.behandlerkravmelding_id,
            )
        version = self.journal.transition(
            version.id,
            state,
            detail=detail,
            due_at=due,
            attempts=0,
            note=_status_note(main) if changed else None,
            receipts=changed or final,
        )
        controlled = previous is State.SUBMITTED and state in (
            State.CONTROLLED,
            State.PAID,
            State.NO_PAYMENT,
        )
        if controlled:
            self.stats.controlled += 1
        if changed or final:
            self.delivery.deliver(version, final=final, announce=controlled)

    def _unsent_too_long(self, version: Version, main: BehandlerkravmeldingStatus | None) -> bool:
        """Whether a claim KUHR has not sent to control (kontrollstatus ikke_sendt_til_kontroll,
        or none yet) has waited longer than `unsent_control_max` since it was sent. The docs
        give that status no way on and no duration, so polling it is bounded (never forever);
        kontrolleres and kontrolleres_manuelt are documented to end, and are followed on."""
        if version.state is not State.SUBMITTED:
            return False
        waiting = main is None or main.kontrollstatus in (
            None,
            Kontrollstatus.IKKE_SENDT_TIL_KONTROLL,
        )
        since = version.submit_started_at or version.created_at
        return waiting and self._now() - since > self.options.unsent_control_max

    # ------------------------------------------------------------------ helpers

    async def _resolve_praksis(self, result: ConvertResult, version: Version):
        env = result.envelope
        sender = Sender(
            orgnr=env.sender_orgnr if env else None, hpr=env.sender_hpr if env else None
        )
        listing = None
        if not self.options.praksis_id and not _rule_matches(self.options, sender, version.file):
            listing = await self._praksis_list()
        assert result.behandlerkrav is not None
        return resolve_praksis(
            result.behandlerkrav,
            sender=sender,
            explicit=self.options.praksis_id,
            rules=self.options.praksis_rules,
            folder=version.file.parent,
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
        envelope: Envelope | None = None,
        **more_detail: Any,
    ) -> None:
        self.stats.rejected += 1
        codes = ", ".join(sorted({p.code for p in problems if p.is_error}))
        self._finish(
            version,
            State.REJECTED,
            note=f"rejected locally: {codes}",
            detail={"problems": tuple(problems), "envelope": envelope, **more_detail},
        )

    def _finish(
        self,
        version: Version,
        state: State,
        *,
        note: str,
        detail: dict[str, Any] | None = None,
        **fields: Any,
    ) -> None:
        version = self.journal.transition(
            version.id, state, note=note, detail=detail or {}, due_at=NEVER, receipts=True, **fields
        )
        self.delivery.deliver(version, final=True)

    def _transient(
        self,
        version: Version,
        reason: str,
        *,
        resume: State | None = None,
        keep_state: bool = False,
        failure: str = "kuhr_unavailable",
    ) -> None:
        """A failure that is not the claim's fault: `failure` is its kind, for the receipt
        (bridge.core.notices.FAILURE_KINDS)."""
        self.stats.failed_attempts += 1
        if keep_state or version.state in (State.SUBMITTING, State.SUBMITTED, State.CONTROLLED):
            # Never "failed" once it may be at KUHR: keep the state, try again later.
            waiting = version.state is State.SUBMITTING  # its receipt says when it is retried
            version = self._later(version, reason, receipts=waiting, failure=failure)
            if waiting:
                self.delivery.deliver(version)
            return
        due = self._retry_at(version, reason)
        version = self.journal.transition(
            version.id,
            State.FAILED,
            note=reason,
            due_at=due,
            attempts=version.attempts + 1,
            detail={
                "resume": (resume or State.SEEN).value,
                "message": reason,
                "failure": failure,
            },
            receipts=True,
        )
        self.delivery.deliver(version)

    def _later(
        self, version: Version, note: str, *, receipts: bool = False, failure: str | None = None
    ) -> Version:
        """Keep the state and try the same step again after a backoff."""
        return self.journal.transition(
            version.id,
            version.state,
            note=note,
            attempts=version.attempts + 1,
            due_at=self._retry_at(version, note),
            receipts=receipts,
            detail={"message": note, "failure": failure} if failure else None,
        )

    def _retry_at(self, version: Version, reason: str) -> float:
        """When a failed step is tried again; says so in one log line (no traceback: the
        reason names the failure, and a TokenError what to fix)."""
        due = self._now() + self._backoff(version.attempts)
        log.warning(
            "%s: %s; trying again at %s (attempt %d)",
            version.file.name,
            reason,
            datetime.fromtimestamp(due).astimezone().strftime("%H:%M:%S"),
            version.attempts + 2,
        )
        return due

    def _backoff(self, attempts: int) -> float:
        return min(self.options.retry_max, self.options.retry_base * (2 ** min(attempts, 20)))

    def _poll_interval(self, polls: int, state: State) -> float:
        cap = self.options.poll_max_payment if state is State.CONTROLLED else self.options.poll_max
        return min(cap, self.options.poll_first * (1.5 ** min(polls, 40)))


# --------------------------------------------------------------------------- small helpers


def kuhr_state(
    current: State,
    entries: list[BehandlerkravmeldingStatus],
    follow: Literal["control", "payment"],
) -> tuple[State, bool]:
    """The journal state KUHR's details say (and whether following the claim ends there).

    `entries` come original first (the client orders them by the `rebehandling` flag): the
    original says whether the message was refused; the newest (a rebehandling, if any) says
    whether the control is finished and what was paid, so a rebehandling still in control is
    followed until it is done."""
    if not entries:
        return current, False
    original, newest = entries[0], entries[-1]
    if original.meldingsstatus == Meldingsstatus.FEIL_I_MELDING:
        return State.FEIL_I_MELDING, True
    if newest.kontrollstatus != Kontrollstatus.FERDIG_KONTROLLERT:
        if current in (State.PAID, State.NO_PAYMENT):
            return State.CONTROLLED, False  # followed again until the rebehandling is done
        return current, False
    if follow == "control":
        return State.CONTROLLED, True
    if newest.utbetalingsstatus == Utbetalingsstatus.UTBETALT:
        return State.PAID, True
    if newest.utbetalingsstatus == Utbetalingsstatus.INGEN_UTBETALING:
        return State.NO_PAYMENT, True
    return State.CONTROLLED, False


def _read_file(path: str) -> bytes:
    return read_limited(path, None)  # a regular file only: never waits on a FIFO


def _sha256_of_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def failure_kind(err: BaseException) -> str:
    """What kind of transient failure `err` is, for the receipt's sentence."""
    if isinstance(err, TokenError):
        return "token"
    if isinstance(err, JwksError):
        return "kuhr_key"
    if isinstance(err, KuhrAuthError):
        return "kuhr_access"
    if isinstance(err, KuhrResponseError):
        return "kuhr_answer"
    if isinstance(err, KuhrUnavailable | KuhrError):
        return "kuhr_unavailable"
    return "internal"


def _rule_matches(options: PipelineOptions, sender: Sender, path: Path) -> bool:
    from bridge.core.praksis import matching_rule

    return matching_rule(options.praksis_rules, sender, path.parent) is not None


def _duration(seconds: float) -> str:
    """3 days → "72 hours"; short bounds (tests, an accelerated sandbox) in seconds."""
    if seconds >= 3600:
        return f"{seconds / 3600:.0f} hours"
    return f"{seconds:.0f} seconds"


def _details_json(details: BehandlerkravmeldingListe) -> str:
    return dump_json(details, indent=None)


def _status_note(main: BehandlerkravmeldingStatus | None) -> str | None:
    if main is None:
        return None
    return "/".join(
        s for s in (main.meldingsstatus, main.kontrollstatus, main.utbetalingsstatus) if s
    )
