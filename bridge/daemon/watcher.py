"""Folder intake: notice the files an EPJ drops and hand each over once it is completely written.

Watchdog events only say "look here"; the observer thread records the path and returns. One
background thread of our own does the rest: it keeps candidates (path → size and mtime_ns when
last observed, and since when, on the injected clock) and hands a file to `on_complete` once
that pair has not moved for `quiet_seconds` and, where configured, an exclusive open succeeds
and a done-file is there. Network shares lose events, so the same thread rescans every folder
every `rescan_seconds`. Each (path, size, mtime_ns) is handed over at most once; whether the
content is new is the pipeline's business (it decides by sha256). A path that disappears is
forgotten entirely, so if it comes back it counts as a new file.

With `complete_on_close`, a folder on a local disk needs no quiet period: on Linux (inotify) a
file is complete when its writer closes it after writing (IN_CLOSE_WRITE) or when it is renamed
into place; on Windows as soon as it can be opened exclusively (no one has it open any more).
A file written again after that is a new version, as always. Folders on network shares (whose
writers are other machines: no close events, and share-mode answers cached) and the polling
observer keep the quiet period and the rescans (`FolderWatcher.completion()` says which applies
where). A file whose close event is lost still completes by the quiet period.

A lock file in each folder (`.bkm-bridge.lock`, an OS lock held for the watcher's life) keeps a
second bridge process away from a folder the first one is taking files from.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import logging
import os
import re
import socket
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from types import TracebackType

from watchdog.events import (
    DirCreatedEvent,
    DirMovedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from bridge.errors import BridgeError
from bridge.files.fsutil import WINDOWS_LOCK_OFFSET, remove_if_stale_temp, try_lock
from bridge.files.mounts import filesystem_of

if sys.platform == "win32":
    import ctypes
    import msvcrt
    from ctypes import wintypes
else:
    import fcntl

log = logging.getLogger("bridge.watcher")

LOCK_FILE_NAME = ".bkm-bridge.lock"
DONE_SUFFIX = ".done"
# Names an EPJ (or a copy tool) uses while a file is still being written, and done-files.
_SKIPPED_SUFFIXES = (".tmp", ".temp", ".part", ".partial", DONE_SUFFIX)
_MAX_TICK_SECONDS = 0.25
_MIN_TICK_SECONDS = 0.005
# Events that can mean "a file appeared or changed"; opens and read-only closes (our own
# reads among them) are not asked for at all.
_EVENT_TYPES: list[type[FileSystemEvent]] = [
    FileCreatedEvent,
    FileModifiedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileMovedEvent,
    FileDeletedEvent,
    DirCreatedEvent,
    DirMovedEvent,
]
# Where close-write events say when a file is complete, only they, renames and deletions are
# asked for: a file's creation and each of its writes (most of them the bridge's own receipt
# writes) would only be dropped again. A file whose close is missed is found by the rescan.
_CLOSE_EVENT_TYPES: list[type[FileSystemEvent]] = [
    FileClosedEvent,
    FileMovedEvent,
    FileDeletedEvent,
]
_DIR_EVENT_TYPES: list[type[FileSystemEvent]] = [DirCreatedEvent, DirMovedEvent]


@dataclass(frozen=True)
class IntakeOptions:
    """Where to look and when a file counts as completely written.

    `include` and `exclude` are fnmatch globs, case-insensitive. `include` is matched against
    the file name (an empty tuple takes every name). `exclude` is matched against the file name,
    its path relative to the watched folder (with `/`), and the name of every subfolder on the
    way, so `exclude=("arkiv",)` keeps the watcher out of an `arkiv` subfolder when recursing.
    """

    folders: tuple[Path, ...]
    recursive: bool = False
    include: tuple[str, ...] = ("*.xml",)
    exclude: tuple[str, ...] = ()
    quiet_seconds: float = 2.0
    rescan_seconds: float = 30.0  # 0 = only the scan at start (and explicit scan()/drain())
    polling: bool = False
    done_files: bool = False
    exclusive_open: bool = True
    lock_folders: bool = True
    # On local disks, a file is complete once its writer has closed it (see the module's
    # docstring); the quiet period stays for everything else.
    complete_on_close: bool = False

    def __post_init__(self) -> None:
        folders = tuple(Path(folder) for folder in self.folders)
        if not folders:
            raise ValueError("IntakeOptions needs at least one folder to watch")
        if self.quiet_seconds < 0:
            raise ValueError(f"quiet_seconds must be >= 0, not {self.quiet_seconds}")
        if self.rescan_seconds < 0:
            raise ValueError(f"rescan_seconds must be >= 0, not {self.rescan_seconds}")
        object.__setattr__(self, "folders", folders)
        object.__setattr__(self, "include", tuple(self.include))
        object.__setattr__(self, "exclude", tuple(self.exclude))


class FolderLockedError(BridgeError):
    """Another bridge process holds the lock file of a watched folder."""


# --- which names are ours to take ------------------------------------------------------------


def _compile_globs(patterns: Iterable[str]) -> re.Pattern[str] | None:
    parts = [f"(?:{fnmatch.translate(pattern)})" for pattern in patterns]
    return re.compile("|".join(parts), re.IGNORECASE) if parts else None


class _NameFilter:
    """The skip rules that need nothing but names (cheap: applied before any stat)."""

    def __init__(self, options: IntakeOptions, is_own_file: Callable[[str], bool]) -> None:
        self._include = _compile_globs(options.include)
        self._exclude = _compile_globs(options.exclude)
        self._is_own_file = is_own_file

    def skip_file(self, name: str, relative: str | None = None) -> bool:
        """`relative` is the `/`-separated path below the watched folder, for nested files."""
        lowered = name.lower()
        if lowered[:1] in (".", "~") or lowered.endswith(_SKIPPED_SUFFIXES):
            return True
        if self._include is not None and not self._include.match(name):
            return True
        if self._exclude is not None and (
            self._exclude.match(name) or (relative is not None and self._exclude.match(relative))
        ):
            return True
        return self._is_own_file(name)

    def skip_dir(self, name: str) -> bool:
        if name[:1] in (".", "~"):
            return True
        return self._exclude is not None and self._exclude.match(name) is not None


# --- bookkeeping -----------------------------------------------------------------------------


class Completion(Enum):
    """How the intake knows that a file in a folder is completely written."""

    CLOSE_WRITE = "when its writer closes it (close-write events)"
    EXCLUSIVE_OPEN = "as soon as it can be opened exclusively"
    QUIET = "once size and mtime stay unchanged for the quiet period"


@dataclass(frozen=True)
class _Root:
    path: str  # absolute, as configured: every event and scan path starts with it
    prefix: str  # path + separator
    real: str  # symlinks resolved, normcased: where links may point
    completion: Completion = Completion.QUIET
    filesystem: str = "unknown"

    @classmethod
    def of(cls, folder: Path) -> _Root:
        path = os.path.abspath(folder)
        return cls(path, os.path.join(path, ""), os.path.normcase(os.path.realpath(path)))

    def completing(self, completion: Completion, filesystem: str) -> _Root:
        return replace(self, completion=completion, filesystem=filesystem)

    def contains(self, real_target: str) -> bool:
        target = os.path.normcase(real_target)
        return target == self.real or target.startswith(os.path.join(self.real, ""))


class _Absent(Enum):
    GONE = "gone"  # no such path (any more)
    NOT_OURS = "not ours"  # a folder, device, link pointing outside, or not stat-able now


@dataclass(slots=True)
class _Candidate:
    root: _Root
    size: int
    mtime_ns: int
    since: float  # clock time at which this size and mtime_ns were first observed
    due: float  # clock time of the next look (stat) from the stability check
    closed: bool = False  # its writer closed it since this size and mtime were observed

    def changed_to(self, size: int, mtime_ns: int, now: float, quiet: float) -> None:
        self.size, self.mtime_ns, self.since, self.due = size, mtime_ns, now, now + quiet
        self.closed = False


@dataclass(slots=True, frozen=True)
class _HandedOver:
    root: _Root
    size: int
    mtime_ns: int


# --- completeness checks that ask the OS -----------------------------------------------------


def _done_file_present(path: str, mtime_ns: int) -> bool:
    """`NAME.xml.done` or `NAME.done`, written no earlier than the file itself.

    An older done-file belongs to an earlier version of a file that has since been rewritten,
    so it does not count until the EPJ writes (or touches) it again.
    """
    for done in (path + DONE_SUFFIX, os.path.splitext(path)[0] + DONE_SUFFIX):
        try:
            if os.stat(done).st_mtime_ns >= mtime_ns:
                return True
        except OSError:
            continue
    return False


if sys.platform == "win32":
    _kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    _CreateFileW = _kernel32.CreateFileW
    _CreateFileW.argtypes = [
        wintypes.LPCWSTR,
        wintypes.DWORD,
        wintypes.DWORD,
        wintypes.LPVOID,
        wintypes.DWORD,
        wintypes.DWORD,
        wintypes.HANDLE,
    ]
    _CreateFileW.restype = wintypes.HANDLE
    _CloseHandle = _kernel32.CloseHandle
    _CloseHandle.argtypes = [wintypes.HANDLE]
    _CloseHandle.restype = wintypes.BOOL
    _INVALID_HANDLE = wintypes.HANDLE(-1).value
    _GENERIC_READ = 0x80000000
    _OPEN_EXISTING = 3
    _FILE_ATTRIBUTE_NORMAL = 0x80
    _ERROR_FILE_NOT_FOUND = 2
    _ERROR_PATH_NOT_FOUND = 3
    _ERROR_SHARING_VIOLATION = 32
    _ERROR_LOCK_VIOLATION = 33

    def _can_open_exclusively(path: str) -> bool:
        """Open with share mode 0: fails while anyone (the EPJ still writing) has it open."""
        handle = _CreateFileW(
            path, _GENERIC_READ, 0, None, _OPEN_EXISTING, _FILE_ATTRIBUTE_NORMAL, None
        )
        if handle == _INVALID_HANDLE:
            error = ctypes.get_last_error()
            # Busy or gone: not complete (a vanished file is forgotten on the next check).
            # Anything else, e.g. access denied: hand over, the pipeline reports it.
            return error not in (
                _ERROR_SHARING_VIOLATION,
                _ERROR_LOCK_VIOLATION,
                _ERROR_FILE_NOT_FOUND,
                _ERROR_PATH_NOT_FOUND,
            )
        _CloseHandle(handle)
        return True

else:

    def _can_open_exclusively(path: str) -> bool:
        """A non-blocking exclusive flock on a read fd (advisory: only writers that lock count)."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except (FileNotFoundError, NotADirectoryError):
            return False  # vanished: the next check forgets it
        except OSError:
            return True  # e.g. no read permission: hand over, the pipeline reports it
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # another process holds a lock: still being written
        except OSError:
            return True  # this filesystem does not do flock; the quiet period has to do
        finally:
            os.close(fd)  # also drops our lock
        return True


