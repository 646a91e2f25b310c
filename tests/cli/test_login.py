"""The behandler's personal HelseID login through the CLI, against a standalone sandbox on
loopback: `bkm-bridge login` in headless Chromium (the sandbox's login page, its test persons,
the loopback redirect), then praksis, submit and status on the stored login with DPoP on every
call; a cancelled login, a refused security level, logout; the daemon refreshing the login on
its own, and `/healthz` and `config check` saying when a new login is due.

Chromium is Debian's (`apt-get install -y chromium`, as CI does); the other tests stand in for
the browser with a plain HTTP form submitter (tests/support/form_browser.py, via $BROWSER).
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.chromium import CHROMIUM, Chromium
from support.paths import FIXTURES

from bridge.sandbox import SandboxSettings, start_sandbox
from bridge.sandbox.keys import KeyMaterial
from bridge.sandbox.server import RunningSandbox

SEED_XML = FIXTURES / "seed-arbeidsflyt.xml"
FORM_BROWSER = Path(__file__).resolve().parents[1] / "support" / "form_browser.py"
LEGE = "15837510047"
ROUTES = (
    "GET /jwk",
    "GET /data/praksis",
    "POST /process/sendinnbehandlerkravmelding",
    "GET /data/behandlerkravmelding",
    "GET /data/behandlerkravmelding/{id}",
)


@pytest.fixture(scope="module")
def served(
    sandbox_keys: KeyMaterial, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningSandbox]:
    state = tmp_path_factory.mktemp("login-sandbox")
    with start_sandbox(
        keys=sandbox_keys, state_dir=state, speed=200.0, settings=SandboxSettings(seed=3)
    ) as running:
        yield running


@pytest.fixture
def standalone(served: RunningSandbox) -> RunningSandbox:
    served.sandbox.reset()
    served.sandbox.tokens.logins.end_all()
    return served


def _config(tmp_path: Path, sandbox: RunningSandbox, extra: str = "") -> Path:
    assert sandbox.info_path is not None
    config = tmp_path / "bkm-bridge.toml"
    config.write_text(
        f'[kuhr]\nsandbox_state_dir = "{sandbox.info_path.parent}"\n\n'
        '[auth]\nmethod = "helseid"\ngrant = "authorization_code"\n'
        f'login_file = "{tmp_path / "login.json"}"\n\n'
        f'[watch]\nstate_dir = "{tmp_path / "state"}"\nquiet_seconds = 0.2\n{extra}',
        encoding="utf-8",
    )
    return config


def bkm(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge", *map(str, args)],
        capture_output=True, text=True, timeout=180, env={**os.environ, **(env or {})},
    )  # fmt: skip


def login_as(config: Path, person: str = LEGE) -> subprocess.CompletedProcess[str]:
    """`bkm-bridge login` with the form submitter standing in for the system browser."""
    browser = f"{sys.executable} {FORM_BROWSER} %s"
    return bkm("login", "--config", config, env={"BROWSER": browser, "BKM_TEST_PERSON": person})


def admin(sandbox: RunningSandbox, path: str, body: dict[str, Any] | None = None) -> Any:
    url = f"{sandbox.info['admin_url']}/{path}"
    response = httpx.post(url, json=body or {}) if body is not None else httpx.get(url)
    response.raise_for_status()
    return response.json()


@pytest.mark.skipif(
    not CHROMIUM.exists() and not os.environ.get("CI"),
    reason="needs Debian's chromium: apt-get install -y chromium",
)
def test_login_in_headless_chromium_then_claims_go_with_dpop(
    tmp_path: Path, standalone: RunningSandbox
) -> None:
    config = _config(tmp_path, standalone)
    login = subprocess.Popen(
        [sys.executable, "-m", "bridge", "login", "--config", str(config), "--no-browser"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert login.stderr is not None
        url = ""
        while not url:
            line = login.stderr.readline()
            assert line, "login ended before printing the address"
            if line.strip().startswith("http"):
                url = line.strip()
        with Chromium() as browser:
            browser.open(url)
            page = browser.text()
            assert "Logg inn med HelseID" in page
            for person in ("Kari Fastlege", "Ola Uten Praksis", "Per Nivå Tre"):
                assert f"Logg inn som {person}" in page
            assert f"fødselsnummer {LEGE} · HPR 9144900 · sikkerhetsnivå 4" in page
            browser.click(f"#person-{LEGE}")
            assert browser.text("#result") == "Du er logget inn"
            back = browser.url()
            assert back.startswith("http://127.0.0.1:") and "/callback?code=" in back
        out, err = login.communicate(timeout=60)
    finally:
        if login.poll() is None:
            login.kill()
    assert login.returncode == 0, err
    assert "Logged in: Kari Fastlege, HPR 9144900." in out
    assert "file mode 0600" in out
    stored = tmp_path / "login.json"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert LEGE not in stored.read_text()  # who: name and HPR number, never the fødselsnummer

    praksis = bkm("praksis", "--json", "--config", config)
    assert praksis.returncode == 0, praksis.stderr
    ids = [p["praksisId"] for p in json.loads(praksis.stdout)["praksiser"]]
    assert ids == ["1004326178", "1004326468"]
    sent = bkm("submit", SEED_XML, "--wait", "--praksis-id", "1004326178", "--config", config)
    assert sent.returncode == 1, sent.stderr  # two regninger avvist (README, "Exit codes")
    assert "Control finished: 2 avvist, 1 godkjent." in sent.stdout
    overview = bkm("status", "--config", config)
    assert overview.returncode == 0, overview.stderr
    stats = admin(standalone, "stats")
    assert set(ROUTES) <= set(stats["dpop_requests"])  # a checked DPoP proof on every route
    assert stats["tokens_by_grant"]["authorization_code"] == 1
    assert stats["tokens_by_grant"]["refresh_token"] >= 3  # each command renews the login
    assert "client_credentials" not in stats["tokens_by_grant"]

    checked = bkm("config", "check", "--config", config)
    assert checked.returncode == 0, checked.stdout
    assert "[ OK ] login: Kari Fastlege, HPR 9144900; lasts until" in checked.stdout


def test_the_login_rotates_the_refresh_token(tmp_path: Path, standalone: RunningSandbox) -> None:
    config = _config(tmp_path, standalone)
    assert login_as(config).returncode == 0
    stored = tmp_path / "login.json"
    first = json.loads(stored.read_text())["refresh_token"]
    assert bkm("praksis", "--config", config).returncode == 0
    second = json.loads(stored.read_text())["refresh_token"]
    assert second != first  # HelseID's refresh tokens are one-time: the new one is kept
    assert bkm("praksis", "--config", config).returncode == 0


def test_a_cancelled_login_stores_nothing(tmp_path: Path, standalone: RunningSandbox) -> None:
    config = _config(tmp_path, standalone)
    cancelled = login_as(config, "cancel")
    assert cancelled.returncode == 1
    assert "login failed: the login was not completed: access_denied" in cancelled.stderr
    assert not (tmp_path / "login.json").exists()
    refused = bkm("praksis", "--config", config)
    assert refused.returncode == 1
    assert "nobody is logged in with HelseID" in refused.stderr
    assert "bkm-bridge login" in refused.stderr


def test_kuhr_refuses_a_login_below_security_level_4(
    tmp_path: Path, standalone: RunningSandbox
) -> None:
    config = _config(tmp_path, standalone)
    assert login_as(config, "03915910083").returncode == 0  # Per Nivå Tre, MinID
    refused = bkm("praksis", "--config", config)
    assert refused.returncode == 1
    assert "403" in refused.stderr


def test_logout_ends_the_login_at_helseid_and_removes_it(
    tmp_path: Path, standalone: RunningSandbox
) -> None:
    config = _config(tmp_path, standalone)
    assert login_as(config).returncode == 0
    active = admin(standalone, "stats")["active_logins"]
    out = bkm("logout", "--config", config)
    assert out.returncode == 0, out.stderr
    assert "Logged out: removed" in out.stdout and "HelseID has ended the login" in out.stdout
    assert not (tmp_path / "login.json").exists()
    assert admin(standalone, "stats")["active_logins"] == active - 1  # revoked at HelseID
    assert "Nobody was logged in" in bkm("logout", "--config", config).stdout


def test_login_needs_the_personal_grant_and_a_lasting_sandbox(tmp_path: Path) -> None:
    machine = tmp_path / "machine.toml"
    machine.write_text('[auth]\nmethod = "helseid"\n', encoding="utf-8")
    wrong = bkm("login", "--config", machine)
    assert wrong.returncode == 2
    assert 'grant = "authorization_code"' in wrong.stderr
    embedded = tmp_path / "embedded.toml"
    embedded.write_text(
        '[auth]\nmethod = "helseid"\ngrant = "authorization_code"\n', encoding="utf-8"
    )
    short = bkm("login", "--config", embedded)
    assert short.returncode == 2
    assert "bkm-bridge sandbox --state-dir" in short.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _healthz(url: str) -> tuple[int, dict[str, Any]]:
    response = httpx.get(url, timeout=10)
    return response.status_code, response.json()


def test_the_daemon_renews_the_login_and_says_when_a_new_one_is_due(
    tmp_path: Path, standalone: RunningSandbox
) -> None:
    port = _free_port()
    config = _config(tmp_path, standalone, f"http_port = {port}\nrescan_seconds = 1\n")
    assert login_as(config).returncode == 0
    admin(standalone, "tokens", {"lifetime_seconds": 2})  # access tokens last 2 s
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    daemon = subprocess.Popen(
        [sys.executable, "-m", "bridge", "watch", str(inbox), "--config", str(config)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/healthz"
    try:
        deadline = time.monotonic() + 90
        status, body = 0, {}
        while time.monotonic() < deadline:
            try:
                status, body = _healthz(url)
            except httpx.HTTPError:
                time.sleep(0.3)
                continue
            if admin(standalone, "stats")["refreshes"] >= 4 and status == 200:
                break
            time.sleep(0.5)
        assert status == 200, body
        assert body["checks"]["login"]["ok"] is True
        assert body["checks"]["login"]["who"] == "Kari Fastlege, HPR 9144900"
        assert admin(standalone, "stats")["refreshes"] >= 4  # renewed by the daemon itself

        admin(standalone, "logins/end", {})  # the HelseID session ends
        while time.monotonic() < deadline:
            status, body = _healthz(url)
            if status == 503 and not body["checks"]["login"]["ok"]:
                break
            time.sleep(0.5)
        assert status == 503, body
        assert "login" in body["failed"]
        assert "bkm-bridge login" in body["checks"]["login"]["error"]
        assert body["checks"]["login"]["login_due"] is True
        assert daemon.poll() is None  # the daemon keeps running, waiting for a login
    finally:
        daemon.terminate()
        daemon.wait(30)
    checked = bkm("config", "check", "--config", config)
    assert checked.returncode == 1
    assert "[FAIL] login:" in checked.stdout and "fix: bkm-bridge login" in checked.stdout


def test_config_check_warns_before_the_login_ends(
    tmp_path: Path, standalone: RunningSandbox
) -> None:
    admin(standalone, "tokens", {"refresh_lifetime_seconds": 1800})
    config = _config(tmp_path, standalone)
    assert login_as(config).returncode == 0
    checked = bkm("config", "check", "--config", config)
    assert checked.returncode == 0, checked.stdout
    assert "[WARN] login: Kari Fastlege, HPR 9144900" in checked.stdout
    assert "min: log in again with `bkm-bridge login`" in checked.stdout
