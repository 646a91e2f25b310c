"""`bkm-bridge migrate`: one-off bulk migration of an archive of legacy claims.

Discovery walks folders and `.zip` archives as a stream (nothing per file is kept in memory);
a zip member is read in place and is known to the journal as `ZIP!MEMBER`. A real run feeds
the watcher's own `Pipeline` (same journal semantics: every version is submitted at most once,
an interrupted run resumes, a second run submits nothing new) through a bounded window of
unfinished versions, converts in a process pool and submits with bounded concurrency and an
optional rate limit; a large archive is sent from several processes, a share each
(bridge.migrate_senders). `--dry-run` converts in the pool and writes what `convert --out`
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
import socket
import threading
import time
import zipfile
import zlib
from collections import Counter, OrderedDict, deque
from collections.abc import Awaitable, Callable, Collection, Iterable, Iterator
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path, PurePosixPath
from typing import Any
from zoneinfo import ZoneInfo

from bridge.batch import SourceFile, output_path
from bridge.conversion_pool import (
    CRASHES_ALLOWED,
    WORKER,
    ConversionPool,
    ConvertSettings,
    pool_workers,
)
from bridge.convert import (
    ConvertResult,
    TooLargeError,
    convert,
    read_limited,
    too_large,
    unreadable,
)
from bridge.fsutil import atomic_write, try_lock
from bridge.journal import Journal, State, Version, part_of
from bridge.model import Behandlerkravmelding, dump_json
from bridge.receipts import is_receipt_name

log = logging.getLogger("bridge.migrate")
OSLO = ZoneInfo("Europe/Oslo")
ZIP_MARK = "!"  # journal key of a zip member: <zip path>!<member path>
_MEMBER_SKIP = ("__MACOSX/",)
RECEIPTS_TOLD_IN = 32  # receipts written are committed to the journal in batches this size
# Several sending processes once an archive has this many files, at most this many.
SENDERS_FROM = 1000
MAX_SENDERS = 4
# (sandbox.json values or None, clock speed, embedded?): what `serve_sandbox` returns.
Served = tuple[dict[str, Any] | None, float, bool]


# --------------------------------------------------------------------------- discovery


@dataclass(frozen=True, slots=True)
class Source:
    """One claim file found by discovery."""

    key: str  # the journal path: the file's absolute path, or `ZIP!MEMBER`
    root: Path  # the folder it was found under (receipts and --out mirror the tree below it)
    relative: Path  # below root; a zip member is `…/ZIPNAME/MEMBER`

    @property
    def source_file(self) -> SourceFile:
        """As `convert --out` names it (`relative` with `.json`)."""
        return SourceFile(receipt_source(self.key), self.relative)


def split_key(key: str) -> tuple[str, str] | None:
    """(zip path, member) of a zip member's key; None for a plain file."""
    start = 0
    while (at := key.find(ZIP_MARK, start)) != -1:
        if key[:at].lower().endswith(".zip") and not os.path.isdir(key[:at]):
            return key[:at], key[at + 1 :]
        start = at + 1
    return None


def _safe_member(member: str) -> PurePosixPath:
    """A member's path as a relative path that stays inside the folder it is mirrored into
    (`..`, drive letters and leading slashes in a hostile zip cannot climb out)."""
    parts = [
        "__" if part == ".." else part.replace(":", "_")
        for part in member.replace("\\", "/").split("/")
        if part not in ("", ".")
    ]
    return PurePosixPath(*parts) if parts else PurePosixPath("_")


def receipt_source(key: str) -> Path:
    """The path a source's receipts and outputs are named after: the file itself, or for a
    zip member `ZIP/MEMBER` (as if the archive were a folder; it is never written into)."""
    split = split_key(key)
    if split is None:
        return Path(key)
    archive, member = split
    if not member:  # the archive itself, when it cannot be opened
        return Path(archive)
    return Path(archive).joinpath(*_safe_member(member).parts)


