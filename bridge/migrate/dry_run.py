"""`migrate --dry-run`: every file converted in a pool of processes, exactly as `convert`
would, and optionally written as `NAME.json` (what `convert --out` writes); nothing is sent
and no journal is kept."""

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
from pathlib import Path
from typing import Any

from bridge.core.convert import ConvertResult, convert, too_large, unreadable
from bridge.core.model import Behandlerkravmelding, dump_json
from bridge.core.outcomes import Status
from bridge.core.praksis import Sender, matching_rule
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


@dataclass(frozen=True)
class DryRunSettings:
    """Which praksisId the JSON gets without asking KUHR: the flag, else a matching rule."""

    praksis_id: str | None = None
    praksis_rules: tuple[Any, ...] = ()  # bridge.config.PraksisRule
    write_json: bool = False


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
    if not dry.praksis_rules:  # only a rule looks at the MsgHead's facts
        worker["context"] = dataclasses.replace(worker["context"], envelope=False)
    worker["reader"] = SourceReader()
    worker["dry"] = dry


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
    praksis_id = settings.praksis_id or _rule_praksis(result, folder, settings.praksis_rules)
    if praksis_id is None and settings.write_json:
        # A dry run does not ask KUHR: the JSON needs --praksis-id or a matching rule.
        codes = (*codes, "PRAKSIS_MISSING")
        return DryResult(key, Status.AVVIST_LOKALT, codes, len(krav.regninger), None, None)
    text = None
    if settings.write_json and praksis_id is not None:
        text = dump_json(Behandlerkravmelding(praksisId=praksis_id, behandlerkrav=krav))
    return DryResult(key, Status.KONVERTERT, codes, len(krav.regninger), text, praksis_id)


def _rule_praksis(result: ConvertResult, folder: str, rules: tuple[Any, ...]) -> str | None:
    if not rules:
        return None

    env = result.envelope
    sender = Sender(orgnr=env.sender_orgnr if env else None, hpr=env.sender_hpr if env else None)
    hit = matching_rule(rules, sender, Path(folder))
    return hit[1].praksis_id if hit else None


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
