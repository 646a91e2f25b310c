"""The filesystem primitives behind receipts: reading only regular files, within a limit,
without ever blocking on a FIFO; and removing the temp files of writers that are gone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.files.fsutil import (
    FileTooLargeError,
    NotARegularFileError,
    atomic_write,
    entry_kind,
    read_regular_file,
    remove_abandoned_temps,
)

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX filesystem semantics"),
    pytest.mark.timeout(60),
]


def test_read_regular_file_reads_files_and_refuses_everything_else(tmp_path: Path) -> None:
    regular = tmp_path / "a.json"
    regular.write_bytes(b"{}")
    assert read_regular_file(regular, limit=10) == b"{}"
    assert read_regular_file(tmp_path / "missing", limit=10) is None

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    link = tmp_path / "link"
    link.symlink_to(regular)
    folder = tmp_path / "folder"
    folder.mkdir()
    for path, kind in ((fifo, "FIFO"), (link, "symbolic link"), (folder, "directory")):
        assert entry_kind(path) == kind
        with pytest.raises(NotARegularFileError) as caught:
            read_regular_file(path, limit=10)
        assert caught.value.kind == kind
    with pytest.raises(NotARegularFileError):
        read_regular_file(Path("/dev/null"), limit=10)


def test_reads_stop_at_the_limit(tmp_path: Path) -> None:
    big = tmp_path / "big"
    big.write_bytes(b"x" * 1000)
    with pytest.raises(FileTooLargeError):
        read_regular_file(big, limit=999)
    assert read_regular_file(big, limit=1000) == b"x" * 1000


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_start_up_removes_only_the_temp_files_of_writers_that_are_gone(tmp_path: Path) -> None:
    sub = tmp_path / "sub"
    sub.mkdir()
    dead = _dead_pid()
    abandoned = [
        tmp_path / f".krav.xml.kvittering.json.{dead}-140000.tmp",
        sub / f".krav.apprec.xml.{dead}-140001.tmp",
    ]
    alive = tmp_path / f".krav2.xml.kvittering.json.{os.getpid()}-1.tmp"
    epj = tmp_path / ".krav3.xml.tmp"  # an EPJ's own temp file: not ours
    for path in (*abandoned, alive, epj):
        path.write_bytes(b"half a receipt")

    assert remove_abandoned_temps(tmp_path, recursive=False) == 1
    assert not abandoned[0].exists() and abandoned[1].exists()
    assert remove_abandoned_temps(tmp_path, recursive=True) == 1
    assert not abandoned[1].exists()
    assert alive.exists() and epj.exists()


def test_a_killed_write_leaves_a_temp_file_that_start_up_removes(tmp_path: Path) -> None:
    """A writer SIGKILLed between creating its temp file and the rename."""
    code = (
        "import os, signal, threading\n"
        "from bridge.files import fsutil\n"
        "real_replace = os.replace\n"
        "os.replace = lambda *a: os.kill(os.getpid(), signal.SIGKILL)\n"
        f"fsutil.atomic_write({str(tmp_path / 'krav.xml.kvittering.json')!r}, b'{{}}')\n"
    )
    writer = subprocess.run([sys.executable, "-c", code], check=False)
    assert writer.returncode == -9
    [left] = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert remove_abandoned_temps(tmp_path) == 1
    assert not left.exists()
    atomic_write(tmp_path / "krav.xml.kvittering.json", b"{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["krav.xml.kvittering.json"]