@dataclass(frozen=True)
class DateRange:
    """Files modified on these days (Europe/Oslo, both ends included); None: open."""

    since: date | None = None
    until: date | None = None

    def __bool__(self) -> bool:
        return self.since is not None or self.until is not None

    def holds(self, moment: datetime) -> bool:
        day = moment.astimezone(OSLO).date() if moment.tzinfo else moment.date()
        if self.since is not None and day < self.since:
            return False
        return self.until is None or day <= self.until


def _is_claim_name(name: str) -> bool:
    return name.lower().endswith(".xml") and not is_receipt_name(name)


def discover(
    paths: Iterable[Path], dates: DateRange = DateRange(), *, warn: bool = True
) -> Iterator[Source]:
    """Claim files under `paths`, as a stream: `*.xml` and the `*.xml` members of `*.zip`,
    folders walked recursively in name order (as `convert --out` does), receipts skipped.

    A zip that cannot be opened yields one source `ZIP!` that reads as unreadable, so it is
    counted and reported like any bad file. `warn`: log what cannot be listed or opened."""
    for given in paths:
        path = Path(os.path.abspath(given))
        if path.is_dir():
            yield from _walk(path, path, dates, warn)
        elif path.suffix.lower() == ".zip":
            yield from _members(path, path.parent, Path(path.name), dates, warn)
        else:
            if dates and not _modified_within(path, dates):
                continue
            yield Source(str(path), path.parent, Path(path.name))


def _walk(folder: Path, root: Path, dates: DateRange, warn: bool) -> Iterator[Source]:
    """A folder's claim files first, ordered by (stem, name) so that names which become the
    same `NAME.json` follow each other; then its zip archives; then its subfolders.

    Only names are held (not directory entries), and a claim's name is held as
    `STEM\0.xml`, which sorts in that order without a sort key per name: an archive folder
    may hold a hundred thousand files."""
    claims: list[str] = []
    archives: list[str] = []
    folders: list[str] = []
    try:
        with os.scandir(folder) as scan:
            for entry in scan:
                name = entry.name
                if entry.is_dir(follow_symlinks=False):
                    folders.append(name)
                elif _is_claim_name(name) and entry.is_file():
                    claims.append(f"{name[:-4]}\0{name[-4:]}")  # every claim name ends .xml
                elif name.lower().endswith(".zip") and entry.is_file():
                    archives.append(name)
    except OSError as err:
        if warn:
            log.warning("cannot list %s: %s", folder, err.strerror)
        return
    claims.sort()
    relative = folder.relative_to(root)
    for held in claims:
        name = held.replace("\0", "", 1)
        path = folder / name
        if not dates or _modified_within(path, dates):
            yield Source(str(path), root, relative / name)
    del claims
    for name in sorted(archives):
        yield from _members(folder / name, root, relative / name, dates, warn)
    for name in sorted(folders):
        yield from _walk(folder / name, root, dates, warn)


def _member_order(info: zipfile.ZipInfo) -> tuple[str, str, str]:
    folder, _, name = info.filename.replace("\\", "/").rpartition("/")
    return (folder, *_name_order(name))


def _name_order(name: str) -> tuple[str, str]:
    stem, dot, _suffix = name.rpartition(".")
    return (stem if dot else name), name


def _modified_within(path: Path, dates: DateRange) -> bool:
    try:
        return dates.holds(datetime.fromtimestamp(path.stat().st_mtime, OSLO))
    except OSError:
        return True  # unreadable: let it be counted and reported


