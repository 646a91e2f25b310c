"""Receipts on disk: where they go (beside the original, or mirrored under a receipts folder),
writing them atomically and only when they changed, and moving an original with its receipts.
What a receipt says is built in bridge.core.receipts and bridge.core.apprec.

A receipt path is the bridge's own name in a folder others write to: whatever is there is
looked at with lstat and read only if it is a regular file (bridge.files.fsutil), so a link,
FIFO or device planted there can neither hang the bridge nor make it read outside the folder.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

from lxml import etree

from bridge.core.apprec import build_apprec
from bridge.core.legacy.namespaces import APPREC_NS
from bridge.core.legacy.schemas import default_registry
from bridge.core.model import dump_json
from bridge.core.notices import receipt_path_problem
from bridge.core.problems import Problem
from bridge.core.receipts import APPREC_SUFFIX, JSON_SUFFIX, ReceiptFacts, build_receipt
from bridge.core.timezone import OSLO
from bridge.errors import BridgeError
from bridge.files.fsutil import (
    REGULAR_FILE,
    atomic_write,
    entry_kind,
    read_regular_file,
    remove_entry,
)

log = logging.getLogger(__name__)


def receipt_paths(
    source: Path, receipts_dir: Path | None = None, root: Path | None = None
) -> tuple[Path, Path]:
    """(JSON receipt, AppRec) for `source`: beside it, or under `receipts_dir` mirroring the
    folders below `root` (flat in `receipts_dir` when no root is given)."""
    folder = source.parent
    if receipts_dir is not None:
        folder = receipts_dir
        if root is not None:
            try:
                relative = source.parent.resolve().relative_to(root.resolve())
            except ValueError:
                raise ValueError(f"{source} is not inside {root}") from None
            folder = receipts_dir / relative
    stem = source.stem if source.suffix else source.name
    return folder / (source.name + JSON_SUFFIX), folder / (stem + APPREC_SUFFIX)


def is_receipt_name(name: str) -> bool:
    """True for the bridge's receipt files and their temp files while being written."""
    lowered = name.lower()
    if lowered.startswith(".") and lowered.endswith(".tmp"):
        lowered = lowered[1:].rpartition(".")[0].rpartition(".")[0]
    return lowered.endswith(JSON_SUFFIX) or lowered.endswith(APPREC_SUFFIX)


class AppRecInvalidError(BridgeError):
    """The AppRec the bridge built does not validate: a bug, never the clinic's fault."""


@dataclass(frozen=True, slots=True)
class Trap:
    """Something other than a regular file found where a receipt goes: a link, a FIFO, a
    device, a socket or a folder. It is never followed or opened; anything but a folder is
    replaced by the receipt (the rename replaces the entry, never what a link points to)."""

    path: Path
    kind: str  # see bridge.files.fsutil.entry_kind

    @property
    def replaceable(self) -> bool:
        return self.kind != "directory"

    def problem(self) -> Problem:
        """The warning the JSON receipt carries about it, in words for the clinic."""
        return receipt_path_problem(self.path.name, self.kind, replaced=self.replaceable)


class ReceiptPathBlockedError(BridgeError, OSError):
    """A folder sits where a receipt goes, so that receipt cannot be written."""

    def __init__(self, traps: list[Trap]) -> None:
        names = ", ".join(t.path.name for t in traps)
        super().__init__(errno.EISDIR, f"a folder is where the receipt goes: {names}")
        self.traps = traps


@dataclass(slots=True)
class Placement:
    """What `place_receipts` did: the paths written and the traps it found at them."""

    written: list[Path] = field(default_factory=list)
    traps: list[Trap] = field(default_factory=list)
    withheld: Path | None = None  # an AppRec due here that the caller did not allow

    @property
    def blocked(self) -> list[Trap]:
        return [t for t in self.traps if not t.replaceable]


def write_receipts(
    facts: ReceiptFacts,
    *,
    receipts_dir: Path | None = None,
    root: Path | None = None,
    now: datetime | None = None,
) -> list[Path]:
    """`place_receipts`, for callers that only need the paths written; a receipt that cannot
    be written because a folder is in its place raises ReceiptPathBlockedError."""
    placement = place_receipts(facts, receipts_dir=receipts_dir, root=root, now=now)
    if placement.blocked:
        raise ReceiptPathBlockedError(placement.blocked)
    return placement.written


