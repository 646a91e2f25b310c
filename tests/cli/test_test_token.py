"""HelseID's test token service (TTT) as the token source, through the CLI against the
sandbox's stand-in for it: a token and a DPoP proof per request with the claims Helfo's
testdata.md asks for; a wrong API key; PROD refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bridge.sandbox import start_sandbox
from bridge.sandbox.keys import KeyMaterial
from bridge.sandbox.server import RunningSandbox


def bkm(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge", *map(str, args)],
        capture_output=True, text=True, timeout=180, env={**os.environ, **(env or {})},
    )  # fmt: skip


@pytest.fixture(scope="module")
def served(
    sandbox_keys: KeyMaterial, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningSandbox]:
    with start_sandbox(keys=sandbox_keys, state_dir=tmp_path_factory.mktemp("ttt")) as running:
        yield running


def _config(tmp_path: Path, sandbox: RunningSandbox, test_token: str) -> Path:
    assert sandbox.info_path is not None
    config = tmp_path / "bkm-bridge.toml"
    config.write_text(
        f'[kuhr]\nsandbox_state_dir = "{sandbox.info_path.parent}"\n\n'
        '[auth]\nmethod = "helseid"\ngrant = "test_token"\n\n'
        f'[auth.test_token]\npid = "15837510047"\norgnr_parent = "999999999"\n{test_token}\n',
        encoding="utf-8",
    )
    return config


def test_test_tokens_reach_every_endpoint_with_their_proofs(
    tmp_path: Path, served: RunningSandbox
) -> None:
    (tmp_path / "ttt.key").write_text(served.info["test_token"]["key"] + "\n")
    config = _config(tmp_path, served, 'key_file = "ttt.key"')
    checked = bkm("config", "check", "--config", config)
    assert checked.returncode == 0, checked.stdout
    assert "HelseID test token service issued a DPoP token" in checked.stdout
    praksis = bkm("praksis", "--json", "--config", config)
    assert praksis.returncode == 0, praksis.stderr
    ids = [p["praksisId"] for p in json.loads(praksis.stdout)["praksiser"]]
    assert ids == ["1004326178", "1004326468"]
    stats = httpx.get(served.info["admin_url"] + "/stats").json()
    assert stats["tokens_by_grant"]["test_token"] >= 4  # one per request: token, JWK, praksis…
    assert {"GET /jwk", "GET /data/praksis"} <= set(stats["dpop_requests"])


def test_a_wrong_api_key_is_reported(tmp_path: Path, served: RunningSandbox) -> None:
    config = _config(tmp_path, served, "")
    refused = bkm("praksis", "--config", config, env={"BKM_BRIDGE_AUTH__TEST_TOKEN__KEY": "feil"})
    assert refused.returncode == 1
    assert "the test token service refused the API key (HTTP 401)" in refused.stderr
    assert "HelseID selvbetjening" in refused.stderr


def test_test_tokens_are_for_dev_only(tmp_path: Path) -> None:
    config = tmp_path / "prod.toml"
    config.write_text(
        '[kuhr]\nenvironment = "prod"\n\n[auth]\nmethod = "helseid"\nclient_id = "x"\n'
        'grant = "test_token"\n\n[auth.test_token]\nkey = "k"\n',
        encoding="utf-8",
    )
    refused = bkm("praksis", "--config", config)
    assert refused.returncode == 2
    assert "for Helfo's DEV environment only" in refused.stderr
