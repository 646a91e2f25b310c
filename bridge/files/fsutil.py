"""Small filesystem helpers shared by every writer of files beside a clinic's originals.

A clinic's folder is shared (often over SMB) and anyone who can write there can plant things
where the bridge reads and writes: a symbolic link to a file outside the folder, a FIFO, a
device. So a path the bridge owns (a receipt) is never followed and never opened unless it is a
regular file (`entry_kind`, `read_regular_file`), every open is non-blocking, reads are bounded,
and a temp file is created only where nothing is (O_EXCL, which never follows a link).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import stat
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger("bridge.fsutil")
# On Windows a byte far past any text is locked, so others can still read who holds the file.
WINDOWS_LOCK_OFFSET = 1 << 20


# `.NAME.<pid>-<thread>.tmp`: the temp file of an atomic write (see `atomic_write`).
_TEMP_NAME = re.compile(r"^\..+\.(\d+)-\d+\.tmp$")
# A write takes milliseconds: a temp file this old was left by a killed process.
STALE_TEMP_SECONDS = 600.0

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_READ_FLAGS = (
    os.O_RDONLY | _NOFOLLOW | _NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0)
)
_WRITE_FLAGS = (
    os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _NONBLOCK | getattr(os, "O_BINARY", 0)
)


def remove_if_stale_temp(path: str, name: str, *, now: float) -> bool:
    """Remove `path` if it is an atomic write's temp file abandoned by a killed process
    (named like one and untouched for STALE_TEMP_SECONDS). True if it was removed."""
    if not _TEMP_NAME.match(name):
        return False
    try:
        if now - os.lstat(path).st_mtime < STALE_TEMP_SECONDS:
            return False
        os.unlink(path)
    except OSError:
        return False
    log.info("removed %s, left by an interrupted write", name)
    return True


def remove_abandoned_temps(folder: Path | str, *, recursive: bool = False) -> int:
    """At start-up: remove the temp files of atomic writes whose writer no longer runs (a
    killed bridge), without waiting STALE_TEMP_SECONDS. A temp file of a process that is alive
    is left (another bridge command may be writing); the age rule removes it if it stays.
    Hidden subfolders are not entered. Returns how many were removed."""
    removed = 0
    for entry in _walk_files(os.fspath(folder), recursive):
        match = _TEMP_NAME.match(entry.name)
        if match is None or _process_alive(int(match.group(1))):
            continue
        try:
            os.unlink(entry.path)
        except FileNotFoundError:
            continue
        except OSError as err:
            log.warning("cannot remove %s, left by an interrupted write: %s", entry.name, err)
            continue
        removed += 1
    if removed:
        log.info("removed %d temp file(s) left by interrupted writes in %s", removed, folder)
    return removed


def _walk_files(top: str, recursive: bool) -> Iterator[os.DirEntry[str]]:
    stack = [top]
    while stack:
        try:
            with os.scandir(stack.pop()) as listing:
                entries = list(listing)
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    if recursive and not entry.name.startswith("."):
                        stack.append(entry.path)
                    continue
            except OSError:
                continue
            yield entry


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    if sys.platform == "win32":
        return _windows_process_alive(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def _windows_process_alive(pid: int) -> bool:
    import ctypes
    from ctypes import wintypes

    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    kernel32.OpenProcess.argtypes = [wintypes.DWORD, wintypes.BOOL, wintypes.DWORD]
    kernel32.OpenProcess.restype = wintypes.HANDLE
    kernel32.GetExitCodeProcess.argtypes = [wintypes.HANDLE, ctypes.POINTER(wintypes.DWORD)]
    kernel32.CloseHandle.argtypes = [wintypes.HANDLE]
    handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
    if not handle:
        return ctypes.get_last_error() == 5  # ERROR_ACCESS_DENIED: it exists
    try:
        code = wintypes.DWORD()
        if not kernel32.GetExitCodeProcess(handle, ctypes.byref(code)):
            return True
        return code.value == 259  # STILL_ACTIVE
    finally:
        kernel32.CloseHandle(handle)


# --- what is at a path, and reading it safely -------------------------------------------------

REGULAR_FILE = "regular file"


def entry_kind(path: Path | str) -> str | None:
    """What the directory entry at `path` is, without following a link: None if there is
    none, REGULAR_FILE, or a word for anything else ("symbolic link", "FIFO", "directory" …)."""
    try:
        found = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return kind_of(found)


def kind_of(found: os.stat_result) -> str:
    mode = found.st_mode
    if stat.S_ISREG(mode):
        if getattr(found, "st_file_attributes", 0) & getattr(
            stat, "FILE_ATTRIBUTE_REPARSE_POINT", 0
        ):
            return "reparse point (link)"  # Windows: a junction or link lstat did not see
        return REGULAR_FILE
    if stat.S_ISLNK(mode):
        return "symbolic link"
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "special file"


class NotARegularFileError(OSError):
    """Something other than a regular file is where the bridge reads or writes a file of its
    own; it was neither followed nor opened. `kind` says what it is (see `entry_kind`)."""

    def __init__(self, path: Path | str, kind: str) -> None:
        super().__init__(errno.EINVAL, f"a {kind} is there, not a regular file", os.fspath(path))
        self.kind = kind


class FileTooLargeError(OSError):
    """A file the bridge only compares with what it would write is larger than it reads."""

    def __init__(self, path: Path | str, size: int, limit: int) -> None:
        super().__init__(errno.EFBIG, f"{size:,} bytes, more than {limit:,}", os.fspath(path))


def read_regular_file(path: Path | str, *, limit: int) -> bytes | None:
    """The bytes of the regular file at `path`, or None if nothing is there.

    A link is never followed and nothing but a regular file is opened (lstat first, then a
    non-blocking O_NOFOLLOW open whose fstat must be the same regular file: something swapped
    in between is refused too), so a FIFO cannot block the caller and a link to /dev/zero or to
    a file outside the folder is never read. Reads stop at `limit` bytes: a larger file raises
    FileTooLargeError, something else NotARegularFileError.
    """
    try:
        before = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    if kind_of(before) != REGULAR_FILE:
        raise NotARegularFileError(path, kind_of(before))
    if before.st_size > limit:
        raise FileTooLargeError(path, before.st_size, limit)
    try:
        fd = os.open(path, _READ_FLAGS)
    except FileNotFoundError:
        return None
    except OSError as err:
        if err.errno == errno.ELOOP:  # replaced by a link since the lstat
            raise NotARegularFileError(path, "symbolic link") from None
        raise
    try:
        opened = os.fstat(fd)
        if kind_of(opened) != REGULAR_FILE or not _same_file(opened, before):
            raise NotARegularFileError(path, f"{kind_of(opened)} swapped in while opening")
        data = read_past(fd, limit)
        if len(data) > limit:
            raise FileTooLargeError(path, len(data), limit)
        return data
    finally:
        os.close(fd)


def read_past(fd: int, limit: int, start: bytes = b"") -> bytes:
    """`start` (what was read already) and the rest of `fd` up to its end, but never more than
    one byte past `limit` in all: a result longer than `limit` means the file is too large."""
    chunks = [start]
    total = len(start)
    while total <= limit:
        chunk = os.read(fd, min(1 << 20, limit + 1 - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    if not a.st_ino and not b.st_ino:  # filesystems without inode numbers
        return True
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def remove_entry(path: Path | str) -> str | None:
    """Remove what is at `path` (a regular file, or a link, FIFO … planted there: the entry,
    never what a link points to). A directory is left. Returns the kind found there when it
    was not a regular file (None when it was one, or nothing was there)."""
    kind = entry_kind(path)
    if kind is None or kind == "directory":
        return kind
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    return None if kind == REGULAR_FILE else kind


def atomic_write(path: Path | str, data: bytes) -> None:
    """Write to a temp file in the same folder, then rename: a reader never sees half a file.

    The temp name is unique per process and thread (`.NAME.<pid>-<thread>.tmp`), so writers
    never collide and no random-name retries are needed: `mkstemp` cost a third more per file
    in the conversion benchmark. The temp file is created with O_EXCL, which never follows a
    link: whatever is already at that name (left by a killed process with the same id, or
    planted there) is removed as an entry, never written through. The rename replaces the
    entry at `path` (a link there is replaced, its target untouched); a directory there makes
    it fail. A temp file is never mistaken for a receipt.
    """
    folder, name = os.path.split(os.fspath(path))  # str, not Path: this runs once per file
    tmp = os.path.join(folder, f".{name}.{os.getpid()}-{threading.get_ident()}.tmp")
    fd = _create_exclusively(folder, tmp)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _create_exclusively(folder: str, tmp: str) -> int:
    for _attempt in range(3):
        try:
            return os.open(tmp, _WRITE_FLAGS, 0o644)
        except FileNotFoundError:
            os.makedirs(folder or ".", exist_ok=True)
        except FileExistsError:
            if remove_entry(tmp) == "directory":
                raise NotARegularFileError(tmp, "directory") from None
    return os.open(tmp, _WRITE_FLAGS, 0o644)


def try_lock(fd: int, *, unsupported: str) -> bool:
    """Take an exclusive OS lock on an open lock file without waiting; False if another
    process holds it. The OS drops it when the process dies. Where the filesystem has no
    locks (some network shares), logs `unsupported` and carries on as if locked."""
    if sys.platform == "win32":
        import msvcrt

        os.lseek(fd, WINDOWS_LOCK_OFFSET, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        finally:
            os.lseek(fd, 0, os.SEEK_SET)
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as exc:  # e.g. ENOLCK
        log.warning("%s (%s)", unsupported, exc.strerror)
    return True
