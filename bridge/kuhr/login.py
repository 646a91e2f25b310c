"""The personal HelseID login (`bkm-bridge login`): authorization code with PKCE, pushed to
HelseID's PAR endpoint, in the system browser, back to a loopback redirect (RFC 8252).

1. read HelseID's endpoints from its discovery document;
2. listen on 127.0.0.1 (the registered redirect's port, else a free one);
3. push the request (client assertion, PKCE S256 challenge, state, nonce) to PAR;
4. open `authorize?client_id=…&request_uri=…` in the browser; the behandler logs in;
5. HelseID sends the browser to `http://127.0.0.1:PORT/callback?code=…&state=…`;
6. redeem the code (client assertion, `code_verifier`, DPoP proof) for an access token, an ID
   token and the refresh token that is then stored (`bridge.kuhr.login_store`).

The loopback listener answers only the redirect's path, only once, and only with the state it
expects; anything else gets a plain error page.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import logging
import secrets
import threading
import time
import webbrowser
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx

from bridge.kuhr.auth import HelseIdTokenProvider, TokenError
from bridge.kuhr.discovery import Endpoints
from bridge.kuhr.login_store import LoginRecord

log = logging.getLogger(__name__)

LOGIN_SCOPES = (
    "openid",
    "profile",
    "offline_access",
    "helseid://scopes/identity/pid",
    "helseid://scopes/identity/security_level",
    "helseid://scopes/hpr/hpr_number",
)
DEFAULT_TIMEOUT_SECONDS = 300.0


class LoginFailed(TokenError):
    """The login did not complete (cancelled, timed out, refused); the message says why."""


@dataclass(frozen=True)
class PendingLogin:
    authorize_url: str
    redirect_uri: str


def pkce_pair() -> tuple[str, str]:
    """A code verifier (RFC 7636: 43–128 characters) and its S256 challenge."""
    verifier = secrets.token_urlsafe(64)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _claims_of(token: str) -> dict[str, Any]:
    try:
        part = token.split(".")[1]
        data = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (IndexError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


# --------------------------------------------------------------------------- the loopback


_DONE_PAGE = (
    '<!doctype html><html lang="nb"><head><meta charset="utf-8"><title>{title}</title></head>'
    '<body style="font-family: system-ui, sans-serif; max-width: 36rem; margin: 3rem auto">'
    '<h1 id="result">{title}</h1><p>{text}</p></body></html>'
)


_LOGGED_IN = (200, "Du er logget inn", "bkm-bridge har fått innloggingen. Du kan lukke fanen.")
_CANCELLED = (
    200,
    "Innloggingen ble avbrutt",
    "Ingen innlogging er lagret. Start på nytt med bkm-bridge login.",
)
_WRONG_STATE = (
    400,
    "Innloggingen kan ikke brukes",
    "Svaret hører ikke til denne innloggingen. Start på nytt med bkm-bridge login.",
)


class _Callback:
    """What the browser brought back to the loopback redirect."""

    def __init__(self, path: str, state: str) -> None:
        self.path, self.state = path, state
        self.params: dict[str, str] | None = None
        self.arrived = threading.Event()


def _handler(callback: _Callback) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path != callback.path or callback.arrived.is_set():
                self._answer(404, "Ikke funnet", "Denne adressen brukes bare til innloggingen.")
                return
            params = {k: v[0] for k, v in parse_qs(url.query).items()}
            if params.get("state") != callback.state:
                self._answer(*_WRONG_STATE)
                return
            callback.params = params
            callback.arrived.set()
            self._answer(*(_LOGGED_IN if "code" in params else _CANCELLED))

        def _answer(self, status: int, title: str, text: str) -> None:
            body = _DONE_PAGE.format(title=html.escape(title), text=html.escape(text)).encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("login redirect: %s", self.requestline.split("?", 1)[0])

    return Handler


# --------------------------------------------------------------------------- the flow


class HelseIdLogin:
    """One login for a HelseID client (its assertion and DPoP key come from `client`)."""

    def __init__(
        self,
        client: HelseIdTokenProvider,
        endpoints: Endpoints,
        *,
        api_scope: str,
        redirect_uri: str,
        http: Callable[[], httpx.Client],
    ) -> None:
        self.client = client
        self.endpoints = endpoints
        self.api_scope = api_scope
        self.redirect_template = redirect_uri
        self._http = http

    def run(
        self,
        *,
        open_browser: Callable[[str], object] | None = webbrowser.open,
        on_url: Callable[[str], None] = lambda url: None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> LoginRecord:
        """Log in; the record to store. `on_url` is told the address to open (printed for a
        person whose browser did not open)."""
        registered = urlsplit(self.redirect_template)
        host = registered.hostname or "127.0.0.1"
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise LoginFailed(
                f"auth.redirect_uri {self.redirect_template} is not a loopback address",
                hint="use http://127.0.0.1/callback (RFC 8252), registered for the client",
            )
        state, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        verifier, challenge = pkce_pair()
        callback = _Callback(registered.path or "/", state)
        bind = "::1" if host == "::1" else "127.0.0.1"
        try:
            server = HTTPServer((bind, registered.port or 0), _handler(callback))
        except OSError as exc:
            raise LoginFailed(
                f"cannot listen for the login's redirect on {bind}:{registered.port}: "
                f"{exc.strerror}", hint="close what uses that port, or register another",
            ) from None  # fmt: skip
        port = server.server_address[1]
        netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        redirect_uri = urlunsplit(("http", netloc, registered.path or "/", "", ""))
        thread = threading.Thread(target=server.serve_forever, name="bkm-bridge-login", daemon=True)
        thread.start()
        try:
            request_uri = self._push(redirect_uri, challenge, state, nonce)
            authorize = self.endpoints.authorization_endpoint + "?" + urlencode(
                {"client_id": self.client.client_id, "request_uri": request_uri}
            )  # fmt: skip
            on_url(authorize)
            if open_browser is not None:
                open_browser(authorize)
            if not callback.arrived.wait(timeout):
                raise LoginFailed(
                    f"no login within {timeout:.0f} s", hint="run `bkm-bridge login` again"
                )
        finally:
            server.shutdown()
            server.server_close()
            thread.join(5)
        params = callback.params or {}
        if "code" not in params:
            error = params.get("error", "no code")
            raise LoginFailed(
                f"the login was not completed: {error} {params.get('error_description', '')}"
                .rstrip(), hint="run `bkm-bridge login` again",
            )  # fmt: skip
        if params.get("iss") and params["iss"] != self.endpoints.issuer:
            raise LoginFailed(f"the login was answered by {params['iss']}, not by HelseID")
        return self._redeem(params["code"], redirect_uri, verifier, nonce)

    def _push(self, redirect_uri: str, challenge: str, state: str, nonce: str) -> str:
        data = {
            "response_type": "code",
            "redirect_uri": redirect_uri,
            "scope": " ".join((*LOGIN_SCOPES, self.api_scope)),
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "state": state,
            "nonce": nonce,
            **self.client.client_assertion(self.client.current_key()),
        }
        with self._http() as http:
            response = http.post(
                self.endpoints.pushed_authorization_request_endpoint,
                data=data, headers={"Accept": "application/json"},
            )  # fmt: skip
        if response.status_code not in (200, 201):
            raise self.client.refused(response)
        try:
            return str(response.json()["request_uri"])
        except (ValueError, KeyError, TypeError):
            raise LoginFailed("HelseID's PAR endpoint answered without a request_uri") from None

    def _redeem(self, code: str, redirect_uri: str, verifier: str, nonce: str) -> LoginRecord:
        answer = self.client.exchange(
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri,
                "code_verifier": verifier,
            }
        )
        refresh = answer.get("refresh_token")
        if not refresh:
            raise LoginFailed(
                "HelseID gave no refresh token",
                hint="the client must be allowed the offline_access scope (HelseID selvbetjening)",
            )
        identity = _claims_of(str(answer.get("id_token", "")))
        if identity and identity.get("nonce") != nonce:
            raise LoginFailed("the ID token's nonce does not match this login")
        now = time.time()
        lifetime = answer.get("rt_expires_in")
        access = _claims_of(str(answer.get("access_token", "")))
        return LoginRecord(
            refresh_token=str(refresh),
            refresh_expires_at=now + float(lifetime) if lifetime is not None else 0.0,
            client_id=self.client.client_id,
            issuer=self.endpoints.issuer,
            logged_in_at=now,
            name=identity.get("name"),
            hpr_number=access.get("helseid://claims/hpr/hpr_number")
            or identity.get("helseid://claims/hpr/hpr_number"),
        )
