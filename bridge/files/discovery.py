"""Finding the claims of an archive: folders and `.zip` archives walked as a stream (nothing
per file is kept in memory), in a stable order, optionally within a date range. A zip member
is known as `ZIP!MEMBER` (`ZIP_MARK`); its receipts are named for the member's path."""

from __future__ import annotations

import logging
import os
import threading
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path, PurePosixPath

from bridge.core.timezone import OSLO
from bridge.files.batch import SourceFile
from bridge.files.receipts import is_receipt_name

log = logging.getLogger("bridge.migrate")  # discovery speaks as part of a migration

ZIP_MARK = "!"  # journal key of a zip member: <zip path>!<member path>


_MEMBER_SKIP = ("__MACOSX/",)


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
