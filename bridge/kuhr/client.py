"""The KUHR Krav API client: one async core (`AsyncKuhrClient`) and a small sync facade
(`KuhrClient`), shared by the CLI, the daemon and the bulk migration.

Every call returns the typed models of `bridge.core.model`. Resilience, in one place:
- connect/read timeouts; retries with exponential backoff and full jitter on connection
  errors, 5xx and 429 (Retry-After honoured), a bounded number of attempts;
- a 401 invalidates the token and retries once with a fresh one (a DPoP `use_dpop_nonce`
  challenge is answered first, with the same token and a proof carrying the nonce);
- a 400 from the submit endpoint is a *result* (feilmeldinger), never retried – except once
  after refetching KUHR's JWKS when the rejection says the claim could not be read (stale kid);
- a retried submit that answers DUPLIKAT_KRAV after an earlier attempt may have landed is
  reported as `already_received`, not hidden and not treated as a failure.
Logs carry method, path, status and attempt – never bodies, tokens or keys.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import date
from typing import Any

import httpx
from jwcrypto import jwk
from pydantic import ValidationError

from bridge.core.model import (
    Behandlerkravmelding,
    BehandlerkravmeldingListe,
    BehandlerkravmeldingStatus,
    Feilkode,
    PraksisListe,
    SendInnResponse,
    load_json,
)
from bridge.errors import BridgeError
from bridge.kuhr.auth import (
    TokenProvider,
)
from bridge.kuhr.jwe import JwksCache, Profile, encrypt_claim

log = logging.getLogger(__name__)

PRAKSIS_PATH = "/data/praksis"
SUBMIT_PATH = "/process/sendinnbehandlerkravmelding"
STATUS_PATH = "/data/behandlerkravmelding"
JWK_PATH = "/jwk"


class KuhrError(BridgeError):
    """Talking to KUHR failed; the message says what happened and, where known, what to do."""


class KuhrUnavailable(KuhrError):
    """KUHR did not answer usefully within the allowed attempts (network, 5xx, 429)."""


class KuhrAuthError(KuhrError):
    """401 after a fresh token, or 403 (the token lacks the scope / the actor lacks access)."""


class KuhrResponseError(KuhrError):
    """An answer the client cannot use (unexpected status or body)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class RetryPolicy:
    max_attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_retry_after: float = 120.0

    def backoff(self, retry_number: int, rng: random.Random) -> float:
        """Full jitter: uniform in [0, min(max_delay, base · 2^(n-1))]."""
        ceiling = min(self.max_delay, self.base_delay * 2 ** (retry_number - 1))
        return rng.uniform(0, ceiling)


@dataclass
class ClientCounters:
    """Running totals for metrics (the daemon and migration report these)."""

    requests: int = 0  # HTTP attempts made
    retries: int = 0  # attempts repeated after a connection error, 5xx or 429
    token_refreshes: int = 0  # fresh tokens fetched after a 401
    jwks_refetches: int = 0  # JWKS refetched after a rejection pointing at a stale key
    submissions: int = 0  # send_inn calls
    already_received: int = 0  # retried submissions answered with DUPLIKAT_KRAV
    unreadable_entries: int = 0  # overview entries skipped because they could not be read

    def snapshot(self) -> dict[str, int]:
        return asdict(self)


class SendInnResult(SendInnResponse):
    """KUHR's answer to a submission, plus what the client knows about how it got it.

    `already_received` is True when an earlier attempt may have landed (the connection broke
    after sending, or KUHR answered 5xx) and the retry was refused as DUPLIKAT_KRAV: the claim
    *is* at KUHR, under an id this answer does not carry – find it in the overview (`status`).
    """

    attempts: int = 1
    already_received: bool = False

    @property
    def accepted(self) -> bool:
        return self.already_received or (
            not self.feilmeldinger and self.behandlerkravmeldingId is not None
        )


@dataclass
class _Exchange:
    response: httpx.Response
    attempts: int
    maybe_landed: bool  # an earlier attempt may have reached KUHR and been processed


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    parsed = email.utils.parsedate_to_datetime(value) if value else None
    if parsed is None:
        return None
    return max(0.0, parsed.timestamp() - time.time())


