"""Reading a claim file: its bytes with a size limit (never more than the limit into memory),
and `convert_file`, the shell around the pure `bridge.core.convert.convert`."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

from bridge.core.convert import ConvertContext, ConvertResult, convert, too_large, unreadable
from bridge.errors import BridgeError
from bridge.files.fsutil import NotARegularFileError, kind_of, read_past


def convert_file(path: Path, context: ConvertContext) -> ConvertResult:
    """Read a file (refusing more than `max_bytes` without reading it all) and convert it."""
    try:
        data = read_limited(path, context.max_bytes)
    except TooLargeError as err:
        return ConvertResult(problems=[too_large(err.size, context.max_bytes)])
    except OSError as err:
        return ConvertResult(problems=[unreadable(err)])
    return convert(data, context)


class TooLargeError(BridgeError, OSError):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(0, f"it is {size:,} bytes, more than the limit of {limit:,}")
        self.size = size


_READ_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)


def read_limited(path: Path | str, max_bytes: int | None) -> bytes:
    """The file's bytes, refusing one over `max_bytes` before reading it. Plain `os` calls:
    this runs once per file of a batch, and a buffered file object cost as much as the read;
    reading the size fstat gives (not `max_bytes`) spares a 32 MB allocation per file.

    Only a regular file is read (a link to one is followed: the intake decided it may be): the
    open does not block, so a FIFO or device swapped in for a claim is refused, not waited on
    or read without end."""
    fd = os.open(path, _READ_FLAGS)
    try:
        found = os.fstat(fd)
        if not stat.S_ISREG(found.st_mode):
            raise NotARegularFileError(path, kind_of(found))
        size = found.st_size
        if max_bytes is not None and size > max_bytes:
            raise TooLargeError(size, max_bytes)
        data = os.read(fd, size + 1)
        if len(data) <= size:
            return data
        # grown since fstat: read on, up to one byte past the limit
        return read_past(fd, sys.maxsize if max_bytes is None else max_bytes, data)
    finally:
        os.close(fd)