# --- folder lock -----------------------------------------------------------------------------

_NO_FOLDER_LOCKS = "folder locks are not supported here; make sure only one bridge watches it"


class _FolderLock:
    """`.bkm-bridge.lock`: an OS lock for the watcher's life, and who holds it, as text.

    The OS drops the lock when its process dies, so a file left behind by a killed process is
    simply taken over. The file is removed on release while still locked; whoever opened the
    old file meanwhile notices (different inode) and starts again on a fresh one.
    """

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.path = os.path.join(folder, LOCK_FILE_NAME)
        self._fd: int | None = None

    def acquire(self) -> None:
        for _attempt in range(10):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o644)
            try:
                if not try_lock(fd, unsupported=_NO_FOLDER_LOCKS):
                    holder = _read_holder(fd)
                    raise FolderLockedError(
                        f"{self.folder} is already watched by another bkm-bridge process "
                        f"({holder or 'holder unknown'})"
                    )
                if _is_same_file(fd, self.path):
                    _write_holder(fd)
                    self._fd = fd
                    return
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)  # we locked a file its previous holder had just removed
        raise FolderLockedError(f"{self.folder}: the lock file keeps being replaced; try again")

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        if sys.platform == "win32":
            with contextlib.suppress(OSError):
                os.lseek(fd, WINDOWS_LOCK_OFFSET, os.SEEK_SET)
                msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
            os.close(fd)
            with contextlib.suppress(OSError):  # someone else may have it open: leave it
                os.unlink(self.path)
        else:
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            os.close(fd)


