"""Folder intake: files are handed over once complete, once per version, and nothing else is.

Everything runs on the real filesystem under tmp_path with short quiet periods, against both
the native (inotify) and the polling observer. Waits are generous; "not handed over" is checked
after a file written later has been handed over (the watcher works in order) plus a few quiet
periods.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.watching import WAIT, Recorder, wait_until

import bridge.daemon.watcher as watcher_module
from bridge.daemon.watcher import LOCK_FILE_NAME, FolderLockedError, FolderWatcher, IntakeOptions
from bridge.files.receipts import is_receipt_name

QUIET = 0.15

OBSERVERS = [pytest.param(False, id="native"), pytest.param(True, id="polling")]

# watchdog's inotify observer warns when it re-adds the watch of a subfolder created while it
# was adding it (recursive watching of a fresh tree); harmless, and not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:Callback with id:RuntimeWarning")


@pytest.fixture
def make_watcher() -> Iterator[Callable[..., FolderWatcher]]:
    made: list[FolderWatcher] = []

    def make(
        folders: Path | tuple[Path, ...],
        on_complete: Callable[[Path], None],
        *,
        clock: Callable[[], float] = time.monotonic,
        is_own_file: Callable[[str], bool] = lambda name: False,
        start: bool = True,
        **options: object,
    ) -> FolderWatcher:
        options.setdefault("quiet_seconds", QUIET)
        if isinstance(folders, Path):
            folders = (folders,)
        watcher = FolderWatcher(
            IntakeOptions(folders=folders, **options),  # type: ignore[arg-type]
            on_complete,
            clock=clock,
            is_own_file=is_own_file,
        )
        made.append(watcher)
        if start:
            watcher.start()
        return watcher

    yield make
    for watcher in made:
        watcher.stop()


def run_python(code: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


# --- completeness ----------------------------------------------------------------------------


@pytest.mark.parametrize("polling", OBSERVERS)
def test_a_dropped_file_is_handed_over_once(
    tmp_path: Path, make_watcher: Callable[..., FolderWatcher], polling: bool
) -> None:
    recorder = Recorder()
    watcher = make_watcher(tmp_path, recorder, polling=polling, rescan_seconds=0.2)
    (tmp_path / "krav.xml").write_bytes(b"<BehandlerKrav/>")

    assert recorder.wait_for_name("krav.xml")
    assert recorder.calls[0] == (tmp_path / "krav.xml", len(b"<BehandlerKrav/>"))
    assert recorder.calls[0][0].is_absolute()
    # Several rescans and quiet periods later it still has been handed over only once.
    rescanned = watcher.last_rescan_at
    assert wait_until(lambda: (watcher.last_rescan_at or 0) > (rescanned or 0) + 0.3)
    assert recorder.names() == ["krav.xml"]
    assert watcher.pending == 0
    # ... and always from the watcher's own thread, never the observer's.
    assert recorder.threads == {"bkm-bridge-intake"}


@pytest.mark.parametrize("polling", OBSERVERS)
def test_a_file_written_slowly_is_handed_over_only_after_it_stops_growing(
    tmp_path: Path, make_watcher: Callable[..., FolderWatcher], polling: bool
) -> None:
    quiet = 0.5
    recorder = Recorder()
    make_watcher(tmp_path, recorder, polling=polling, quiet_seconds=quiet)
    chunk = b"<Regning>" + b"x" * 1000 + b"</Regning>\n"
    chunks = 15
    finished_at: list[float] = []

    def write_slowly() -> None:
        with open(tmp_path / "sakte.xml", "wb") as handle:
            for _ in range(chunks):
                handle.write(chunk)
                handle.flush()
                time.sleep(0.05)  # well below the quiet period, 0.75 s in all: longer than it
        finished_at.append(time.monotonic())

    writer = threading.Thread(target=write_slowly)
    writer.start()
    assert recorder.wait_for_name("sakte.xml")
    handed_at = time.monotonic()
    writer.join()

    assert finished_at and handed_at >= finished_at[0]
    assert recorder.calls == [(tmp_path / "sakte.xml", chunks * len(chunk))]


def test_quiet_period_is_measured_with_the_injected_clock(
    tmp_path: Path, make_watcher: Callable[..., FolderWatcher]
) -> None:
    now = [1000.0]
    recorder = Recorder()
    watcher = make_watcher(tmp_path, recorder, clock=lambda: now[0], quiet_seconds=5.0)
    (tmp_path / "krav.xml").write_bytes(b"<a/>")

    assert wait_until(lambda: watcher.pending == 1)
    time.sleep(0.5)  # real time passes, the clock does not: not complete
    assert recorder.names() == []
    now[0] += 5.0
    assert recorder.wait_for_name("krav.xml")


@pytest.mark.skipif(sys.platform == "win32", reason="flock is POSIX; Windows uses share modes")
@pytest.mark.parametrize("exclusive_open", [True, False])
def test_a_file_locked_by_another_process_waits_until_it_is_released(
    tmp_path: Path, make_watcher: Callable[..., FolderWatcher], exclusive_open: bool
) -> None:
    target = tmp_path / "laast.xml"
    target.write_bytes(b"<BehandlerKrav/>")
    holder = run_python(
        f"""
        import fcntl, sys
        handle = open({str(target)!r}, "rb")
        fcntl.flock(handle, fcntl.LOCK_EX)
        print("locked", flush=True)
        sys.stdin.readline()
        """
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        recorder = Recorder()
        watcher = make_watcher(tmp_path, recorder, quiet_seconds=0.1, exclusive_open=exclusive_open)
        if not exclusive_open:  # the control: only the lock held it back
            assert recorder.wait_for_name("laast.xml")
            return
        time.sleep(1.0)  # ten quiet periods
        assert recorder.names() == []
        assert watcher.pending == 1
        assert holder.stdin is not None
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.wait(WAIT) == 0
        assert recorder.wait_for_name("laast.xml")
        assert recorder.names() == ["laast.xml"]
    finally:
        holder.kill()
        holder.wait()


def test_done_files_gate_each_version(
    tmp_path: Path, make_watcher: Callable[..., FolderWatcher]
) -> None:
    recorder = Recorder()
    watcher = make_watcher(tmp_path, recorder, done_files=True, include=("*",))
    (tmp_path / "a.xml").write_bytes(b"<a/>")
    (tmp_path / "b.xml").write_bytes(b"<b/>")
    assert wait_until(lambda: watcher.pending == 2)
    time.sleep(4 * QUIET)
    assert recorder.names() == []

    (tmp_path / "a.xml.done").write_bytes(b"")
    assert recorder.wait_for_name("a.xml")
    (tmp_path / "b.done").write_bytes(b"")
    assert recorder.wait_for_name("b.xml")

    # The EPJ rewrites a.xml: the old done-file is older than the new version and does not count.
    time.sleep(0.05)
    (tmp_path / "a.xml").write_bytes(b"<a>corrected</a>")
    assert wait_until(lambda: watcher.pending == 1)
    time.sleep(4 * QUIET)
    assert recorder.names() == ["a.xml", "b.xml"]
    (tmp_path / "a.xml.done").touch()
    assert recorder.wait_for_name("a.xml", count=2)
    assert recorder.calls[-1] == (tmp_path / "a.xml", len(b"<a>corrected</a>"))
    time.sleep(2 * QUIET)
    assert sorted(recorder.names()) == ["a.xml", "a.xml", "b.xml"]  # done-files never


# --- what is skipped -------------------------------------------------------------------------


@pytest.mark.parametrize("polling", OBSERVERS)
def test_hidden_temporary_own_and_unmatched_names_are_skipped(
    tmp_path: Path, make_watcher: Callable[..., FolderWatcher], polling: bool
) -> None:
    recorder = Recorder()
    make_watcher(tmp_path, recorder, polling=polling, is_own_file=is_receipt_name)
    skipped = [
        ".skjult.xml",
        "~$krav.xml",
        "krav.xml.tmp",
        "krav.tmp",
        "krav.TEMP",
        "krav.xml.part",
        "krav.partial",
        "krav.xml.done",
        "notat.txt",
        "krav.apprec.xml",
        "krav.xml.kvittering.json",
        ".krav.xml.kvittering.json.abc123.tmp",
    ]
    for name in skipped:
        (tmp_path / name).write_bytes(b"<a/>")
    (tmp_path / "mappe.xml").mkdir()
    (tmp_path / "mappe.xml" / "inne.xml").write_bytes(b"<a/>")
    (tmp_path / "krav.xml").write_bytes(b"<a/>")
    (tmp_path / "STORE.XML").write_bytes(b"<a/>")  # include globs ignore case

    assert recorder.wait_for(lambda names: {"krav.xml", "STORE.XML"} <= set(names))
    time.sleep(3 * QUIET)
    assert sorted(recorder.names()) == ["STORE.XML", "krav.xml"]


def test_exclude_globs_match_names_relative_paths_and_subfolders(
    tmp_path: Path, make_watcher: Callable[..., FolderWatcher]
) -> None:
    for relative in [
        "behold.xml",
        "prove_TEST.xml",
        "arkiv/gammel.xml",
        "ARKIV2/gammel.xml",
        "under/behold.xml",
        "under/utkast/kladd.xml",
        "under/dypere/behold.xml",
    ]:
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_bytes(b"<a/>")
    recorder = Recorder()
    watcher = make_watcher(
        tmp_path,
        recorder,
        recursive=True,
        exclude=("*_test.xml", "arkiv*", "under/utkast/*"),
    )

    handed = watcher.drain(timeout=WAIT)

    expected = {tmp_path / "behold.xml", tmp_path / "under/behold.xml"}
    expected.add(tmp_path / "under/dypere/behold.xml")
    assert set(handed) == expected
    assert sorted(path for path, _size in recorder.calls) == sorted(expected)


def test_symlinks_pointing_outside_the_folder_are_skipped(
    tmp_path: Path, make_watcher: Callable[..., FolderWatcher]
) -> None:
    inbox, outside = tmp_path / "inn", tmp_path / "utenfor"
    inbox.mkdir()
    outside.mkdir()
    (outside / "hemmelig.xml").write_bytes(b"<a/>")
    (inbox / "ekte.xml").write_bytes(b"<a/>")
    (inbox / "lenke-ut.xml").symlink_to(outside / "hemmelig.xml")
    (inbox / "lenke-inn.xml").symlink_to(inbox / "ekte.xml")
    (inbox / "brutt.xml").symlink_to(inbox / "finnes-ikke.xml")
    recorder = Recorder()
    watcher = make_watcher(inbox, recorder, start=False)

    handed = watcher.drain(timeout=WAIT)

    assert sorted(path.name for path in handed) == ["ekte.xml", "lenke-inn.xml"]
    assert watcher.pending == 0


# --- recursion -------------------------------------------------------------------------------


@pytest.mark.parametrize("polling", OBSERVERS)
def test_without_recursion_subfolders_are_ignored(
    tmp_path: Path, make_watcher: Callable[..., FolderWatcher], polling: bool
) -> None:
    recorder = Recorder()
    make_watcher(tmp_path, recorder, polling=polling)
    (tmp_path / "under").mkdir()
    (tmp_path / "under" / "inne.xml").write_bytes(b"<a/>")
    (tmp_path / "topp.xml").write_bytes(b"<a/>")

    assert recorder.wait_for_name("topp.xml")
    time.sleep(3 * QUIET)
    assert recorder.names() == ["topp.xml"]


@pytest.mark.parametrize("polling", OBSERVERS)
def test_with_recursion_new_and_moved_in_subfolders_are_watched(
    tmp_path: Path, make_watcher: Callable[..., FolderWatcher], polling: bool
) -> None:
    inbox = tmp_path / "inn"
    inbox.mkdir()
    recorder = Recorder()
    make_watcher(inbox, recorder, polling=polling, recursive=True)

    (inbox / "ny" / "dypere").mkdir(parents=True)
    (inbox / "ny" / "dypere" / "a.xml").write_bytes(b"<a/>")
    assert recorder.wait_for_name("a.xml")

    prepared = tmp_path / "ferdig"
    (prepared / "indre").mkdir(parents=True)
    (prepared / "b.xml").write_bytes(b"<b/>")
    (prepared / "indre" / "c.xml").write_bytes(b"<c/>")
    prepared.rename(inbox / "flyttet")
    assert recorder.wait_for(lambda names: {"b.xml", "c.xml"} <= set(names))
    assert {path for path, _size in recorder.calls} == {
        inbox / "ny" / "dypere" / "a.xml",
        inbox / "flyttet" / "b.xml",
        inbox / "flyttet" / "indre" / "c.xml",
    }
    assert len(recorder.calls) == 3


# --- versions, deletion, rescans -------------------------------------------------------------


@pytest.mark.parametrize("polling", OBSERVERS)
def test_a_file_changed_after_hand_over_is_handed_over_again(
    tmp_path: Path, make_watcher: Callable[..., FolderWatcher], polling: bool
) -> None:
    recorder = Recorder()
    make_watcher(tmp_path, recorder, polling=polling)
    target = tmp_path / "krav.xml"
    target.write_bytes(b"<a>1</a>")
    assert recorder.wait_for_name("krav.xml")

    time.sleep(0.05)
    target.write_bytes(b"<a>rettet</a>")
    assert recorder.wait_for_name("krav.xml", count=2)
    time.sleep(3 * QUIET)
    assert recorder.calls == [(target, len(b"<a>1</a>")), (target, len(b"<a>rettet</a>"))]


def test_a_zero_byte_file_is_handed_over_once_it_stays_empty_or_has_content(
    tmp_path: Path, make_watcher: Callable[..., FolderWatcher]
) -> None:
    recorder = Recorder()
    make_watcher(tmp_path, recorder, quiet_seconds=0.3)
    (tmp_path / "tom.xml").write_bytes(b"")
    with open(tmp_path / "fylles.xml", "wb") as handle:
        handle.flush()
        time.sleep(0.05)
        handle.write(b"<BehandlerKrav/>")

    assert recorder.wait_for(lambda names: {"tom.xml", "fylles.xml"} <= set(names))
    time.sleep(2 * 0.3)
    assert sorted(recorder.calls) == [
        (tmp_path / "fylles.xml", len(b"<BehandlerKrav/>")),
        (tmp_path / "tom.xml", 0),
    ]


def test_an_unreadable_file_is_handed_over_so_the_pipeline_can_report_it(
    tmp_path: Path, make_watcher: Callable[..., FolderWatcher]
) -> None:
    target = tmp_path / "ulesbar.xml"
    target.write_bytes(b"<a/>")
    target.chmod(0)
    try:
        recorder = Recorder()
        make_watcher(tmp_path, recorder)
        assert recorder.wait_for_name("ulesbar.xml")
    finally:
        target.chmod(0o644)


@pytest.mark.parametrize("away", ["deleted", "moved-out"])
def test_a_file_deleted_or_moved_out_while_pending_is_forgotten(
    tmp_path: Path, make_watcher: Callable[..., FolderWatcher], away: str
) -> None:
    inbox, elsewhere = tmp_path / "inbox", tmp_path / "elsewhere"
    inbox.mkdir()
    elsewhere.mkdir()
    recorder = Recorder()
    watcher = make_watcher(inbox, recorder, done_files=True)  # never completes by itself
    (inbox / "borte.xml").write_bytes(b"<a/>")
    assert wait_until(lambda: watcher.pending == 1)

    if away == "deleted":
        (inbox / "borte.xml").unlink()
    else:  # no event for a move out is asked of the kernel: looking finds it gone
        os.rename(inbox / "borte.xml", elsewhere / "borte.xml")
    (inbox / "borte.xml.done").write_bytes(b"")
    (inbox / "neste.xml").write_bytes(b"<a/>")
    (inbox / "neste.xml.done").write_bytes(b"")
    assert recorder.wait_for_name("neste.xml")
    assert wait_until(lambda: watcher.pending == 0)
    assert recorder.names() == ["neste.xml"]


class DeafObserver:
    """Stands in for watchdog when events are lost (a share that sends none)."""

    def schedule(self, *args: object, **kwargs: object) -> None:
        return None

    def start(self) -> None:
        return None

    def stop(self) -> None:
        return None

    def join(self, timeout: float | None = None) -> None:
        return None


def test_rescans_find_files_whose_events_were_lost(
    tmp_path: Path, make_watcher: Callable[..., FolderWatcher], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(watcher_module, "_new_observer", lambda *_args: DeafObserver())
    rescanning, not_rescanning = tmp_path / "med", tmp_path / "uten"
    rescanning.mkdir()
    not_rescanning.mkdir()
    (rescanning / "fra-foer.xml").write_bytes(b"<a/>")
    recorder = Recorder()
    watcher = make_watcher(rescanning, recorder, rescan_seconds=0.3)
    control = make_watcher(not_rescanning, recorder, rescan_seconds=0)

    assert recorder.wait_for_name("fra-foer.xml")  # found by the scan at start
    assert watcher.last_rescan_at is not None
    (rescanning / "tapt.xml").write_bytes(b"<a/>")
    (not_rescanning / "tapt-uten.xml").write_bytes(b"<a/>")
    assert recorder.wait_for_name("tapt.xml")
    time.sleep(0.6 + 2 * QUIET)
    assert sorted(recorder.names()) == ["fra-foer.xml", "tapt.xml"]

    # An explicit scan (what drain() does first) finds it without events or periodic rescans.
    control.scan()
    assert recorder.wait_for_name("tapt-uten.xml")


def test_without_events_a_slowly_written_file_still_waits_until_it_stops_growing(
    tmp_path: Path, make_watcher: Callable[..., FolderWatcher], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(watcher_module, "_new_observer", lambda *_args: DeafObserver())
    quiet = 0.4
    recorder = Recorder()
    target = tmp_path / "sakte.xml"
    with open(target, "wb") as handle:
        handle.write(b"<BehandlerKrav>")
        handle.flush()
        watcher = make_watcher(tmp_path, recorder, quiet_seconds=quiet, rescan_seconds=0)
        assert wait_until(lambda: watcher.pending == 1)  # seen by the scan at start
        for _ in range(12):  # 0.6 s of writing, only the watcher's own looks can notice
            time.sleep(0.05)
            handle.write(b"<Regning/>")
            handle.flush()
        handle.write(b"</BehandlerKrav>")
    finished_at = time.monotonic()

    assert recorder.wait_for_name("sakte.xml")
    assert time.monotonic() >= finished_at + quiet - 0.05
    assert recorder.calls == [(target, target.stat().st_size)]


def test_files_present_at_start_are_found_in_every_folder(
    tmp_path: Path, make_watcher: Callable[..., FolderWatcher]
) -> None:
    first, second = tmp_path / "en", tmp_path / "to"
    first.mkdir()
    second.mkdir()
    (first / "a.xml").write_bytes(b"<a/>")
    (second / "b.xml").write_bytes(b"<b/>")
    recorder = Recorder()
    make_watcher((first, second), recorder)

    assert recorder.wait_for(lambda names: sorted(names) == ["a.xml", "b.xml"])


def test_temp_files_left_by_a_killed_writer_are_removed_when_stale(
    tmp_path: Path, make_watcher: Callable[..., FolderWatcher]
) -> None:
    """A receipt's atomic write killed halfway leaves `.NAME.<pid>-<thread>.tmp` beside the
    clinic's files; the scan removes one untouched for ten minutes, never a fresh one (a write
    in progress) nor a temp file of another program."""
    stale = tmp_path / ".a.xml.kvittering.json.4242-139872.tmp"
    fresh = tmp_path / ".b.xml.kvittering.json.4243-139872.tmp"
    foreign = tmp_path / "~$rapport.tmp"
    for path in (stale, fresh, foreign):
        path.write_bytes(b"{")
    hour_ago = time.time() - 3600
    os.utime(stale, (hour_ago, hour_ago))
    os.utime(foreign, (hour_ago, hour_ago))
    (tmp_path / "c.xml").write_bytes(b"<c/>")
    recorder = Recorder()
    make_watcher(tmp_path, recorder)

    assert recorder.wait_for_name("c.xml")
    assert not stale.exists()
    assert fresh.exists() and foreign.exists()
    assert recorder.names() == ["c.xml"]


# --- drain (watch --once) --------------------------------------------------------------------


@pytest.mark.parametrize("started", [True, False], ids=["started", "not-started"])
def test_drain_returns_what_completed_and_leaves_the_rest_out(
    tmp_path: Path,
    make_watcher: Callable[..., FolderWatcher],
    caplog: pytest.LogCaptureFixture,
    started: bool,
) -> None:
    (tmp_path / "klar.xml").write_bytes(b"<a/>")
    (tmp_path / "klar.xml.done").write_bytes(b"")
    (tmp_path / "venter.xml").write_bytes(b"<a/>")
    recorder = Recorder()
    # A quiet period long enough that the running watcher cannot finish before drain() starts.
    watcher = make_watcher(tmp_path, recorder, done_files=True, start=started, quiet_seconds=0.5)

    with caplog.at_level(logging.WARNING, logger="bridge.watcher"):
        began = time.monotonic()
        handed = watcher.drain(timeout=1.5)
        took = time.monotonic() - began

    assert handed == [tmp_path / "klar.xml"]
    assert recorder.names() == ["klar.xml"]
    assert watcher.pending == 1
    assert 1.4 <= took < WAIT
    assert "venter.xml" in caplog.text


def test_drain_returns_as_soon_as_everything_present_is_complete(
    tmp_path: Path, make_watcher: Callable[..., FolderWatcher]
) -> None:
    for number in range(20):
        (tmp_path / f"krav{number}.xml").write_bytes(b"<a/>")
    recorder = Recorder()
    watcher = make_watcher(tmp_path, recorder, quiet_seconds=0.5)

    began = time.monotonic()
    handed = watcher.drain(timeout=WAIT)

    assert time.monotonic() - began < WAIT / 2
    assert sorted(path.name for path in handed) == sorted(f"krav{n}.xml" for n in range(20))
    assert len(recorder.calls) == 20


# --- robustness ------------------------------------------------------------------------------


def test_an_exception_in_on_complete_is_logged_without_its_message_and_intake_goes_on(
    tmp_path: Path, make_watcher: Callable[..., FolderWatcher], caplog: pytest.LogCaptureFixture
) -> None:
    recorder = Recorder(fail_for=lambda path: path.name == "feiler.xml")
    with caplog.at_level(logging.DEBUG, logger="bridge.watcher"):
        make_watcher(tmp_path, recorder)
        (tmp_path / "feiler.xml").write_bytes(b"<a/>")
        assert recorder.wait_for_name("feiler.xml")
        (tmp_path / "neste.xml").write_bytes(b"<a/>")
        assert recorder.wait_for_name("neste.xml")
        time.sleep(2 * QUIET)

    assert recorder.names() == ["feiler.xml", "neste.xml"]
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name == "bridge.watcher")
    assert "feiler.xml" in logged and "RuntimeError" in logged
    assert "12345678901" not in logged and "Nordmann" not in logged
    assert str(tmp_path) not in logged  # file names, not where the clinic keeps them


@pytest.mark.parametrize("polling", OBSERVERS)
def test_stop_is_prompt_idempotent_and_releases_the_folder(
    tmp_path: Path, make_watcher: Callable[..., FolderWatcher], polling: bool
) -> None:
    recorder = Recorder()
    watcher = make_watcher(tmp_path, recorder, polling=polling, quiet_seconds=2.0)
    (tmp_path / "krav.xml").write_bytes(b"<a/>")
    assert wait_until(lambda: watcher.pending == 1)
    assert (tmp_path / LOCK_FILE_NAME).exists()

    began = time.monotonic()
    watcher.stop()
    took = time.monotonic() - began
    watcher.stop()

    print(f"stop() took {took * 1000:.1f} ms ({'polling' if polling else 'native'})")
    assert took < 2.0
    assert not (tmp_path / LOCK_FILE_NAME).exists()
    time.sleep(0.2)
    assert recorder.names() == []  # nothing is handed over after stop


def test_missing_folder_is_a_clear_error_and_holds_no_locks(
    tmp_path: Path, make_watcher: Callable[..., FolderWatcher]
) -> None:
    with pytest.raises(FileNotFoundError, match="finnes-ikke"):
        make_watcher((tmp_path, tmp_path / "finnes-ikke"), Recorder())
    assert not (tmp_path / LOCK_FILE_NAME).exists()
    make_watcher(tmp_path, Recorder())  # the first folder is free


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="folder"):
        IntakeOptions(folders=())
    with pytest.raises(ValueError, match="quiet_seconds"):
        IntakeOptions(folders=(Path("."),), quiet_seconds=-1)
    with pytest.raises(ValueError, match="rescan_seconds"):
        IntakeOptions(folders=(Path("."),), rescan_seconds=-1)
    options = IntakeOptions(folders=["inn"], include=["*.xml"])  # type: ignore[arg-type]
    assert options.folders == (Path("inn"),) and options.include == ("*.xml",)


# --- folder lock -----------------------------------------------------------------------------


def test_a_second_watcher_on_the_same_folder_is_refused(
    tmp_path: Path, make_watcher: Callable[..., FolderWatcher]
) -> None:
    recorder = Recorder()
    first = make_watcher(tmp_path, recorder, include=("*",))
    with pytest.raises(FolderLockedError) as refused:
        make_watcher(tmp_path, Recorder())
    assert f"pid={os.getpid()}" in str(refused.value)
    assert socket.gethostname() in str(refused.value)
    make_watcher(tmp_path, Recorder(), lock_folders=False)  # opting out is possible

    # The lock file is never handed over, even when every name is included.
    (tmp_path / "krav.xml").write_bytes(b"<a/>")
    assert recorder.wait_for_name("krav.xml")
    time.sleep(2 * QUIET)
    assert recorder.names() == ["krav.xml"]

    first.stop()
    make_watcher(tmp_path, Recorder())  # free again


def test_a_lock_held_by_another_process_names_it_and_a_killed_holder_does_not_block(
    tmp_path: Path, make_watcher: Callable[..., FolderWatcher]
) -> None:
    holder = run_python(
        f"""
        import sys, time
        from pathlib import Path
        from bridge.daemon.watcher import FolderWatcher, IntakeOptions
        watcher = FolderWatcher(IntakeOptions(folders=(Path({str(tmp_path)!r}),)), print)
        watcher.start()
        print("watching", flush=True)
        time.sleep(60)
        """
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "watching"
        with pytest.raises(FolderLockedError) as refused:
            make_watcher(tmp_path, Recorder())
        assert f"pid={holder.pid}" in str(refused.value)

        holder.send_signal(signal.SIGKILL)
        holder.wait(WAIT)
        assert f"pid={holder.pid}" in (tmp_path / LOCK_FILE_NAME).read_text()  # left behind
    finally:
        holder.kill()
        holder.wait()

    recorder = Recorder()
    make_watcher(tmp_path, recorder)  # the stale file is taken over
    assert f"pid={os.getpid()}" in (tmp_path / LOCK_FILE_NAME).read_text()
    (tmp_path / "krav.xml").write_bytes(b"<a/>")
    assert recorder.wait_for_name("krav.xml")


# --- a burst ---------------------------------------------------------------------------------


@pytest.mark.parametrize("polling", OBSERVERS)
def test_a_burst_of_1000_files_is_handed_over_exactly_once(
    tmp_path: Path, make_watcher: Callable[..., FolderWatcher], polling: bool
) -> None:
    quiet = 0.3
    recorder = Recorder()
    make_watcher(tmp_path, recorder, polling=polling, quiet_seconds=quiet)
    names = [f"krav{number:04d}.xml" for number in range(1000)]

    began = time.monotonic()
    for name in names:
        (tmp_path / name).write_bytes(b"<BehandlerKrav/>")
    written = time.monotonic()
    assert recorder.wait_for(lambda handed: len(handed) >= len(names), timeout=60)
    done = time.monotonic()
    time.sleep(2 * quiet)

    print(
        f"1000 files ({'polling' if polling else 'native'}): written in {written - began:.2f} s, "
        f"all handed over {done - written:.2f} s after the last was written "
        f"(quiet period {quiet} s)"
    )
    assert sorted(recorder.names()) == names
