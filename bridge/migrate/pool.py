"""The conversion processes of `migrate`: a pool that survives a worker's death.

Conversion is pure and CPU-bound, so a bulk run converts in processes of their own (`spawn`:
never a fork of a process with server threads). A worker killed by the OOM killer or a native
crash breaks a `ProcessPoolExecutor` for good; `ConversionPool` starts the processes again, and
`ConversionPool.convert` retries the files that were in flight, reporting one that keeps
bringing the processes down as CONVERT_CRASHED. The dry run's chunk functions live in
`bridge.migrate.migration` and reach the worker's state through `WORKER`.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bridge.core.convert import ConvertContext, ConvertResult, convert
from bridge.core.legacy.schemas import SchemaRegistry
from bridge.core.problems import Problem
from bridge.runtime.childproc import exit_with_parent, ignore_interrupts

log = logging.getLogger("bridge.migrate")  # its messages are part of a migration's log

# Setup a caller adds to each worker (picklable: a module-level function or a partial of one).
WorkerSetup = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class ConvertSettings:
    """What a pool worker needs to build the same `ConvertContext` as the watcher's."""

    allow_mismatch: bool = False
    max_bytes: int = 32 * 1024 * 1024
    xsd_dirs: tuple[Path, ...] = ()

    def context(self, praksis_id: str | None = None) -> ConvertContext:
        registry = None
        if self.xsd_dirs:

            registry = SchemaRegistry(extra_dirs=list(self.xsd_dirs))
        return ConvertContext(
            praksis_id=praksis_id,
            allow_mismatch=self.allow_mismatch,
            registry=registry,
            max_bytes=self.max_bytes,
        )


# A worker process's state: its "context" (ConvertContext), "max_bytes", and what a
# `WorkerSetup` adds.
WORKER: dict[str, Any] = {}


def _init_worker(settings: ConvertSettings, setup: WorkerSetup | None) -> None:
    ignore_interrupts()
    exit_with_parent()
    WORKER["context"] = settings.context()
    WORKER["max_bytes"] = settings.max_bytes
    if setup is not None:
        setup(WORKER)


def convert_in_worker(data: bytes) -> ConvertResult:
    return convert(data, WORKER["context"])


def _warm_up() -> bool:
    """Import and compile everything a conversion needs (schemas, mapping tables)."""
    convert(b"<x/>", WORKER["context"])
    return True


def pool_workers(requested: int | None, *, leave: int = 0) -> int:
    """Conversion processes: as requested, else one per core less `leave` (at least one)."""
    return max(1, requested or (os.cpu_count() or 1) - leave)


def start_pool(
    workers: int, settings: ConvertSettings, setup: WorkerSetup | None = None
) -> ProcessPoolExecutor:
    """Processes started fresh (`spawn`: never a fork of a process with server threads)."""
    pool = ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=(settings, setup),
    )
    for future in [pool.submit(_warm_up) for _ in range(workers)]:
        future.result()
    return pool


# Breakages of the pool a file may be part of before it is taken for the cause.
CRASHES_ALLOWED = 2


class ConversionPool:
    """The conversion processes, started again when one dies (the OOM killer, or a native
    library crashing on some file), so the run goes on. Every file that was in flight is
    tried again; one that is in flight at more than `CRASHES_ALLOWED` breakages is the
    likely cause and is reported as CONVERT_CRASHED instead of being tried forever."""

    def __init__(
        self, workers: int, settings: ConvertSettings, setup: WorkerSetup | None = None
    ) -> None:
        self._start = lambda: start_pool(workers, settings, setup)
        self._lock = threading.Lock()
        self._pool = self._start()
        self._unwatch = _watch_for_a_stall(self._pool)
        self._suspects: asyncio.Lock | None = None
        self.generation = 0

    def current(self) -> tuple[int, ProcessPoolExecutor]:
        with self._lock:
            return self.generation, self._pool

    def restart(self, broken_generation: int) -> None:
        """Replace the pool of `broken_generation` (once, however many callers saw it)."""
        with self._lock:
            if broken_generation != self.generation:
                return
            log.warning("a conversion process ended abruptly; starting the processes again")
            self._unwatch.set()
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._start()
            self._unwatch = _watch_for_a_stall(self._pool)
            self.generation += 1

    def shutdown(self, *, cancel_futures: bool = True) -> None:
        with self._lock:
            self._unwatch.set()
            self._pool.shutdown(cancel_futures=cancel_futures)

    async def convert(self, data: bytes) -> ConvertResult:
        """Convert in a worker. A file in flight when the processes broke is tried again on
        its own, so that a breakage names its file; CONVERT_CRASHED after CRASHES_ALLOWED."""
        result = await self._attempt(data)
        if result is not None:
            return result
        self._suspects = self._suspects or asyncio.Lock()
        async with self._suspects:
            for _ in range(CRASHES_ALLOWED):
                result = await self._attempt(data)
                if result is not None:
                    return result
        return ConvertResult(problems=[crashed(len(data))])

    async def _attempt(self, data: bytes) -> ConvertResult | None:
        generation, processes = self.current()
        try:
            return await asyncio.wrap_future(processes.submit(convert_in_worker, data))
        except BrokenProcessPool:
            await asyncio.to_thread(self.restart, generation)
            return None


# How long a dead worker may go unnoticed before the pool is told (see below).
STALL_SECONDS = 2.0


def _watch_for_a_stall(pool: ProcessPoolExecutor) -> threading.Event:
    """Start watching `pool`; set the returned event to stop.

    The pool notices a dead worker by itself, except one killed in the middle of writing a
    result: its manager thread then waits forever for the rest of that message, and the run
    waits with it. When a worker has been dead for STALL_SECONDS and the pool still works,
    the other workers are ended and this process's copy of the result pipe's write end is
    closed: the wait ends in an EOF, the pool reports itself broken, and is restarted as for
    any crash. (Two private attributes of ProcessPoolExecutor: there is no public way.)"""
    stop = threading.Event()

    def watch() -> None:
        dead_since: float | None = None
        while not stop.wait(0.5):
            processes = getattr(pool, "_processes", None)
            if not processes or getattr(pool, "_broken", False):
                return
            workers = list(processes.values())
            if not any(p.exitcode is not None for p in workers):
                dead_since = None
                continue
            dead_since = dead_since or time.monotonic()
            if time.monotonic() - dead_since < STALL_SECONDS:
                continue
            log.warning("a conversion process died unnoticed; ending the others")
            for process in workers:
                if process.exitcode is None:
                    process.kill()
            results = getattr(pool, "_result_queue", None)
            if results is not None:
                results._writer.close()
            return

    threading.Thread(target=watch, name="conversion-stall-watch", daemon=True).start()
    return stop


def crashed(size: int) -> Problem:
    return Problem(
        "CONVERT_CRASHED",
        f"Converting this file ({size:,} bytes) ended the conversion process "
        f"{CRASHES_ALLOWED + 1} times; it was not sent. Check the file for damage or an "
        "unusual size; the rest of the run went on.",
    )
