"""A run's live counts, the journal a migration keeps them from (`RunJournal`), and the OS
lock that lets one run at a time hold a migration journal."""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bridge.core.outcomes import State, status_of
from bridge.files.fsutil import try_lock
from bridge.flow.journal import Journal, JournalError, Version

RECEIPTS_TOLD_IN = 32  # receipts written are committed to the journal in batches this size
# Journal states a version rests in at the end of a run, by how far the run follows claims.
_WORKING = frozenset({State.SEEN, State.CONVERTED, State.SUBMITTING, State.FAILED})
_TRACKED = frozenset({State.SUBMITTED})


@dataclass
class Tally:
    """What the progress display shows; updated on the event loop, read by the display."""

    total: int | None = None  # claim files found by the counting walk (None: still counting)
    discovered: int = 0
    new: int = 0  # versions this run registered (the rest were known to the journal)
    done: int = 0  # files that reached the state this run takes them to
    new_done: int = 0  # of those, versions this run registered
    outcomes: Counter[str] = field(default_factory=Counter)  # by Status word (core.outcomes)
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    stopping: bool = False

    def elapsed(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    def counts(self) -> dict[str, Any]:
        """What a sending process reports of its share (`add_up` sums them)."""
        return {
            "discovered": self.discovered,
            "new": self.new,
            "done": self.done,
            "new_done": self.new_done,
            "outcomes": dict(self.outcomes),
        }

    def add_up(self, shares: Iterable[dict[str, Any]]) -> None:
        """Set the counts to the sum of the sending processes' `counts()`."""
        outcomes: Counter[str] = Counter()
        sums = {"discovered": 0, "new": 0, "done": 0, "new_done": 0}
        for share in shares:
            for key in sums:
                sums[key] += share[key]
            outcomes.update(share["outcomes"])
        self.discovered, self.new, self.done, self.new_done = sums.values()
        self.outcomes = outcomes


class RunJournal(Journal):
    """The journal, telling the run's tally where versions go and which versions are still
    being worked on (the intake window: converting and sending, not waiting for KUHR's
    control). Everything else is the watcher's journal as it is."""

    def __init__(
        self,
        path: Path,
        *,
        owner: str,
        tally: Tally,
        follow: bool,
        attempts: int,
        started: float,
        part: tuple[int, int] | None = None,
    ) -> None:
        super().__init__(path, owner=owner, part=part)
        self.tally = tally
        self.working: dict[int, State] = {}  # this run's versions being converted or sent
        self.working_content: Counter[str] = Counter()  # their sha256s
        self.on_rest: Callable[[], None] | None = None  # a working version left the window
        self._follow = follow
        self._attempts = attempts
        self._started = started  # versions created since are this run's new ones
        self._written: list[int] = []  # receipts written, not yet told to the journal

    @staticmethod
    def prepare(path: Path) -> None:
        """Create or upgrade the journal's schema (before several processes open it)."""
        Journal(path, owner=default_owner_for(path)).close()

    def in_window(self, version: Version) -> bool:
        if version.state in (State.SUBMITTING, State.FAILED):
            return version.attempts < self._attempts  # else left for the next run
        return version.state in _WORKING

    def at_rest(self, version: Version) -> bool:
        """Where this run takes it: sent (or, following, controlled), or given up on."""
        return not self.in_window(version) and not (self._follow and version.state in _TRACKED)

    def _rests_in(self, state: State) -> bool:
        return state not in _WORKING and not (self._follow and state in _TRACKED)

    def admit(self, version: Version) -> None:
        """A version discovered in this run (new, or known from an earlier run)."""
        if self.in_window(version):
            self.working[version.id] = version.state
            self.working_content[version.sha256] += 1
            return
        self.tally.outcomes[status_of(version.state)] += 1
        if self.at_rest(version):
            self.tally.done += 1

    def transition(self, version_id: int, state: State, **kwargs: Any) -> Version:
        held = self.working.get(version_id)
        previous = held if held is not None else self._state_of(version_id)
        version = super().transition(version_id, state, **kwargs)
        if held is not None:
            if self.in_window(version):
                self.working[version_id] = version.state
                return version
            del self.working[version_id]
            self.working_content[version.sha256] -= 1
            if self.working_content[version.sha256] <= 0:
                del self.working_content[version.sha256]
            self.tally.outcomes[status_of(version.state)] += 1
            if self.at_rest(version):
                self._done(version)
            if self.on_rest is not None:
                self.on_rest()
        elif previous is not None and previous is not version.state:
            # A claim this run follows (submitted → controlled), or a leftover it retried.
            if self.tally.outcomes[status_of(previous)] > 0:
                self.tally.outcomes[status_of(previous)] -= 1
            self.tally.outcomes[status_of(version.state)] += 1
            if self.at_rest(version) and not self._rests_in(previous):
                self._done(version)
        return version

    # Receipts written are told to the journal in batches, a commit per file saved. A run
    # killed before a batch is committed writes those receipts again (the same bytes) on its
    # next run, as it would for a run killed between writing the receipts and saying so.
    def receipts_written(self, *version_ids: int) -> None:
        self._written.extend(version_ids)
        if len(self._written) >= RECEIPTS_TOLD_IN:
            self._tell_written()

    def receipts_owed(self, *, skip: Collection[int] = ()) -> list[Version]:
        self._tell_written()
        return super().receipts_owed(skip=skip)

    def close(self) -> None:
        self._tell_written()
        super().close()

    def _tell_written(self) -> None:
        told, self._written = self._written, []
        if told:
            super().receipts_written(*told)

    # One run at a time holds this journal (`exclusive`), so there is nobody to lease a
    # version from: two committed transactions per file saved.
    def acquire(self, version_id: int, *, seconds: float) -> bool:
        return True

    def release(self, version_id: int) -> None:
        pass

    def _done(self, version: Version) -> None:
        self.tally.done += 1
        self.tally.new_done += version.created_at >= self._started

    def _state_of(self, version_id: int) -> State | None:
        row = self._db().execute("SELECT state FROM versions WHERE id = ?", (version_id,))
        found = row.fetchone()
        return State(found[0]) if found else None


def default_owner_for(journal: Path) -> str:
    """The lease owner of every migrate run on this journal (see the module docstring)."""
    return f"migrate@{socket.gethostname()}:{journal.resolve()}"


class JournalLockedError(JournalError):
    """Another migrate run holds this journal."""


@contextlib.contextmanager
def exclusive(journal: Path) -> Iterator[None]:
    """An OS lock on `<journal>.lock` for the run's life (released by the OS if it dies)."""
    journal.parent.mkdir(parents=True, exist_ok=True)
    lock_path = journal.with_name(journal.name + ".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if not try_lock(
            fd, unsupported="cannot lock the migrate journal; run one migrate at a time"
        ):
            raise JournalLockedError(
                f"another bkm-bridge migrate is running on {journal} (lock {lock_path})"
            )
        os.ftruncate(fd, 0)
        os.write(fd, f"{socket.gethostname()} pid {os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)