# Failures where the request cannot have been sent, so a POST is known not to have landed.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class AsyncKuhrClient:
    """The async core. Use as `async with AsyncKuhrClient(...) as kuhr:`."""

    def __init__(
        self,
        api_url: str,
        tokens: TokenProvider,
        *,
        jwe_profile: Profile = "direct",
        jwe_zip: bool = False,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        verify: bool | str = True,
        max_concurrency: int = 4,
        proxy: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.tokens = tokens
        self._profile: Profile = jwe_profile
        self._zip = jwe_zip
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._max_concurrency = max_concurrency
        self._semaphore: asyncio.Semaphore | None = None
        if transport is None:
            # Here, not at the top: aiohttp costs ~0.7 s to import (python -X importtime), paid
            # only by a command that talks to KUHR, never by `convert` or `validate`.
            from bridge.kuhr.transport import kuhr_transport

            transport = kuhr_transport(verify, proxy)
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout),
            verify=verify,
            transport=transport,
            headers={"Accept": "application/json", "User-Agent": "bkm-bridge"},
            follow_redirects=False,
        )
        _skip_cookieless_answers(self._http)
        self._parsed_urls: dict[str, httpx.URL] = {}
        self.jwks = JwksCache(self.hent_jwks)
        self.counters = ClientCounters()

    async def __aenter__(self) -> AsyncKuhrClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # ---------------------------------------------------------------- the endpoints

    async def hent_praksiser(self) -> PraksisListe:
        """GET data/praksis: the actor's registered praksiser."""
        return PraksisListe.model_validate(await self._get_json(PRAKSIS_PATH))

    async def hent_status(
        self, fom: date | None = None, tom: date | None = None
    ) -> BehandlerkravmeldingListe:
        """GET data/behandlerkravmelding: the overview, optionally by received date."""
        params: dict[str, str] = {}
        if fom is not None:
            params["fomMottattdato"] = fom.isoformat()
        if tom is not None:
            params["tomMottattdato"] = tom.isoformat()
        data = await self._get_json(STATUS_PATH, params=params)
        overview = read_overview(data)
        self.counters.unreadable_entries += overview.unreadable
        return overview.liste

    async def hent_behandlerkravmelding(
        self, behandlerkravmelding_id: str
    ) -> BehandlerkravmeldingListe:
        """GET data/behandlerkravmelding/{id}: the details (several rows after rebehandling)."""
        data = await self._get_json(f"{STATUS_PATH}/{_path_segment(behandlerkravmelding_id)}")
        if isinstance(data, dict) and "behandlerkravmeldinger" not in data:
            data = {"behandlerkravmeldinger": [data]}  # one doc example shows a bare object
        details = BehandlerkravmeldingListe.model_validate(data)
        return details.model_copy(
            update={"behandlerkravmeldinger": original_first(details.behandlerkravmeldinger)}
        )

    async def hent_jwks(self) -> dict[str, Any]:
        """GET jwk: KUHR's public encryption key set."""
        data = await self._get_json(JWK_PATH)
        if isinstance(data, dict) and "keys" not in data and "kty" in data:
            data = {"keys": [data]}  # a single JWK instead of a set
        if not isinstance(data, dict):
            raise KuhrResponseError("KUHR's JWK endpoint did not answer with a JSON object")
        return data

    async def send_inn(self, melding: Behandlerkravmelding | str) -> SendInnResult:
        """POST process/sendinnbehandlerkravmelding with the claim (a model, or its JSON
        text) encrypted for KUHR."""
        self.counters.submissions += 1
        key = await self.jwks.key()
        exchange = await self._post_claim(melding, key)
        result = _send_inn_result(exchange)
        if _unreadable(result) and await self._jwks_changed(key.get("kid")):
            key = await self.jwks.key()
            log.info("re-encrypting claim for new KUHR key after rejection")
            retried = await self._post_claim(melding, key)
            retried.attempts += exchange.attempts
            retried.maybe_landed = retried.maybe_landed or exchange.maybe_landed
            exchange = retried
            result = _send_inn_result(exchange)
        if exchange.maybe_landed and _only_duplicate(result):
            self.counters.already_received += 1
            log.warning(
                "claim already received by KUHR (DUPLIKAT_KRAV after %d attempts); "
                "find it in the overview",
                exchange.attempts,
            )
            result = result.model_copy(update={"already_received": True})
        return result

    # ---------------------------------------------------------------- plumbing

    async def _jwks_changed(self, used_kid: str | None) -> bool:
        self.counters.jwks_refetches += 1
        return await self.jwks.refresh_if_stale(used_kid)

    async def _post_claim(self, melding: Behandlerkravmelding | str, key: jwk.JWK) -> _Exchange:
        body = encrypt_claim(melding, key, profile=self._profile, zip=self._zip)
        return await self._request(
            "POST",
            SUBMIT_PATH,
            content=body.encode("ascii"),
            headers={"Content-Type": "application/jose"},
        )

    async def _get_json(self, path: str, params: dict[str, str] | None = None) -> Any:
        exchange = await self._request("GET", path, params=params)
        response = exchange.response
        if response.status_code != 200:
            raise _unexpected(response)
        try:
            return load_json(response.content)
        except ValueError:
            raise KuhrResponseError(
                f"KUHR answered {path} with something that is not JSON", response.status_code
            ) from None

    def _url(self, path: str) -> str:
        return self.api_url + path

    def _parsed(self, url: str) -> httpx.URL:
        """`url` parsed once: httpx parses a text URL on every request (the submit URL is
        the same for every claim; a status URL names its claim, so only a few are kept)."""
        parsed = self._parsed_urls.get(url)
        if parsed is None:
            parsed = httpx.URL(url)
            if len(self._parsed_urls) < 16:
                self._parsed_urls[url] = parsed
        return parsed

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> _Exchange:
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self._max_concurrency)
        url = self._url(path)
        attempt = 0
        refreshed = False
        nonce_retried = False
        maybe_landed = False
        while True:
            attempt += 1
            self.counters.requests += 1
            auth = await self.tokens.auth_headers(method, url)
            try:
                async with self._semaphore:
                    response = await self._http.request(
                        method, self._parsed(url), params=params, content=content,
                        headers={**(headers or {}), **auth},
                    )  # fmt: skip
            except httpx.TransportError as exc:
                # INFO: the caller's one WARNING line says what failed and when it is retried.
                log.info("%s %s -> %s (attempt %d)", method, path, type(exc).__name__, attempt)
                if not isinstance(exc, _NOT_SENT):
                    maybe_landed = True
                if attempt >= self.retry.max_attempts:
                    raise KuhrUnavailable(
                        f"KUHR unreachable at {self.api_url}: {type(exc).__name__} "
                        f"after {attempt} attempt(s)"
                    ) from exc
                await self._pause(self.retry.backoff(attempt, self._rng))
                continue

            status = response.status_code
            # Every request at INFO was a third of a daemon's log lines and of its logging
            # cost; an answer that is not a success stays at INFO.
            level = logging.DEBUG if status < 400 else logging.INFO
            log.log(level, "%s %s -> %d (attempt %d)", method, path, status, attempt)
            accept_nonce = getattr(self.tokens, "accept_nonce", None)
            if status == 401 and not nonce_retried and accept_nonce and accept_nonce(url, response):
                nonce_retried = True  # the API asked for a DPoP nonce: same token, new proof
                continue
            if status == 401 and not refreshed:
                refreshed = True
                self.counters.token_refreshes += 1
                self.tokens.invalidate(_token_of(auth))
                continue
            if status == 401:
                raise KuhrAuthError(
                    "KUHR refused a freshly issued token (HTTP 401): check that the token "
                    "issuer and audience match this KUHR environment"
                )
            if status == 403:
                raise KuhrAuthError(
                    "KUHR refused access (HTTP 403): the token lacks the scope "
                    "nav:kuhr/krav / hdir:kuhr-krav-api/krav, or the actor has no access"
                )
            if status == 429 or status >= 500:
                if status >= 500:
                    maybe_landed = True
                if attempt >= self.retry.max_attempts:
                    raise KuhrUnavailable(
                        f"KUHR answered HTTP {status} to {method} {path} "
                        f"{attempt} time(s); try again later"
                    )
                delay = self.retry.backoff(attempt, self._rng)
                wait = _retry_after(response) if status == 429 else None
                if wait is not None:
                    delay = max(delay, min(wait, self.retry.max_retry_after))
                await self._pause(delay)
                continue
            return _Exchange(response, attempt, maybe_landed)

    async def _pause(self, seconds: float) -> None:
        self.counters.retries += 1
        await self._sleep(seconds)


