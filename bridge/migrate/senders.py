"""A real migration spread over several sending processes, one share of the archive each.

One process can use only one core: nearly all of a claim's time in it holds the interpreter
lock (the HTTP client, the JWE, the journal's transactions and the receipts; bench/README.md).
Each sending process runs the run's own pipeline (`Migration.send`, of the class it is handed)
over its share. The
shares split the archive by content (`bridge.flow.journal.part_of`): two files with the same bytes
always meet in the same process, where the second waits for the first and is the duplicate
it is. The processes share the one
journal (SQLite in WAL mode lets one writer at a time in) without leases, because a version
is only ever scheduled by the process whose share it is in.

This process keeps what there is one of: the lock on the journal, the embedded sandbox, the
progress display (the shares' counts added up) and the report. Its helpers log through it
(`bridge.runtime.logs.forwarded_logs`), redacted where they ran. A sending process that dies
(the OOM killer, say) is started again on its share, which resumes from the journal like any
run; after `RESTARTS_ALLOWED` such deaths the run stops and says so.

A sending process reads, converts and pre-controls on its own event loop at first
(`bridge.flow.options.run_inline`): a process hop per file cost more than the conversion itself,
a thread hop only added handoffs, and each conversion process takes ~50 MB. A file that
crashes the converter (a native library's bug) then takes its sending process down; the
restarted one converts in a `ConversionPool`, which tells that file from the rest and reports
it as CONVERT_CRASHED.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import threading
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.context import SpawnContext, SpawnProcess
from typing import Any, Protocol

from bridge.config import Settings
from bridge.flow.assembly import Served
from bridge.migrate.options import MigrateOptions, MigrationError
from bridge.migrate.tally import Tally
from bridge.runtime.childproc import (
    ask_to_stop,
    end_child,
    exit_with_parent,
    ignore_interrupts,
    start_child,
)
from bridge.runtime.logs import forwarded_logs, log_to_queue
from bridge.runtime.redaction import redact_text

log = logging.getLogger("bridge.migrate")
RESTARTS_ALLOWED = 3
COUNTS_EVERY_SECONDS = 0.25  # how often a sending process reports its counts
STOP_TIMEOUT_SECONDS = 30.0  # to finish the steps in flight after being asked to stop


class ShareRun(Protocol):
    """What the coordinator needs of a migration (bridge.migrate.migration.Migration): its
    settings and options (handed to each sending process), its tally (the shares' counts are
    added up into it) and whether it is stopping. A sending process builds one of the same
    class, `type(run)(settings, options)`, and sends its share with `send`."""

    settings: Settings
    options: MigrateOptions
    tally: Tally

    @property
    def stopping(self) -> bool: ...
    @property
    def started_wall(self) -> float: ...
    def stop(self) -> None: ...
    async def send(self, served: Served, part: tuple[int, int], **how: Any) -> None: ...


@dataclass
class _Sender:
    part: tuple[int, int]
    process: SpawnProcess
    pipe: multiprocessing.connection.Connection
    counts: dict[str, Any] | None = None
    finished: bool = False


async def send_in_processes(migration: ShareRun, served: Served, count: int) -> None:
    """Run `migration` over `count` sending processes until all are done or it is stopped."""
    await asyncio.to_thread(_Coordinator(migration, served, count).run)


class _Coordinator:
    def __init__(self, migration: ShareRun, served: Served, count: int) -> None:
        self.migration = migration
        self.served = served
        self.count = count
        self.context: SpawnContext = multiprocessing.get_context("spawn")  # for the queues
        self.forwarding = contextlib.ExitStack()  # a log queue per sending process
        self.senders: list[_Sender] = []
        self.restarts = 0
        self.asked_to_stop = False

    def run(self) -> None:
        log.info("sending from %d processes, one share of the archive each", self.count)
        with self.forwarding:
            try:
                self.senders = [
                    self._start((i, self.count), isolate=False) for i in range(self.count)
                ]
                while not all(sender.finished for sender in self.senders):
                    self._pass_on_stop()
                    self._listen()
                    self.migration.tally.add_up(s.counts for s in self.senders if s.counts)
            finally:
                self._end_all()

    def _start(self, part: tuple[int, int], *, isolate: bool) -> _Sender:
        """A sending process for `part`; `isolate`: it converts in processes of its own."""
        # A queue of its own: one killed in the middle of a write leaves that queue unusable,
        # and only that one.
        logs = self.context.Queue()
        self.forwarding.enter_context(forwarded_logs(logs))
        m = self.migration
        process, pipe = start_child(
            _send_share,
            logs,
            logging.getLogger().getEffectiveLevel(),
            type(m),
            m.settings,
            m.options,
            self.served,
            part,
            m.started_wall,
            isolate,
            name=f"migrate-sender-{part[0]}",
            daemon=False,  # it starts conversion processes of its own; `exit_with_parent` ends it
        )
        return _Sender(part, process, pipe)

    def _pass_on_stop(self) -> None:
        if self.migration.stopping and not self.asked_to_stop:
            self.asked_to_stop = True
            for sender in self.senders:
                ask_to_stop(sender.pipe)

    def _listen(self) -> None:
        """Take the messages that came in (at most a quarter second's wait); restart a sending
        process that died without finishing."""
        waiting = [s for s in self.senders if not s.finished]
        handles: list[Any] = [s.pipe for s in waiting] + [s.process.sentinel for s in waiting]
        multiprocessing.connection.wait(handles, COUNTS_EVERY_SECONDS)
        for sender in waiting:
            alive = sender.process.is_alive()  # before reading: a dead one has said all it will
            self._read(sender)
            if not sender.finished and not alive:
                self._replace(sender)

    def _read(self, sender: _Sender) -> None:
        with contextlib.suppress(EOFError, OSError):
            while sender.pipe.poll():
                kind, value = sender.pipe.recv()
                if kind == "error":
                    raise MigrationError(value)
                sender.counts = value
                sender.finished = kind == "done"

    def _replace(self, sender: _Sender) -> None:
        code = sender.process.exitcode
        self.restarts += 1
        if self.restarts > RESTARTS_ALLOWED:
            raise MigrationError(
                f"sending processes died {self.restarts} times (the last with exit code "
                f"{code}); run the command again to resume"
            )
        log.warning(
            "sending process %d ended unexpectedly (exit code %s); starting it again, "
            "converting in processes of its own from now on",
            sender.part[0],
            code,
        )
        sender.pipe.close()
        fresh = self._start(sender.part, isolate=True)
        fresh.counts = sender.counts  # until it reports its own
        self.senders[self.senders.index(sender)] = fresh
        if self.asked_to_stop:
            ask_to_stop(fresh.pipe)

    def _end_all(self) -> None:
        """Ask whoever still runs to stop (on an error here), then make sure they are gone."""
        for sender in self.senders:
            ask_to_stop(sender.pipe)
        for sender in self.senders:
            end_child(sender.process, sender.pipe, STOP_TIMEOUT_SECONDS)


def _send_share(
    pipe: multiprocessing.connection.Connection,
    logs: Any,
    level: int,
    make: Callable[[Settings, MigrateOptions], ShareRun],
    settings: Settings,
    options: MigrateOptions,
    served: Served,
    part: tuple[int, int],
    started_wall: float,
    isolate: bool,
) -> None:
    """A sending process: `Migration.send` over one share, its counts reported to the parent
    every quarter second, until done or told to stop (any message, or the pipe closing)."""
    ignore_interrupts()
    exit_with_parent()
    log_to_queue(logs, level)
    migration = make(settings, options)
    said = threading.Lock()
    finished = threading.Event()

    def say(kind: str, value: Any) -> None:
        with said, contextlib.suppress(OSError):
            pipe.send((kind, value))

    def listen() -> None:
        with contextlib.suppress(EOFError, OSError):
            pipe.recv()
        migration.stop()

    def report() -> None:
        while not finished.wait(COUNTS_EVERY_SECONDS):
            say("counts", migration.tally.counts())

    threading.Thread(target=listen, name="stop-listen", daemon=True).start()
    threading.Thread(target=report, name="counts", daemon=True).start()
    try:
        asyncio.run(migration.send(served, part, started_wall=started_wall, isolate=isolate))
        last = ("done", migration.tally.counts())
    except MigrationError as err:
        last = ("error", str(err))
    except Exception as err:  # told to the parent, which ends the run with it
        log.exception("sending process %d failed", part[0])
        last = ("error", redact_text(f"a sending process failed: {type(err).__name__}: {err}"))
    finished.set()  # no counts after the last word
    say(*last)
    logs.close()
    logs.join_thread()
