"""The optional HTTP endpoint of a running bridge (`[watch] http_port`, loopback by default).

    GET /healthz   200 or 503 with JSON naming each check: journal writable, last folder
                   rescan recent, event loop answering, KUHR reachable, token valid, and
                   (when there are) the personal login and the signing keys' expiry;
                   `warnings` lists what is due soon
    GET /metrics   Prometheus text format (bridge.daemon.metrics)
    GET /          the status page (bridge.daemon.status_page)

It runs in its own thread with its own event loop, so a slow check never holds up the
pipeline. Journal reads go through one worker thread (one SQLite connection, closed on stop).
The KUHR probe is one unretried GET of the praksis list with the bridge's own token, cached
for a few seconds so that a scraper cannot turn into load on KUHR.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

import httpx
import uvicorn
from fastapi import FastAPI
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse

from bridge import __version__
from bridge.config import Settings
from bridge.core.outcomes import State
from bridge.daemon.metrics import CONTENT_TYPE, MetricsSnapshot, render_metrics
from bridge.daemon.status_page import StatusData, render_status_page
from bridge.errors import BridgeError
from bridge.flow.pipeline import TRACKED_STATES, WORKING_STATES
from bridge.kuhr.client import PRAKSIS_PATH
from bridge.kuhr.identity import identity_checks
from bridge.kuhr.proxy import async_transport
from bridge.runtime.listen import listening_socket, stop_server, wait_started
from bridge.runtime.redaction import redact_text

log = logging.getLogger("bridge.health")
T = TypeVar("T")

START_TIMEOUT_SECONDS = 10.0
PAGE_VERSIONS = 1000  # journal rows the status page looks at (recent list + 24 h chart)
HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:",
    "Referrer-Policy": "no-referrer",
}


class HealthSource(Protocol):
    """What the endpoint reads from the running bridge (bridge.daemon.runner.Runner)."""

    settings: Settings
    environment: str
    journal: Any
    pipeline: Any
    watcher: Any
    target: Any

    def responsive(self, timeout: float = 5.0) -> bool: ...


class HealthStartError(BridgeError, RuntimeError):
    """The endpoint could not listen (port taken, address not local …)."""


class HealthService:
    """The checks, the metrics snapshot and the page data, computed on request."""

    def __init__(
        self,
        source: HealthSource,
        *,
        kuhr_cache_seconds: float = 5.0,
        probe_timeout: float = 5.0,
        db_timeout: float = 10.0,
    ) -> None:
        self.source = source
        self.kuhr_cache_seconds = kuhr_cache_seconds
        self.probe_timeout = probe_timeout
        self.db_timeout = db_timeout
        self.started_at = time.time()
        self._started_mono = time.monotonic()
        self._db = ThreadPoolExecutor(1, thread_name_prefix="bkm-bridge-health-db")
        self._probe: tuple[float, dict[str, Any], dict[str, Any]] | None = None
        self._probe_lock: asyncio.Lock | None = None
        self._http: httpx.AsyncClient | None = None

    # ------------------------------------------------------------------ /healthz

    async def healthz(self) -> tuple[bool, dict[str, Any]]:
        checks: dict[str, dict[str, Any]] = {}
        checks["journal"] = await self._check_journal()
        checks["rescan"] = self._check_rescan()
        checks["pipeline"] = await self._check_loop()
        checks["kuhr"], checks["token"] = await self._probe_kuhr()
        checks.update(self._identity())
        failed = [name for name, check in checks.items() if not check["ok"]]
        body = {
            "status": "fail" if failed else "ok",
            "environment": self.source.environment,
            "failed": failed,
            "checks": checks,
        }
        warnings = [f"{name}: {c['warning']}" for name, c in checks.items() if c.get("warning")]
        if warnings:
            body["warnings"] = warnings  # due soon (a login, a key): 200 still, but say so
        return not failed, body

    def _identity(self) -> dict[str, dict[str, Any]]:
        """The personal login and the signing keys (bridge.kuhr.identity), when there are."""
        pipeline = self.source.pipeline
        tokens = getattr(getattr(pipeline, "kuhr", None), "tokens", None)
        if tokens is None:
            return {}
        try:
            return identity_checks(tokens)
        except Exception as exc:  # a report must never take the endpoint down
            return {"identity": {"ok": False, "error": _reason(exc)}}

    async def _check_journal(self) -> dict[str, Any]:
        journal = self.source.journal
        if journal is None:
            return {"ok": False, "error": "no journal open"}
        try:
            await self._in_db(journal.check_writable)
        except Exception as exc:
            return {"ok": False, "error": _reason(exc)}
        return {"ok": True, "path": str(journal.path)}

    def _check_rescan(self) -> dict[str, Any]:
        every = self.source.settings.watch.rescan_seconds
        limit = max(3 * every, every + 60.0)
        last = getattr(self.source.watcher, "last_rescan_at", None)
        if last is None:
            up = time.monotonic() - self._started_mono
            if up <= limit:
                return {"ok": True, "detail": "first scan in progress"}
            return {"ok": False, "error": f"no full folder scan finished in {up:.0f} s"}
        age = max(0.0, time.monotonic() - last)
        result: dict[str, Any] = {"ok": age <= limit, "age_seconds": round(age, 1)}
        if age > limit:
            result["error"] = f"last full folder scan {age:.0f} s ago (rescan every {every:g} s)"
        return result

    async def _check_loop(self) -> dict[str, Any]:
        responsive = getattr(self.source, "responsive", None)
        if responsive is None:
            return {"ok": True}
        if await asyncio.to_thread(responsive, 2.0):
            return {"ok": True}
        return {"ok": False, "error": "the bridge's event loop does not answer"}

    async def _probe_kuhr(self) -> tuple[dict[str, Any], dict[str, Any]]:
        if self._probe_lock is None:
            self._probe_lock = asyncio.Lock()
        async with self._probe_lock:
            cached = self._probe
            if cached is not None and time.monotonic() - cached[0] < self.kuhr_cache_seconds:
                return cached[1], cached[2]
            kuhr, token = await self._run_probe()
            self._probe = (time.monotonic(), kuhr, token)
            return kuhr, token

    async def _run_probe(self) -> tuple[dict[str, Any], dict[str, Any]]:
        pipeline, target = self.source.pipeline, self.source.target
        if pipeline is None or target is None:
            missing = {"ok": False, "error": "the bridge has not started"}
            return missing, dict(missing)
        client = pipeline.kuhr
        url = client.api_url + PRAKSIS_PATH
        token, headers = await self._token(client.tokens, url)
        started = time.monotonic()
        try:
            response = await self._client(target).get(url, headers=headers)
            accept_nonce = getattr(client.tokens, "accept_nonce", None)
            if response.status_code == 401 and accept_nonce and accept_nonce(url, response):
                headers = await client.tokens.auth_headers("GET", url)  # DPoP: with its nonce
                response = await self._client(target).get(url, headers=headers)
        except httpx.HTTPError as exc:
            return {"ok": False, "url": url, "error": _reason(exc)}, token
        kuhr: dict[str, Any] = {
            "ok": response.status_code < 500,
            "url": url,
            "http_status": response.status_code,
            "latency_ms": round((time.monotonic() - started) * 1000, 1),
        }
        if not kuhr["ok"]:
            kuhr["error"] = f"KUHR answered HTTP {response.status_code}"
        if response.status_code in (401, 403) and token["ok"]:
            token = {"ok": False, "error": f"KUHR refused the token (HTTP {response.status_code})"}
        return kuhr, token

    async def _token(self, tokens: Any, url: str) -> tuple[dict[str, Any], dict[str, str]]:
        try:
            fetch = getattr(tokens, "token", None)
            access = await asyncio.wait_for(fetch(), self.probe_timeout) if fetch else None
            headers = await asyncio.wait_for(tokens.auth_headers("GET", url), self.probe_timeout)
        except Exception as exc:
            return {"ok": False, "error": _reason(exc)}, {}
        if access is None:
            return {"ok": True}, headers
        left = access.expires_at - time.time()
        result: dict[str, Any] = {"ok": left > 0, "expires_in_seconds": round(left)}
        if left <= 0:
            result["error"] = "the token has expired and no new one could be fetched"
        return result, headers

    def _client(self, target: Any) -> httpx.AsyncClient:
        if self._http is None:
            verify = getattr(target, "verify", True)
            self._http = httpx.AsyncClient(
                timeout=self.probe_timeout,
                transport=async_transport(getattr(target, "proxy", None), verify),
                headers={"Accept": "application/json", "User-Agent": "bkm-bridge-health"},
                follow_redirects=False,
            )
        return self._http

    # ------------------------------------------------------------------ /metrics

    async def metrics(self) -> str:
        source = self.source
        journal, pipeline, watcher = source.journal, source.pipeline, source.watcher
        counts: dict[str, int] = {}
        due = 0
        oldest: float | None = None
        if journal is not None:
            counts, due, oldest = await self._in_db(self._journal_figures, journal)
        stats = getattr(pipeline, "stats", None)
        counters = getattr(getattr(pipeline, "kuhr", None), "counters", None)
        last_rescan = getattr(watcher, "last_rescan_at", None)
        snapshot = MetricsSnapshot(
            environment=source.environment,
            version=__version__,
            uptime_seconds=time.time() - self.started_at,
            journal_counts=counts,
            all_states=[s.value for s in State],
            converted=getattr(stats, "converted", 0),
            rejected=getattr(stats, "rejected", 0),
            submitted=getattr(stats, "submitted", 0),
            controlled=getattr(stats, "controlled", 0),
            transient_failures=getattr(stats, "failed_attempts", 0),
            submit_latencies=list(getattr(stats, "submit_latency", ())),
            kuhr_counters=counters.snapshot() if counters is not None else {},
            intake_pending=int(getattr(watcher, "pending", 0) or 0),
            due_versions=due,
            oldest_unfinished_age_seconds=max(0.0, time.time() - oldest) if oldest else 0.0,
            last_rescan_age_seconds=(
                max(0.0, time.monotonic() - last_rescan) if last_rescan is not None else None
            ),
        )
        return render_metrics(snapshot)

    def _journal_figures(self, journal: Any) -> tuple[dict[str, int], int, float | None]:
        counts = journal.counts()
        due = len(journal.due([*WORKING_STATES, *TRACKED_STATES]))
        # Unfinished at the depth this bridge follows claims: a controlled claim is done
        # unless the bridge follows it to payment.
        states = [*WORKING_STATES, State.SUBMITTED]
        if self.source.settings.watch.follow == "payment":
            states.append(State.CONTROLLED)
        unfinished = journal.versions(states)
        oldest = min((v.created_at for v in unfinished), default=None)
        return counts, due, oldest

    # ------------------------------------------------------------------ the page

    async def status_page(self) -> str:
        healthy, body = await self.healthz()
        journal = self.source.journal
        counts: dict[str, int] = {}
        versions: list[Any] = []
        if journal is not None:
            counts = await self._in_db(journal.counts)
            versions = await self._in_db(
                functools.partial(journal.versions, None, limit=PAGE_VERSIONS)
            )
        data = StatusData(
            environment=self.source.environment,
            version=__version__,
            uptime_seconds=time.time() - self.started_at,
            now=time.time(),
            healthy=healthy,
            checks=body["checks"],
            counts=counts,
            versions=versions,
        )
        return render_status_page(data)

    # ------------------------------------------------------------------ plumbing

    async def _in_db(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._db, functools.partial(fn, *args))
        return await asyncio.wait_for(future, self.db_timeout)

    async def aclose(self) -> None:
        """Close the probe client and the worker thread's journal connection."""
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        journal = self.source.journal
        if journal is not None:
            try:
                await asyncio.wait_for(
                    asyncio.get_running_loop().run_in_executor(self._db, journal.close), 5.0
                )
            except Exception as exc:  # closing is best effort
                log.debug("closing the health journal connection: %s", type(exc).__name__)
        self._db.shutdown(wait=False)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return redact_text(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)[:500]


