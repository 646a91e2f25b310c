"""One proxy rule for every HTTP client, with a real CONNECT proxy on loopback that counts the
requests through it. KUHR is the sandbox behind a TLS front under a name that only the proxy
knows (kuhr.test: nothing resolves it), so a client that bypasses the proxy cannot arrive:
tokens (httpx), the KUHR client (aiohttp) and the daemon's /healthz probe must all go through
it. Loopback never does: with every proxy variable set, the embedded sandbox still answers and
the proxy sees nothing."""

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
from support.connect_proxy import ConnectProxy
from support.paths import FIXTURES
from support.tls import make_tls

from bridge.kuhr.proxy import ProxyRule
from bridge.sandbox import SandboxSettings, start_sandbox
from bridge.sandbox.keys import KeyMaterial
from bridge.sandbox.server import RunningSandbox

SEED_XML = FIXTURES / "seed-arbeidsflyt.xml"
HOST = "kuhr.test"
NO_PROXY_ENV = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY")


def bkm(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k.upper() not in NO_PROXY_ENV}
    return subprocess.run(
        [sys.executable, "-m", "bridge", *map(str, args)],
        capture_output=True, text=True, timeout=180, env={**clean, **(env or {})},
    )  # fmt: skip


@pytest.fixture(scope="module")
def behind_proxy(
    sandbox_keys: KeyMaterial, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunningSandbox, ConnectProxy, Path]]:
    folder = tmp_path_factory.mktemp("proxied")
    tls = make_tls(folder, HOST)
    settings = SandboxSettings(public_url=f"https://{HOST}", seed=5)
    with start_sandbox(keys=sandbox_keys, state_dir=folder / "sandbox", speed=300.0,
                       settings=settings) as running:  # fmt: skip
        port = int(running.sandbox.listen_url.rsplit(":", 1)[1])
        proxy = ConnectProxy({}, tls_front=(tls.cert, tls.key, port))
        proxy.routes[HOST] = proxy.front_port
        (folder / "dev.jwk.json").write_text(json.dumps(running.info["private_jwk"]))
        try:
            yield running, proxy, folder
        finally:
            proxy.stop()


