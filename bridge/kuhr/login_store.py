"""Where a personal HelseID login is kept between runs: its refresh token, when that token
expires, and who logged in (name and HPR number, for `config check`; never the fødselsnummer).

The record is protected at rest:
- Windows: DPAPI (`CryptProtectData` through pywin32) with the machine scope, so that the
  service account can read what an administrator's `bkm-bridge login` stored (the file itself
  lies in the bridge's state folder, which only administrators and the service may read);
- elsewhere: a file only its owner may read and write (0600), written atomically.

Several processes (the daemon and a CLI command) may refresh the same login; a refresh token
is used once, so a refresh runs under an exclusive lock on `<file>.lock` and re-reads the
record first (`locked()`).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bridge.config import ConfigError

FORMAT_VERSION = 1
_DPAPI_ENTROPY = b"bkm-bridge HelseID login"


@dataclass(frozen=True)
class LoginRecord:
    refresh_token: str = field(repr=False)
    refresh_expires_at: float  # epoch seconds (HelseID's rt_expires_in after the last refresh)
    client_id: str
    issuer: str
    logged_in_at: float
    name: str | None = None
    hpr_number: str | None = None

    def with_refresh(self, token: str, expires_at: float) -> LoginRecord:
        data = asdict(self)
        data.update(refresh_token=token, refresh_expires_at=expires_at)
        return LoginRecord(**data)


class LoginStore:
    """One login record at `path` (per KUHR environment)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def protection(self) -> str:
        return "DPAPI (machine scope)" if sys.platform == "win32" else "file mode 0600"

    def load(self) -> LoginRecord | None:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ConfigError(
                f"cannot read the HelseID login {self.path}: {exc.strerror}"
            ) from None
        try:
            data = json.loads(_unprotect(raw))
            if data.pop("version", None) != FORMAT_VERSION:
                raise ValueError("unknown format")
            return LoginRecord(**data)
        except (ValueError, TypeError):
            raise ConfigError(
                f"the HelseID login in {self.path} cannot be read (made on another machine or "
                "by another version?): run `bkm-bridge logout` and `bkm-bridge login`"
            ) from None

    def save(self, record: LoginRecord) -> None:
        data: dict[str, Any] = {"version": FORMAT_VERSION, **asdict(record)}
        payload = _protect(json.dumps(data).encode("utf-8"))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent
        )
        try:
            if sys.platform != "win32":
                os.fchmod(fd, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def delete(self) -> bool:
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        return True

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the login's lock (across processes) for a read-refresh-write."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            _lock(fd)
            try:
                yield
            finally:
                _unlock(fd)
        finally:
            os.close(fd)


def _protect(data: bytes) -> bytes:
    if sys.platform != "win32":
        return data
    import win32crypt  # pywin32

    blob = win32crypt.CryptProtectData(
        data,
        "bkm-bridge HelseID login",
        _DPAPI_ENTROPY,
        None,
        None,
        0x4,  # LOCAL_MACHINE
    )
    return b"DPAPI:" + base64.b64encode(blob)


def _unprotect(raw: bytes) -> bytes:
    if not raw.startswith(b"DPAPI:"):
        if sys.platform == "win32":
            raise ValueError("not protected by DPAPI")
        return raw
    if sys.platform != "win32":
        raise ValueError("protected by DPAPI on a Windows machine")
    import win32crypt  # pywin32

    _, data = win32crypt.CryptUnprotectData(
        base64.b64decode(raw[len(b"DPAPI:") :]), _DPAPI_ENTROPY, None, None, 0
    )
    return bytes(data)


def _lock(fd: int) -> None:
    if sys.platform == "win32":
        import msvcrt

        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_LOCK, 1)  # retries for ~10 s, then raises
    else:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX)


def _unlock(fd: int) -> None:
    if sys.platform == "win32":
        import msvcrt

        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
    else:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_UN)
