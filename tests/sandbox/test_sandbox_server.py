"""Embedding and running: start_sandbox, sandbox.json, restarts with a state dir, stopping,
the plain FastAPI app over httpx.ASGITransport, OpenAPI docs, and the `sandbox` command."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
from support.sandbox import Jose, keys_fixture, load_fixture, serve  # noqa: F401 (fixtures)

from bridge.sandbox import SandboxSettings, SandboxStartError, create_app, start_sandbox
from bridge.sandbox.keys import KeyMaterial

INFO_KEYS = {
    "environment",
    "base_url",
    "api_url",
    "jwks_url",
    "client_id",
    "private_jwk",
    "maskinporten",
    "helseid",
    "admin_url",
    "clock",
    "speed",
}


def test_sandbox_json_describes_the_running_server(keys: KeyMaterial, tmp_path: Path) -> None:
    with start_sandbox(state_dir=tmp_path, keys=keys) as running:
        path = tmp_path / "sandbox.json"
        info = json.loads(path.read_text(encoding="utf-8"))
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert info == running.info
        assert set(info) >= INFO_KEYS
        port = int(running.base_url.rsplit(":", 1)[1])
        assert port > 0 and running.base_url == f"http://127.0.0.1:{port}"
        base = running.base_url
        assert info["environment"] == "sandbox"
        assert info["api_url"] == f"{base}/kuhr/krav/v1"
        assert info["jwks_url"] == f"{base}/kuhr/krav/v1/jwk"
        assert info["admin_url"] == f"{base}/sandbox/admin"
        assert info["client_id"] == "bkm-bridge-sandbox"
        assert info["maskinporten"] == {
            "token_url": f"{base}/maskinporten/token",
            "audience": f"{base}/maskinporten/",
            "scope": "nav:kuhr/krav",
        }
        assert info["helseid"]["token_url"] == f"{base}/helseid/connect/token"
        assert info["helseid"]["audience"] == f"{base}/helseid/connect/token"
        assert info["helseid"]["scope"] == "hdir:kuhr-krav-api/krav"
        assert info["clock"] == "2026-01-06T15:30:00+01:00"
        assert info["speed"] == 1.0
        assert info["private_jwk"]["kty"] == "RSA" and info["private_jwk"]["kid"]
        assert "d" in info["private_jwk"]
        # What sandbox.json says is enough to get in.
        client = Jose(base, info)
        token = client.token()
        jwks = client.http.get(info["jwks_url"], headers={"Authorization": f"Bearer {token}"})
        assert jwks.status_code == 200
        client.close()
    # Written atomically: no temporary file is left behind (keys given: no keys file either).
    assert [p.name for p in tmp_path.iterdir()] == ["sandbox.json"]


def test_a_state_dir_keeps_the_keys_across_restarts(tmp_path: Path) -> None:
    with start_sandbox(state_dir=tmp_path) as first:
        client = Jose(first.base_url, first.info)
        client_key = first.info["private_jwk"]
        jwe_key = client.jwks(client.token())["keys"][0]
        client.close()
    assert stat.S_IMODE((tmp_path / "sandbox-keys.json").stat().st_mode) == 0o600
    with start_sandbox(state_dir=tmp_path, speed=2.0) as second:
        assert second.info["private_jwk"] == client_key
        assert second.info["speed"] == 2.0
        client = Jose(second.base_url, second.info)
        assert client.jwks(client.token())["keys"][0] == jwe_key
        client.close()


def test_stop_is_prompt_with_open_connections(keys: KeyMaterial) -> None:
    running = start_sandbox(keys=keys)
    client = Jose(running.base_url, running.info)
    client.token()  # leaves a keep-alive connection open
    started = time.perf_counter()
    running.stop()
    assert time.perf_counter() - started < 3.0
    assert not running.running
    with pytest.raises(httpx.TransportError):
        httpx.get(running.base_url + "/sandbox/admin/clock", timeout=2)
    client.close()


def test_a_taken_port_is_a_clear_error(keys: KeyMaterial) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SandboxStartError, match=str(port)):
            start_sandbox(port=port, keys=keys)


def test_clock_and_speed_arguments(keys: KeyMaterial) -> None:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    start = datetime(2026, 7, 1, 9, 0, tzinfo=ZoneInfo("Europe/Oslo"))
    with start_sandbox(clock=start, speed=0.0, keys=keys) as running:
        assert running.info["clock"] == "2026-07-01T09:00:00+02:00"
        now = httpx.get(running.info["admin_url"] + "/clock").json()
        assert now == {"now": "2026-07-01T09:00:00+02:00", "speed": 0.0}


def test_create_app_serves_over_asgi_transport(keys: KeyMaterial) -> None:
    app = create_app(SandboxSettings(), keys=keys)
    info = app.state.sandbox.info
    assert info["base_url"] == "http://testserver"

    async def scenario() -> tuple[int, list[str], int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            jose = Jose("http://testserver", info)
            form = {
                "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                "assertion": jose.assertion(jose.maskinporten_claims()),
            }
            token = (await http.post("/maskinporten/token", data=form)).json()["access_token"]
            headers = {"Authorization": f"Bearer {token}"}
            praksis = await http.get("/kuhr/krav/v1/data/praksis", headers=headers)
            docs = await http.get("/docs")
            jose.close()
            return (
                praksis.status_code,
                [p["praksisId"] for p in praksis.json()["praksiser"]],
                docs.status_code,
            )

    status, praksiser, docs = asyncio.run(scenario())
    assert status == 200
    assert praksiser == ["1004326178", "1004326468"]
    assert docs == 200


def test_openapi_lists_the_documented_endpoints(keys: KeyMaterial) -> None:
    with serve(keys) as running:
        spec = httpx.get(running.base_url + "/openapi.json").json()
        paths = set(spec["paths"])
        assert {
            "/kuhr/krav/v1/data/praksis",
            "/kuhr/krav/v1/process/sendinnbehandlerkravmelding",
            "/kuhr/krav/v1/data/behandlerkravmelding",
            "/kuhr/krav/v1/data/behandlerkravmelding/{behandlerkravmeldingId}",
            "/kuhr/krav/v1/jwk",
            "/maskinporten/token",
            "/helseid/connect/token",
        } <= paths
        submit = spec["paths"]["/kuhr/krav/v1/process/sendinnbehandlerkravmelding"]["post"]
        assert "application/jose" in submit["requestBody"]["content"]


def test_importing_the_cli_does_not_load_the_web_stack(tmp_path: Path) -> None:
    code = (
        "import sys; from bridge.cli import app as cli; cli._register_subsystem_commands(); "
        "import bridge.sandbox; print('fastapi' in sys.modules, 'uvicorn' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert out.stdout.split() == ["False", "False"], out.stderr


@pytest.mark.skipif(os.name != "posix", reason="stops the command with SIGTERM")
def test_the_sandbox_command(tmp_path: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "bridge",
        "sandbox",
        "--state-dir",
        str(tmp_path),
        "--clock",
        "2026-01-06T15:30:00+01:00",
        "--speed",
        "0",
    ]
    process = subprocess.Popen(
        command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        info_path = tmp_path / "sandbox.json"
        deadline = time.monotonic() + 30
        while not info_path.exists():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "sandbox.json did not appear"
            time.sleep(0.1)
        info = json.loads(info_path.read_text(encoding="utf-8"))
        client = Jose(info["base_url"], info)
        token = client.token()
        data = load_fixture("seed-claim.json")
        data["behandlerkrav"]["regninger"][0]["guid"] = str(uuid.uuid4())
        melding_id = client.send(data, token)
        assert client.details(melding_id, token)[0]["meldingsstatus"] == "mottatt"
        client.close()
    finally:
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=20)
    assert process.returncode == 0, stderr
    assert "KUHR sandbox serving at http://127.0.0.1:" in stdout
    assert "KUHR sandbox stopped." in stdout
    output = stdout + stderr
    assert "POST /kuhr/krav/v1/process/sendinnbehandlerkravmelding" in output  # access log on
    # Patient data, tokens and keys never reach the log.
    for secret in ("47908702367", "47908500667", token, info["private_jwk"]["d"]):
        assert secret not in output
