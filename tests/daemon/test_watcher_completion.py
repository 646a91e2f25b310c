"""How the intake knows a file is complete, per folder: on a local Linux disk when its writer
closes it (or it is renamed into place), with no quiet period; where share modes tell (Windows),
as soon as it can be opened exclusively; on network shares and with polling, by the quiet
period as before.

The injected clock never moves in these tests, so the quiet period never ends: whatever is
handed over was handed over by the close (or the exclusive open), not by waiting.
"""

from __future__ import annotations

import fcntl
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.watching import Recorder, wait_until

import bridge.daemon.watcher as watcher_module
from bridge.daemon.watcher import Completion, FolderWatcher, IntakeOptions
from bridge.files.mounts import Filesystem

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify")

FROZEN = 1000.0


@pytest.fixture
def make_watcher() -> Iterator[Callable[..., FolderWatcher]]:
    made: list[FolderWatcher] = []

    def make(folder: Path, on_complete: Callable[[Path], None], **options: object):
        clock = options.pop("clock")
        watcher = FolderWatcher(
            IntakeOptions(folders=(folder,), **options),  # type: ignore[arg-type]
            on_complete,
            clock=clock,  # type: ignore[arg-type]
        )
        made.append(watcher)
        watcher.start()
        return watcher

    yield make
    for watcher in made:
        watcher.stop()


def closing_watcher(make: Callable[..., FolderWatcher], folder: Path, recorder: Recorder,
                    **options: object) -> FolderWatcher:  # fmt: skip
    options.setdefault("quiet_seconds", 30.0)
    return make(folder, recorder, clock=lambda: FROZEN, complete_on_close=True, **options)


def test_a_local_folder_completes_files_when_their_writer_closes_them(
    tmp_path: Path, make_watcher: Callable[..., FolderWatcher]
) -> None:
    recorder = Recorder()
    watcher = closing_watcher(make_watcher, tmp_path, recorder)
    assert watcher.completion() == {tmp_path: Completion.CLOSE_WRITE}

    with open(tmp_path / "aapen.xml", "wb") as still_open:
        still_open.write(b"<BehandlerKrav>")
        still_open.flush()
        (tmp_path / "lukket.xml").write_bytes(b"<BehandlerKrav/>")
        assert recorder.wait_for_name("lukket.xml")
        assert recorder.names() == ["lukket.xml"]  # the one still open waits
        still_open.write(b"</BehandlerKrav>")
    assert recorder.wait_for_name("aapen.xml")
    assert recorder.calls[-1] == (tmp_path / "aapen.xml", len(b"<BehandlerKrav></BehandlerKrav>"))


def test_a_file_renamed_into_place_is_complete_at_once(
    tmp_path: Path, make_watcher: Callable[..., FolderWatcher]
) -> None:
    inbox, elsewhere = tmp_path / "inbox", tmp_path / "elsewhere"
    inbox.mkdir()
    elsewhere.mkdir()
    recorder = Recorder()
    closing_watcher(make_watcher, inbox, recorder)

    (inbox / ".krav.xml.part").write_bytes(b"<a/>")  # written under a name that is skipped
    os.rename(inbox / ".krav.xml.part", inbox / "krav.xml")
    assert recorder.wait_for_name("krav.xml")
    (elsewhere / "flyttet.xml").write_bytes(b"<b/>")  # written in another folder, moved in
    os.rename(elsewhere / "flyttet.xml", inbox / "flyttet.xml")
    assert recorder.wait_for_name("flyttet.xml")
    assert recorder.names() == ["krav.xml", "flyttet.xml"]


def test_a_file_written_again_after_its_close_is_a_new_version(
    tmp_path: Path, make_watcher: Callable[..., FolderWatcher]
) -> None:
    recorder = Recorder()
    closing_watcher(make_watcher, tmp_path, recorder)
    target = tmp_path / "krav.xml"
    target.write_bytes(b"<a/>")
    assert recorder.wait_for_name("krav.xml")
    with open(target, "ab") as again:
        again.write(b"<!-- rettet -->")
    assert recorder.wait_for_name("krav.xml", count=2)
    assert [size for _path, size in recorder.calls] == [4, 4 + len(b"<!-- rettet -->")]


@pytest.mark.parametrize("polling", [True, False], ids=["polling", "network-share"])
def test_polling_and_network_shares_keep_the_quiet_period(
    tmp_path: Path,
    make_watcher: Callable[..., FolderWatcher],
    monkeypatch: pytest.MonkeyPatch,
    polling: bool,
) -> None:
    if not polling:
        monkeypatch.setattr(watcher_module, "filesystem_of", lambda _p: Filesystem("cifs", True))
    recorder = Recorder()
    watcher = closing_watcher(make_watcher, tmp_path, recorder, polling=polling)
    assert watcher.completion() == {tmp_path: Completion.QUIET}

    (tmp_path / "krav.xml").write_bytes(b"<a/>")
    assert wait_until(lambda: watcher.pending == 1)
    (tmp_path / "krav.xml").write_bytes(b"<a/><b/>")  # closed twice: still only the quiet period
    assert wait_until(lambda: watcher.pending == 1)
    assert recorder.names() == []


def test_without_complete_on_close_every_folder_waits_for_the_quiet_period(
    tmp_path: Path, make_watcher: Callable[..., FolderWatcher]
) -> None:
    recorder = Recorder()
    watcher = make_watcher(tmp_path, recorder, clock=lambda: FROZEN, quiet_seconds=30.0)
    assert watcher.completion() == {tmp_path: Completion.QUIET}
    (tmp_path / "krav.xml").write_bytes(b"<a/>")
    assert wait_until(lambda: watcher.pending == 1)
    assert recorder.names() == []


def test_where_share_modes_tell_an_exclusive_open_completes_a_file(
    tmp_path: Path, make_watcher: Callable[..., FolderWatcher], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Windows' rule, run here with flock standing in for its share modes: a file is complete
    as soon as nobody holds it, with no quiet period. (The open is tried again every tick, so
    this clock moves; the quiet period is far longer than the test.)"""
    monkeypatch.setattr(watcher_module, "_SHARE_MODES", True)
    recorder = Recorder()
    watcher = make_watcher(
        tmp_path,
        recorder,
        clock=time.monotonic,
        quiet_seconds=3600.0,
        complete_on_close=True,
        polling=True,
    )
    assert watcher.completion() == {tmp_path: Completion.EXCLUSIVE_OPEN}

    target = tmp_path / "laast.xml"
    with open(target, "wb") as writer:
        fcntl.flock(writer.fileno(), fcntl.LOCK_EX)
        writer.write(b"<a/>")
        writer.flush()
        assert wait_until(lambda: watcher.pending == 1)
        (tmp_path / "fri.xml").write_bytes(b"<b/>")
        assert recorder.wait_for_name("fri.xml")
        assert recorder.names() == ["fri.xml"]
    assert recorder.wait_for_name("laast.xml")
