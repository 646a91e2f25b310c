"""The API client against a real sandbox on loopback: typed answers, retries under every fault
knob without duplicate submissions, no retry on 400, the 401 path and JWKS rotation."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import pytest
from support.kuhr import FAST_RETRY, seed_melding

from bridge.core.model import Behandlerkravmelding, BehandlerkravmeldingListe, PraksisListe
from bridge.kuhr.client import (
    AsyncKuhrClient,
    KuhrAuthError,
    KuhrClient,
    KuhrUnavailable,
    RetryPolicy,
)

SEED_GUIDS = {
    "f0bcd358-0676-49c7-94f8-c055c4b21332",
    "b7184d58-0ed4-4277-a60c-720b1daf69f7",
    "32b24c0b-facd-4f5e-aff9-9849ae477db5",
}


def _results(liste: BehandlerkravmeldingListe) -> list[tuple[str, str, list[str]]]:
    [row] = liste.behandlerkravmeldinger
    assert row.innsending is not None
    return [
        (r.regningsnummer or "", r.status, [m.nummer for m in r.merknader])
        for r in row.innsending.regninger
    ]


def _assert_landed_once(stats: dict[str, Any]) -> None:
    assert stats["submissions_accepted"] == 1
    assert stats["by_guid"] == dict.fromkeys(SEED_GUIDS, 1)


def test_praksis_list_is_typed(make_client: Callable[..., KuhrClient], admin: Any) -> None:
    liste = make_client().hent_praksiser()
    assert isinstance(liste, PraksisListe)
    assert [(p.praksisId, p.orgnr, p.type) for p in liste.praksiser] == [
        ("1004326178", "999999999", "FALE"),
        ("1004326468", "999999998", "LEVA"),
    ]


def test_submit_and_follow_the_seed_claim(
    make_client: Callable[..., KuhrClient], admin: Any
) -> None:
    client = make_client()
    result = client.send_inn(seed_melding())
    assert (result.status, result.accepted, result.attempts) == ("mottatt", True, 1)
    assert result.already_received is False
    admin("clock", {"advance_seconds": 60})
    details = client.hent_behandlerkravmelding(result.behandlerkravmeldingId)
    assert details.behandlerkravmeldinger[0].kontrollstatus == "ferdig_kontrollert"
    assert _results(details) == [
        ("4", "avvist", ["470"]),
        ("5", "godkjent", []),
        ("6", "avvist", ["766"]),
    ]
    overview = client.hent_status()
    assert [m.behandlerkravmeldingId for m in overview.behandlerkravmeldinger] == [
        result.behandlerkravmeldingId
    ]


def test_status_filter_by_date(make_client: Callable[..., KuhrClient], admin: Any) -> None:
    from datetime import date

    client = make_client()
    client.send_inn(seed_melding())  # received 2026-01-06 on the sandbox clock
    assert len(client.hent_status(fom=date(2026, 1, 6)).behandlerkravmeldinger) == 1
    assert client.hent_status(fom=date(2026, 1, 7)).behandlerkravmeldinger == []
    assert client.hent_status(tom=date(2026, 1, 5)).behandlerkravmeldinger == []


def test_400_is_a_result_and_never_retried(
    make_client: Callable[..., KuhrClient], admin: Any
) -> None:
    client = make_client()
    melding = seed_melding().model_copy(update={"praksisId": "1234567890"})
    result = client.send_inn(melding)
    assert result.status == "feil_i_melding"
    assert [f.kode for f in result.feilmeldinger or []] == ["UKJENT_PRAKSISID"]
    assert result.accepted is False
    assert (result.attempts, client.counters.retries) == (1, 0)
    assert admin("stats")["submissions_received"] == 1


def test_duplicate_on_a_first_attempt_is_a_plain_rejection(
    make_client: Callable[..., KuhrClient], admin: Any
) -> None:
    client = make_client()
    assert client.send_inn(seed_melding()).accepted
    again = client.send_inn(seed_melding())
    assert [f.kode for f in again.feilmeldinger or []] == ["DUPLIKAT_KRAV"]
    assert (again.accepted, again.already_received) == (False, False)


@pytest.mark.parametrize(
    "faults",
    [
        {"error_rate": 0.6},
        {"error_rate": 0.6, "error_statuses": [502, 503]},
        {"drop_rate": 0.6},
        {"rate_limit": {"every": 2, "retry_after": 0}},
        {"latency_ms": 50},
    ],
    ids=["5xx", "502-503", "dropped-connection", "rate-limit", "latency"],
)
def test_retries_under_faults_submit_exactly_once(
    make_client: Callable[..., KuhrClient], admin: Any, faults: dict[str, Any]
) -> None:
    client = make_client(retry=RetryPolicy(max_attempts=10, base_delay=0.01, max_delay=0.05))
    admin("faults", faults)
    assert client.hent_praksiser().praksiser  # GETs retry too
    result = client.send_inn(seed_melding())
    assert result.accepted
    stats = admin("stats")  # before clearing: clearing the faults resets their counts
    _assert_landed_once(stats)
    injected = sum(v for k, v in stats["faults"].items() if k != "requests_seen")
    assert injected > 0  # the knob really did something
    if "latency_ms" not in faults:
        assert client.counters.retries > 0


def test_retry_after_is_honoured(make_client: Callable[..., KuhrClient], admin: Any) -> None:
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)

    client = make_client(sleep=record)
    admin("faults", {"rate_limit": {"every": 1, "retry_after": 1}})
    with pytest.raises(KuhrUnavailable, match="HTTP 429"):
        client.hent_praksiser()
    assert len(waits) == FAST_RETRY.max_attempts - 1
    assert all(w >= 1.0 for w in waits)  # Retry-After: 1 beats the 0.05 s backoff ceiling


def test_bounded_attempts_then_a_clear_error(
    make_client: Callable[..., KuhrClient], admin: Any
) -> None:
    client = make_client(retry=RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.02))
    client.encryption_key()  # JWKS fetched before the faults start
    admin("faults", {"error_rate": 1.0})
    with pytest.raises(KuhrUnavailable, match=r"HTTP 5\d\d to POST .* 3 time"):
        client.send_inn(seed_melding())
    assert (client.counters.requests, client.counters.retries) == (1 + 3, 2)
    assert admin("stats")["submissions_received"] == 0


def test_read_timeout_is_retried_then_reported(
    make_client: Callable[..., KuhrClient], admin: Any
) -> None:
    client = make_client(
        read_timeout=0.1, retry=RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.02)
    )
    admin("faults", {"latency_ms": 400})
    with pytest.raises(KuhrUnavailable, match="ReadTimeout after 2 attempt"):
        client.hent_praksiser()


def test_lost_response_then_duplicate_is_reported_as_already_received(
    make_client: Callable[..., KuhrClient], admin: Any
) -> None:
    """KUHR processed the first POST but the answer was lost; the retry meets DUPLIKAT_KRAV."""

    async def clear_faults_then_wait(seconds: float) -> None:
        await asyncio.to_thread(admin, "faults", {})

    client = make_client(sleep=clear_faults_then_wait)
    client.encryption_key()  # the JWKS fetch is not what the fault should hit
    admin("faults", {"lost_response_rate": 1.0})
    result = client.send_inn(seed_melding())
    assert result.already_received is True
    assert result.accepted is True
    assert result.attempts == 2
    assert [f.kode for f in result.feilmeldinger or []] == ["DUPLIKAT_KRAV"]
    assert client.counters.already_received == 1
    _assert_landed_once(admin("stats"))


def test_token_expired_at_kuhr_refreshes_once_on_401(
    sandbox_keys: Any, admin: Any, tmp_path: Any
) -> None:
    """The client believes its token is fresh (its clock is frozen); KUHR says 401."""
    from dataclasses import replace

    from bridge.config import load_settings
    from bridge.kuhr.target import client_options, resolve_target, token_provider_for
    from bridge.sandbox.server import start_sandbox
    from bridge.sandbox.settings import SandboxSettings

    short = replace(SandboxSettings(), token_lifetime_seconds=1)
    with start_sandbox(keys=sandbox_keys, settings=short) as running:
        settings = load_settings(None, {})
        target = resolve_target(settings, running.info, embedded=True)
        frozen = time.time()
        tokens = token_provider_for(target, settings, clock=lambda: frozen)
        with KuhrClient(target.api_url, tokens, **client_options(settings, target)) as client:
            client.hent_praksiser()
            time.sleep(1.2)
            assert client.hent_praksiser().praksiser
            assert client.counters.token_refreshes == 1
            assert tokens.fetch_count == 2


class _ForgedTokens:
    """A token source whose tokens KUHR never accepts."""

    def __init__(self) -> None:
        self.invalidated = 0

    async def auth_headers(self, method: str, url: str) -> dict[str, str]:
        return {"Authorization": "Bearer not-a-real-token"}

    def invalidate(self, token: str | None = None) -> None:
        self.invalidated += 1


def test_second_401_is_an_auth_error(make_client: Callable[..., KuhrClient], admin: Any) -> None:
    tokens = _ForgedTokens()
    client = make_client(tokens=tokens)
    with pytest.raises(KuhrAuthError, match="401"):
        client.hent_praksiser()
    assert tokens.invalidated == 1
    assert client.counters.requests == 2


def test_jwks_rotation_mid_run(make_client: Callable[..., KuhrClient], admin: Any) -> None:
    client = make_client()
    first = client.send_inn(seed_melding())
    assert first.accepted
    old_kid = client.encryption_key().get("kid")
    rotated = admin("rotate-keys", {})
    assert rotated["kid"] != old_kid
    second = client.send_inn(seed_melding(fresh_guids=True))
    assert second.accepted, second.feilmeldinger
    assert client.counters.jwks_refetches == 1
    assert client.encryption_key().get("kid") == rotated["kid"]
    stats = admin("stats")
    assert (stats["submissions_accepted"], stats["submissions_rejected"]) == (2, 1)


def test_concurrent_submissions_share_one_token(
    sandbox: Any, admin: Any, make_client: Callable[..., KuhrClient]
) -> None:
    from bridge.config import load_settings
    from bridge.kuhr.target import client_options, resolve_target, token_provider_for

    settings = load_settings(None, {})
    target = resolve_target(settings, sandbox.info, embedded=True)
    tokens = token_provider_for(target, settings)
    meldinger: list[Behandlerkravmelding] = [seed_melding(fresh_guids=True) for _ in range(8)]
    issued_before = admin("stats")["tokens_issued"]  # counted over the sandbox's life

    async def run() -> list[bool]:
        options = {**client_options(settings, target), "max_concurrency": 3, "retry": FAST_RETRY}
        async with AsyncKuhrClient(target.api_url, tokens, **options) as core:
            results = await asyncio.gather(*(core.send_inn(m) for m in meldinger))
            return [r.accepted for r in results]

    assert asyncio.run(run()) == [True] * 8
    stats = admin("stats")
    assert stats["submissions_accepted"] == 8
    assert stats["tokens_issued"] - issued_before == 1
    assert tokens.fetch_count == 1


def test_logs_hold_no_token_and_no_patient_data(
    make_client: Callable[..., KuhrClient], admin: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = make_client()
    admin("faults", {"error_rate": 0.5})
    client.send_inn(seed_melding())
    admin("faults", {})
    token = asyncio.run(client.tokens.auth_headers("GET", "x"))["Authorization"].split()[1]
    text = caplog.text
    assert "POST /process/sendinnbehandlerkravmelding -> 200" in text
    assert token not in text
    assert token[-20:] not in text
    for secret in ("47908702367", "47908500667", "L73", "private"):
        assert secret not in text


def test_unknown_id_is_a_clear_error(make_client: Callable[..., KuhrClient], admin: Any) -> None:
    from bridge.kuhr.client import KuhrResponseError

    with pytest.raises(KuhrResponseError, match="404"):
        make_client().hent_behandlerkravmelding("00000000-0000-0000-0000-000000000000")
    with pytest.raises(ValueError, match="not a behandlerkravmeldingId"):
        make_client().hent_behandlerkravmelding("../praksis")


def test_unreachable_kuhr() -> None:
    class _NoTokens:
        async def auth_headers(self, method: str, url: str) -> dict[str, str]:
            return {}

        def invalidate(self, token: str | None = None) -> None:
            pass

    with (
        KuhrClient(
            "http://127.0.0.1:9/kuhr/krav/v1",
            _NoTokens(),
            retry=RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.01),
        ) as client,
        pytest.raises(KuhrUnavailable, match=r"unreachable.*ConnectError after 2"),
    ):
        client.hent_praksiser()


@pytest.mark.parametrize(
    ("profile", "zip_"), [("direct", True), ("nested", False), ("nested", True)]
)
def test_every_jwe_profile_is_accepted(
    make_client: Callable[..., KuhrClient], admin: Any, profile: str, zip_: bool
) -> None:
    client = make_client(jwe_profile=profile, jwe_zip=zip_)
    result = client.send_inn(seed_melding())
    assert (result.status, result.accepted) == ("mottatt", True)


def test_a_cookie_kuhr_sets_is_sent_back_and_answers_without_one_change_nothing() -> None:
    """The client skips httpx's cookie jar for answers that set no cookie (its cost per
    request); a cookie an answer does set (a load balancer's, say) still comes back."""
    import http.server
    import threading

    seen: list[str | None] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("Cookie"))
            body = b'{"praksiser": []}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            if len(seen) == 2:
                self.send_header("Set-Cookie", "route=b2; Path=/")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    class _Tokens:
        async def auth_headers(self, method: str, url: str) -> dict[str, str]:
            return {"Authorization": "Bearer t"}

        def invalidate(self, token: str | None = None) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        api = f"http://127.0.0.1:{server.server_address[1]}/kuhr/krav/v1"
        with KuhrClient(api, _Tokens()) as client:
            for _ in range(4):
                client.hent_praksiser()
    finally:
        server.shutdown()
        server.server_close()
    assert seen == [None, None, "route=b2", "route=b2"]
