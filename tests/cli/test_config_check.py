"""`bkm-bridge config check` says a setup cannot run when it cannot: a missing watch folder, a
state folder that is not one, a folder another bridge holds, a taken HTTP port, an old takst
table. It prints the watch settings and passes only when nothing failed. Run in-process
against a standalone sandbox on loopback (the KUHR half of the check)."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from bridge.cli.kuhr import register
from bridge.files.fsutil import try_lock
from bridge.sandbox.keys import KeyMaterial
from bridge.sandbox.server import RunningSandbox, start_sandbox


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


@pytest.fixture(scope="module")
def standalone(
    sandbox_keys: KeyMaterial, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningSandbox]:
    with start_sandbox(keys=sandbox_keys, state_dir=tmp_path_factory.mktemp("kuhr")) as running:
        yield running


@pytest.fixture(autouse=True)
def _no_user_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.upper().startswith("BKM_BRIDGE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def _check(app: typer.Typer, standalone: RunningSandbox, toml: str) -> Any:
    config = Path("bkm-bridge.toml").absolute()
    config.write_text(toml, encoding="utf-8")
    state = standalone.info_path.parent
    args = ["config", "check", "--config", str(config), "--sandbox-state-dir", str(state)]
    return CliRunner().invoke(app, args, catch_exceptions=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_setup_that_cannot_run_does_not_pass(
    app: typer.Typer, standalone: RunningSandbox, tmp_path: Path
) -> None:
    (tmp_path / "inbox").mkdir()
    (tmp_path / "state").write_text("a file where the state folder should be")
    result = _check(
        app,
        standalone,
        '[watch]\nfolders = ["inbox", "mangler"]\nstate_dir = "state"\n'
        '[precheck]\ncache_dir = "cache"\n',
    )
    assert result.exit_code == 1, result.stdout
    out = result.stdout
    assert f"[ OK ] watch folder {tmp_path / 'inbox'}: readable, writable, lock free" in out
    assert f"[FAIL] watch folder {tmp_path / 'mangler'}: does not exist" in out
    assert f"[FAIL] state folder {tmp_path / 'state'}: is not a folder" in out
    assert "[ OK ] token:" in out  # KUHR is fine: the local setup is what fails
    assert "All checks passed" not in out
    assert out.rstrip().splitlines()[-1].startswith("Not ready: some checks failed")
    assert not (tmp_path / "mangler").exists()  # a check creates nothing
    assert sorted(p.name for p in (tmp_path / "inbox").iterdir()) == []  # no probe, no lock left


def test_a_working_setup_passes_and_shows_the_watch_settings(
    app: typer.Typer, standalone: RunningSandbox, tmp_path: Path
) -> None:
    (tmp_path / "inbox").mkdir()
    port = _free_port()
    result = _check(
        app,
        standalone,
        f'[watch]\nfolders = ["inbox"]\nstate_dir = "state"\ncompletion = "quiet"\n'
        f'http_port = {port}\n[logging]\nlog_file = "logs/bridge.log"\n',
    )
    assert result.exit_code == 0, result.stdout
    out = result.stdout
    assert f"  folders: {tmp_path / 'inbox'}" in out
    assert f"  state_dir: {tmp_path / 'state'}" in out
    assert "  completion: quiet · quiet_seconds 2 · rescan_seconds 30" in out
    assert f"  http: 127.0.0.1:{port}" in out
    assert f"[ OK ] state folder {tmp_path / 'state'}: does not exist yet; the bridge" in out
    assert f"[ OK ] log file {tmp_path / 'logs' / 'bridge.log'}" in out
    assert f"[ OK ] HTTP port: 127.0.0.1:{port} is free" in out
    assert "[ OK ] takst table: the bundled snapshot" in out
    assert "[ OK ] key bkm-bridge-sandbox-client (in use)" in out
    assert out.rstrip().endswith("All checks passed.")
    assert not (tmp_path / "state").exists() and not (tmp_path / "logs").exists()


def test_a_held_folder_lock_a_taken_port_and_an_old_takst_table_are_warnings(
    app: typer.Typer, standalone: RunningSandbox, tmp_path: Path
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    cache = tmp_path / "cache"
    cache.mkdir()
    old = {"fetched_at": "2025-01-02T08:00:00+01:00", "url": "https://example.test", "rows": []}
    (cache / "takster-sandbox.json").write_text(
        json.dumps({"format": 1, "takstkoder": {"LE": old}}), encoding="utf-8"
    )
    with socket.socket() as taken, (inbox / ".bkm-bridge.lock").open("w") as held:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        held.write("host=elsewhere\npid=4242\n")
        held.flush()
        assert try_lock(held.fileno(), unsupported="no locks here")  # "another bridge"
        result = _check(
            app,
            standalone,
            f'[watch]\nfolders = ["inbox"]\nstate_dir = "state"\nhttp_port = {port}\n'
            '[precheck]\ncache_dir = "cache"\n',
        )
    assert result.exit_code == 0, result.stdout  # warnings: the setup can run
    out = result.stdout
    assert f"[WARN] watch folder {inbox}: {inbox} is already watched by another bkm-bridge" in out
    assert "pid=4242" in out
    assert f"[WARN] HTTP port: 127.0.0.1:{port} is taken" in out
    assert "[WARN] takst table: synced 2025-01-02" in out
    assert "older than 35 days" in out and "fix: run `bkm-bridge takster sync`" in out
    assert out.rstrip().endswith("All checks passed.")


def test_settings_that_cannot_be_loaded_are_a_usage_error(
    app: typer.Typer, standalone: RunningSandbox
) -> None:
    result = _check(app, standalone, '[watch]\nquiet_seconds = "soon"\n')
    assert result.exit_code == 2
    assert "[FAIL] configuration" in result.stdout
