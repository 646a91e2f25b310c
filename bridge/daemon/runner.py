"""The daemon behind `bkm-bridge watch`, the Windows service and the systemd unit.

`Runner.start()` returns once the bridge is running (KUHR reachable or sandbox started, folders
locked, intake started); `Runner.stop()` stops intake, lets in-flight steps finish (each step is
short and checkpointed in the journal) and returns within a few seconds. `run_once()` is the
same machinery for `watch --once`: take what is in the folders, follow every claim to its
final control result, write the receipts, return an exit code.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from bridge.config import Environment, Settings
from bridge.core.outcomes import FINE_OUTCOMES, State
from bridge.core.receipts import outcome_of
from bridge.daemon.takster_refresh import TaksterRefresh, start_takster_refresh
from bridge.daemon.watcher import FolderWatcher, IntakeOptions
from bridge.files.fsutil import remove_abandoned_temps
from bridge.files.production import mark_production_folders
from bridge.files.receipts import is_receipt_name
from bridge.flow.assembly import (
    open_kuhr,
    open_watch_journal,
    pipeline_options,
    prechecker,
)
from bridge.flow.journal import Journal
from bridge.flow.options import inline_when_small
from bridge.flow.pipeline import Pipeline
from bridge.flow.sweep import Sweeper, sweep_periodically
from bridge.kuhr.client import AsyncKuhrClient
from bridge.kuhr.target import Target

if TYPE_CHECKING:  # the health server is imported when it is started (see below)
    from bridge.daemon.health import RunningHealth
    from bridge.daemon.notify import Notifier

log = logging.getLogger("bridge.runner")


@dataclass(frozen=True)
class RunOptions:
    folders: tuple[Path, ...]
    once: bool = False
    sandbox_clock: datetime | None = None
    sandbox_speed: float | None = None  # None: the configured kuhr.sandbox_speed
    drain_timeout: float = 120.0  # --once: how long to wait for files still being written


class Runner:
    def __init__(self, settings: Settings, options: RunOptions) -> None:
        if not options.folders:
            raise ValueError("no folders to watch: give them as arguments or [watch] folders")
        self.settings = settings
        self.options = options
        self.started = threading.Event()
        self.exit_code: int | None = None
        self.error: BaseException | None = None
        self.pipeline: Pipeline | None = None
        self.journal: Journal | None = None
        self.watcher: FolderWatcher | None = None
        self.target: Target | None = None  # once resolved
        self.health: RunningHealth | None = None  # when watch.http_port is set
        self.notifier: Notifier | None = None  # when [notify] is configured
        self.takster: TaksterRefresh | None = None  # keeps the takst tables fresh
        self.sweeper: Sweeper | None = None  # when kuhr.sweep_interval is set
        self.environment = settings.kuhr.environment.value
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._stop_requested = threading.Event()
        # `run_once`: how many of the files it handled ended in each status word.
        self.summary: dict[str, int] = {}
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ contract

    def start(self, timeout: float = 60.0) -> None:
        """Run in a background thread; return once running (raise if start-up failed)."""
        self._thread = threading.Thread(target=self._thread_main, name="bkm-bridge", daemon=True)
        self._thread.start()
        while not self.started.wait(0.05):
            if not self._thread.is_alive():
                break
            timeout -= 0.05
            if timeout <= 0:
                raise TimeoutError("bkm-bridge did not start in time")
        if self.error is not None:
            raise self.error

    def stop(self, timeout: float = 10.0) -> None:
        """Stop intake, finish the steps in flight, close everything. Idempotent; nothing
        to do before `start`."""
        if self._thread is None:
            return
        self.request_stop()
        self._thread.join(timeout)

    def request_stop(self) -> None:
        """Ask the bridge to stop, without waiting: safe in a signal handler, and also while
        it is still starting (it then stops as soon as it runs)."""
        self._stop_requested.set()
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stop.set)

    def responsive(self, timeout: float = 5.0) -> bool:
        """True when the running bridge's event loop answers within `timeout` seconds (the
        systemd watchdog and the health endpoint ask)."""
        loop, thread = self._loop, self._thread
        if loop is None or loop.is_closed() or thread is None or not thread.is_alive():
            return False
        answered = threading.Event()
        try:
            loop.call_soon_threadsafe(answered.set)
        except RuntimeError:  # closed in between
            return False
        return answered.wait(timeout)

    def wait(self) -> int:
        if self._thread is not None:
            self._thread.join()
        if self.error is not None:
            raise self.error
        return self.exit_code or 0

    def run_once(self) -> int:
        """`watch --once` in the calling thread."""
        self.options = replace(self.options, once=True)
        self._thread_main()
        if self.error is not None:
            raise self.error
        return self.exit_code or 0

    # ------------------------------------------------------------------ inside

    def _thread_main(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as err:  # reported to the thread that called start()/run_once()
            self.error = err
            self.started.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        if self._stop_requested.is_set():  # asked before the loop was there to tell
            self._stop.set()
        async with self._running() as pipeline:
            if self.options.once:
                self.exit_code = await self._once(pipeline)
                return
            self.started.set()
            await pipeline.run(self._stop)
            self.exit_code = 0

    async def _once(self, pipeline: Pipeline) -> int:
        assert self.watcher is not None  # made before the pipeline runs
        handed = await asyncio.to_thread(self.watcher.drain, self.options.drain_timeout)
        await asyncio.sleep(0)  # let the offers scheduled from the intake thread run
        self.started.set()
        await pipeline.run_until_settled()
        assert self.journal is not None
        failed = 0
        no_receipt: list[str] = []
        self.summary = {}
        for path in handed:
            version = self.journal.latest_for_path(str(path))
            if version is None:
                continue
            word = (
                "ignorert"
                if version.state is State.SKIPPED
                else outcome_of(pipeline.delivery.facts(version)).status
            )
            self.summary[word] = self.summary.get(word, 0) + 1
            if word not in FINE_OUTCOMES:  # the exit-code rule: someone must act on it
                failed += 1
            if version.receipts_pending:
                no_receipt.append(path.name)
        if no_receipt:
            log.error(
                "%d file(s) have no up-to-date receipt (see the lines above): %s",
                len(no_receipt),
                ", ".join(no_receipt[:20]) + (" …" if len(no_receipt) > 20 else ""),
            )
        return 1 if failed or no_receipt else 0

    @asynccontextmanager
    async def _running(self) -> AsyncIterator[Pipeline]:
        settings = self.settings
        watch = settings.watch
        async with AsyncExitStack() as stack:
            parts = open_kuhr(
                settings,
                stack,
                clock=self.options.sandbox_clock,
                speed=self.options.sandbox_speed,
            )
            target = self.target = parts.target
            log.info("bkm-bridge → %s (%s)", target.label, target.api_url)
            if target.is_sandbox:
                log.warning("SANDBOX: claims go to a KUHR stand-in, never to Helfo")
            kuhr = parts.async_client()
            stack.push_async_callback(kuhr.aclose)
            self.journal = open_watch_journal(settings)
            stack.callback(self.journal.close)
            await asyncio.to_thread(self._remove_abandoned_temps)
            if settings.kuhr.environment is Environment.PROD:  # sandbox/dev runs then keep out
                marked = [*self.options.folders, *filter(None, [watch.receipts_dir])]
                await asyncio.to_thread(mark_production_folders, marked)
            self.pipeline = Pipeline(
                self.journal,
                kuhr,
                pipeline_options(settings, time_scale=parts.speed, offload=inline_when_small),
                prechecker=prechecker(settings, target),
            )
            if not self.options.once:
                self.takster = start_takster_refresh(settings, parts.sandbox_opne_data_url)
                if self.takster is not None:
                    stack.callback(self.takster.stop)
            self._start_sweeps(stack, kuhr, parts.speed)
            watcher = self.watcher = self._make_watcher()
            watcher.start()
            stack.callback(watcher.stop)
            if watch.http_port:
                # Here, not at the top: FastAPI and uvicorn cost ~0.9 s to import (python -X
                # importtime), paid only by a daemon that serves the status page.
                from bridge.daemon.health import start_health_server

                self.health = start_health_server(self, watch.http_host, watch.http_port)
                stack.callback(self.health.stop)
            if settings.notify.enabled and not self.options.once:
                from bridge.daemon.notify import start_notifier

                self.notifier = start_notifier(self)
                stack.callback(self.notifier.stop)
            yield self.pipeline

    def _start_sweeps(self, stack: AsyncExitStack, kuhr: AsyncKuhrClient, speed: float) -> None:
        """KUHR's overview swept on schedule for claims already final (`kuhr.sweep_interval`,
        in the sandbox's time when it runs faster); not for `--once`."""
        interval = self.settings.kuhr.sweep_interval
        if interval <= 0 or self.options.once:
            return
        assert self.pipeline is not None and self.journal is not None and self._stop is not None
        self.sweeper = Sweeper(
            self.journal,
            kuhr,
            self.pipeline.delivery,
            follow=self.settings.watch.follow,
            lease_seconds=self.pipeline.options.lease_seconds,
        )
        task = asyncio.create_task(
            sweep_periodically(self.sweeper, interval / max(1.0, speed), self._stop)
        )
        stack.push_async_callback(_cancelled, task)  # a sweep half done: the next one resumes

    def _remove_abandoned_temps(self) -> None:
        """Temp files of receipt writes a killed bridge left behind, removed before intake
        starts: in the watched folders and the receipts folder (not left for the age rule)."""
        watch = self.settings.watch
        for folder in self.options.folders:
            remove_abandoned_temps(folder, recursive=watch.recursive)
        if watch.receipts_dir is not None:
            remove_abandoned_temps(watch.receipts_dir, recursive=True)

    def _make_watcher(self) -> FolderWatcher:
        watch = self.settings.watch
        folders = tuple(Path(f).resolve() for f in self.options.folders)
        options = IntakeOptions(
            folders=folders,
            recursive=watch.recursive,
            include=tuple(watch.include),
            exclude=tuple(watch.exclude),
            quiet_seconds=watch.quiet_seconds,
            rescan_seconds=watch.rescan_seconds,
            polling=watch.polling,
            done_files=watch.done_files,
            exclusive_open=watch.exclusive_open,
            lock_folders=watch.lock_folders,
            complete_on_close=watch.completion == "auto",
        )
        loop = self._loop
        assert loop is not None and self.pipeline is not None
        pipeline = self.pipeline

        def on_complete(path: Path) -> None:
            root = _root_for(path, folders)
            loop.call_soon_threadsafe(pipeline.offer, path, root)

        return FolderWatcher(options, on_complete, is_own_file=is_receipt_name)


def _root_for(path: Path, folders: tuple[Path, ...]) -> Path | None:
    resolved = path.resolve()
    for folder in folders:
        if resolved.is_relative_to(folder):
            return folder
    return None


async def _cancelled(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