def _members(
    archive: Path, root: Path, relative: Path, dates: DateRange, warn: bool
) -> Iterator[Source]:
    try:
        with zipfile.ZipFile(archive) as zipped:
            infos = zipped.infolist()
    except (OSError, zipfile.BadZipFile, ValueError) as err:
        if warn:
            log.warning("cannot open zip archive %s: %s", archive.name, err)
        yield Source(f"{archive}{ZIP_MARK}", root, relative)
        return
    infos.sort(key=_member_order)  # a folder's members together, as `_walk` orders files
    for info in infos:
        name = info.filename
        if info.is_dir() or name.startswith(_MEMBER_SKIP):
            continue
        if not _is_claim_name(PurePosixPath(name.replace("\\", "/")).name):
            continue
        if dates and not dates.holds(datetime(*info.date_time)):
            continue
        below = relative.joinpath(*_safe_member(name).parts)
        yield Source(f"{archive}{ZIP_MARK}{name}", root, below)
    del infos


def count_sources(
    paths: Iterable[Path], dates: DateRange = DateRange(), stop: threading.Event | None = None
) -> int | None:
    """How many sources `discover` will yield (for the progress display), without holding
    folder listings; None if stopped."""
    total = 0
    pending = []
    for given in paths:
        path = Path(os.path.abspath(given))
        if path.is_dir():
            pending.append(path)
        else:
            total += sum(1 for _ in discover([path], dates, warn=False))
    while pending:
        if stop is not None and stop.is_set():
            return None
        try:
            with os.scandir(pending.pop()) as scan:
                for entry in scan:
                    name = entry.name
                    if entry.is_dir(follow_symlinks=False):
                        pending.append(Path(entry.path))
                    elif name.lower().endswith(".zip") and entry.is_file():
                        total += sum(
                            1 for _ in _members(Path(entry.path), Path(), Path(), dates, False)
                        )
                    elif _is_claim_name(name) and entry.is_file():
                        total += not dates or _modified_within(Path(entry.path), dates)
        except OSError:
            continue
    return total


# --------------------------------------------------------------------------- reading


class SourceReader:
    """Reads a source by its key: a file, or a zip member straight from its archive (a few
    archives are kept open). Every failure is an `OSError` with a sentence in `strerror`."""

    def __init__(self, max_open: int = 4) -> None:
        self._open: OrderedDict[str, zipfile.ZipFile] = OrderedDict()
        self._max_open = max_open
        self._lock = threading.Lock()

    def read(self, key: str, max_bytes: int | None = None) -> bytes:
        """The bytes; `TooLargeError` (before reading) for more than `max_bytes`."""
        split = split_key(key)
        if split is None:
            return read_limited(key, max_bytes)
        archive, member = split
        with self._lock:
            zipped = self._archive(archive)
            try:
                info = zipped.getinfo(member)
                if max_bytes is not None and info.file_size > max_bytes:
                    raise TooLargeError(info.file_size, max_bytes)
                return zipped.read(info)
            except KeyError:
                raise FileNotFoundError(0, "the member is no longer in the zip archive") from None
            except (zipfile.BadZipFile, zlib.error, EOFError) as err:
                raise OSError(0, f"the zip member is damaged ({err})") from None
            except (RuntimeError, NotImplementedError) as err:  # encrypted, unknown compression
                raise OSError(0, f"the zip member cannot be read ({err})") from None

    def size_and_sha256(self, key: str) -> tuple[int, str]:
        """Without holding a large file in memory."""
        digest = hashlib.sha256()
        size = 0
        split = split_key(key)
        with self._lock if split else contextlib.nullcontext():
            if split is None:
                handle = open(key, "rb")  # noqa: SIM115 - closed below
            else:
                try:
                    handle = self._archive(split[0]).open(split[1])
                except KeyError:
                    raise FileNotFoundError(0, "the member is not in the zip archive") from None
                except (zipfile.BadZipFile, RuntimeError, NotImplementedError) as err:
                    raise OSError(0, f"the zip member cannot be read ({err})") from None
            try:
                while chunk := handle.read(1 << 20):
                    digest.update(chunk)
                    size += len(chunk)
            except (zipfile.BadZipFile, zlib.error, EOFError) as err:
                raise OSError(0, f"the zip member is damaged ({err})") from None
            finally:
                handle.close()
        return size, digest.hexdigest()

    def _archive(self, archive: str) -> zipfile.ZipFile:
        zipped = self._open.get(archive)
        if zipped is not None:
            self._open.move_to_end(archive)
            return zipped
        try:
            zipped = zipfile.ZipFile(archive)
        except FileNotFoundError:
            raise
        except (OSError, zipfile.BadZipFile, ValueError) as err:
            raise OSError(0, f"not a readable zip archive ({err})") from None
        self._open[archive] = zipped
        while len(self._open) > self._max_open:
            self._open.popitem(last=False)[1].close()
        return zipped

    def close(self) -> None:
        with self._lock:
            while self._open:
                self._open.popitem()[1].close()


