"""`bkm-bridge migrate`: one-off bulk migration of an archive of legacy claims.

Discovery walks folders and `.zip` archives as a stream (nothing per file is kept in memory);
a zip member is read in place and is known to the journal as `ZIP!MEMBER`. A real run feeds
the watcher's own `Pipeline` (same journal semantics: every version is submitted at most once,
an interrupted run resumes, a second run submits nothing new) through a bounded window of
unfinished versions, converts in a process pool and submits with bounded concurrency and an
optional rate limit; a large archive is sent from several processes, a share each
(bridge.migrate.senders). `--dry-run` converts in the pool and writes what `convert --out`
writes.

A migration has its own journal (`migrate-<environment>.db` beside the watcher's): a watcher
sharing the state folder could otherwise pick up a zip member it cannot read. One run at a
time holds it (an OS lock), so it takes no leases, and a killed run resumes at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import hashlib
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from bridge.config import ConfigError, Settings
from bridge.core.outcomes import State, Status
from bridge.core.timezone import OSLO
from bridge.files.discovery import Source, count_sources, discover, receipt_source
from bridge.files.sources import SourceReader
from bridge.files.takstcache import cache_file, default_cache_dir
from bridge.flow.assembly import (
    Served,
    kuhr_parts,
    migrate_journal_path,
    pipeline_options,
    prechecker,
    serve_sandbox,
)
from bridge.flow.journal import Journal, Version, part_of
from bridge.flow.options import PipelineOptions, run_inline
from bridge.flow.pipeline import Pipeline
from bridge.migrate.dry_run import DryResult, DryRunSettings, dry_run, dry_setup, look_up
from bridge.migrate.options import MigrateOptions, MigrationError
from bridge.migrate.pool import (
    ConversionPool,
    ConvertSettings,
    pool_workers,
)
from bridge.migrate.rate import rate_limited_client
from bridge.migrate.report import ReportRow, ReportWriter, row_from_version
from bridge.migrate.senders import send_in_processes
from bridge.migrate.tally import RunJournal, Tally, default_owner_for, exclusive
from bridge.sandbox.child import SandboxChildError

log = logging.getLogger("bridge.migrate")
# Several sending processes once an archive has this many files, at most this many.
SENDERS_FROM = 1000
MAX_SENDERS = 4


# --------------------------------------------------------------------------- the run


@dataclass
class RunResult:
    tally: Tally
    summary: dict[str, Any]  # the JSON summary (also written with --report)
    interrupted: bool
    report_paths: tuple[Path, ...] = ()

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 130
        return 1 if self.summary.get("failed") or self.summary.get("unfinished") else 0


def _check_receipts_place(options: MigrateOptions) -> None:
    """Receipts beside the originals need writable folders and no zip archives."""
    if options.dry_run or options.receipts_dir is not None:
        return
    for given in options.paths:
        path = Path(given)
        folder = path if path.is_dir() else path.parent
        if path.suffix.lower() == ".zip" or (path.is_dir() and _has_zip(path)):
            raise MigrationError(
                f"{given} holds zip archives, which cannot be written into: give --receipts DIR "
                "(the receipts mirror the archive's tree there)"
            )
        if not os.access(folder, os.W_OK):
            raise MigrationError(
                f"{folder} is read-only: give --receipts DIR (the receipts mirror its tree there)"
            )


def _has_zip(folder: Path) -> bool:
    for _dirpath, _dirs, files in os.walk(folder):
        if any(name.lower().endswith(".zip") for name in files):
            return True
    return False


class Migration:
    """One run of `bkm-bridge migrate`. `run()` blocks until done; `stop()` (from any thread,
    e.g. a signal handler) ends it early: intake stops, steps in flight finish, the report is
    written with every file's state at that moment, and the next run resumes."""

    def __init__(
        self,
        settings: Settings,
        options: MigrateOptions,
        *,
        on_row: Callable[[Any], None] | None = None,
    ) -> None:
        if not options.paths:
            raise MigrationError("give the folders, files or zip archives to migrate")
        for given in options.paths:
            if not Path(given).exists():
                raise MigrationError(f"{given} does not exist")
        if options.out_dir is not None and not options.dry_run:
            raise MigrationError("--out is for --dry-run: a real run's claims are in the receipts")
        if options.concurrency < 1:
            raise MigrationError("--concurrency must be at least 1")
        if options.senders is not None and options.senders < 1:
            raise MigrationError("--senders must be at least 1")
        _check_receipts_place(options)
        self.settings = settings
        self.options = options
        self.tally = Tally()
        self.on_row = on_row
        self.journal_path = (
            None if options.dry_run else migrate_journal_path(settings, options.state_dir)
        )
        self.dry_note = ""  # a dry run: how praksis and pre-control were checked
        self._stop_requested = threading.Event()
        self._started_wall = time.time()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    # ------------------------------------------------------------------ contract

    @property
    def stopping(self) -> bool:
        return self._stop_requested.is_set()

    @property
    def started_wall(self) -> float:
        """When `run()` started (versions created since are this run's new ones)."""
        return self._started_wall

    def stop(self) -> None:
        self._stop_requested.set()
        self.tally.stopping = True
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop.set)

    def run(self) -> RunResult:
        started_wall = self._started_wall = time.time()
        counter = threading.Thread(target=self._count, name="migrate-count", daemon=True)
        counter.start()
        if self.options.dry_run:
            writer, interrupted = self._dry(started_wall)
        else:
            writer, interrupted = asyncio.run(self._real(started_wall))
        self.tally.finished = time.monotonic()
        seconds = max(self.tally.elapsed(), 1e-9)
        processed = self.tally.done if not self.options.dry_run else writer.summary.files
        meta = {
            "dry_run": self.options.dry_run,
            "environment": None if self.options.dry_run else self.settings.kuhr.environment.value,
            "journal": str(self.journal_path) if self.journal_path else None,
            "started": _iso(started_wall),
            "finished": _iso(time.time()),
            "seconds": round(seconds, 3),
            "new_versions": self.tally.new,
            "files_per_second": round(self.tally.new_done / seconds, 1)
            if not self.options.dry_run
            else round(processed / seconds, 1),
            "interrupted": interrupted,
        }
        if self.options.dry_run:
            meta["checked"] = self.dry_note
        summary = writer.close(meta)
        return RunResult(
            self.tally, summary, interrupted, writer.paths if writer.paths is not None else ()
        )

    def _count(self) -> None:
        try:
            self.tally.total = count_sources(
                self.options.paths, self.options.dates, self._stop_requested
            )
        except Exception:  # only the display's total; the run itself reports every file
            log.exception("counting the files failed")

    # ------------------------------------------------------------------ dry run

    def _dry(self, started_wall: float) -> tuple[Any, bool]:

        settings = self.settings
        o = self.options
        writer = ReportWriter(o.report, started_wall)
        praksis_id = o.praksis_id or settings.watch.praksis_id
        lookup = look_up(
            settings,
            need_list=praksis_id is None,
            clock=o.sandbox_clock,
            speed=o.sandbox_speed,
        )
        self.dry_note = lookup.note
        if lookup.praksiser is None and praksis_id is None:
            log.warning("dry run: %s; files needing it: PRAKSIS_NOT_CHECKED", lookup.note)
        p = settings.precheck
        environment = settings.kuhr.environment.value
        dry = DryRunSettings(
            praksis_id=praksis_id,
            praksis_rules=tuple(settings.praksis.rules),
            write_json=o.out_dir is not None,
            praksiser=lookup.praksiser,
            precheck_mode=str(p.mode),
            precheck_cache=cache_file(
                p.cache_dir or default_cache_dir(settings.watch.state_dir), environment
            ),
            precheck_snapshot=environment == "sandbox",
            precheck_fagomraade=p.fagomraade,
            precheck_now=lookup.now,
        )
        workers = pool_workers(o.workers)
        pool = ConversionPool(workers, self._convert_settings(), functools.partial(dry_setup, dry))
        try:

            def on_result(source: Source, result: DryResult, written: Path | None) -> None:
                self.tally.discovered += 1
                self.tally.done += 1
                self.tally.outcomes[result.outcome] += 1
                row = ReportRow(
                    file=source.key,
                    outcome=result.outcome,
                    praksis_id=result.praksis_id,
                    regninger=result.regninger if result.outcome == Status.KONVERTERT else None,
                    problems=result.problems,
                    receipt=str(written) if written else None,
                    at=time.time(),
                )
                writer.add(row)
                if self.on_row is not None:
                    self.on_row(row)

            dry_run(
                discover(o.paths, o.dates),
                pool,
                workers=workers,
                roots=len(o.paths),
                out_dir=o.out_dir,
                on_result=on_result,
                stop=self._stop_requested,
            )
        finally:
            pool.shutdown(cancel_futures=True)
        return writer, self._stop_requested.is_set()

    def _convert_settings(self) -> ConvertSettings:
        s = self.settings
        allow = self.options.allow_mismatch
        return ConvertSettings(
            allow_mismatch=s.watch.allow_mismatch if allow is None else allow,
            max_bytes=s.xml.max_file_bytes,
            xsd_dirs=tuple(s.xml.xsd_dirs),
        )

    # ------------------------------------------------------------------ real run

    async def _real(self, started_wall: float) -> tuple[Any, bool]:

        assert self.journal_path is not None
        self._arm()
        with exclusive(self.journal_path):
            async with AsyncExitStack() as stack:
                served = self._serve(stack)
                senders = self._senders()
                if senders > 1:
                    RunJournal.prepare(self.journal_path)  # the schema, once, before they open it
                    await send_in_processes(self, served, senders)
                else:
                    await self.send(served)
                interrupted = self._stop_requested.is_set()
            writer = ReportWriter(self.options.report, started_wall)
            await asyncio.to_thread(self._write_rows, writer)
        return writer, interrupted

    def _arm(self) -> None:
        """`stop()` reaches this event loop from now on."""
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        if self._stop_requested.is_set():
            self._stop.set()

    def _serve(self, stack: AsyncExitStack) -> Served:
        """The KUHR this run sends to: an embedded sandbox is started here, for all senders."""

        o = self.options
        try:
            return serve_sandbox(self.settings, stack, clock=o.sandbox_clock, speed=o.sandbox_speed)
        except (ConfigError, SandboxChildError) as err:
            raise MigrationError(str(err)) from None

    def _senders(self) -> int:
        """Processes that send: as asked, else one per core for an archive worth their start
        (a second of start-up each), else this process alone."""
        if self.options.senders is not None:
            return self.options.senders
        cores = os.cpu_count() or 1
        if cores < 2:
            return 1
        enough = itertools.islice(
            discover(self.options.paths, self.options.dates, warn=False), SENDERS_FROM
        )
        return min(cores, MAX_SENDERS) if sum(1 for _ in enough) >= SENDERS_FROM else 1

    async def send(
        self,
        served: Served,
        part: tuple[int, int] | None = None,
        *,
        started_wall: float | None = None,
        isolate: bool = True,
    ) -> None:
        """Convert and send the discovered files: all, or one `part` in a sending process
        (which counts as new the versions created since the whole run's `started_wall`).
        `isolate`: convert in a pool of processes (see `_start`)."""
        if started_wall is not None:
            self._started_wall = started_wall
        if self._loop is None:
            self._arm()
        async with AsyncExitStack() as stack:
            pipeline, journal, reader = await self._start(stack, served, part, isolate)
            await self._drive(pipeline, journal, reader)

    async def _start(
        self,
        stack: AsyncExitStack,
        served: Served,
        part: tuple[int, int] | None,
        isolate: bool,
    ) -> tuple[Any, RunJournal, SourceReader]:

        settings = self.settings
        o = self.options
        shares = part[1] if part else 1
        try:
            parts = kuhr_parts(settings, served)
        except ConfigError as err:
            raise MigrationError(str(err)) from None
        target, speed = parts.target, parts.speed
        if part is None or part[0] == 0:
            log.info("bkm-bridge migrate → %s (%s)", target.label, target.api_url)
        client = {**parts.client_options, "max_concurrency": max(1, -(-o.concurrency // shares))}
        rate = o.rate / shares if o.rate else None
        kuhr = rate_limited_client(target.api_url, parts.tokens, rate, client)
        stack.push_async_callback(kuhr.aclose)
        assert self.journal_path is not None
        journal = RunJournal(
            self.journal_path,
            owner=default_owner_for(self.journal_path),
            tally=self.tally,
            follow=o.follow,
            attempts=o.max_attempts,
            started=self._started_wall,
            part=part,
        )
        stack.callback(journal.close)
        reader = SourceReader()
        stack.callback(reader.close)
        converter = None  # the pipeline's own, on this process's event loop (below)
        workers = 1
        if isolate or o.workers is not None:
            # This process submits on one core; with several senders, they share the rest.
            workers = max(1, pool_workers(o.workers, leave=shares) // shares)
            pool = await asyncio.to_thread(ConversionPool, workers, self._convert_settings())
            stack.callback(pool.shutdown, cancel_futures=True)
            converter = pool.convert
        # Else (a sending process's first start): no process hop per file and no workers'
        # memory. A file that crashes the converter takes the sending process down instead;
        # it is started again with `isolate`, and the pool then names that file.
        options = self._pipeline_options(
            speed, workers, reader, converter, client["max_concurrency"]
        )
        if part is not None:  # one of several processes, one per core: no threads' handoffs
            options = dataclasses.replace(options, offload=run_inline)
        pipeline = Pipeline(journal, kuhr, options, prechecker=prechecker(settings, target))
        return pipeline, journal, reader

    def _pipeline_options(
        self, speed: float, workers: int, reader: SourceReader, converter: Any, sending: int
    ) -> PipelineOptions:
        s = self.settings
        o = self.options
        allow = o.allow_mismatch
        return pipeline_options(
            s,
            time_scale=speed,
            follow="control",
            praksis_id=o.praksis_id or s.watch.praksis_id,
            receipts_dir=o.receipts_dir,
            archive_dir=None,  # an archive's originals stay where they are
            error_dir=None,
            allow_mismatch=s.watch.allow_mismatch if allow is None else allow,
            # Submissions in flight, plus room to convert the next ones meanwhile.
            concurrency=2 * sending + workers,
            track=o.follow,
            read_source=reader.read,
            receipt_source=receipt_source,
            converter=converter,
            interim_receipts=False,  # a receipt once a file is sent or final, not on the way
        )

    async def _drive(self, pipeline: Any, journal: RunJournal, reader: SourceReader) -> None:
        assert self._stop is not None
        stop_pipeline = asyncio.Event()
        worker = asyncio.create_task(pipeline.run(stop_pipeline))
        try:
            await self._intake(pipeline, journal, reader)
            while not self._stop.is_set() and not self._settled(journal):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), 0.1)
        finally:
            stop_pipeline.set()
            await worker

    async def _intake(self, pipeline: Any, journal: RunJournal, reader: SourceReader) -> None:
        """Register discovered files while fewer than `window` versions are unfinished. Two
        files with the same content never work at once: the second waits for the first to be
        sent and is then the duplicate it is (two in flight would both be POSTed)."""
        assert self._stop is not None
        window = pipeline.options.concurrency + 8
        max_bytes = self.settings.xml.max_file_bytes
        sources = discover(self.options.paths, self.options.dates)
        room = asyncio.Event()
        journal.on_rest = room.set
        while not self._stop.is_set():
            free = window - len(journal.working)
            if free <= 0:
                await self._wait(room)
                continue
            batch = await pipeline.options.offload(
                _hash_batch, sources, min(free, 64), reader, max_bytes
            )
            if not batch:
                return
            # The pipeline keeps every submission's latency for the watcher's metrics; a bulk
            # run has no use for them, and they would grow with the archive.
            pipeline.stats.submit_latency.clear()
            for source, size, sha in batch:
                if journal.part is not None and part_of(sha, journal.part[1]) != journal.part[0]:
                    continue  # another sending process's share
                while sha in journal.working_content and not self._stop.is_set():
                    await self._wait(room)
                if self._stop.is_set():
                    return
                version, created = pipeline.offer_content(source.key, sha, size, source.root)
                self.tally.discovered += 1
                if created:
                    self.tally.new += 1
                else:
                    version = self._again(journal, version)
                journal.admit(version)

    async def _wait(self, room: asyncio.Event) -> None:
        """Until a working version comes to rest (or the run stops; at most a second)."""
        assert self._stop is not None
        room.clear()
        waiters = {asyncio.ensure_future(room.wait()), asyncio.ensure_future(self._stop.wait())}
        await asyncio.wait(waiters, timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
        for waiter in waiters:
            waiter.cancel()

    def _again(self, journal: RunJournal, version: Version) -> Version:
        """A version an earlier run left failed or unanswered gets this run's attempts."""
        if version.state in (State.FAILED, State.SUBMITTING) and version.attempts:
            return journal.transition(
                version.id,
                version.state,
                attempts=0,
                due_at=0.0,
                note="taken up again by a new migrate run",
            )
        return version

    def _settled(self, journal: RunJournal) -> bool:
        """Nothing is left to do at this run's depth (exact, from the journal)."""
        counts = journal.counts()
        if counts.get(State.SEEN.value) or counts.get(State.CONVERTED.value):
            return False
        patient = [State.SUBMITTING, State.FAILED]
        if self.options.follow:
            patient.append(State.SUBMITTED)
        waiting = sum(counts.get(s.value, 0) for s in patient)
        if waiting == 0:
            return True
        if waiting > 1000:
            return False
        limit = self.options.max_attempts
        return all(v.attempts >= limit for v in journal.versions(patient))

    def _write_rows(self, writer: Any) -> None:
        """Every discovered file's row, from the journal (a second walk: nothing per file was
        kept in memory during the run)."""

        assert self.journal_path is not None
        environment = self.settings.kuhr.environment.value
        journal = Journal(self.journal_path, owner=default_owner_for(self.journal_path))
        try:
            for source in discover(self.options.paths, self.options.dates, warn=False):
                version = journal.latest_for_path(source.key)
                row = row_from_version(
                    source.key,
                    version,
                    environment=environment,
                    source=receipt_source(source.key),
                    receipts_dir=self.options.receipts_dir,
                    root=source.root,
                )
                writer.add(row)
                if self.on_row is not None:
                    self.on_row(row)
        finally:
            journal.close()


def _hash_batch(
    sources: Iterator[Source], n: int, reader: SourceReader, max_bytes: int
) -> list[tuple[Source, int, str]]:
    """The next `n` sources with (size, sha256); one that cannot be read gets a placeholder
    digest (its version is rejected as unreadable by the pipeline, with a receipt)."""
    out = []
    for source in sources:
        try:
            size, sha = reader.size_and_sha256(source.key)
        except OSError as err:
            log.warning("cannot read %s: %s", Path(source.key).name, err.strerror or err)
            marker = f"unreadable:{source.key}:{type(err).__name__}"
            size, sha = 0, hashlib.sha256(marker.encode()).hexdigest()
        out.append((source, size, sha))
        if len(out) >= n:
            break
    return out


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, OSLO).isoformat(timespec="seconds")
