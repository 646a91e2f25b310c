"""Whatever is planted where a receipt goes (a FIFO, a link to /dev/zero or to a file outside
the folder, a link at the temp file's name, a folder) is never followed, never opened and never
written through; the receipt takes its place where it can, and says so in Norwegian."""

from __future__ import annotations

import os
import threading
from datetime import datetime
from pathlib import Path

import pytest

from bridge.core.model import load_json
from bridge.core.problems import Problem
from bridge.core.receipts import ReceiptFacts
from bridge.core.timezone import OSLO
from bridge.files.receipts import (
    ReceiptPathBlockedError,
    place_receipts,
    receipt_paths,
    write_receipts,
)

NOW = datetime(2026, 1, 6, 15, 31, tzinfo=OSLO)
pytestmark = [
    pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX filesystem semantics"),
    pytest.mark.timeout(60),  # a receipt writer that opens a FIFO never comes back
]


def rejected(source: Path) -> ReceiptFacts:
    """A final outcome (rejected locally): both receipts are due."""
    return ReceiptFacts(
        source=source,
        sha256="ab" * 32,
        size=0,
        environment="sandbox",
        state="rejected",
        problems=[Problem("FILE_EMPTY", "The file is empty.")],
    )


def receipt_warnings(path: Path) -> list[str]:
    receipt = load_json(path.read_bytes())
    return [p["melding"] for p in receipt["problemer"] if p["kode"] == "RECEIPT_PATH_TAKEN"]


def test_a_fifo_where_the_json_receipt_goes_is_replaced_without_being_opened(
    tmp_path: Path,
) -> None:
    source = tmp_path / "krav.xml"
    json_path, apprec_path = receipt_paths(source)
    os.mkfifo(json_path)

    placement = place_receipts(rejected(source), now=NOW)

    assert [(t.path, t.kind) for t in placement.traps] == [(json_path, "FIFO")]
    assert placement.written == [json_path, apprec_path]
    assert json_path.is_file() and not json_path.is_symlink()
    assert load_json(json_path.read_bytes())["status"] == "avvist_lokalt"
    [warning] = receipt_warnings(json_path)
    assert "FIFO" in warning and "IT-ansvarlig" in warning


def test_links_to_dev_zero_are_never_read(tmp_path: Path) -> None:
    source = tmp_path / "krav.xml"
    json_path, apprec_path = receipt_paths(source)
    json_path.symlink_to("/dev/zero")
    apprec_path.symlink_to("/dev/zero")

    placement = place_receipts(rejected(source), now=NOW)

    assert sorted(t.kind for t in placement.traps) == ["symbolic link", "symbolic link"]
    for path in (json_path, apprec_path):
        assert path.is_file() and not path.is_symlink()
    assert len(receipt_warnings(json_path)) == 2


def test_links_to_files_outside_the_folder_are_neither_read_nor_written(tmp_path: Path) -> None:
    """The file outside holds exactly the receipt that is due: a writer that read through the
    link would find it unchanged and leave the link in place."""
    scratch, inbox, outside = tmp_path / "scratch", tmp_path / "inbox", tmp_path / "outside"
    for folder in (scratch, inbox, outside):
        folder.mkdir()
    write_receipts(rejected(scratch / "krav.xml"), now=NOW)
    source = inbox / "krav.xml"
    json_path, apprec_path = receipt_paths(source)
    planted = {}
    made_paths = receipt_paths(scratch / "krav.xml")
    for made, path in zip(made_paths, (json_path, apprec_path), strict=True):
        target = outside / made.name
        target.write_bytes(made.read_bytes().replace(str(scratch).encode(), str(inbox).encode()))
        path.symlink_to(target)
        planted[target] = (target.read_bytes(), target.stat().st_mtime_ns)

    place_receipts(rejected(source), now=NOW)

    for path in (json_path, apprec_path):
        assert not path.is_symlink(), f"{path.name} was compared through the link"
    for target, (data, mtime_ns) in planted.items():
        assert (target.read_bytes(), target.stat().st_mtime_ns) == (data, mtime_ns)


def test_a_link_at_the_temp_files_name_is_not_written_through(tmp_path: Path) -> None:
    source = tmp_path / "krav.xml"
    json_path, _ = receipt_paths(source)
    victim = tmp_path / "journal.db"
    victim.write_bytes(b"precious")
    temp_name = f".{json_path.name}.{os.getpid()}-{threading.get_ident()}.tmp"
    (tmp_path / temp_name).symlink_to(victim)

    place_receipts(rejected(source), now=NOW)

    assert victim.read_bytes() == b"precious"
    assert load_json(json_path.read_bytes())["status"] == "avvist_lokalt"
    assert not (tmp_path / temp_name).exists()


def test_a_folder_where_a_receipt_goes_blocks_that_receipt_only(tmp_path: Path) -> None:
    source = tmp_path / "krav.xml"
    json_path, apprec_path = receipt_paths(source)
    json_path.mkdir()

    placement = place_receipts(rejected(source), now=NOW)
    assert [t.path for t in placement.blocked] == [json_path]
    assert placement.written == [apprec_path]  # the AppRec is still written
    assert json_path.is_dir() and not any(json_path.iterdir())
    with pytest.raises(ReceiptPathBlockedError, match="folder"):
        write_receipts(rejected(source), now=NOW)

    json_path.rmdir()
    apprec_path.unlink()
    apprec_path.mkdir()
    placement = place_receipts(rejected(source), now=NOW)
    assert [t.path for t in placement.blocked] == [apprec_path]
    [warning] = receipt_warnings(json_path)  # the receipt that can be written names it
    assert "mappe" in warning and apprec_path.name in warning


def test_a_warning_found_earlier_is_kept_in_later_receipts(tmp_path: Path) -> None:
    source = tmp_path / "krav.xml"
    json_path, _ = receipt_paths(source)
    json_path.symlink_to("/dev/zero")
    first = place_receipts(rejected(source), now=NOW)
    notes = [t.problem() for t in first.traps]

    waiting = rejected(source)
    waiting.state = "seen"  # a new version of the file: the receipt is rewritten
    place_receipts(waiting, now=NOW, notes=notes)
    assert len(receipt_warnings(json_path)) == 1