# --------------------------------------------------------------------------- dry run


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
    outcome: str  # konvertert | avvist_lokalt | ignorert
    problems: tuple[str, ...]  # problem codes, errors first
    regninger: int
    json_text: str | None  # the JSON BKM (with --out)
    praksis_id: str | None


def _dry_setup(dry: DryRunSettings, worker: dict[str, Any]) -> None:
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
        return DryResult(key, "avvist_lokalt", (problem.code,), 0, None, None)
    except OSError as err:
        return DryResult(key, "avvist_lokalt", (unreadable(err).code,), 0, None, None)
    result = convert(data, WORKER["context"])
    return _dry_result(key, folder, result, settings)


def _dry_result(
    key: str, folder: str, result: ConvertResult, settings: DryRunSettings
) -> DryResult:
    codes = tuple(p.code for p in [*result.errors, *result.warnings])
    if any(p.code == "NOT_A_BKM" for p in result.problems):
        return DryResult(key, "ignorert", codes, 0, None, None)
    krav = result.behandlerkrav
    if not result.ok or krav is None:
        return DryResult(key, "avvist_lokalt", codes, 0, None, None)
    praksis_id = settings.praksis_id or _rule_praksis(result, folder, settings.praksis_rules)
    if praksis_id is None and settings.write_json:
        # A dry run does not ask KUHR: the JSON needs --praksis-id or a matching rule.
        codes = (*codes, "PRAKSIS_MISSING")
        return DryResult(key, "avvist_lokalt", codes, len(krav.regninger), None, None)
    text = None
    if settings.write_json and praksis_id is not None:
        text = dump_json(Behandlerkravmelding(praksisId=praksis_id, behandlerkrav=krav))
    return DryResult(key, "konvertert", codes, len(krav.regninger), text, praksis_id)


def _rule_praksis(result: ConvertResult, folder: str, rules: tuple[Any, ...]) -> str | None:
    if not rules:
        return None
    from bridge.kuhr.praksis import Sender, matching_rule

    env = result.envelope
    sender = Sender(orgnr=env.sender_orgnr if env else None, hpr=env.sender_hpr if env else None)
    hit = matching_rule(rules, sender, Path(folder))
    return hit[1].praksis_id if hit else None


def _dry_chunk(items: list[tuple[str, str]]) -> list[DryResult]:
    return [_dry_one(key, folder) for key, folder in items]


