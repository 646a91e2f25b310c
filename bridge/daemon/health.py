"""The optional HTTP endpoint of a running bridge (`[watch] http_port`, loopback by default).

    GET /healthz   200 or 503 with JSON naming each check: journal writable, last folder
                   rescan recent, event loop answering, KUHR reachable, token valid, and
                   (when there are) the personal login and the signing keys' expiry;
                   `warnings` lists what is due soon
    GET /metrics   Prometheus text format (bridge.daemon.metrics)
    GET /          the status page (bridge.daemon.status_page); ?q=TEXT&state=STATE searches
    GET /file/ID   one file's history: every version of its path, each state change, the reason
    POST /retry/ID re-queue one failed or rejected version; POST /retry: all of them. Forms on
                   the page only: each POST carries the page's form token, and its Host, Origin
                   and Sec-Fetch-Site must be this server's own (no other site can make a
                   browser on the operator's machine press the button)

It runs in its own thread with its own event loop, so a slow check never holds up the
pipeline. Journal reads go through one worker thread (one SQLite connection, closed on stop).
The KUHR probe is one unretried GET of the praksis list with the bridge's own token, cached
for a few seconds so that a scraper cannot turn into load on KUHR.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import logging
import secrets
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import httpx
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse

from bridge import __version__
from bridge.config import Settings
from bridge.core.outcomes import State
from bridge.daemon.metrics import CONTENT_TYPE, MetricsSnapshot, render_metrics
from bridge.daemon.status_page import (
    RECENT_ROWS,
    FileHistory,
    StatusData,
    render_file_page,
    render_status_page,
)
from bridge.errors import BridgeError
from bridge.flow.journal import JournalError
from bridge.flow.pipeline import TRACKED_STATES, WORKING_STATES
from bridge.flow.reasons import merknader_of, regninger_of
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
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    # same-origin, not no-referrer: with no-referrer a browser sends "Origin: null" on the
    # page's own forms; other sites still get no Referer (no file names leave the page).
    "Referrer-Policy": "same-origin",
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


# Versions KUHR has controlled: their regninger carry the control results and merknader.
KUHR_RESULT_STATES = (State.CONTROLLED, State.PAID, State.NO_PAYMENT)


@dataclass
class JournalFigures:
    """What /metrics reads from the journal in one go (in the journal's worker thread)."""

    counts: dict[str, int] = field(default_factory=dict)
    due: int = 0
    oldest_unfinished: float | None = None
    oldest_awaiting_payment: float | None = None
    merknader: dict[tuple[str, str], int] = field(default_factory=dict)
    regninger: dict[str, int] = field(default_factory=dict)


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
        # Per controlled version: (updated_at, regning statuses, (status, merknad) pairs).
        self._results: dict[int, tuple[float, tuple[str, ...], tuple[tuple[str, str], ...]]] = {}
        self.csrf = secrets.token_urlsafe(32)  # the page's form token (this process only)
        self.allowed_hosts: frozenset[str] | None = None  # Host values a POST may carry

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
        figures = JournalFigures()
        if journal is not None:
            figures = await self._in_db(self._journal_figures, journal)
        stats = getattr(pipeline, "stats", None)
        counters = getattr(getattr(pipeline, "kuhr", None), "counters", None)
        last_rescan = getattr(watcher, "last_rescan_at", None)
        now = time.time()
        snapshot = MetricsSnapshot(
            environment=source.environment,
            version=__version__,
            uptime_seconds=now - self.started_at,
            journal_counts=figures.counts,
            all_states=[s.value for s in State],
            converted=getattr(stats, "converted", 0),
            rejected=getattr(stats, "rejected", 0),
            submitted=getattr(stats, "submitted", 0),
            controlled=getattr(stats, "controlled", 0),
            transient_failures=getattr(stats, "failed_attempts", 0),
            submit_latencies=list(getattr(stats, "submit_latency", ())),
            kuhr_counters=counters.snapshot() if counters is not None else {},
            intake_pending=int(getattr(watcher, "pending", 0) or 0),
            due_versions=figures.due,
            oldest_unfinished_age_seconds=_age(figures.oldest_unfinished, now),
            last_rescan_age_seconds=(
                max(0.0, time.monotonic() - last_rescan) if last_rescan is not None else None
            ),
            merknad_counts=figures.merknader,
            regning_counts=figures.regninger,
            oldest_awaiting_payment_age_seconds=(
                _age(figures.oldest_awaiting_payment, now)
                if self.source.settings.watch.follow == "payment"
                else None
            ),
        )
        return render_metrics(snapshot)

    def _journal_figures(self, journal: Any) -> JournalFigures:
        figures = JournalFigures(counts=journal.counts())
        figures.due = journal.count_due([*WORKING_STATES, *TRACKED_STATES])
        # Unfinished: still on its way to KUHR's control result. A controlled claim that only
        # waits for its payment (follow = payment) is KUHR's to move, not the bridge's: it has
        # its own gauge, so an alert on this one does not fire for a normal payment cycle.
        unfinished = journal.stamps([*WORKING_STATES, State.SUBMITTED])
        figures.oldest_unfinished = min((c for _, c, _ in unfinished), default=None)
        stamps = journal.stamps(KUHR_RESULT_STATES)
        figures.oldest_awaiting_payment = min(
            (c for _, c, _ in journal.stamps([State.CONTROLLED])), default=None
        )
        # A controlled version's results are parsed once per change, not once per scrape.
        cache, self._results = self._results, {}
        for version_id, _created, updated in stamps:
            known = cache.get(version_id)
            if known is None or known[0] != updated:
                known = (updated, *_results_of(journal.get(version_id)))
            self._results[version_id] = known
            for status in known[1]:
                figures.regninger[status] = figures.regninger.get(status, 0) + 1
            for key in known[2]:
                figures.merknader[key] = figures.merknader.get(key, 0) + 1
        return figures

    # ------------------------------------------------------------------ the page

    async def status_page(self, query: str = "", state: str = "", notice: str = "") -> str:
        healthy, body = await self.healthz()
        journal = self.source.journal
        counts: dict[str, int] = {}
        versions: list[Any] = []
        found: list[Any] | None = None
        wanted = [State(state)] if state in State._value2member_map_ else None
        if journal is not None:
            counts = await self._in_db(journal.counts)
            versions = await self._in_db(
                functools.partial(journal.versions, None, limit=PAGE_VERSIONS)
            )
            if query or wanted:
                found = await self._in_db(
                    functools.partial(journal.search, query or None, wanted, limit=RECENT_ROWS)
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
            csrf=self.csrf,
            query=query,
            state=state if wanted else "",
            found=found,
            notice=notice,
        )
        return render_status_page(data)

    async def file_page(self, version_id: int, notice: str = "") -> str | None:
        journal = self.source.journal
        if journal is None:
            return None
        try:
            version = await self._in_db(journal.get, version_id)
            history = await self._in_db(journal.history, version_id)
        except JournalError:
            return None
        return render_file_page(
            FileHistory(self.source.environment, version, history, self.csrf, notice)
        )

    async def retry(self, version_id: int | None) -> int:
        """Re-queue one version (or every failed and rejected one) through the journal: the
        running pipeline takes it up as it does a new file. Returns how many were re-queued."""
        journal = self.source.journal
        if journal is None:
            return 0
        if version_id is None:
            moved = await self._in_db(
                functools.partial(journal.requeue_all, note="operator: status page, retry all")
            )
            count = len(moved)
        else:
            try:
                await self._in_db(
                    functools.partial(journal.requeue, version_id, note="operator: status page")
                )
                count = 1
            except JournalError:
                count = 0
        if count:  # the pipeline looks for due versions at least once a second
            log.info("operator retry from the status page: %d file version(s) re-queued", count)
        return count

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


def _results_of(version: Any) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """A controlled version's regning statuses and (status, merknad) pairs."""
    statuses = tuple(str(r.get("status") or "ukjent") for r in regninger_of(version))
    return statuses, tuple(merknader_of(version))


def _age(since: float | None, now: float) -> float:
    return max(0.0, now - since) if since else 0.0


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
    async def status_page(q: str = "", state: str = "", retried: int = -1) -> HTMLResponse:
        notice = f"{retried} file version(s) re-queued." if retried >= 0 else ""
        page = await service.status_page(q[:200], state[:40], notice)
        return HTMLResponse(page, headers=HEADERS)

    @app.get("/file/{version_id}")
    async def file_page(version_id: int, retried: int = -1) -> HTMLResponse:
        notice = ""
        if retried == 0:
            notice = "Not re-queued: the file is no longer failed or rejected."
        elif retried > 0:
            notice = "Re-queued: the bridge takes it up within seconds."
        page = await service.file_page(version_id, notice)
        if page is None:
            return HTMLResponse("no such file version", status_code=404, headers=HEADERS)
        return HTMLResponse(page, headers=HEADERS)

    @app.post("/retry/{version_id}", response_model=None)
    async def retry_one(version_id: int, request: Request) -> HTMLResponse | RedirectResponse:
        refused = await _refuse(service, request)
        if refused is not None:
            return refused
        count = await service.retry(version_id)
        return RedirectResponse(f"/file/{version_id}?retried={count}", 303, headers=HEADERS)

    @app.post("/retry", response_model=None)
    async def retry_all(request: Request) -> HTMLResponse | RedirectResponse:
        refused = await _refuse(service, request)
        if refused is not None:
            return refused
        count = await service.retry(None)
        return RedirectResponse(f"/?retried={count}", 303, headers=HEADERS)

    return app


async def _refuse(service: HealthService, request: Request) -> HTMLResponse | None:
    """None when this POST comes from the status page's own form; else the 403 to send.

    The form token is what another site cannot know (it cannot read the page); Host stops a
    DNS rebinding name, Origin and Sec-Fetch-Site a cross-site form, where a browser sends them."""
    headers = request.headers
    host = headers.get("host", "")
    why = ""
    if service.allowed_hosts is not None and host.lower() not in service.allowed_hosts:
        why = "unknown Host"
    origin = headers.get("origin")
    if not why and origin is not None and origin not in (f"http://{host}", f"https://{host}"):
        why = "cross-origin request"
    if not why and headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        why = "cross-site request"
    if not why:
        form = urllib.parse.parse_qs((await request.body())[:4096].decode("latin-1"))
        token = (form.get("csrf") or [""])[0]
        if not hmac.compare_digest(token.encode(), service.csrf.encode()):
            why = "missing or wrong form token"
    if not why:
        return None
    log.warning("status page: refused a POST to %s (%s)", request.url.path, why)
    return HTMLResponse(
        "refused: use the buttons on the status page", status_code=403, headers=HEADERS
    )


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
    if _is_loopback(host):
        names = (
            {host, "localhost", "127.0.0.1", "[::1]"} if host != "::1" else {"[::1]", "localhost"}
        )
        service.allowed_hosts = frozenset(f"{name}:{bound}" for name in names)
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