def probe_folder_lock(folder: str) -> None:
    """Take the watcher's lock of `folder` and release it at once (`config check`): raises
    FolderLockedError while another bridge holds it, OSError when it cannot be made."""
    lock = _FolderLock(folder)
    lock.acquire()
    lock.release()


def _is_same_file(fd: int, path: str) -> bool:
    try:
        opened, named = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (opened.st_dev, opened.st_ino) == (named.st_dev, named.st_ino)


def _read_holder(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 4096).decode("utf-8", errors="replace")
    except OSError:
        return ""
    return ", ".join(line.strip() for line in text.splitlines() if line.strip())


def _write_holder(fd: int) -> None:
    started = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    text = f"host={socket.gethostname()}\npid={os.getpid()}\nstarted={started}\n"
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, text.encode("utf-8"))


# --- observer side ---------------------------------------------------------------------------


_INOTIFY = sys.platform.startswith("linux")
if _INOTIFY:
    from watchdog.observers.inotify import InotifyFullEmitter
    from watchdog.observers.inotify_c import InotifyConstants

    class _ArrivalsEmitter(InotifyFullEmitter):
        """Full inotify events without IN_MOVED_FROM.

        watchdog holds each IN_MOVED_FROM up to 0.5 s for its IN_MOVED_TO when the two come
        in separate reads, and every event behind it waits as long: the bridge's own receipt
        renames make one per receipt, so a claim closed just after one waited ~0.5 s for
        intake (7 % of single files in bench_watch). A file moved out of the folder needs no
        event (it is not there when looked at; rescans forget it); a file renamed in is an
        unpaired IN_MOVED_TO, a move without a source, which intake takes as complete."""

        def get_event_mask_from_filter(self):  # type: ignore[no-untyped-def]
            return super().get_event_mask_from_filter() & ~InotifyConstants.IN_MOVED_FROM


