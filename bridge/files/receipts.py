"""Receipts on disk: where they go (beside the original, or mirrored under a receipts folder),
writing them atomically and only when they changed, and moving an original with its receipts.
What a receipt says is built in bridge.core.receipts and bridge.core.apprec."""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

from lxml import etree

from bridge.core.apprec import build_apprec
from bridge.core.legacy.namespaces import APPREC_NS
from bridge.core.legacy.schemas import default_registry
from bridge.core.model import (
    dump_json,
)
from bridge.core.receipts import APPREC_SUFFIX, JSON_SUFFIX, ReceiptFacts, build_receipt
from bridge.core.timezone import OSLO
from bridge.errors import BridgeError
from bridge.files.fsutil import atomic_write

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


def write_receipts(
    facts: ReceiptFacts,
    *,
    receipts_dir: Path | None = None,
    root: Path | None = None,
    now: datetime | None = None,
) -> list[Path]:
    """Write (atomically) what changed; returns the paths written.

    The JSON receipt is rewritten whenever its content changes. The AppRec is written once
    there is a final answer and rewritten only when the outcome (its Id) changes, so an EPJ
    that imports AppRecs sees each outcome once. While a version has no final answer, an AppRec
    left beside the file belongs to an earlier version of it and is removed.
    """
    now = now or datetime.now(OSLO)
    json_path, apprec_path = receipt_paths(facts.source, receipts_dir, root)
    written: list[Path] = []
    data = (dump_json(build_receipt(facts)) + "\n").encode("utf-8")
    if _read_bytes(json_path) != data:
        atomic_write(json_path, data)
        written.append(json_path)
    apprec = build_apprec(facts, now=now)
    if apprec is None:
        apprec_path.unlink(missing_ok=True)
        return written
    _validate_apprec(apprec)
    if _apprec_id(_read_bytes(apprec_path)) != _apprec_id(apprec):
        atomic_write(apprec_path, apprec)
        written.append(apprec_path)
    return written


def _read_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
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
