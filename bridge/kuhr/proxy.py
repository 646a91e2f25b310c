"""One proxy rule for every HTTP client of the bridge (KUHR, HelseID, Maskinporten, the test
token service, Helfo's open data, the status check): which proxy, if any, a URL goes through.

- `kuhr.proxy = "http://proxy:3128"`: that proxy; `"direct"`: none, whatever the environment
  says; unset: the environment, as curl reads it (`HTTPS_PROXY` / `https_proxy` for https,
  `HTTP_PROXY` / `http_proxy` for http, else `ALL_PROXY`);
- `NO_PROXY` / `no_proxy` (host names and their subdomains, IP addresses, CIDR ranges, `*`)
  is honoured either way;
- loopback (127.0.0.0/8, ::1, localhost) never goes through a proxy: the embedded sandbox and
  the bridge's own endpoints are on this machine.

The transports here route each request by that rule, so one client can talk to a proxied
KUHR and a local sandbox alike. Deciding never resolves a name: a proxied host may exist only
for the proxy. Proxy credentials in the URL are never logged.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Mapping
from typing import Any

import httpx

DIRECT = "direct"


def is_loopback(host: str) -> bool:
    host = host.strip("[]").lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _env(environ: Mapping[str, str], *names: str) -> str | None:
    for name in names:
        for variant in (name.lower(), name.upper()):
            value = environ.get(variant)
            if value:
                return value.strip()
    return None


def redacted(proxy: str) -> str:
    """The proxy URL without its credentials (for logs and config check)."""
    url = httpx.URL(proxy)
    return str(url.copy_with(username=None, password=None)) if url.userinfo else proxy


class ProxyRule:
    """Which proxy a URL goes through (None: directly)."""

    def __init__(self, configured: str | None = None, environ: Mapping[str, str] | None = None):
        env = os.environ if environ is None else environ
        self.configured = configured
        self._https = self._http = None
        self.source = "none"
        if configured and configured != DIRECT:
            self._https = self._http = configured
            self.source = "kuhr.proxy"
        elif configured is None:
            self._https = _env(env, "https_proxy", "all_proxy")
            self._http = _env(env, "http_proxy", "all_proxy")
            if self._https or self._http:
                self.source = "environment"
        self._no_proxy = [e.strip().lower() for e in (_env(env, "no_proxy") or "").split(",")]
        self._no_proxy = [e for e in self._no_proxy if e]
        self._decided: dict[tuple[str, str, int | None], str | None] = {}

    def proxy_for(self, url: httpx.URL | str) -> str | None:
        url = httpx.URL(url)
        origin = (url.scheme, url.host, url.port)
        try:
            return self._decided[origin]
        except KeyError:
            pass
        host = url.host
        port = url.port or {"https": 443, "http": 80}.get(url.scheme)
        if is_loopback(host) or self._excluded(host, port):
            proxy = None
        else:
            proxy = self._https if url.scheme == "https" else self._http
        if len(self._decided) < 64:  # the rule is fixed at construction: decided per origin
            self._decided[origin] = proxy
        return proxy

    def _excluded(self, host: str, port: int | None) -> bool:
        host = host.lower().rstrip(".")
        for entry in self._no_proxy:
            if entry == "*":
                return True
            name, _, entry_port = entry.rpartition(":") if _has_port(entry) else (entry, "", "")
            if entry_port and port is not None and str(port) != entry_port:
                continue
            name = name.removeprefix("*").lstrip(".").strip("[]")
            if "/" in name and _in_network(host, name):
                return True
            if host == name or host.endswith("." + name):
                return True
        return False

    def describe(self) -> str:
        """For config check: the proxy (without credentials) and where it comes from."""
        proxy = self._https or self._http
        if proxy is None:
            return "none (direct)" + (" — kuhr.proxy = direct" if self.configured else "")
        text = f"{redacted(proxy)} (from {self.source})"
        if self._no_proxy:
            text += f"; not for: {', '.join(self._no_proxy)}"
        return text + "; never for loopback"


def _has_port(entry: str) -> bool:
    if entry.startswith("[") and "]:" in entry:
        return True
    return entry.count(":") == 1 and entry.rsplit(":", 1)[1].isdigit()


def _in_network(host: str, cidr: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")) in ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        return False


# --------------------------------------------------------------------------- transports


class RoutingTransport(httpx.BaseTransport):
    """Each request through the transport its proxy (or none) calls for; made on first use."""

    def __init__(self, rule: ProxyRule, make: Callable[[str | None], httpx.BaseTransport]) -> None:
        self.rule = rule
        self._make = make
        self._transports: dict[str | None, httpx.BaseTransport] = {}

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        proxy = self.rule.proxy_for(request.url)
        transport = self._transports.get(proxy)
        if transport is None:
            transport = self._transports[proxy] = self._make(proxy)
        return transport.handle_request(request)

    def close(self) -> None:
        for transport in self._transports.values():
            transport.close()
        self._transports.clear()


class AsyncRoutingTransport(httpx.AsyncBaseTransport):
    """The async twin of RoutingTransport."""

    def __init__(
        self, rule: ProxyRule, make: Callable[[str | None], httpx.AsyncBaseTransport]
    ) -> None:
        self.rule = rule
        self._make = make
        self._transports: dict[str | None, httpx.AsyncBaseTransport] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        proxy = self.rule.proxy_for(request.url)
        transport = self._transports.get(proxy)
        if transport is None:
            transport = self._transports[proxy] = self._make(proxy)
        return await transport.handle_async_request(request)

    async def aclose(self) -> None:
        for transport in self._transports.values():
            await transport.aclose()
        self._transports.clear()


def sync_transport(proxy_setting: str | None, verify: bool | str = True) -> httpx.BaseTransport:
    """An httpx transport that follows the proxy rule (token services, open data)."""
    rule = ProxyRule(proxy_setting)

    def make(proxy: str | None) -> httpx.BaseTransport:
        return httpx.HTTPTransport(verify=verify, proxy=httpx.Proxy(proxy) if proxy else None)

    return RoutingTransport(rule, make)


def async_transport(
    proxy_setting: str | None, verify: bool | str = True, **options: Any
) -> httpx.AsyncBaseTransport:
    """An async httpx transport that follows the proxy rule (the status check)."""
    rule = ProxyRule(proxy_setting)

    def make(proxy: str | None) -> httpx.AsyncBaseTransport:
        return httpx.AsyncHTTPTransport(
            verify=verify, proxy=httpx.Proxy(proxy) if proxy else None, **options
        )

    return AsyncRoutingTransport(rule, make)
