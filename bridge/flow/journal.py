"""The journal: SQLite state of every file version, the only source of truth for "done".

A file version is (path, sha256). It walks through states:

    seen ─► rejected                          (local problems; final until the file changes)
      │
      └──► converted ─► submitting ─► submitted ─► controlled ─► paid | no_payment
                           │             │
                           │             └──► feil_i_melding   (KUHR's technical control said no)
                           └──► (crash) reconciled against KUHR before anything is sent again
    seen ─► duplicate      (the same content was already submitted from another version)
    seen ─► skipped        (not a BKM, e.g. an AppRec; ignored quietly)
    any  ─► failed         (transient trouble; retried when due, or by `bkm-bridge retry`)

Every state is committed *before* the side effect it announces (the POST happens after
`submitting` is on disk), so a crash at any instant resumes without loss and without a second
submission. Several processes may share one journal: a row is worked on only under a lease.
"""

from __future__ import annotations

import heapq
import os
import socket
import sqlite3
import sys
import threading
import time
import uuid
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bridge.core.outcomes import State
from bridge.errors import BridgeError
from bridge.flow.options import NEVER
from bridge.flow.records import EMPTY, Detail

# States after which the claim is at KUHR (or may be: `submitting` is in flight).
SENT_STATES = frozenset(
    {
        State.SUBMITTING,
        State.SUBMITTED,
        State.CONTROLLED,
        State.PAID,
        State.NO_PAYMENT,
    }
)
# States an operator may send back to the start (`requeue`).
RETRYABLE_STATES = frozenset({State.FAILED, State.REJECTED})
# States that end the work on a version, whatever is configured to follow.
TERMINAL_STATES = frozenset(
    {
        State.REJECTED,
        State.FEIL_I_MELDING,
        State.PAID,
        State.NO_PAYMENT,
        State.DUPLICATE,
        State.SKIPPED,
    }
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS versions (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    state TEXT NOT NULL,
    praksis_id TEXT,
    behandlerkravmelding_id TEXT,
    duplicate_of INTEGER REFERENCES versions(id),
    attempts INTEGER NOT NULL DEFAULT 0,
    due_at REAL NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until REAL NOT NULL DEFAULT 0,
    submit_started_at REAL,
    claim_digest TEXT,
    detail TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    receipts_pending INTEGER NOT NULL DEFAULT 0,
    UNIQUE (path, sha256)
);
CREATE INDEX IF NOT EXISTS versions_sha ON versions (sha256);
CREATE INDEX IF NOT EXISTS versions_due ON versions (state, due_at);
CREATE INDEX IF NOT EXISTS versions_kuhr ON versions (behandlerkravmelding_id);
CREATE TABLE IF NOT EXISTS events (
    version_id INTEGER NOT NULL REFERENCES versions(id),
    at REAL NOT NULL,
    state TEXT NOT NULL,
    note TEXT
);
CREATE INDEX IF NOT EXISTS events_version ON events (version_id);
CREATE TABLE IF NOT EXISTS marks (
    name TEXT PRIMARY KEY,
    value REAL NOT NULL
);
"""
# Journals written before `receipts_pending` existed gain the column on open.
_RECEIPTS_COLUMN = "ALTER TABLE versions ADD COLUMN receipts_pending INTEGER NOT NULL DEFAULT 0"
_RECEIPTS_INDEX = (
    "CREATE INDEX IF NOT EXISTS versions_receipts ON versions (id) WHERE receipts_pending = 1"
)


@dataclass(frozen=True, slots=True)
class Version:
    id: int
    path: str
    sha256: str
    size: int
    state: State
    praksis_id: str | None
    behandlerkravmelding_id: str | None
    duplicate_of: int | None
    attempts: int
    due_at: float
    lease_owner: str | None
    lease_until: float
    submit_started_at: float | None
    claim_digest: str | None
    detail: Detail
    created_at: float
    updated_at: float
    # Set with a state whose receipts (and, when final, the move of the original) are still to
    # be written; cleared once they are. A process killed in between leaves it set, and the
    # next run writes them (`Journal.receipts_owed`).
    receipts_pending: int = 0

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Version:
        data = dict(row)
        data["state"] = State(data["state"])
        data["detail"] = Detail.from_json(data["detail"])
        return cls(**data)

    @property
    def file(self) -> Path:
        """The file this version was read from (`path` is also a zip member's `ZIP!MEMBER`)."""
        return Path(self.path)


@dataclass(frozen=True, slots=True)
class Event:
    at: float
    state: State
    note: str | None


def default_owner() -> str:
    """Who holds a lease: host, process and a random part (a restarted process is new)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def owner_is_dead(owner: str | None) -> bool:
    """True when the lease holder was a process on this host that no longer runs (a killed
    daemon): its leases can be taken over at once instead of waiting for them to expire.
    Holders on other hosts, and every holder on Windows, are judged by expiry alone."""
    if not owner or sys.platform == "win32":
        return False
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


BUSY_TIMEOUT_SECONDS = 30.0  # how long a statement waits for another writer


def _begin(db: sqlite3.Connection) -> None:
    """BEGIN IMMEDIATE, waiting for another writer in steps of 0.1–2 ms. SQLite's own busy
    handler sleeps 1, 2, 5, 10 … ms between tries, so a writer that held the lock for a tenth
    of a millisecond cost the next one a whole millisecond of its (event loop's) time."""
    db.execute("PRAGMA busy_timeout=0")
    try:
        deadline = time.monotonic() + BUSY_TIMEOUT_SECONDS
        pause = 0.0001
        while True:
            try:
                db.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as err:
                if "locked" not in str(err) or time.monotonic() > deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, 0.002)
    finally:
        db.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_SECONDS * 1000)}")