# Where an exclusive open fails while anyone has the file open (Windows share modes); an
# flock elsewhere is advisory and says nothing about writers that do not lock.
_SHARE_MODES = sys.platform == "win32"


class _StopNoise(logging.Filter):
    """Drops watchdog's "queue_events() called when the thread is inactive" ERROR: its inotify
    emitter logs it when it is stopped while a read is in progress (the emitter's own stop
    closed the queue under it), which is every clean shutdown that meets an event in flight.
    Nothing is lost: the watcher is stopping, and a restart rescans the folders."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("InotifyEmitter.queue_events() called when")


_STOP_NOISE = _StopNoise()
logging.getLogger("watchdog.observers.inotify").addFilter(_STOP_NOISE)  # the same object: once


def _new_observer(polling: bool, interval: float, recursive: bool) -> BaseObserver:
    if polling:
        return PollingObserver(timeout=interval)
    if _INOTIFY:
        if not recursive:
            return BaseObserver(_ArrivalsEmitter, timeout=interval)
        # Full events: a file renamed in from outside the folder is a move (complete), not a
        # create (a file that may still be being written). In a tree, moves out stay asked
        # for: watchdog needs both halves of a folder's move to keep its watches right.
        return Observer(timeout=interval, generate_full_events=True)
    return Observer(timeout=interval)


def _completion_for(root: _Root, options: IntakeOptions, polling: bool) -> _Root:
    """The way files in `root` are known complete, from the options, the platform, the
    observer in use and the filesystem the folder lives on."""
    if not options.complete_on_close:
        return root.completing(Completion.QUIET, "")
    filesystem = filesystem_of(root.path)
    if filesystem.network:
        completion = Completion.QUIET
    elif _SHARE_MODES and options.exclusive_open:
        completion = Completion.EXCLUSIVE_OPEN
    elif _INOTIFY and not polling:
        completion = Completion.CLOSE_WRITE
    else:
        completion = Completion.QUIET
    return root.completing(completion, filesystem.kind)


class _EventRecorder(FileSystemEventHandler):
    """Runs on the observer thread: notes the path and returns, nothing else."""

    def __init__(self, record: Callable[[FileSystemEvent, _Root], None], root: _Root) -> None:
        super().__init__()
        self._record = record
        self._root = root

    def dispatch(self, event: FileSystemEvent) -> None:
        self._record(event, self._root)


# --- the watcher -----------------------------------------------------------------------------


class FolderWatcher:
    """Finds complete files in the watched folders and calls `on_complete(path)` for each.

    Paths handed over are absolute (the folder made absolute, symlinks in it kept).
    `on_complete` runs on the watcher's own thread, one file at a time; an exception from it
    is logged (file name and exception type only) and the file still counts as handed over.
    """

    def __init__(
        self,
        options: IntakeOptions,
        on_complete: Callable[[Path], None],
        *,
        clock: Callable[[], float] = time.monotonic,
        is_own_file: Callable[[str], bool] = lambda name: False,
    ) -> None:
        self._options = options
        self._on_complete = on_complete
        self._clock = clock
        self._filter = _NameFilter(options, is_own_file)
        self._roots = tuple(_Root.of(folder) for folder in options.folders)
        self._fast = False  # some folder completes files without the quiet period
        self._tick_seconds = max(
            _MIN_TICK_SECONDS, min(options.quiet_seconds / 4, _MAX_TICK_SECONDS)
        )
        self._poll_seconds = max(0.1, min(1.0, options.quiet_seconds / 2))

        # Everything below is touched only with _work_lock held (the worker's tick, scan(),
        # drain()), so hand-over decisions never race each other.
        self._work_lock = threading.RLock()
        self._candidates: dict[str, _Candidate] = {}
        self._handed_over: dict[str, _HandedOver] = {}
        self._collectors: list[list[Path]] = []
        self._next_rescan_at: float | None = None
        self._last_rescan_at: float | None = None

        # Filled by the observer thread, emptied by the worker (path → root, and whether the
        # last event for it says its writer is done: closed after writing, or renamed there).
        self._events_lock = threading.Lock()
        self._dirty_files: dict[str, tuple[_Root, bool]] = {}
        self._dirty_dirs: dict[str, _Root] = {}

        self._lifecycle_lock = threading.Lock()
        self._started = False
        self._stopped = False
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._tick_done = threading.Event()
        self._locks: list[_FolderLock] = []
        self._observer: BaseObserver | None = None
        self._thread: threading.Thread | None = None

    # -- public surface

    @property
    def pending(self) -> int:
        """Candidates not yet complete."""
        return len(self._candidates)

    def completion(self) -> dict[Path, Completion]:
        """How files are known complete in each watched folder (decided at start)."""
        return {Path(root.path): root.completion for root in self._roots}

    @property
    def last_rescan_at(self) -> float | None:
        """Clock time at which the last full scan finished."""
        return self._last_rescan_at

    def start(self) -> None:
        with self._lifecycle_lock:
            if self._started or self._stopped:
                raise RuntimeError("a FolderWatcher can be started once")
            self._started = True
        for root in self._roots:
            if not os.path.isdir(root.path):
                raise FileNotFoundError(errno.ENOENT, "folder to watch does not exist", root.path)
        try:
            if self._options.lock_folders:
                for root in self._roots:
                    lock = _FolderLock(root.path)
                    lock.acquire()
                    self._locks.append(lock)
            self._observer = self._start_observer()
        except BaseException:
            self._release_locks()
            raise
        self._thread = threading.Thread(target=self._run, name="bkm-bridge-intake", daemon=True)
        self._thread.start()
        log.info(
            "watching %d folder(s)%s, quiet period %.2f s, rescan every %.0f s",
            len(self._roots),
            " recursively" if self._options.recursive else "",
            self._options.quiet_seconds,
            self._options.rescan_seconds,
        )
        if self._options.complete_on_close:
            for root in self._roots:
                where = f" ({root.filesystem})" if root.filesystem else ""
                log.info("%s%s: a file is taken %s", root.path, where, root.completion.value)

    def stop(self, timeout: float = 5.0) -> None:
        with self._lifecycle_lock:
            if self._stopped:
                return
            self._stopped = True
        deadline = time.monotonic() + timeout
        self._stopping.set()
        self._wake.set()
        if self._observer is not None:
            with contextlib.suppress(Exception):
                self._observer.stop()
                self._observer.join(max(0.0, deadline - time.monotonic()))
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                log.warning("intake thread still busy handing over a file after %.1f s", timeout)
        self._release_locks()
        if thread is not None:
            log.info("stopped watching")

    def scan(self) -> None:
        with self._work_lock:
            self._full_scan()

    def drain(self, timeout: float) -> list[Path]:
        """Scan, then wait until every candidate present now is handed over or gone.

        Returns the paths handed over during this call (files the running watcher handed over
        before it went to `on_complete` as usual). Waits at most `timeout` real seconds; what
        is still incomplete then is logged and left for later. Without start() the checks run
        on the calling thread, `on_complete` is called from it, and no folder lock is held.
        """
        deadline = time.monotonic() + timeout
        handed: list[Path] = []
        with self._work_lock:
            self._full_scan()
            targets = set(self._candidates)
            self._collectors.append(handed)
        self._wake.set()
        try:
            while True:
                self._tick_done.clear()
                with self._work_lock:
                    done = {str(path) for path in handed}
                    left = {p for p in targets if p in self._candidates and p not in done}
                remaining = deadline - time.monotonic()
                if not left or remaining <= 0:
                    break
                if self._worker_running():
                    self._tick_done.wait(min(remaining, 0.5))
                else:
                    self._tick()
                    time.sleep(min(remaining, self._tick_seconds))
        finally:
            with self._work_lock:
                self._collectors.remove(handed)
        if left:
            names = sorted(os.path.basename(path) for path in left)
            log.warning(
                "%d file(s) still incomplete after %.1f s, left for later: %s%s",
                len(names),
                timeout,
                ", ".join(names[:20]),
                " …" if len(names) > 20 else "",
            )
        return handed

    def __enter__(self) -> FolderWatcher:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- lifecycle helpers

    def _start_observer(self) -> BaseObserver:
        try:
            return self._schedule_observer(self._options.polling)
        except OSError as exc:
            if self._options.polling:
                raise
            # E.g. the inotify watch limit, or a share that offers no change notifications.
            log.warning("native file events unavailable (%s); polling instead", exc.strerror)
            return self._schedule_observer(polling=True)

    def _schedule_observer(self, polling: bool) -> BaseObserver:
        self._roots = tuple(_completion_for(root, self._options, polling) for root in self._roots)
        self._fast = any(root.completion is not Completion.QUIET for root in self._roots)
        observer = _new_observer(polling, self._poll_seconds, self._options.recursive)
        try:
            for root in self._roots:
                observer.schedule(
                    _EventRecorder(self._record_event, root),
                    root.path,
                    recursive=self._options.recursive,
                    event_filter=self._event_types(root),
                )
            observer.start()
        except BaseException:
            with contextlib.suppress(Exception):
                observer.stop()
            raise
        return observer

    def _event_types(self, root: _Root) -> list[type[FileSystemEvent]]:
        if root.completion is not Completion.CLOSE_WRITE:
            return _EVENT_TYPES
        return _CLOSE_EVENT_TYPES + (_DIR_EVENT_TYPES if self._options.recursive else [])

    def _release_locks(self) -> None:
        locks, self._locks = self._locks, []
        for lock in locks:
            lock.release()

    def _worker_running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stopping.is_set()

    def _record_event(self, event: FileSystemEvent, root: _Root) -> None:
        """Observer thread: remember which paths to look at; the worker does the looking.
        Names that are never taken (temp files, hidden files, the bridge's own receipts, whose
        writes make most of a folder's events) are dropped here, before they cost more."""
        kind = event.event_type
        with self._events_lock:
            if event.is_directory:
                if kind in ("created", "moved"):
                    self._dirty_dirs[os.fsdecode(event.dest_path or event.src_path)] = root
                return
            src = os.fsdecode(event.src_path)
            if kind == "moved":
                if src and not self._skipped(src):
                    self._dirty_files[src] = (root, False)
                dest = os.fsdecode(event.dest_path)
                if not dest or self._skipped(dest):
                    return
                done, src = True, dest  # renamed into place: written completely before
            elif self._skipped(src):
                return
            elif kind == "closed":
                done = True
            elif kind == "attrib":  # a chmod or touch after the close does not reopen it
                done = self._dirty_files.get(src, (root, False))[1]
            else:
                done = False
            self._dirty_files[src] = (root, done)
        if done and root.completion is Completion.CLOSE_WRITE:
            self._wake.set()

    def _skipped(self, path: str) -> bool:
        return self._filter.skip_file(os.path.basename(path))

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._tick()
            except Exception as exc:
                log.error("intake check failed (%s); trying again", type(exc).__name__)
            self._wake.wait(self._tick_seconds)
            self._wake.clear()

    # -- the work (always with _work_lock held)

    def _tick(self) -> None:
        with self._work_lock:
            now = self._clock()
            if self._next_rescan_at is None or (
                self._options.rescan_seconds > 0 and now >= self._next_rescan_at
            ):
                self._full_scan()
            self._take_events()
            self._hand_over(self._complete_candidates())
        self._tick_done.set()

    def _full_scan(self) -> None:
        scan_started = self._clock()
        for root in self._roots:
            seen: set[str] = set()
            if self._walk(root, root.path, "", seen, scan_started):
                # Forget files that are gone, in case their delete event was lost.
                gone = [
                    path
                    for path, handed in self._handed_over.items()
                    if handed.root is root and path not in seen
                ]
                for path in gone:
                    del self._handed_over[path]
        self._last_rescan_at = self._clock()
        self._next_rescan_at = self._last_rescan_at + self._options.rescan_seconds

    def _walk(self, root: _Root, start: str, relative: str, seen: set[str], now: float) -> bool:
        """Observe every eligible file under `start`; False if some folder could not be listed.

        `relative` is `start` below the root, `/`-separated with a trailing `/` (or "").
        """
        complete = True
        stack = [(start, relative)]
        while stack:
            folder, rel = stack.pop()
            try:
                with os.scandir(folder) as listing:
                    entries = list(listing)
            except OSError as exc:
                if rel and isinstance(exc, FileNotFoundError | NotADirectoryError):
                    continue  # a subfolder removed while we walked
                complete = False
                log.warning("cannot list folder %s (%s)", folder, exc.strerror)
                continue
            for entry in entries:
                name = entry.name
                try:
                    is_dir = entry.is_dir(follow_symlinks=False)
                except OSError:
                    continue
                if is_dir:
                    if self._options.recursive and not self._filter.skip_dir(name):
                        stack.append((entry.path, f"{rel}{name}/"))
                    continue
                if self._filter.skip_file(name, f"{rel}{name}" if rel else None):
                    remove_if_stale_temp(entry.path, name, now=time.time())
                    continue
                found = self._stat_eligible(entry.path, root)
                if isinstance(found, os.stat_result):
                    seen.add(entry.path)
                    self._observe(entry.path, root, found, now)
        return complete

    def _stat_eligible(self, path: str, root: _Root) -> os.stat_result | _Absent:
        """The stat of a regular file we may take, or why there is none."""
        try:
            found = os.lstat(path)
            if stat.S_ISLNK(found.st_mode):
                if not root.contains(os.path.realpath(path)):
                    return _Absent.NOT_OURS
                found = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            return _Absent.GONE
        except OSError:
            return _Absent.NOT_OURS
        return found if stat.S_ISREG(found.st_mode) else _Absent.NOT_OURS

    def _observe(self, path: str, root: _Root, found: os.stat_result, now: float) -> None:
        size, mtime_ns = found.st_size, found.st_mtime_ns
        handed = self._handed_over.get(path)
        if handed is not None and handed.size == size and handed.mtime_ns == mtime_ns:
            return
        quiet = self._quiet_for(root)
        candidate = self._candidates.get(path)
        if candidate is None:
            self._candidates[path] = _Candidate(root, size, mtime_ns, now, now + quiet)
        elif candidate.size != size or candidate.mtime_ns != mtime_ns:
            candidate.changed_to(size, mtime_ns, now, quiet)

    def _quiet_for(self, root: _Root) -> float:
        """Where an exclusive open tells when the writer is done, no quiet period is needed:
        the open is tried at once (and again every tick while it fails)."""
        if root.completion is Completion.EXCLUSIVE_OPEN:
            return 0.0
        return self._options.quiet_seconds

    def _forget(self, path: str) -> None:
        self._candidates.pop(path, None)
        self._handed_over.pop(path, None)

    def _take_events(self) -> None:
        with self._events_lock:
            files, self._dirty_files = self._dirty_files, {}
            dirs, self._dirty_dirs = self._dirty_dirs, {}
        now = self._clock()
        for path, (root, done) in files.items():
            relative = self._relative_parts(path, root)
            if relative is None or self._filter.skip_file(
                relative[-1], "/".join(relative) if len(relative) > 1 else None
            ):
                continue
            found = self._stat_eligible(path, root)
            if isinstance(found, os.stat_result):
                self._observe(path, root, found, now)
                if done and root.completion is Completion.CLOSE_WRITE:
                    candidate = self._candidates.get(path)
                    if candidate is not None:
                        candidate.closed, candidate.due = True, now
            elif found is _Absent.GONE:
                self._forget(path)
        if not self._options.recursive:
            return
        for folder, root in dirs.items():
            relative = self._relative_parts(folder, root)
            if relative is not None and not self._filter.skip_dir(relative[-1]):
                self._walk(root, folder, "/".join(relative) + "/", set(), now)

    def _relative_parts(self, path: str, root: _Root) -> list[str] | None:
        """Path below the root as parts, or None if it is not ours to look at."""
        if not path.startswith(root.prefix):
            return None
        parts = path[len(root.prefix) :].split(os.sep)
        if len(parts) > 1 and (
            not self._options.recursive or any(self._filter.skip_dir(p) for p in parts[:-1])
        ):
            return None
        return parts

    def _complete_candidates(self) -> list[tuple[str, _Candidate]]:
        """Look again at every candidate whose quiet period is up (O(pending), stat only those).

        Events and rescans that see a change restart the quiet period in between; this look
        is what makes a file complete, so lost events only delay, never hurry, a hand-over.
        """
        now = self._clock()
        ready: list[tuple[str, _Candidate]] = []
        for path, candidate in list(self._candidates.items()):
            if candidate.due > now:
                continue
            quiet = self._quiet_for(candidate.root)
            try:
                found = os.stat(path)
            except (FileNotFoundError, NotADirectoryError):
                self._forget(path)
                continue
            except OSError:
                candidate.due = now + self._tick_seconds
                continue
            if found.st_size != candidate.size or found.st_mtime_ns != candidate.mtime_ns:
                candidate.changed_to(found.st_size, found.st_mtime_ns, now, quiet)
                continue
            exclusive = self._options.exclusive_open or (
                candidate.root.completion is Completion.EXCLUSIVE_OPEN
            )
            if (self._options.done_files and not _done_file_present(path, candidate.mtime_ns)) or (
                exclusive and not _can_open_exclusively(path)
            ):
                candidate.due = now + self._tick_seconds
                continue
            ready.append((path, candidate))
        return ready

    def _hand_over(self, ready: list[tuple[str, _Candidate]]) -> None:
        for path, candidate in ready:
            del self._candidates[path]
            self._handed_over[path] = _HandedOver(
                candidate.root, candidate.size, candidate.mtime_ns
            )
            name = os.path.basename(path)
            log.debug("complete: %s", name)
            handed = Path(path)
            try:
                self._on_complete(handed)
            except Exception as exc:
                log.error("handing over %s failed (%s)", name, type(exc).__name__)
            for collector in self._collectors:
                collector.append(handed)
