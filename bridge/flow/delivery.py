"""Receipts for what the journal committed: the facts gathered from it, the receipts written
(and a final original moved), and then the journal told they are written. Killed in between,
a version stays owed its receipts, and the next pass writes them.

Something planted where a receipt goes (a link, a FIFO: bridge.files.receipts.Trap) is named
once in the log and kept as a warning in the version's journal record, so every later JSON
receipt of it still says so. A folder in a receipt's place keeps that receipt owed without
holding up the others.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from datetime import datetime
from enum import Enum
from pathlib import Path

from bridge.core.model import Behandlerkravmelding, dump_json, load_json
from bridge.core.notices import transient_message
from bridge.core.outcomes import State, unsent_control_stopped
from bridge.core.receipts import ReceiptFacts, build_receipt, outcome_of
from bridge.core.timezone import OSLO
from bridge.files.fsutil import atomic_write
from bridge.files.production import production_reason
from bridge.files.receipts import (
    Placement,
    move_with_receipts,
    place_receipts,
    receipt_paths,
    superseded_receipt_path,
)
from bridge.flow.journal import Journal, Version
from bridge.flow.options import NEVER, PipelineOptions

log = logging.getLogger("bridge.pipeline")
RECENT_CLAIMS = 64  # parsed claims kept for their receipts (a miss costs one parse)
# States in which a recorded failure is being retried (the receipt says so and when).
RETRYING_STATES = frozenset({State.SEEN, State.CONVERTED, State.SUBMITTING, State.FAILED})
# Outcomes someone has to act on: their line is a WARNING.
_NEEDS_ACTION = frozenset({"avvist_lokalt", "feil_i_melding"})


class Written(Enum):
    DONE = "done"  # on disk (or none is due)
    BLOCKED = "blocked"  # a folder is where one goes: this version waits, the others do not
    FAILED = "failed"  # the folder cannot be written now (full, unreachable)


class Delivery:
    """Writes each version's receipts from the journal; one per pipeline."""

    def __init__(
        self, journal: Journal, options: PipelineOptions, *, clock: Callable[[], float]
    ) -> None:
        self.journal = journal
        self.options = options
        self._now = clock
        self._owed_checked_at: float | None = None
        # The last claims converted, by the JSON text journaled for them: the receipt written
        # a moment later reuses the parsed claim instead of parsing the journal's copy again.
        self._recent_claims: dict[str, Behandlerkravmelding] = {}

    def facts(self, version: Version) -> ReceiptFacts:
        """Everything the journal knows about a version, as receipt facts."""
        detail = version.detail
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
            envelope=detail.envelope,
            problems=list(detail.problems),
            praksis_id=version.praksis_id,
            claim=self._claim_from(detail.claim) if detail.claim else None,
            submit=detail.submit_response(),
            details=detail.status_details(),
            duplicate_of=detail.duplicate_of_path,
            precheck=list(detail.precheck),
            timestamps=timestamps,
            message=self._message(version),
        )

    def _message(self, version: Version) -> str | None:
        """A sentence of the version's own, instead of its status word's: why it is retried."""
        detail = version.detail
        if detail.failure and version.state in RETRYING_STATES:
            return transient_message(
                detail.failure,
                retry_at=datetime.fromtimestamp(version.due_at, OSLO),
                maybe_sent=version.state is State.SUBMITTING,
            )
        if detail.unsent_control_stopped and version.state is State.SUBMITTED:
            sent = version.submit_started_at or version.created_at
            return unsent_control_stopped(datetime.fromtimestamp(sent, OSLO))
        return detail.message if version.state is State.FAILED else None

    def remember_claim(self, text: str, melding: Behandlerkravmelding) -> None:
        self._recent_claims[text] = melding
        if len(self._recent_claims) > RECENT_CLAIMS:
            del self._recent_claims[next(iter(self._recent_claims))]  # the oldest

    def _claim_from(self, text: str) -> Behandlerkravmelding:
        known = self._recent_claims.get(text)
        if known is not None:
            return known
        return Behandlerkravmelding.model_validate(load_json(text))

    def deliver(self, version: Version, *, final: bool = False, announce: bool = False) -> bool:
        """Write the receipts of the state just committed (and move a final original), then
        tell the journal they are written. Killed before that, the version stays owed.
        `final` or `announce` (a control result while payment is followed): the outcome is
        logged in one line. False if the receipts could not be written."""
        facts = None if version.state is State.SKIPPED else self.facts(version)
        if facts is not None and (final or announce):
            self._announce(version, facts)
        return self._deliver(version, final=final, facts=facts) is Written.DONE

    def _announce(self, version: Version, facts: ReceiptFacts) -> None:
        """One line per outcome (`x.xml: avvist lokalt: NOT_XML`), with the fields file,
        state and codes for JSON logs; a local rejection's problems follow in full, with
        the advice for the operator that receipts leave out."""
        name = version.file.name
        outcome = outcome_of(facts)
        level = logging.WARNING if outcome.status in _NEEDS_ACTION else logging.INFO
        log.log(level, "%s", outcome.line(name), extra=outcome.fields(name))
        if version.state is State.REJECTED:
            for problem in facts.problems:
                log.info("%s", problem.format(name))

    def _deliver(
        self, version: Version, *, final: bool, facts: ReceiptFacts | None = None
    ) -> Written:
        written = self._write_receipts(version, facts)
        if written is not Written.DONE:
            return written
        if final:
            self._move_original(version)
        self.journal.receipts_written(version.id)
        return written

    def deliver_owed(self, busy: Collection[int]) -> None:
        """Receipts a killed process did not write, or a full or unreachable folder refused:
        at start, then once a minute. A pass stops at the first receipt that still cannot be
        written (the folder is most likely still unreachable: one log line, not thousands);
        a receipt blocked by a folder in its place does not stop the pass."""
        now = self._now()
        if self._owed_checked_at is not None and now - self._owed_checked_at < 60.0:
            return
        self._owed_checked_at = now
        for version in self.journal.receipts_owed(skip=busy):
            if not self.journal.acquire(version.id, seconds=self.options.lease_seconds):
                continue
            try:
                current = self.journal.get(version.id)
                if current.receipts_pending:
                    log.info("writing the receipts of %s", current.file.name)
                    final = current.due_at >= NEVER
                    if self._deliver(current, final=final) is Written.FAILED:
                        return
            finally:
                self.journal.release(version.id)

    def _write_receipts(self, version: Version, facts: ReceiptFacts | None = None) -> Written:
        """DONE once this version's receipts are on disk (or it gets none)."""
        if version.state is State.SKIPPED:
            return Written.DONE
        facts = facts or self.facts(version)
        root = version.detail.root_path if self.options.receipts_dir else None
        try:
            latest = self.journal.latest_for_path(version.path)
            if latest is not None and latest.id != version.id:
                # The EPJ has written newer content to this path: the receipts beside the file
                # belong to that version now. This one keeps a JSON receipt named by its content.
                path = superseded_receipt_path(
                    facts.source, version.sha256, self.options.receipts_dir, root
                )
                atomic_write(path, (dump_json(build_receipt(facts)) + "\n").encode("utf-8"))
                return Written.DONE
            folder = receipt_paths(facts.source, self.options.receipts_dir, root)[1].parent
            refused = self._production_reason(folder, version.detail.root_path)
            placement = place_receipts(
                facts,
                receipts_dir=self.options.receipts_dir,
                root=root,
                notes=version.detail.receipt_problems,
                apprec_allowed=refused is None,
            )
        except (OSError, ValueError) as err:
            log.error("cannot write receipts for %s: %s", version.file.name, err)
            return Written.FAILED
        if placement.withheld is not None:
            log.warning(
                "%s: no AppRec written: this is a %s run and %s is a production folder (%s); "
                "an EPJ would take it as Helfo's answer. The JSON receipt is written. Use "
                "--receipts-dir (or a copy of the folder) to see the AppRecs",
                version.file.name,
                self.options.environment,
                folder,
                refused,
                extra={"file": version.file.name, "apprec": "withheld"},
            )
        if placement.traps:
            self._note_traps(version, placement)
        return Written.BLOCKED if placement.blocked else Written.DONE

    def _production_reason(self, folder: Path, root: Path | None) -> str | None:
        """Why no AppRec may go into `folder` in this run (None: prod, or not production)."""
        if self.options.environment == "prod":
            return None
        return production_reason(folder, root, self.options.production_folders)

    def _note_traps(self, version: Version, placement: Placement) -> None:
        """Log each trap the first time it is found, and keep its warning for later receipts."""
        known = {(p.code, p.message) for p in version.detail.receipt_problems}
        new = [t for t in placement.traps if (t.problem().code, t.problem().message) not in known]
        for trap in placement.traps:
            if trap not in new:
                log.info("%s: still a %s where the receipt goes", trap.path.name, trap.kind)
            elif trap.replaceable:
                log.warning(
                    "%s: a %s was where the receipt goes; it was not followed or read and has "
                    "been replaced by the receipt. Check who can write to %s",
                    trap.path.name,
                    trap.kind,
                    trap.path.parent,
                )
            else:
                log.error(
                    "%s: a %s is where the receipt goes, so it cannot be written; move it away "
                    "and the receipt follows within a minute",
                    trap.path.name,
                    trap.kind,
                )
        if new:
            problems = (*version.detail.receipt_problems, *(t.problem() for t in new))
            self.journal.transition(
                version.id, version.state, detail={"receipt_problems": problems}
            )

    def _move_original(self, version: Version) -> None:
        target_dir = None
        if version.state in (State.REJECTED, State.FEIL_I_MELDING):
            target_dir = self.options.error_dir
        elif version.state in (State.CONTROLLED, State.PAID, State.NO_PAYMENT, State.DUPLICATE):
            target_dir = self.options.archive_dir
        if target_dir is None:
            return
        move_with_receipts(
            version.file, target_dir, version.detail.root_path, self.options.receipts_dir is None
        )
