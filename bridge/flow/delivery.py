"""Receipts for what the journal committed: the facts gathered from it, the receipts written
(and a final original moved), and then the journal told they are written. Killed in between,
a version stays owed its receipts, and the next pass writes them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from datetime import datetime
from pathlib import Path

from bridge.core.model import Behandlerkravmelding, dump_json, load_json
from bridge.core.outcomes import State
from bridge.core.receipts import ReceiptFacts, build_receipt
from bridge.core.timezone import OSLO
from bridge.files.fsutil import atomic_write
from bridge.files.receipts import move_with_receipts, superseded_receipt_path, write_receipts
from bridge.flow.journal import Journal, Version
from bridge.flow.options import NEVER, PipelineOptions

log = logging.getLogger("bridge.pipeline")
RECENT_CLAIMS = 64  # parsed claims kept for their receipts (a miss costs one parse)


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
            message=detail.message if version.state is State.FAILED else None,
        )

    def remember_claim(self, text: str, melding: Behandlerkravmelding) -> None:
        self._recent_claims[text] = melding
        if len(self._recent_claims) > RECENT_CLAIMS:
            del self._recent_claims[next(iter(self._recent_claims))]  # the oldest

    def _claim_from(self, text: str) -> Behandlerkravmelding:
        known = self._recent_claims.get(text)
        if known is not None:
            return known
        return Behandlerkravmelding.model_validate(load_json(text))

    def deliver(self, version: Version, *, final: bool = False) -> bool:
        """Write the receipts of the state just committed (and move a final original), then
        tell the journal they are written. Killed before that, the version stays owed.
        False if the receipts could not be written."""
        if not self._write_receipts(version):
            return False
        if final:
            self._move_original(version)
        self.journal.receipts_written(version.id)
        return True

    def deliver_owed(self, busy: Collection[int]) -> None:
        """Receipts a killed process did not write, or a full or unreachable folder refused:
        at start, then once a minute. A pass stops at the first receipt that still cannot be
        written (the folder is most likely still unreachable: one log line, not thousands)."""
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
                    if not self.deliver(current, final=current.due_at >= NEVER):
                        return
            finally:
                self.journal.release(version.id)

    def _write_receipts(self, version: Version) -> bool:
        """True once this version's receipts are on disk (or it gets none)."""
        if version.state is State.SKIPPED:
            return True
        facts = self.facts(version)
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
                return True
            write_receipts(facts, receipts_dir=self.options.receipts_dir, root=root)
        except (OSError, ValueError) as err:
            log.error("cannot write receipts for %s: %s", version.file.name, err)
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
        move_with_receipts(
            version.file, target_dir, version.detail.root_path, self.options.receipts_dir is None
        )