# --------------------------------------------------------------------------- the app


def create_app(service: HealthService) -> FastAPI:
    app = FastAPI(title="bkm-bridge", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        healthy, body = await service.healthz()
        return JSONResponse(body, status_code=200 if healthy else 503, headers=HEADERS)

    @app.get("/metrics")
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(await service.metrics(), media_type=CONTENT_TYPE, headers=HEADERS)

    @app.get("/")
    async def status_page() -> HTMLResponse:
        return HTMLResponse(await service.status_page(), headers=HEADERS)

    return app


class RunningHealth:
    """A serving endpoint: `.url`, `.port`, `.service`, `.stop()`."""

    def __init__(
        self,
        server: uvicorn.Server,
        thread: threading.Thread,
        service: HealthService,
        url: str,
        port: int,
    ) -> None:
        self._server = server
        self._thread = thread
        self.service = service
        self.url = url
        self.port = port

    def stop(self, timeout: float = 5.0) -> None:
        stop_server(self._server, self._thread, timeout)


def start_health_server(
    source: HealthSource, host: str = "127.0.0.1", port: int = 0, **options: Any
) -> RunningHealth:
    """Serve /healthz, /metrics and the status page on host:port (0: a free port)."""
    sock = _bind(host, port)
    bound = sock.getsockname()[1]
    service = HealthService(source, **options)
    config = uvicorn.Config(
        create_app(service),
        log_config=None,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)

    async def serve() -> None:
        try:
            await server.serve(sockets=[sock])
        finally:
            await service.aclose()

    thread = threading.Thread(
        target=lambda: asyncio.run(serve()), name="bkm-bridge-health", daemon=True
    )
    thread.start()
    if not wait_started(server, thread, sock, START_TIMEOUT_SECONDS):
        raise HealthStartError(f"the health endpoint did not start on {host}:{bound}")
    url_host = f"[{host}]" if ":" in host else host
    url = f"http://{url_host}:{bound}"
    if not _is_loopback(host):
        log.warning(
            "health endpoint and status page on %s: reachable from other machines "
            "(it shows file names and states, never patient data)",
            url,
        )
    log.info("health, metrics and status page on %s", url)
    return RunningHealth(server, thread, service, url, bound)


def _bind(host: str, port: int) -> socket.socket:
    try:
        return listening_socket(host, port)
    except OSError as exc:
        raise HealthStartError(
            f"cannot serve the health endpoint on {host}:{port}: {exc.strerror} "
            "(choose another [watch] http_port, or 0 to switch it off)"
        ) from None


def _is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")
