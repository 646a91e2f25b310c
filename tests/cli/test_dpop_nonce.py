"""An API that, too, asks for a DPoP nonce (RFC 9449 §9): the bridge answers the challenge with
the same token and a proof carrying the nonce, on every route, through the CLI and the
daemon's /healthz probe, against a standalone sandbox started with --api-dpop-nonce."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.paths import FIXTURES

from bridge.sandbox import SandboxSettings, start_sandbox
from bridge.sandbox.keys import KeyMaterial
from bridge.sandbox.server import RunningSandbox


def bkm(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge", *map(str, args)],
        capture_output=True, text=True, timeout=180, env=dict(os.environ),
    )  # fmt: skip


@pytest.fixture(scope="module")
def served(
    sandbox_keys: KeyMaterial, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningSandbox]:
    settings = SandboxSettings(api_dpop_nonce=True)
    with start_sandbox(
        keys=sandbox_keys, state_dir=tmp_path_factory.mktemp("nonce"), settings=settings,
        speed=300.0,
    ) as running:  # fmt: skip
        yield running


def _stats(sandbox: RunningSandbox) -> dict[str, Any]:
    return httpx.get(sandbox.info["admin_url"] + "/stats").json()


def test_the_bridge_answers_the_apis_nonce_challenge(
    tmp_path: Path, served: RunningSandbox
) -> None:
    assert served.info_path is not None
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = tmp_path / "bkm-bridge.toml"
    config.write_text(
        f'[kuhr]\nsandbox_state_dir = "{served.info_path.parent}"\n\n[auth]\nmethod = "helseid"\n\n'
        f'[watch]\nhttp_port = {port}\nstate_dir = "{tmp_path / "state"}"\n',
        encoding="utf-8",
    )
    sent = bkm("submit", FIXTURES / "seed-arbeidsflyt.xml", "--wait", "--config", config)
    assert sent.returncode == 1, sent.stderr  # two regninger avvist (README, "Exit codes")
    assert "Control finished: 2 avvist, 1 godkjent." in sent.stdout
    stats = _stats(served)
    assert stats["api_nonce_challenges"] >= 1
    assert {"GET /jwk", "POST /process/sendinnbehandlerkravmelding"} <= set(stats["dpop_requests"])

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    daemon = subprocess.Popen(
        [sys.executable, "-m", "bridge", "watch", str(inbox), "--config", str(config)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        body: dict[str, Any] = {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and body.get("status") != "ok":
            try:
                body = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).json()
            except (httpx.HTTPError, json.JSONDecodeError):
                time.sleep(0.3)
        assert body.get("status") == "ok", body
        assert body["checks"]["kuhr"]["http_status"] == 200
    finally:
        daemon.terminate()
        daemon.wait(30)
