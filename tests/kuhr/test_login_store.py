"""Where a personal HelseID login is kept: a file only its owner reads (POSIX), DPAPI on Windows
(here with a stand-in for pywin32's win32crypt that checks how it is called: machine scope, the
bridge's entropy), never the token in the clear on Windows, and an unreadable record named as
such with what to do."""

from __future__ import annotations

import stat
import sys
import time
import types
from pathlib import Path

import pytest

from bridge.config import ConfigError
from bridge.kuhr import login_store
from bridge.kuhr.login_store import LoginRecord, LoginStore

RECORD = LoginRecord(
    refresh_token="rt-secret-value",
    refresh_expires_at=time.time() + 3600,
    client_id="bkm-bridge",
    issuer="https://helseid-sts.test.nhn.no",
    logged_in_at=time.time(),
    name="Kari Fastlege",
    hpr_number="9144900",
)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")
def test_a_file_only_its_owner_reads(tmp_path: Path) -> None:
    store = LoginStore(tmp_path / "state" / "helseid-login-dev.json")
    assert store.load() is None
    store.save(RECORD)
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert store.load() == RECORD
    assert "rt-secret-value" not in repr(store.load())
    assert store.delete() and not store.delete()


class _FakeDpapi(types.ModuleType):
    """win32crypt's two calls, reversible, recording their arguments."""

    def __init__(self) -> None:
        super().__init__("win32crypt")
        self.calls: list[tuple[object, ...]] = []

    def CryptProtectData(self, data, description, entropy, reserved, prompt, flags):
        self.calls.append(("protect", description, entropy, flags))
        return b"sealed:" + bytes(reversed(data))

    def CryptUnprotectData(self, blob, entropy, reserved, prompt, flags):
        self.calls.append(("unprotect", entropy, flags))
        assert blob.startswith(b"sealed:")
        return "desc", bytes(reversed(blob[len(b"sealed:") :]))


def test_dpapi_on_windows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _FakeDpapi()
    monkeypatch.setitem(sys.modules, "win32crypt", fake)
    monkeypatch.setattr(login_store, "sys", types.SimpleNamespace(platform="win32"))
    monkeypatch.setattr(login_store, "_lock", lambda fd: None)
    monkeypatch.setattr(login_store, "_unlock", lambda fd: None)
    store = LoginStore(tmp_path / "helseid-login-prod.json")
    assert store.protection == "DPAPI (machine scope)"
    with store.locked():
        store.save(RECORD)
    raw = store.path.read_bytes()
    assert raw.startswith(b"DPAPI:")
    assert b"rt-secret-value" not in raw and b"Kari" not in raw
    assert store.load() == RECORD
    protect, unprotect = fake.calls
    assert protect[0] == "protect" and protect[3] == 0x4  # CRYPTPROTECT_LOCAL_MACHINE
    assert protect[2] == unprotect[1] == b"bkm-bridge HelseID login"
    store.path.write_bytes(b'{"version": 1}')  # not DPAPI-protected: refused on Windows
    with pytest.raises(ConfigError, match="bkm-bridge logout"):
        store.load()


def test_an_unreadable_record_says_what_to_do(tmp_path: Path) -> None:
    store = LoginStore(tmp_path / "login.json")
    store.path.write_text("not json")
    with pytest.raises(ConfigError, match=r"run `bkm-bridge logout` and `bkm-bridge login`"):
        store.load()