class JournalError(BridgeError):
    pass


def _due_order(row: sqlite3.Row) -> tuple[float, int]:
    return row["due_at"], row["id"]


def _escape_like(text: str) -> str:
    """`text` taken literally in a LIKE pattern with ESCAPE '!'."""
    return text.replace("!", "!!").replace("%", "!%").replace("_", "!_")


def part_of(sha256: str, parts: int) -> int:
    """Which of `parts` shares a version belongs to, by its content (see `Journal.part`)."""
    return int(sha256[-2:], 16) % parts


# `part_of` in SQL: the last two hex digits of sha256, as a number, modulo the share count.
_PART_SQL = (
    " AND ((instr('0123456789abcdef', substr(sha256, -2, 1)) - 1) * 16"
    " + instr('0123456789abcdef', substr(sha256, -1)) - 1) % ? = ?"
)


class Journal:
    """Thread-safe handle on the journal database (one connection per thread).

    `part` = (index, count) limits what this handle schedules (`due`, `next_due`,
    `receipts_owed`) to one share of the versions, split by content: migrate's sending
    processes each work their own share of one journal without leases."""

    def __init__(
        self,
        path: Path,
        *,
        owner: str | None = None,
        clock=time.time,
        part: tuple[int, int] | None = None,
    ) -> None:
        self.path = path
        self.owner = owner or default_owner()
        # Versions this process holds the lease of, and those of them whose receipts are
        # written but not yet said to be (`receipts_written`): said in `release`'s commit.
        self._leased: set[int] = set()
        self._written_at_release: set[int] = set()
        self.part = part
        self._clock = clock
        self._local = threading.local()
        self._wal = True  # set by `_db`: False where SQLite could not use WAL
        path.parent.mkdir(parents=True, exist_ok=True)
        db = self._db()
        db.executescript(_SCHEMA)  # executescript manages its own transaction
        columns = {row[1] for row in db.execute("PRAGMA table_info(versions)")}
        if "receipts_pending" not in columns:
            db.execute(_RECEIPTS_COLUMN)
        db.execute(_RECEIPTS_INDEX)

    # ------------------------------------------------------------------ plumbing

    def _in_part(self, sql: str, args: list[Any]) -> tuple[str, list[Any]]:
        if self.part is None:
            return sql, args
        index, count = self.part
        return sql + _PART_SQL, [*args, count, index]

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)
            db.row_factory = sqlite3.Row
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            self._wal = str(mode).lower() == "wal"  # else (a share without WAL) a rollback journal
            # NORMAL in WAL mode survives a killed process; only an OS crash or power loss can
            # lose the last commits. A commit that guards a side effect (submitting, before the
            # POST) is followed by `make_durable`.
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
            self._local.db = db
        return db

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        db = self._db()
        _begin(db)
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def make_durable(self) -> None:
        """Wait until every commit made so far, by any process, would survive a power loss.

        This is the sync of the write-ahead log that synchronous=FULL makes inside every
        COMMIT, made afterwards instead: outside the write lock (another process's commits do
        not wait for this one's disk) and once for all the commits made meanwhile (see
        `bridge.runtime.group_sync`). Any handle on the WAL file syncs it: a sync is of the
        file, not of the handle. Without WAL, SQLite's rollback journal already syncs every commit.
        No connection is needed: this runs in a worker thread, which would open one of its own."""
        if not self._wal:
            return
        try:
            fd = os.open(f"{self.path}-wal", os.O_RDWR)
        except FileNotFoundError:
            raise JournalError(f"the journal's write-ahead log {self.path}-wal is gone") from None
        try:
            getattr(os, "fdatasync", os.fsync)(fd)
        finally:
            os.close(fd)

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    def check_writable(self) -> None:
        """Raise if a write cannot be committed (used by health checks)."""
        with self._tx() as db:
            db.execute("CREATE TEMP TABLE IF NOT EXISTS _probe (x)")

    # ------------------------------------------------------------------ reading

    def get(self, version_id: int) -> Version:
        row = self._db().execute("SELECT * FROM versions WHERE id = ?", (version_id,)).fetchone()
        if row is None:
            raise JournalError(f"no file version {version_id}")
        return Version.from_row(row)

    def find(self, path: str, sha256: str) -> Version | None:
        row = (
            self._db()
            .execute("SELECT * FROM versions WHERE path = ? AND sha256 = ?", (path, sha256))
            .fetchone()
        )
        return Version.from_row(row) if row else None

    def latest_for_path(self, path: str) -> Version | None:
        row = (
            self._db()
            .execute("SELECT * FROM versions WHERE path = ? ORDER BY id DESC LIMIT 1", (path,))
            .fetchone()
        )
        return Version.from_row(row) if row else None

    def by_kuhr_id(self, behandlerkravmelding_id: str) -> Version | None:
        row = (
            self._db()
            .execute(
                "SELECT * FROM versions WHERE behandlerkravmelding_id = ?",
                (behandlerkravmelding_id,),
            )
            .fetchone()
        )
        return Version.from_row(row) if row else None

    def versions(
        self, states: Iterable[State] | None = None, *, limit: int | None = None
    ) -> list[Version]:
        sql = "SELECT * FROM versions"
        args: list[Any] = []
        if states is not None:
            wanted = [s.value for s in states]
            sql += f" WHERE state IN ({','.join('?' * len(wanted))})"
            args += wanted
        sql += " ORDER BY updated_at DESC, id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        return [Version.from_row(r) for r in self._db().execute(sql, args)]

    def due(
        self,
        states: Iterable[State],
        *,
        now: float | None = None,
        limit: int | None = None,
        skip: Collection[int] = (),
        failed_below: int | None = None,
    ) -> list[Version]:
        """Versions in these states whose next step is due and that nobody else holds, the
        longest-waiting first: at most `limit`, none of `skip` (already being worked on), and
        failed ones only while they have had fewer than `failed_below` attempts.

        Rows are read lazily and stop at `limit`, so a scheduler waking often does not parse
        every due row each time (that grew with the square of a burst of files). Each state is
        read in the order of its (state, due_at) index and the states are merged here: one
        query over all of them made SQLite sort every due row first (2.6 ms per call with a
        thousand files waiting, once per finished step)."""
        now = self._clock() if now is None else now
        cursors = []
        for state in states:
            sql = "SELECT * FROM versions WHERE state = ? AND due_at <= ?"
            args: list[Any] = [state.value, now]
            if failed_below is not None and state is State.FAILED:
                sql += " AND attempts < ?"
                args.append(failed_below)
            sql, args = self._in_part(sql, args)
            cursors.append(self._db().execute(sql + " ORDER BY due_at, id", args))
        dead: dict[str, bool] = {}
        found: list[Version] = []
        try:
            for row in heapq.merge(*cursors, key=_due_order):
                if row["id"] in skip:
                    continue
                owner = row["lease_owner"]
                if (
                    row["lease_until"] < now
                    or owner == self.owner
                    or dead.setdefault(owner, owner_is_dead(owner))
                ):
                    found.append(Version.from_row(row))
                    if limit is not None and len(found) >= limit:
                        break
        finally:
            for cursor in cursors:
                cursor.close()
        return found

    def final_at_kuhr(
        self, states: Iterable[State], *, after_id: int = 0, limit: int = 500
    ) -> list[Version]:
        """Versions in these states that KUHR has (a behandlerkravmelding_id) and nothing is
        scheduled for (due never), by id after `after_id`: one page of at most `limit`."""
        wanted = [s.value for s in states]
        rows = self._db().execute(
            f"SELECT * FROM versions WHERE state IN ({','.join('?' * len(wanted))}) "
            "AND behandlerkravmelding_id IS NOT NULL AND due_at >= ? AND id > ? "
            "ORDER BY id LIMIT ?",
            (*wanted, NEVER, after_id, limit),
        )
        return [Version.from_row(row) for row in rows]

    def next_due(self, states: Iterable[State]) -> float | None:
        """When the earliest of these versions is due (None: none is scheduled)."""
        wanted = [s.value for s in states]
        sql, args = self._in_part(
            f"SELECT MIN(due_at) FROM versions WHERE state IN ({','.join('?' * len(wanted))})",
            wanted,
        )
        row = self._db().execute(sql, args).fetchone()
        return row[0] if row else None

    def counts(self) -> dict[str, int]:
        rows = self._db().execute("SELECT state, COUNT(*) FROM versions GROUP BY state")
        return {state: n for state, n in rows}

    def events(self, version_id: int) -> list[Event]:
        rows = self._db().execute(
            "SELECT at, state, note FROM events WHERE version_id = ? ORDER BY rowid", (version_id,)
        )
        return [Event(at, State(state), note) for at, state, note in rows]

    def oldest_unfinished(self) -> float | None:
        """Creation time of the oldest version not yet in a terminal state (for metrics)."""
        done = [s.value for s in TERMINAL_STATES]
        marks = ",".join("?" * len(done))
        row = (
            self._db()
            .execute(f"SELECT MIN(created_at) FROM versions WHERE state NOT IN ({marks})", done)
            .fetchone()
        )
        return row[0] if row else None

    def mark(self, name: str) -> float | None:
        """A named moment the journal keeps across runs (e.g. when KUHR was last swept)."""
        row = self._db().execute("SELECT value FROM marks WHERE name = ?", (name,)).fetchone()
        return row[0] if row else None

    def set_mark(self, name: str, value: float) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO marks (name, value) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (name, value),
            )

    # ------------------------------------------------------------------ writing

    def record_seen(
        self,
        path: str,
        sha256: str,
        size: int,
        *,
        detail: dict[str, Any] | None = None,
        due_at: float = 0.0,
    ) -> tuple[Version, bool]:
        """Register a file version; returns (version, created). An existing (path, sha256)
        is returned as it is: the same bytes at the same path are the same version. A new
        one starts with `detail` and is due at `due_at` (one transaction for both)."""
        now = self._clock()
        with self._tx() as db:
            row = db.execute(
                "SELECT * FROM versions WHERE path = ? AND sha256 = ?", (path, sha256)
            ).fetchone()
            if row is not None:
                return Version.from_row(row), False
            cur = db.execute(
                "INSERT INTO versions "
                "(path, sha256, size, state, created_at, updated_at, detail, due_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    path,
                    sha256,
                    size,
                    State.SEEN.value,
                    now,
                    now,
                    EMPTY.changed(detail).to_json() if detail else "{}",
                    due_at,
                ),
            )
            version_id = cur.lastrowid
            db.execute(
                "INSERT INTO events (version_id, at, state, note) VALUES (?, ?, ?, ?)",
                (version_id, now, State.SEEN.value, None),
            )
            row = db.execute("SELECT * FROM versions WHERE id = ?", (version_id,)).fetchone()
            return Version.from_row(row), True

    def sent_version_with_content(self, sha256: str, *, excluding: int) -> Version | None:
        """An earlier version with the same bytes that reached KUHR (or is on its way)."""
        sent = [s.value for s in SENT_STATES]
        row = (
            self._db()
            .execute(
                f"SELECT * FROM versions WHERE sha256 = ? AND id != ? AND state IN "
                f"({','.join('?' * len(sent))}) ORDER BY id LIMIT 1",
                (sha256, excluding, *sent),
            )
            .fetchone()
        )
        return Version.from_row(row) if row else None

    def transition(
        self,
        version_id: int,
        state: State,
        *,
        note: str | None = None,
        expect: Iterable[State] | None = None,
        detail: dict[str, Any] | None = None,
        receipts: bool = False,
        via: State | None = None,
        **fields: Any,
    ) -> Version:
        """Move a version to `state` (committed before returning), with an event row.

        `expect`: the states it may come from; anything else raises (someone else moved it).
        `via`: a state passed through on the way, in the same transaction (its own event row).
        `detail`: fields of its `Detail` to change (bridge.flow.records). Other keyword fields
        are columns.
        `receipts`: the caller writes this state's receipts next; until it calls
        `receipts_written`, the version is owed them.
        """
        allowed = {
            "praksis_id",
            "behandlerkravmelding_id",
            "duplicate_of",
            "attempts",
            "due_at",
            "submit_started_at",
            "claim_digest",
            "lease_until",
            "lease_owner",
        }
        unknown = set(fields) - allowed
        if unknown:
            raise JournalError(f"unknown journal fields {sorted(unknown)}")
        now = self._clock()
        with self._tx() as db:
            row = db.execute("SELECT * FROM versions WHERE id = ?", (version_id,)).fetchone()
            if row is None:
                raise JournalError(f"no file version {version_id}")
            current = Version.from_row(row)
            if expect is not None and current.state not in set(expect):
                raise JournalError(
                    f"version {version_id} is {current.state}, expected one of "
                    f"{sorted(s.value for s in expect)}"
                )
            try:
                merged = current.detail.changed(detail) if detail else current.detail
            except TypeError as exc:
                raise JournalError(f"unknown detail of a file version: {exc}") from None
            sets = ["state = ?", "updated_at = ?"]
            args: list[Any] = [state.value, now]
            if detail:  # else the stored JSON stays as it is, not decoded and encoded again
                sets.append("detail = ?")
                args.append(merged.to_json())
            if receipts:
                fields = {**fields, "receipts_pending": 1}
                self._written_at_release.discard(version_id)  # owed again: these are new
            for name, value in fields.items():
                sets.append(f"{name} = ?")
                args.append(value)
            db.execute(f"UPDATE versions SET {', '.join(sets)} WHERE id = ?", (*args, version_id))
            if via is not None:
                db.execute(
                    "INSERT INTO events (version_id, at, state, note) VALUES (?, ?, ?, ?)",
                    (version_id, now, via.value, None),
                )
            if state != current.state or note:
                db.execute(
                    "INSERT INTO events (version_id, at, state, note) VALUES (?, ?, ?, ?)",
                    (version_id, now, state.value, note),
                )
            return replace(current, state=state, updated_at=now, detail=merged, **fields)

    def receipts_written(self, *version_ids: int) -> None:
        """These versions' receipts are on disk (one transaction for all of them). For a
        version whose lease this process holds, it is said in the commit that releases the
        lease (one commit per step fewer): killed before that, the receipts are written again
        on the next start (the same bytes), as for a kill just before this call."""
        held = self._leased
        now = [i for i in version_ids if i not in held]
        self._written_at_release.update(i for i in version_ids if i in held)
        if not now:
            return
        with self._tx() as db:
            db.executemany(
                "UPDATE versions SET receipts_pending = 0 WHERE id = ?", [(i,) for i in now]
            )

    def receipts_owed(self, *, skip: Collection[int] = ()) -> list[Version]:
        """Versions whose receipts a process did not get to write (it was killed, or the
        folder could not be written), that nobody alive is working on."""
        now = self._clock()
        sql, args = self._in_part("SELECT * FROM versions WHERE receipts_pending = 1", [])
        rows = self._db().execute(sql + " ORDER BY id", args)
        return [
            Version.from_row(row)
            for row in rows
            if row["id"] not in skip
            and (
                row["lease_until"] < now
                or row["lease_owner"] == self.owner
                or owner_is_dead(row["lease_owner"])
            )
        ]

    def acquire(self, version_id: int, *, seconds: float) -> bool:
        """Take (or renew) the lease on a version; False if a live owner holds it."""
        now = self._clock()
        with self._tx() as db:
            row = db.execute(
                "SELECT lease_owner, lease_until FROM versions WHERE id = ?", (version_id,)
            ).fetchone()
            if row is None:
                return False
            owner, until = row
            if until >= now and owner != self.owner and not owner_is_dead(owner):
                return False
            db.execute(
                "UPDATE versions SET lease_owner = ?, lease_until = ? WHERE id = ?",
                (self.owner, now + seconds, version_id),
            )
        self._leased.add(version_id)
        return True

    def release(self, version_id: int) -> None:
        self._leased.discard(version_id)
        written = version_id in self._written_at_release
        self._written_at_release.discard(version_id)
        with self._tx() as db:
            db.execute(
                "UPDATE versions SET lease_owner = NULL, lease_until = 0"
                f"{', receipts_pending = 0' if written else ''} "
                "WHERE id = ? AND lease_owner = ?",
                (version_id, self.owner),
            )

    def requeue(self, version_id: int, *, note: str) -> Version:
        """Operator's retry: a failed or rejected version goes back to the start. The state is
        checked in the same transaction as the move, so two retries of one version (two clicks,
        two operators) re-queue it once: the second finds it no longer failed or rejected."""
        version = self.get(version_id)
        if version.state not in RETRYABLE_STATES:
            raise JournalError(
                f"{version.path} is {version.state}; only failed or rejected files can be retried"
            )
        return self.transition(
            version_id, State.SEEN, note=note, expect=RETRYABLE_STATES, attempts=0, due_at=0.0
        )

    def requeue_all(self, *, note: str, states: Iterable[State] = ()) -> list[Version]:
        """Operator's "retry all": every failed or rejected version (or those of `states`, a
        subset) goes back to the start, each once; versions moved meanwhile are left alone."""
        wanted = set(states) & RETRYABLE_STATES if states else RETRYABLE_STATES
        moved = []
        for version in self.versions(wanted):
            try:
                moved.append(self.requeue(version.id, note=note))
            except JournalError:
                continue  # someone else moved it in between
        return moved

    # ------------------------------------------------------------------ the operator's view

    def search(
        self,
        text: str | None = None,
        states: Iterable[State] | None = None,
        *,
        limit: int | None = None,
    ) -> list[Version]:
        """Versions whose path contains `text` (case-insensitive) or whose
        behandlerkravmeldingId or sha256 starts with it, in `states`; newest change first."""
        sql = "SELECT * FROM versions WHERE 1 = 1"
        args: list[Any] = []
        if states is not None:
            wanted = [s.value for s in states]
            sql += f" AND state IN ({','.join('?' * len(wanted))})"
            args += wanted
        if text:
            escaped = _escape_like(text)
            sql += (
                " AND (path LIKE ? ESCAPE '!' OR behandlerkravmelding_id LIKE ? ESCAPE '!'"
                " OR sha256 LIKE ? ESCAPE '!')"
            )
            args += [f"%{escaped}%", f"{escaped}%", f"{escaped.lower()}%"]
        sql += " ORDER BY updated_at DESC, id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        return [Version.from_row(r) for r in self._db().execute(sql, args)]

    def count_due(self, states: Iterable[State], *, now: float | None = None) -> int:
        """How many versions `due` would offer now, counted in SQL (for a gauge: a lease of a
        process that died is counted as held until it expires)."""
        now = self._clock() if now is None else now
        wanted = [s.value for s in states]
        sql, args = self._in_part(
            f"SELECT COUNT(*) FROM versions WHERE state IN ({','.join('?' * len(wanted))})"
            " AND due_at <= ? AND (lease_until < ? OR lease_owner = ?)",
            [*wanted, now, now, self.owner],
        )
        return int(self._db().execute(sql, args).fetchone()[0])

    def stamps(self, states: Iterable[State]) -> list[tuple[int, float, float]]:
        """(id, created_at, updated_at) of the versions in `states`: enough to tell which of
        them changed since a reader last parsed them (their details are not read)."""
        wanted = [s.value for s in states]
        rows = self._db().execute(
            "SELECT id, created_at, updated_at FROM versions "
            f"WHERE state IN ({','.join('?' * len(wanted))})",
            wanted,
        )
        return [(int(i), float(c), float(u)) for i, c, u in rows]

    def history(self, version_id: int) -> list[tuple[Version, list[Event]]]:
        """Every version of this version's path (newest first), each with its events: what
        happened to the file, content by content."""
        version = self.get(version_id)
        rows = self._db().execute(
            "SELECT * FROM versions WHERE path = ? ORDER BY id DESC", (version.path,)
        )
        return [(v, self.events(v.id)) for v in (Version.from_row(r) for r in rows)]

    def events_since(
        self, after_rowid: int, states: Iterable[State]
    ) -> list[tuple[int, Version, Event]]:
        """Events in `states` recorded after event row `after_rowid`, oldest first, each with
        its row id and its version (for notifications: what happened since the last look)."""
        wanted = [s.value for s in states]
        rows = (
            self._db()
            .execute(
                "SELECT rowid, version_id, at, state, note FROM events "
                f"WHERE rowid > ? AND state IN ({','.join('?' * len(wanted))}) ORDER BY rowid",
                (after_rowid, *wanted),
            )
            .fetchall()
        )
        return [
            (rowid, self.get(version_id), Event(at, State(state), note))
            for rowid, version_id, at, state, note in rows
        ]

    def last_event_rowid(self) -> int:
        row = self._db().execute("SELECT MAX(rowid) FROM events").fetchone()
        return int(row[0] or 0)