@dataclass(frozen=True)
class Overview:
    """The overview as read: the entries that could be read, and how many could not."""

    liste: BehandlerkravmeldingListe
    unreadable: int = 0


def read_overview(data: Any) -> Overview:
    """GET data/behandlerkravmelding's answer, entry by entry: an entry that cannot be read
    (the docs' own example has `"2026-01-0615:30:29+01:00"`) is left out and logged by its
    position and the names of the fields at fault, never by its content, and the others are
    kept. Only an answer that is not a list of entries at all is an error."""
    entries = data.get("behandlerkravmeldinger") if isinstance(data, dict) else None
    if entries is None and isinstance(data, dict) and not data:
        entries = []
    if not isinstance(entries, list):
        raise KuhrResponseError("KUHR's overview did not answer with a list of meldinger")
    good: list[BehandlerkravmeldingStatus] = []
    bad = 0
    for position, entry in enumerate(entries):
        try:
            good.append(BehandlerkravmeldingStatus.model_validate(entry))
        except ValidationError as err:
            bad += 1
            where = sorted({".".join(str(p) for p in e["loc"]) or "(entry)" for e in err.errors()})
            log.warning(
                "KUHR's overview: entry %d of %d cannot be read (fields: %s); left out, "
                "the other entries are used",
                position + 1,
                len(entries),
                ", ".join(where),
            )
    return Overview(BehandlerkravmeldingListe(behandlerkravmeldinger=good), bad)