def _config(folder: Path, tmp_path: Path, extra_kuhr: str = "", extra: str = "") -> Path:
    config = tmp_path / "bkm-bridge.toml"
    config.write_text(
        f'[kuhr]\nenvironment = "dev"\napi_url = "https://{HOST}/kuhr/krav/v1"\n'
        f'ca_bundle = "{folder / "ca.pem"}"\n{extra_kuhr}\n\n'
        '[auth]\nmethod = "helseid"\nclient_id = "bkm-bridge-sandbox"\n'
        f'key_file = "{folder / "dev.jwk.json"}"\nauthority = "https://{HOST}/helseid"\n\n'
        f'[watch]\nstate_dir = "{tmp_path / "state"}"\nquiet_seconds = 0.2\n{extra}',
        encoding="utf-8",
    )
    return config


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_every_client_goes_through_the_proxy_from_the_environment(
    behind_proxy: tuple[RunningSandbox, ConnectProxy, Path], tmp_path: Path
) -> None:
    _, proxy, folder = behind_proxy
    port = _free_port()
    config = _config(folder, tmp_path, extra=f"http_port = {port}\n")
    env = {"HTTPS_PROXY": proxy.url, "NO_PROXY": "example.org"}
    before = proxy.tunnels[HOST]

    checked = bkm("config", "check", "--config", config, env=env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"proxy: {proxy.url} (from environment); not for: example.org" in checked.stdout
    after_check = proxy.tunnels[HOST]
    assert after_check >= before + 2  # the token service (httpx) and KUHR (aiohttp)

    sent = bkm("submit", SEED_XML, "--wait", "--praksis-id", "1004326178", "--config", config,
               env=env)  # fmt: skip
    assert sent.returncode == 1, sent.stderr  # two regninger avvist (README, "Exit codes")
    assert "Control finished: 2 avvist, 1 godkjent." in sent.stdout
    after_submit = proxy.tunnels[HOST]
    assert after_submit > after_check

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    daemon = subprocess.Popen(
        [sys.executable, "-m", "bridge", "watch", str(inbox), "--config", str(config)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**{k: v for k, v in os.environ.items() if k.upper() not in NO_PROXY_ENV}, **env},
    )  # fmt: skip
    try:
        body: dict[str, Any] = {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
                body = response.json()
                if response.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        assert body.get("status") == "ok", body  # /healthz itself is loopback: no proxy
        assert body["checks"]["kuhr"]["http_status"] == 200  # its probe of KUHR: via the proxy
        assert body["checks"]["token"]["ok"] is True
    finally:
        daemon.terminate()
        daemon.wait(30)
    assert proxy.tunnels[HOST] > after_submit
    # The daemon's takst refresh asks Helfo's open data API, also through the proxy (which
    # refuses it: nothing here leaves the machine).
    assert proxy.plain == 0 and set(proxy.tunnels) <= {HOST, "opne-data-api.helserefusjon.no"}
    print(f"\nCONNECT tunnels through the proxy: {dict(proxy.tunnels)}")


def test_the_kuhr_proxy_setting_without_environment(
    behind_proxy: tuple[RunningSandbox, ConnectProxy, Path], tmp_path: Path
) -> None:
    _, proxy, folder = behind_proxy
    before = proxy.tunnels[HOST]
    config = _config(folder, tmp_path, extra_kuhr=f'proxy = "{proxy.url}"')
    praksis = bkm("praksis", "--json", "--config", config)
    assert praksis.returncode == 0, praksis.stderr
    assert len(json.loads(praksis.stdout)["praksiser"]) == 2
    assert proxy.tunnels[HOST] > before


@pytest.mark.parametrize(
    ("extra_kuhr", "env"),
    [
        ('proxy = "direct"', {"HTTPS_PROXY": "PROXY"}),
        ("", {"HTTPS_PROXY": "PROXY", "NO_PROXY": f".{HOST.split('.')[1]}"}),
    ],
    ids=["direct-setting", "no_proxy"],
)
def test_direct_and_no_proxy_bypass_the_proxy(
    behind_proxy: tuple[RunningSandbox, ConnectProxy, Path],
    tmp_path: Path,
    extra_kuhr: str,
    env: dict[str, str],
) -> None:
    _, proxy, folder = behind_proxy
    env = {k: v.replace("PROXY", proxy.url) for k, v in env.items()}
    before = dict(proxy.tunnels)
    refused = bkm("praksis", "--config", _config(folder, tmp_path, extra_kuhr=extra_kuhr), env=env)
    assert refused.returncode == 1
    assert "cannot reach" in refused.stderr  # kuhr.test resolves nowhere but at the proxy
    assert dict(proxy.tunnels) == before


def test_loopback_never_goes_through_a_proxy(tmp_path: Path) -> None:
    proxy = ConnectProxy({})
    try:
        everything = {"HTTPS_PROXY": proxy.url, "HTTP_PROXY": proxy.url, "ALL_PROXY": proxy.url,
                      "https_proxy": proxy.url, "http_proxy": proxy.url}  # fmt: skip
        sent = bkm("submit", SEED_XML, "--wait", env=everything)  # the embedded sandbox
        assert sent.returncode == 1, sent.stderr  # two regninger avvist
        assert "Control finished: 2 avvist, 1 godkjent." in sent.stdout
        cache = {"BKM_BRIDGE_PRECHECK__CACHE_DIR": str(tmp_path / "opendata")}
        sync = bkm("takster", "sync", env={**everything, **cache})  # the sandbox's open data
        assert sync.returncode == 0, sync.stderr
        assert proxy.plain == 0 and not proxy.tunnels
    finally:
        proxy.stop()


def test_the_rule() -> None:
    env = {
        "https_proxy": "http://user:secret@proxy:3128",
        "no_proxy": "helfo.no,10.0.0.0/8,*.x:8443",
    }
    rule = ProxyRule(None, env)
    assert rule.proxy_for("https://api.helserefusjon.no/kuhr") == "http://user:secret@proxy:3128"
    assert rule.proxy_for("https://helfo.no/") is None
    assert rule.proxy_for("https://www.helfo.no/") is None
    assert rule.proxy_for("https://10.2.3.4/") is None
    assert rule.proxy_for("https://a.x:8443/") is None
    assert rule.proxy_for("https://a.x:443/") is not None
    for loopback in ("http://127.0.0.1:8000/", "http://127.8.9.1/", "http://[::1]:80/",
                     "http://localhost:9/", "https://sandbox.localhost/"):  # fmt: skip
        assert rule.proxy_for(loopback) is None
    assert "secret" not in rule.describe() and "proxy:3128" in rule.describe()
    assert ProxyRule("direct", env).proxy_for("https://api.helserefusjon.no/") is None
    assert ProxyRule("http://p:1", {}).proxy_for("https://api.helserefusjon.no/") == "http://p:1"
    assert (
        ProxyRule(None, {"no_proxy": "*", "https_proxy": "http://p:1"}).proxy_for("https://x/")
        is None
    )
