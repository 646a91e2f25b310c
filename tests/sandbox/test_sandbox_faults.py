"""Faults on demand: 5xx, latency, 429 with Retry-After, dropped connections, lost responses,
JWE key rotation. Faults hit the API, never the admin API."""

from __future__ import annotations

import logging
import socket
import time
import uuid
from typing import Any

import httpx
import pytest
from support.sandbox import (  # noqa: F401 (fixtures)
    Jose,
    jose_fixture,
    keys_fixture,
    load_fixture,
    sandbox_fixture,
    serve,
    served_fixture,
)

from bridge.sandbox import RunningSandbox
from bridge.sandbox.keys import KeyMaterial


@pytest.fixture
def token(jose: Jose) -> str:
    return jose.token()


def faults(jose: Jose, **knobs: Any) -> dict[str, Any]:
    return jose.admin("POST", "faults", knobs)


def claim() -> dict[str, Any]:
    data = load_fixture("seed-claim-corrected.json")
    data["behandlerkrav"]["regninger"][0]["guid"] = str(uuid.uuid4())
    return data


def test_error_rate_one_answers_5xx_and_clearing_restores(jose: Jose, token: str) -> None:
    faults(jose, error_rate=1.0)
    for _ in range(5):
        response = jose.get("/data/praksis", token)
        assert response.status_code in (500, 502, 503)
        assert response.json()["error"] == "server_error"
    assert jose.admin("GET", "clock")  # the admin API is not affected
    assert faults(jose)["error_rate"] == 0.0
    assert jose.get("/data/praksis", token).status_code == 200


def test_error_rate_is_a_share(jose: Jose, token: str) -> None:
    faults(jose, error_rate=0.5, error_statuses=[503])
    codes = [jose.get("/data/praksis", token).status_code for _ in range(40)]
    assert set(codes) == {200, 503}
    assert jose.admin("GET", "stats")["faults"]["errors"] == codes.count(503)


def test_latency_is_added_to_api_requests_only(jose: Jose, token: str) -> None:
    faults(jose, latency_ms=250)
    started = time.perf_counter()
    assert jose.get("/data/praksis", token).status_code == 200
    assert time.perf_counter() - started >= 0.25
    started = time.perf_counter()
    jose.admin("GET", "clock")
    assert time.perf_counter() - started < 0.25


def test_rate_limit_answers_429_with_retry_after(jose: Jose, token: str) -> None:
    faults(jose, rate_limit={"every": 3, "retry_after": 2})
    responses = [jose.get("/data/praksis", token) for _ in range(6)]
    assert [r.status_code for r in responses] == [200, 200, 429, 200, 200, 429]
    assert responses[2].headers["Retry-After"] == "2"


def test_dropped_connection_is_a_transport_error(
    jose: Jose, token: str, sandbox: RunningSandbox
) -> None:
    body = jose.encrypt(claim(), token)
    faults(jose, drop_rate=1.0)
    with pytest.raises(httpx.TransportError):
        jose.submit_raw(body, token)
    # Not a single byte of an answer: the connection is just closed.
    host, port = sandbox.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as raw:
        raw.sendall(b"GET /kuhr/krav/v1/data/praksis HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            received = raw.recv(1024)
        except ConnectionResetError:
            received = b""
    assert received == b""
    faults(jose)
    stats = jose.admin("GET", "stats")
    assert stats["submissions_received"] == 0  # dropped before it was processed
    assert stats["faults"]["dropped"] == 2


def test_lost_response_was_processed(jose: Jose, token: str) -> None:
    body = jose.encrypt(claim(), token)
    faults(jose, lost_response_rate=1.0)
    with pytest.raises(httpx.TransportError):
        jose.submit_raw(body, token)
    faults(jose)
    assert jose.admin("GET", "stats")["submissions_accepted"] == 1
    assert len(jose.overview(token)) == 1  # a client can find what it sent


def test_token_endpoints_are_spared_unless_asked(jose: Jose) -> None:
    faults(jose, error_rate=1.0)
    assert jose.maskinporten().status_code == 200
    faults(jose, error_rate=1.0, token_endpoints=True)
    assert jose.maskinporten().status_code >= 500


def test_bad_fault_knobs_are_refused(jose: Jose) -> None:
    for body in ({"error_rate": 2}, {"explode": True}, {"error_statuses": [404]}):
        response = jose.http.post("/sandbox/admin/faults", json=body)
        assert response.status_code == 400, body


def test_key_rotation(keys: KeyMaterial) -> None:
    with serve(keys) as running:
        client = Jose(running.base_url, running.info)
        token = client.token()
        old_jwks = client.jwks(token)
        old_kid = old_jwks["keys"][0]["kid"]
        prepared = client.encrypt(claim(), token)  # encrypted before the rotation

        rotated = client.admin("POST", "rotate-keys")
        new_kid = rotated["kid"]
        assert new_kid != old_kid
        assert [k["kid"] for k in client.jwks(token)["keys"]] == [new_kid]
        response = client.submit_raw(prepared, token)
        assert response.status_code == 400
        melding = response.json()["feilmeldinger"][0]["melding"]
        assert old_kid in melding and new_kid in melding
        assert client.submit(claim(), token).status_code == 200  # fetched the JWKS again

        prepared = client.encrypt(claim(), token)
        kept = client.admin("POST", "rotate-keys", {"keep_old": True})
        assert [k["kid"] for k in client.jwks(token)["keys"]] == [kept["kid"], new_kid]
        assert client.submit_raw(prepared, token).status_code == 200
        jwk_entry = client.jwks(token)["keys"][0]
        assert (jwk_entry["use"], jwk_entry["alg"], jwk_entry["kty"]) == (
            "enc",
            "RSA-OAEP-256",
            "RSA",
        )
        assert "d" not in jwk_entry
        client.close()


def test_a_client_that_hangs_up_mid_body_is_no_server_error(
    jose: Jose, sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    """A dropped connection halfway through a submission (as the bridge's fault harness does)
    is the client's business: the sandbox logs no exception and serves the next request."""
    token = jose.token()
    host, port = sandbox.base_url.removeprefix("http://").rsplit(":", 1)
    head = (
        "POST /kuhr/krav/v1/process/sendinnbehandlerkravmelding HTTP/1.1\r\n"
        f"Host: {host}\r\nAuthorization: Bearer {token}\r\n"
        "Content-Type: application/jose\r\nContent-Length: 5000\r\n\r\n"
    )
    with caplog.at_level(logging.WARNING):
        with socket.create_connection((host, int(port)), timeout=5) as conn:
            conn.sendall(head.encode() + b"eyJhbGciOi")
        time.sleep(0.3)  # the server reads on, finds the connection closed
        assert jose.get("/data/praksis", token).status_code == 200
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]
