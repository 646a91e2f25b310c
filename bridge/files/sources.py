"""Reading a discovered claim back by its key: a plain file, or a member read in place from
its zip archive (the archive kept open while its members are read)."""

from __future__ import annotations

import contextlib
import hashlib
import threading
import zipfile
import zlib
from collections import OrderedDict

from bridge.files.discovery import split_key
from bridge.files.reading import TooLargeError, read_limited


class SourceReader:
    """Reads a source by its key: a file, or a zip member straight from its archive (a few
    archives are kept open). Every failure is an `OSError` with a sentence in `strerror`."""

    def __init__(self, max_open: int = 4) -> None:
        self._open: OrderedDict[str, zipfile.ZipFile] = OrderedDict()
        self._max_open = max_open
        self._lock = threading.Lock()

    def read(self, key: str, max_bytes: int | None = None) -> bytes:
        """The bytes; `TooLargeError` (before reading) for more than `max_bytes`."""
        split = split_key(key)
        if split is None:
            return read_limited(key, max_bytes)
        archive, member = split
        with self._lock:
            zipped = self._archive(archive)
            try:
                info = zipped.getinfo(member)
                if max_bytes is not None and info.file_size > max_bytes:
                    raise TooLargeError(info.file_size, max_bytes)
                return zipped.read(info)
            except KeyError:
                raise FileNotFoundError(0, "the member is no longer in the zip archive") from None
            except (zipfile.BadZipFile, zlib.error, EOFError) as err:
                raise OSError(0, f"the zip member is damaged ({err})") from None
            except (RuntimeError, NotImplementedError) as err:  # encrypted, unknown compression
                raise OSError(0, f"the zip member cannot be read ({err})") from None

    def size_and_sha256(self, key: str) -> tuple[int, str]:
        """Without holding a large file in memory."""
        digest = hashlib.sha256()
        size = 0
        split = split_key(key)
        with self._lock if split else contextlib.nullcontext():
            if split is None:
                handle = open(key, "rb")  # noqa: SIM115 - closed below
            else:
                try:
                    handle = self._archive(split[0]).open(split[1])
                except KeyError:
                    raise FileNotFoundError(0, "the member is not in the zip archive") from None
                except (zipfile.BadZipFile, RuntimeError, NotImplementedError) as err:
                    raise OSError(0, f"the zip member cannot be read ({err})") from None
            try:
                while chunk := handle.read(1 << 20):
                    digest.update(chunk)
                    size += len(chunk)
            except (zipfile.BadZipFile, zlib.error, EOFError) as err:
                raise OSError(0, f"the zip member is damaged ({err})") from None
            finally:
                handle.close()
        return size, digest.hexdigest()

    def _archive(self, archive: str) -> zipfile.ZipFile:
        zipped = self._open.get(archive)
        if zipped is not None:
            self._open.move_to_end(archive)
            return zipped
        try:
            zipped = zipfile.ZipFile(archive)
        except FileNotFoundError:
            raise
        except (OSError, zipfile.BadZipFile, ValueError) as err:
            raise OSError(0, f"not a readable zip archive ({err})") from None
        self._open[archive] = zipped
        while len(self._open) > self._max_open:
            self._open.popitem(last=False)[1].close()
        return zipped

    def close(self) -> None:
        with self._lock:
            while self._open:
                self._open.popitem()[1].close()
