"""Shared fixtures for the KUHR tests: real sandboxes on loopback, clients built the way the
commands build them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from support.kuhr import FAST_RETRY

from bridge.config import load_settings
from bridge.kuhr.client import KuhrClient, RetryPolicy
from bridge.kuhr.target import client_options, resolve_target, token_provider_for
from bridge.sandbox.keys import KeyMaterial, generate_keys
from bridge.sandbox.server import RunningSandbox, start_sandbox


@pytest.fixture(scope="session")
def sandbox_keys() -> KeyMaterial:
    """One set of RSA keys for every sandbox of the run (generating them is the slow part)."""
    return generate_keys()


@pytest.fixture(scope="module")
def sandbox(sandbox_keys: KeyMaterial) -> Iterator[RunningSandbox]:
    with start_sandbox(keys=sandbox_keys) as running:
        yield running


@pytest.fixture
def admin(sandbox: RunningSandbox) -> Iterator[Callable[..., Any]]:
    """`admin("faults", {...})` POSTs to the sandbox admin API; `admin("stats")` GETs.
    The sandbox is reset before and after each test."""
    base = sandbox.info["admin_url"]

    def call(path: str, body: dict[str, Any] | None = None) -> Any:
        if body is None and path == "stats":
            response = httpx.get(f"{base}/{path}", timeout=10)
        else:
            response = httpx.post(f"{base}/{path}", json=body or {}, timeout=10)
        response.raise_for_status()
        return response.json()

    call("reset")
    yield call
    call("reset")


@pytest.fixture
def make_client(sandbox: RunningSandbox) -> Iterator[Callable[..., KuhrClient]]:
    """Build a sync client for the module's sandbox exactly as `connect()` would."""
    made: list[KuhrClient] = []

    def make(
        *, method: str = "maskinporten", retry: RetryPolicy = FAST_RETRY, **options: Any
    ) -> KuhrClient:
        settings = load_settings(None, {"auth.method": method})
        target = resolve_target(settings, sandbox.info, embedded=True)
        tokens = options.pop("tokens", None) or token_provider_for(target, settings)
        kwargs = {**client_options(settings, target), "retry": retry, **options}
        client = KuhrClient(target.api_url, tokens, **kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()
