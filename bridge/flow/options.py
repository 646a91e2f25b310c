"""How a pipeline runs: what it follows, where receipts and originals go, concurrency, leases,
retries and polling, and (for bulk runs) how it reads sources and converts."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from bridge.core.convert import ConvertResult

T = TypeVar("T")


NEVER = 1e18  # due_at of a version nothing more will be done for


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
    # How long a claim may wait at KUHR without being sent to control (kontrollstatus
    # ikke_sendt_til_kontroll, or none yet) before the bridge stops polling it: the docs give
    # that status no way on and no duration (docs/receipts.md, "ikke_sendt_til_kontroll").
    unsent_control_max: float = 3 * 24 * 3600.0
    praksis_cache_seconds: float = 600.0
    # Bulk runs (bridge.migrate.migration) set these; the defaults are the watcher's behaviour.
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
    # Told each claim once it is converted, so that the log's redaction learns its names and
    # diagnoses (bridge.runtime.redaction.remember_patient_data; the assembly sets it).
    learn_patient_data: Callable[[Any], None] | None = None
    # A sandbox or dev run writes no AppRec into these (nor into a folder holding the
    # production marker): bridge.files.production. Set from a production settings file.
    production_folders: tuple[Path, ...] = ()


# A claim this small converts and pre-controls in well under a millisecond: less than handing it
# to a thread and back costs (three handoffs per claim, each a wake-up that waits for a CPU
# when the machine is busy). Larger ones go to a thread, so the event loop keeps answering.
INLINE_MAX_BYTES = 256 * 1024
INLINE_MAX_REGNINGER = 50


async def inline_when_small(func: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """`PipelineOptions.offload` for the watcher: a small claim's steps run on the event loop,
    a large claim's (bytes over INLINE_MAX_BYTES, or more than INLINE_MAX_REGNINGER regninger)
    in a thread. Reading a file is run inline: the intake has just read it to hash it, and
    reads open regular files only, without blocking (bridge.files.reading)."""
    if all(_small(arg) for arg in args):
        return func(*args, **kwargs)
    return await asyncio.to_thread(func, *args, **kwargs)


def _small(arg: Any) -> bool:
    if isinstance(arg, bytes | bytearray | memoryview):
        return len(arg) <= INLINE_MAX_BYTES
    regninger = getattr(getattr(arg, "behandlerkrav", None), "regninger", None)
    return regninger is None or len(regninger) <= INLINE_MAX_REGNINGER


async def run_inline(func: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """`PipelineOptions.offload` for a process that is one of several per core: threads add
    no parallelism there, only handoffs (each costs the GIL and a wake-up). In migrate's
    sending processes: ~10 % less CPU per file, +11 % to +25 % files/s (paired runs)."""
    return func(*args, **kwargs)