def original_first(
    entries: list[BehandlerkravmeldingStatus],
) -> list[BehandlerkravmeldingStatus]:
    """A melding's entries with the original before its rebehandlinger, by the `rebehandling`
    flag, not by the order KUHR lists them in (rebehandlinger keep their order among
    themselves: the newest last)."""
    return sorted(entries, key=lambda e: bool(e.rebehandling))


class _CookiesFromSetCookie(httpx.Cookies):
    """httpx's cookie jar, which looks at an answer only if it sets a cookie: httpx hands
    every answer to the standard library's jar (two adapter objects and a header scan, ~7 %
    of the daemon's CPU in a burst), and one without Set-Cookie changes nothing there."""

    def extract_cookies(self, response: httpx.Response) -> None:
        headers = response.headers
        if "set-cookie" in headers or "set-cookie2" in headers:
            super().extract_cookies(response)


def _skip_cookieless_answers(client: httpx.AsyncClient) -> None:
    """Give `client` that jar (httpx has no public way to choose the jar's class; where its
    internals differ, the client keeps its own jar and works as before)."""
    jar = getattr(client, "_cookies", None)
    if type(jar) is httpx.Cookies:
        client._cookies = _CookiesFromSetCookie(jar)  # type: ignore[attr-defined]


def _path_segment(value: str) -> str:
    if not value or "/" in value or "?" in value or "#" in value or value in (".", ".."):
        raise ValueError(f"not a behandlerkravmeldingId: {value!r}")
    return value


def _token_of(auth_headers: dict[str, str]) -> str | None:
    value = auth_headers.get("Authorization", "")
    return value.split(" ", 1)[1] if " " in value else None


def _unexpected(response: httpx.Response) -> KuhrResponseError:
    path = response.request.url.path
    if response.status_code == 404:
        return KuhrResponseError(f"KUHR has nothing at {path} (HTTP 404)", 404)
    return KuhrResponseError(
        f"KUHR answered HTTP {response.status_code} to {response.request.method} {path}",
        response.status_code,
    )


def _send_inn_result(exchange: _Exchange) -> SendInnResult:
    response = exchange.response
    if response.status_code not in (200, 201, 202, 400):
        raise _unexpected(response)
    try:
        data = load_json(response.content)
        result = SendInnResult.model_validate(data)
    except ValueError:
        raise KuhrResponseError(
            f"KUHR answered the submission with HTTP {response.status_code} and a body "
            "that is not a submission result",
            response.status_code,
        ) from None
    return result.model_copy(update={"attempts": exchange.attempts})


def _codes(result: SendInnResponse) -> set[str]:
    return {f.kode for f in result.feilmeldinger or []}


def _unreadable(result: SendInnResponse) -> bool:
    """KUHR could not read the body: possibly encrypted for a key it no longer holds."""
    return Feilkode.UKJENT_FORMAT.value in _codes(result)


def _only_duplicate(result: SendInnResponse) -> bool:
    return _codes(result) == {Feilkode.DUPLIKAT_KRAV.value}


# --------------------------------------------------------------------------- sync facade


class KuhrClient:
    """Blocking wrapper for scripts and the CLI: the same client on a private event loop."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._runner = asyncio.Runner()
        self.core = AsyncKuhrClient(*args, **kwargs)

    def __enter__(self) -> KuhrClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            self._runner.run(self.core.aclose())
        finally:
            self._runner.close()

    @property
    def counters(self) -> ClientCounters:
        return self.core.counters

    @property
    def tokens(self) -> TokenProvider:
        return self.core.tokens

    def hent_praksiser(self) -> PraksisListe:
        return self._runner.run(self.core.hent_praksiser())

    def send_inn(self, melding: Behandlerkravmelding) -> SendInnResult:
        return self._runner.run(self.core.send_inn(melding))

    def hent_status(
        self, fom: date | None = None, tom: date | None = None
    ) -> BehandlerkravmeldingListe:
        return self._runner.run(self.core.hent_status(fom, tom))

    def hent_behandlerkravmelding(self, behandlerkravmelding_id: str) -> BehandlerkravmeldingListe:
        return self._runner.run(self.core.hent_behandlerkravmelding(behandlerkravmelding_id))

    def hent_jwks(self) -> dict[str, Any]:
        return self._runner.run(self.core.hent_jwks())

    def encryption_key(self) -> jwk.JWK:
        """The KUHR key claims are encrypted for now (from the cached JWKS)."""
        return self._runner.run(self.core.jwks.key())


# --------------------------------------------------------------------------- from settings
