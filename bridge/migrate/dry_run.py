"""`migrate --dry-run`: every file converted in a pool of processes, exactly as `convert`
would, and optionally written as `NAME.json` (what `convert --out` writes); nothing is sent
and no journal is kept.

A dry run judges a file as the real run would: its praksis is resolved (flag, rule, else the
praksis list, fetched from KUHR once, read-only, before the first file) and the pre-control
runs (the takst cache, at one moment: the sandbox's clock or the wall clock). When the list
cannot be fetched, a file that needs it is `konvertert` with `PRAKSIS_NOT_CHECKED` and no
JSON: it was not checked, and the run's exit code says so.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import threading
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bridge.core.convert import ConvertResult, convert, too_large, unreadable
from bridge.core.model import Behandlerkravmelding, PraksisListe, dump_json
from bridge.core.outcomes import Status
from bridge.core.praksis import PraksisResolutionError, Sender, resolve_praksis
from bridge.files.batch import SourceFile, output_path
from bridge.files.discovery import Source, receipt_source
from bridge.files.fsutil import atomic_write
from bridge.files.reading import TooLargeError
from bridge.files.sources import SourceReader
from bridge.migrate.pool import (
    CRASHES_ALLOWED,
    WORKER,
    ConversionPool,
)

if TYPE_CHECKING:
    from bridge.config import Settings
    from bridge.core.model import Praksis
    from bridge.flow.precheck import Prechecker

NOT_CHECKED = "PRAKSIS_NOT_CHECKED"


@dataclass(frozen=True)
class DryRunSettings:
    """How a dry run's workers judge a file: the praksis (the flag, else a matching rule, else
    `praksiser`, the list KUHR gave; None: not fetched) and the pre-control (`precheck_mode`
    off | warn | block, the cache file, the moment)."""

    praksis_id: str | None = None
    praksis_rules: tuple[Any, ...] = ()  # bridge.config.PraksisRule
    write_json: bool = False
    praksiser: PraksisListe | None = None
    precheck_mode: str = "off"
    precheck_cache: Path | None = None
    precheck_snapshot: bool = True
    precheck_fagomraade: str | None = None
    precheck_now: datetime | None = None


@dataclass(frozen=True, slots=True)
class DryResult:
    """One file's dry-run outcome, as small as it can travel between processes."""

    key: str
    outcome: str  # Status.KONVERTERT | AVVIST_LOKALT | IGNORERT
    problems: tuple[str, ...]  # problem codes, errors first
    regninger: int
    json_text: str | None  # the JSON BKM (with --out)
    praksis_id: str | None


def dry_setup(dry: DryRunSettings, worker: dict[str, Any]) -> None:
    """What a dry run's workers hold besides the conversion context (a `WorkerSetup`)."""
    if not dry.praksis_rules and dry.praksiser is None:  # nothing looks at the MsgHead's facts
        worker["context"] = dataclasses.replace(worker["context"], envelope=False)
    worker["reader"] = SourceReader()
    worker["dry"] = dry
    worker["prechecker"] = _prechecker(dry)


def _prechecker(dry: DryRunSettings) -> Prechecker | None:
    """The pre-control of a worker, or None when it is off."""
    if dry.precheck_mode == "off" or dry.precheck_now is None:
        return None
    from bridge.files.takstcache import load_table
    from bridge.flow.precheck import Prechecker

    path, snapshot = dry.precheck_cache, dry.precheck_snapshot
    return Prechecker(
        dry.precheck_mode,
        lambda: load_table(path, snapshot=snapshot),
        fagomraade=dry.precheck_fagomraade,
    )


def _dry_one(key: str, folder: str) -> DryResult:
    reader: SourceReader = WORKER["reader"]
    settings: DryRunSettings = WORKER["dry"]
    try:
        data = reader.read(key, WORKER["max_bytes"])
    except TooLargeError as err:
        problem = too_large(err.size, WORKER["max_bytes"])
        return DryResult(key, Status.AVVIST_LOKALT, (problem.code,), 0, None, None)
    except OSError as err:
        return DryResult(key, Status.AVVIST_LOKALT, (unreadable(err).code,), 0, None, None)
    result = convert(data, WORKER["context"])
    return _dry_result(key, folder, result, settings)