def place_receipts(
    facts: ReceiptFacts,
    *,
    receipts_dir: Path | None = None,
    root: Path | None = None,
    now: datetime | None = None,
    notes: Sequence[Problem] = (),
    apprec_allowed: bool = True,
) -> Placement:
    """Write (atomically) what changed, never following or opening anything but a regular
    file at a receipt path.

    The JSON receipt is rewritten whenever its content changes. The AppRec is written once
    there is a final answer and rewritten only when the outcome (its Id) changes, so an EPJ
    that imports AppRecs sees each outcome once. While a version has no final answer, an AppRec
    left beside the file belongs to an earlier version of it and is removed.

    A trap at a receipt path (see `Trap`) is reported in the placement and named, as a warning,
    in the JSON receipt, together with `notes` (traps found by earlier writes). What is there
    is compared only when it is a regular file of a plausible size, read with bounded reads.
    """
    now = now or datetime.now(OSLO)
    json_path, apprec_path = receipt_paths(facts.source, receipts_dir, root)
    placement = Placement()
    for path in (json_path, apprec_path):
        kind = entry_kind(path)
        if kind is not None and kind != REGULAR_FILE:
            placement.traps.append(Trap(path, kind))
    warnings = [*notes, *(t.problem() for t in placement.traps)]
    receipt_facts = replace(facts, problems=[*facts.problems, *_new(warnings, facts.problems)])
    data = (dump_json(build_receipt(receipt_facts)) + "\n").encode("utf-8")
    trapped = {t.path: t for t in placement.traps}
    json_trap = trapped.get(json_path)
    if json_trap.replaceable if json_trap else _existing(json_path, len(data)) != data:
        atomic_write(json_path, data)
        placement.written.append(json_path)
    apprec = build_apprec(facts, now=now)
    if apprec is not None and not apprec_allowed:
        placement.withheld = apprec_path  # the caller says why; nothing there is touched
        return placement
    apprec_trap = trapped.get(apprec_path)
    if apprec is None:
        if apprec_trap is None or apprec_trap.replaceable:
            remove_entry(apprec_path)
        return placement
    _validate_apprec(apprec)
    if apprec_trap is not None:
        if apprec_trap.replaceable:
            atomic_write(apprec_path, apprec)
            placement.written.append(apprec_path)
        return placement
    limit = max(APPREC_READ_LIMIT, 2 * len(apprec))
    if _apprec_id(_existing(apprec_path, limit)) != _apprec_id(apprec):
        atomic_write(apprec_path, apprec)
        placement.written.append(apprec_path)
    return placement


# An AppRec of ours is a few KB (one Error per merknad); one larger than this, or than twice
# the one about to be written, is not read to compare: it is replaced.
APPREC_READ_LIMIT = 1 << 20


def _new(problems: Sequence[Problem], known: Sequence[Problem]) -> list[Problem]:
    seen = {(p.code, p.message) for p in known}
    out = []
    for problem in problems:
        if (problem.code, problem.message) not in seen:
            seen.add((problem.code, problem.message))
            out.append(problem)
    return out


def _existing(path: Path, limit: int) -> bytes | None:
    """What a regular file at `path` holds, if it is at most `limit` bytes; None for nothing,
    for something larger (it differs from what is written: it is simply replaced), or for
    something that cannot be read (the write that follows says why, if it fails too)."""
    try:
        return read_regular_file(path, limit=limit)
    except OSError:
        return None


def _safe_parser() -> etree.XMLParser:
    # A new parser per call: lxml parsers are not thread-safe and receipts are written from
    # worker threads. Only the bridge's own AppRecs are parsed here.
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


def _apprec_id(data: bytes | None) -> str | None:
    if not data:
        return None
    try:
        root = etree.fromstring(data, _safe_parser())
    except etree.XMLSyntaxError:
        return None
    return root.findtext(f"{{{APPREC_NS}}}Id")


def _validate_apprec(data: bytes) -> None:

    element = etree.fromstring(data, _safe_parser())
    problems = default_registry().validate(element)
    if problems:
        codes = "; ".join(f"{p.code} line {p.line}: {p.message}" for p in problems)
        raise AppRecInvalidError(f"the AppRec does not validate against its XSD: {codes}")


def superseded_receipt_path(
    source: Path, sha256: str, receipts_dir: Path | None, root: Path | None
) -> Path:
    """`NAME.xml.<sha256[:12]>.kvittering.json`: the receipt of an earlier version of NAME.xml."""
    json_path, _ = receipt_paths(source, receipts_dir, root)
    return json_path.with_name(f"{source.name}.{sha256[:12]}{JSON_SUFFIX}")


def move_with_receipts(source: Path, target_dir: Path, root: Path | None, beside: bool) -> None:
    relative = source.name
    if root is not None:
        try:
            relative = str(source.relative_to(root))
        except ValueError:
            relative = source.name
    destination = target_dir / relative
    destination.parent.mkdir(parents=True, exist_ok=True)
    moves = [(source, destination)]
    if beside:
        for receipt in receipt_paths(source):
            moves.append((receipt, destination.parent / receipt.name))
    for old, new in moves:
        try:
            old.replace(new)
        except FileNotFoundError:
            continue
        except OSError as err:
            log.error("cannot move %s to %s: %s", old.name, target_dir, err.strerror)