class OutputNames:
    """The names `bridge.batch.output_path` gives (NAME.json; NAME~2.json for a name already
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
            results = [_dry_alone(pool, source) for source in batch]
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


def _dry_alone(pool: ConversionPool, source: Source) -> DryResult:
    """A file that was in flight when a conversion process died, converted on its own (with
    nothing else in flight, a breakage now names its file)."""
    for _ in range(CRASHES_ALLOWED):
        generation, processes = pool.current()
        try:
            return processes.submit(_dry_chunk, _items([source])).result()[0]
        except BrokenProcessPool:
            pool.restart(generation)
    return DryResult(source.key, "avvist_lokalt", ("CONVERT_CRASHED",), 0, None, None)


def _items(batch: list[Source]) -> list[tuple[str, str]]:
    return [(s.key, str(receipt_source(s.key).parent)) for s in batch]


# --------------------------------------------------------------------------- live tally


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
    outcomes: Counter[str] = field(default_factory=Counter)  # by journal state or dry outcome
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
        self.tally.outcomes[version.state.value] += 1
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
            self.tally.outcomes[version.state.value] += 1
            if self.at_rest(version):
                self._done(version)
            if self.on_rest is not None:
                self.on_rest()
        elif previous is not None and previous is not version.state:
            # A claim this run follows (submitted → controlled), or a leftover it retried.
            if self.tally.outcomes[previous.value] > 0:
                self.tally.outcomes[previous.value] -= 1
            self.tally.outcomes[version.state.value] += 1
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


class JournalLockedError(Exception):
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


# --------------------------------------------------------------------------- rate limit


class RateLimiter:
    """At most `per_second` starts per second, evenly spaced (no bursts)."""

    def __init__(
        self,
        per_second: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        if per_second <= 0:
            raise ValueError("the rate must be positive")
        self._interval = 1.0 / per_second
        self._clock = clock
        self._sleep = sleep
        self._next = 0.0

    async def wait(self) -> None:
        """Take the next slot (no await before that: slots are handed out in call order)."""
        now = self._clock()
        start = max(now, self._next)
        self._next = start + self._interval
        if start > now:
            await self._sleep(start - now)


def parse_rate(text: str) -> float:
    """`50`, `50/s`, `600/min`, `10000/h` → per second."""
    value, _, unit = text.strip().lower().partition("/")
    seconds = {"": 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}.get(unit.strip())
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if seconds is None or number <= 0:
        raise ValueError(f"--rate {text!r}: give a positive number per second, e.g. 50/s")
    return number / seconds


# --------------------------------------------------------------------------- the run


@dataclass(frozen=True)
class MigrateOptions:
    paths: tuple[Path, ...]
    dry_run: bool = False
    out_dir: Path | None = None  # dry run: NAME.json per file here
    receipts_dir: Path | None = None  # None: beside the originals (not possible for zips)
    report: Path | None = None
    concurrency: int = 8  # submissions in flight
    rate: float | None = None  # submissions per second (None: as fast as KUHR answers)
    dates: DateRange = DateRange()
    follow: bool = False  # wait for the control results
    workers: int | None = None  # conversion processes (None: one per core)
    senders: int | None = None  # sending processes (None: one per core for a large archive)
    praksis_id: str | None = None
    allow_mismatch: bool | None = None  # None: [watch] allow_mismatch
    max_attempts: int = 3  # transient failures per file and run before it is left failed
    state_dir: Path | None = None  # None: [watch] state_dir, else the per-user state folder
    sandbox_clock: datetime | None = None  # an embedded sandbox's start time
    sandbox_speed: float | None = None  # an embedded sandbox's speed (None: [kuhr])


class MigrationError(Exception):
    """The run cannot start (bad arguments, KUHR or the journal unavailable)."""


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


def journal_path(settings: Any, state_dir: Path | None = None) -> Path:
    """`migrate-<environment>.db` in the state folder (the watcher's is journal-…)."""
    from bridge.runner import default_state_dir

    folder = state_dir or settings.watch.state_dir or default_state_dir()
    return Path(folder) / f"migrate-{settings.kuhr.environment.value}.db"


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
        settings: Any,
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
        self.journal_path = None if options.dry_run else journal_path(settings, options.state_dir)
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
        from bridge.migrate_report import ReportRow, ReportWriter

        settings = self.settings
        o = self.options
        writer = ReportWriter(o.report, started_wall)
        dry = DryRunSettings(
            praksis_id=o.praksis_id or settings.watch.praksis_id,
            praksis_rules=tuple(settings.praksis.rules),
            write_json=o.out_dir is not None,
        )
        workers = pool_workers(o.workers)
        pool = ConversionPool(workers, self._convert_settings(), functools.partial(_dry_setup, dry))
        try:

            def on_result(source: Source, result: DryResult, written: Path | None) -> None:
                self.tally.discovered += 1
                self.tally.done += 1
                self.tally.outcomes[result.outcome] += 1
                row = ReportRow(
                    file=source.key,
                    outcome=result.outcome,
                    praksis_id=result.praksis_id,
                    regninger=result.regninger if result.outcome == "konvertert" else None,
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
        from bridge.migrate_report import ReportWriter

        assert self.journal_path is not None
        self._arm()
        with exclusive(self.journal_path):
            async with AsyncExitStack() as stack:
                served = self._serve(stack)
                senders = self._senders()
                if senders > 1:
                    from bridge.migrate_senders import send_in_processes

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
        from bridge.config import ConfigError
        from bridge.kuhr.client import serve_sandbox
        from bridge.sandbox.child import SandboxChildError

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
        from bridge.config import ConfigError
        from bridge.kuhr.client import client_options, resolve_target, token_provider_for
        from bridge.pipeline import Pipeline, run_inline
        from bridge.precheck import Prechecker

        settings = self.settings
        o = self.options
        info, speed, embedded = served
        shares = part[1] if part else 1
        try:
            target = resolve_target(settings, info, embedded=embedded)
            tokens = token_provider_for(target, settings)
        except ConfigError as err:
            raise MigrationError(str(err)) from None
        if part is None or part[0] == 0:
            log.info("bkm-bridge migrate → %s (%s)", target.label, target.api_url)
        client = client_options(settings, target)
        client["max_concurrency"] = max(1, -(-o.concurrency // shares))
        rate = o.rate / shares if o.rate else None
        kuhr = _migrate_client(target.api_url, tokens, rate, client)
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
        pipeline = Pipeline(
            journal, kuhr, options, prechecker=Prechecker.for_target(settings, target.admin_url)
        )
        return pipeline, journal, reader

    def _pipeline_options(
        self, speed: float, workers: int, reader: SourceReader, converter: Any, sending: int
    ) -> Any:
        from bridge.pipeline import PipelineOptions

        s = self.settings
        o = self.options
        base = PipelineOptions()
        scale = max(1.0, speed)
        allow = o.allow_mismatch
        return PipelineOptions(
            environment=s.kuhr.environment.value,
            follow="control",
            praksis_id=o.praksis_id or s.watch.praksis_id,
            praksis_rules=tuple(s.praksis.rules),
            receipts_dir=o.receipts_dir,
            allow_mismatch=s.watch.allow_mismatch if allow is None else allow,
            max_bytes=s.xml.max_file_bytes,
            xsd_dirs=tuple(s.xml.xsd_dirs),
            # Submissions in flight, plus room to convert the next ones meanwhile.
            concurrency=2 * sending + workers,
            poll_first=max(0.05, base.poll_first / scale),
            poll_max=max(0.2, base.poll_max / scale),
            poll_max_payment=max(0.2, base.poll_max_payment / scale),
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
        from bridge.migrate_report import row_from_version

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


def _migrate_client(api_url: str, tokens: Any, rate: float | None, options: dict[str, Any]):
    """The KUHR client; with a rate, submissions wait their turn (polls do not)."""
    from bridge.kuhr.client import AsyncKuhrClient

    if rate is None:
        return AsyncKuhrClient(api_url, tokens, **options)

    class RateLimitedClient(AsyncKuhrClient):
        limiter = RateLimiter(rate)

        async def send_inn(self, melding: Behandlerkravmelding | str):  # type: ignore[override]
            await self.limiter.wait()
            return await super().send_inn(melding)

    return RateLimitedClient(api_url, tokens, **options)


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, OSLO).isoformat(timespec="seconds")