def _dry_result(
    key: str, folder: str, result: ConvertResult, settings: DryRunSettings
) -> DryResult:
    codes = tuple(p.code for p in [*result.errors, *result.warnings])
    if any(p.code == "NOT_A_BKM" for p in result.problems):
        return DryResult(key, Status.IGNORERT, codes, 0, None, None)
    krav = result.behandlerkrav
    if not result.ok or krav is None:
        return DryResult(key, Status.AVVIST_LOKALT, codes, 0, None, None)
    env = result.envelope
    sender = Sender(orgnr=env.sender_orgnr if env else None, hpr=env.sender_hpr if env else None)
    regninger = len(krav.regninger)
    try:
        resolution = resolve_praksis(
            krav,
            sender=sender,
            explicit=settings.praksis_id,
            rules=settings.praksis_rules,
            folder=Path(folder),
            praksiser=settings.praksiser,
        )
    except PraksisResolutionError:
        if settings.praksiser is None:  # KUHR's list was not fetched: not checked, not wrong
            return DryResult(key, Status.KONVERTERT, (*codes, NOT_CHECKED), regninger, None, None)
        codes = (*codes, "PRAKSIS_MISSING")  # as the real run rejects it
        return DryResult(key, Status.AVVIST_LOKALT, codes, regninger, None, None)
    praksis_id = resolution.praksis_id
    melding = Behandlerkravmelding(praksisId=praksis_id, behandlerkrav=krav)
    checker: Prechecker | None = WORKER.get("prechecker")
    if checker is not None and settings.precheck_now is not None:
        praksis = resolution.praksis or _listed(settings.praksiser, praksis_id)
        outcome = checker.check(
            melding,
            now=settings.precheck_now,
            praksistype=praksis.type if praksis is not None else None,
        )
        found = tuple(p.code for p in outcome.problems())
        if outcome.blocks:  # precheck.mode = block: the real run would not send it
            return DryResult(key, Status.AVVIST_LOKALT, (*codes, *found), regninger, None, None)
        codes = (*codes, *found)
    text = dump_json(melding) if settings.write_json else None
    return DryResult(key, Status.KONVERTERT, codes, regninger, text, praksis_id)


def _listed(liste: PraksisListe | None, praksis_id: str) -> Praksis | None:
    if liste is None:
        return None
    return next((p for p in liste.praksiser if p.praksisId == praksis_id), None)


@dataclass(frozen=True)
class Lookup:
    """What a dry run asked KUHR before the first file: the praksis list (None: not fetched)
    and the moment the pre-control dates claims by; `note` says which, for the summary."""

    praksiser: PraksisListe | None
    now: datetime | None
    note: str


def look_up(
    settings: Settings,
    *,
    need_list: bool,
    clock: datetime | None = None,
    speed: float | None = None,
) -> Lookup:
    """The praksis list, fetched once and read-only (one GET), and the pre-control's moment
    (the sandbox's clock, else the wall clock). A failure is a note, never an exception: the
    files are then marked `PRAKSIS_NOT_CHECKED`."""
    import asyncio
    from contextlib import ExitStack

    import httpx

    from bridge.errors import BridgeError
    from bridge.flow.assembly import open_kuhr, prechecker
    from bridge.flow.precheck import wall_clock
    from bridge.kuhr.client import KuhrClient
    from bridge.sandbox.child import SandboxChildError

    precheck = settings.precheck.mode != "off"
    k = settings.kuhr
    standalone = k.environment.value == "sandbox" and k.sandbox_state_dir is not None
    if not need_list and not (precheck and standalone and clock is None):
        moment = (clock or wall_clock()) if precheck else None
        return Lookup(None, moment, "praksis given (--praksis-id or [watch] praksis_id)")
    try:
        with ExitStack() as stack:
            parts = open_kuhr(settings, stack, clock=clock, speed=speed)
            client = stack.enter_context(
                KuhrClient(parts.target.api_url, parts.tokens, **parts.client_options)
            )
            moment = asyncio.run(prechecker(settings, parts.target).now()) if precheck else None
            if not need_list:  # only the standalone sandbox's clock, for the pre-control
                return Lookup(None, moment, "praksis given (--praksis-id or [watch] praksis_id)")
            liste = client.hent_praksiser()
            label = parts.target.label
    except (BridgeError, SandboxChildError, OSError, httpx.HTTPError) as exc:
        moment = (clock or wall_clock()) if precheck else None
        return Lookup(None, moment, f"praksis not checked: the praksis list failed: {exc}")
    return Lookup(liste, moment, f"praksis resolved with the praksis list from {label}")


def _dry_chunk(items: list[tuple[str, str]]) -> list[DryResult]:
    return [_dry_one(key, folder) for key, folder in items]


