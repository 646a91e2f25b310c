"""The HTTP transport under the KUHR client: aiohttp's, behind httpx's API (httpx-aiohttp).

httpx's own transport (httpcore over anyio) cost ~1.0 ms of CPU per request on this machine,
aiohttp's ~0.35 ms (bench/README.md, "The KUHR client's transport"). A bulk run is CPU-bound,
so that difference is a tenth of all the CPU a file costs.

What must not change with the transport is what a failure says about a POST. The client
(`bridge.kuhr.client`) resends without asking KUHR only after `ConnectError`, `ConnectTimeout`
or `PoolTimeout`: the request was never sent. Any other failure means it may have landed.
httpx-aiohttp reports a dropped connection as `ConnectTimeout`, so its errors are mapped again
here, from the aiohttp error that caused them.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from bridge.kuhr.proxy import AsyncRoutingTransport, ProxyRule

# The aiohttp error → the httpx error the client understands; the first match wins.
_MAPPING: tuple[tuple[type[BaseException], type[httpx.TransportError]], ...] = (
    (aiohttp.ClientHttpProxyError, httpx.ConnectError),  # the proxy refused: nothing sent
    (aiohttp.ClientConnectorError, httpx.ConnectError),  # no connection made: nothing sent
    (aiohttp.ConnectionTimeoutError, httpx.ConnectTimeout),  # connecting, or waiting for one
    (aiohttp.ServerTimeoutError, httpx.ReadTimeout),  # sent, no answer in time
    (aiohttp.ClientPayloadError, httpx.ReadError),
    (aiohttp.InvalidURL, httpx.UnsupportedProtocol),
    (aiohttp.ClientOSError, httpx.ReadError),  # reset or broken after connecting
    (aiohttp.ClientError, httpx.RemoteProtocolError),  # disconnected, or a malformed answer
    (TimeoutError, httpx.ReadTimeout),
)


def kuhr_transport(
    verify: ssl.SSLContext | str | bool = True, proxy: str | None = None
) -> httpx.AsyncBaseTransport:
    """The transport `AsyncKuhrClient` uses unless it is given one (tests give their own):
    aiohttp's, through the proxy the bridge's one proxy rule names for each URL (`proxy` is
    the `kuhr.proxy` setting; aiohttp itself reads no environment here)."""

    def make(via: str | None) -> httpx.AsyncBaseTransport:
        return _MappedAiohttpTransport(verify=verify, proxy=httpx.Proxy(via) if via else None)

    return AsyncRoutingTransport(ProxyRule(proxy), make)


class _MappedAiohttpTransport(AiohttpTransport):
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            response = await super().handle_async_request(request)
        except Exception as err:
            _raise_mapped(err, request)
            raise
        response.stream = _MappedStream(response.stream, request)
        return response


class _MappedStream(httpx.AsyncByteStream):
    """The answer's body, whose read errors are mapped like the request's."""

    def __init__(self, inner: httpx.AsyncByteStream, request: httpx.Request) -> None:
        self._inner = inner
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._inner:
                yield chunk
        except Exception as err:
            _raise_mapped(err, self._request)
            raise

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        except Exception as err:
            _raise_mapped(err, self._request)
            raise


def _raise_mapped(err: Exception, request: httpx.Request) -> None:
    """Raise the httpx error for `err` (or for the aiohttp error behind it); return if `err`
    is no transport failure, for the caller to raise as it is."""
    cause = err.__cause__ if isinstance(err, httpx.TransportError) and err.__cause__ else err
    for source, target in _MAPPING:
        if isinstance(cause, source):
            raise target(str(cause) or type(cause).__name__, request=request) from cause