class OutputNames:
    """The names `bridge.files.batch.output_path` gives (NAME.json; NAME~2.json for a name already
    used in the run), remembering only names that can still collide.

    With one folder walked, `discover` yields each output folder's files together and the
    names that map to one NAME.json next to each other, so a folder's generated `~N` names
    and the current NAME group are all there is to remember. Several folders given can map
    anything onto the same names: then every name is kept (as an 8-byte digest)."""

    def __init__(self, out_dir: Path, *, roots: int = 1) -> None:
        self.out_dir = out_dir
        self._everything = roots > 1
        self._folder: Path | None = None
        self._natural: Path | None = None
        self._group: set[int] = set()  # the current NAME.json and its variants
        self._generated: set[int] = set()  # ~N names given in this folder

    def next(self, source: SourceFile) -> Path:
        natural = self.out_dir / source.relative.with_suffix(".json")
        if not self._everything:
            if natural.parent != self._folder:
                self._folder = natural.parent
                self._generated.clear()
                self._group.clear()
            elif natural != self._natural:
                self._group.clear()
        self._natural = natural
        taken = _Taken(self._group, self._generated, natural)
        return output_path(self.out_dir, source, taken)  # type: ignore[arg-type]


class _Taken:
    """The `set[Path]` interface `output_path` uses, over digests of the paths."""

    def __init__(self, group: set[int], generated: set[int], natural: Path) -> None:
        self._group = group
        self._generated = generated
        self._natural = natural

    @staticmethod
    def _digest(path: Path) -> int:
        raw = hashlib.blake2b(str(path).encode("utf-8", "surrogatepass"), digest_size=8).digest()
        return int.from_bytes(raw, "big")

    def __contains__(self, path: object) -> bool:
        if not isinstance(path, Path):
            return False
        digest = self._digest(path)
        return digest in self._group or digest in self._generated

    def add(self, path: Path) -> None:
        (self._group if path == self._natural else self._generated).add(self._digest(path))


def dry_run(
    sources: Iterable[Source],
    pool: ConversionPool,
    *,
    workers: int,
    roots: int = 1,
    out_dir: Path | None,
    on_result: Callable[[Source, DryResult, Path | None], None],
    stop: threading.Event | None = None,
    chunk: int = 32,
) -> None:
    """Convert every source in the pool, in order; write `NAME.json` under `out_dir` as
    `convert --out` does. At most a few chunks per worker are queued at any time."""
    names = OutputNames(out_dir, roots=roots) if out_dir is not None else None
    limit = 4 * max(1, workers)
    pending: deque[tuple[list[Source], int, Future[list[DryResult]] | None]] = deque()

    def submit(batch: list[Source]) -> None:
        generation, processes = pool.current()
        future = None  # the pool broke before the chunk went in: settled alone, below
        with contextlib.suppress(BrokenProcessPool):
            future = processes.submit(_dry_chunk, _items(batch))
        pending.append((batch, generation, future))

    def settle_one() -> None:
        batch, generation, future = pending.popleft()
        results = None
        if future is not None:
            with contextlib.suppress(BrokenProcessPool):
                results = future.result()
        if results is None:
            pool.restart(generation)
            results = [dry_alone(pool, source) for source in batch]
        for source, result in zip(batch, results, strict=True):
            written = None
            if names is not None and result.json_text is not None:
                written = names.next(source.source_file)
                atomic_write(written, result.json_text.encode())
            on_result(source, result, written)

    batch: list[Source] = []
    for source in sources:
        if stop is not None and stop.is_set():
            break
        batch.append(source)
        if len(batch) >= chunk:
            submit(batch)
            batch = []
            while len(pending) >= limit:
                settle_one()
    if batch and not (stop is not None and stop.is_set()):
        submit(batch)
    while pending:
        settle_one()


def dry_alone(pool: ConversionPool, source: Source) -> DryResult:
    """A file that was in flight when a conversion process died, converted on its own (with
    nothing else in flight, a breakage now names its file)."""
    for _ in range(CRASHES_ALLOWED):
        generation, processes = pool.current()
        try:
            return processes.submit(_dry_chunk, _items([source])).result()[0]
        except BrokenProcessPool:
            pool.restart(generation)
    return DryResult(source.key, Status.AVVIST_LOKALT, ("CONVERT_CRASHED",), 0, None, None)


def _items(batch: list[Source]) -> list[tuple[str, str]]:
    return [(s.key, str(receipt_source(s.key).parent)) for s in batch]
