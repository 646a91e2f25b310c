"""HelseID's login as the sandbox plays it: discovery, the PAR endpoint, the authorization
endpoint (a page listing the test persons, as HelseID's test IdP lists SyntPop persons) and the
form that logs one in and sends the browser back to the client's loopback redirect.

The page has no script and loads nothing from elsewhere: a plain form per person.
"""

from __future__ import annotations

import html
from typing import Any
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from bridge.sandbox.core import Sandbox
from bridge.sandbox.helseid import LoginError
from bridge.sandbox.settings import (
    HELSEID_AUTHORIZE_PATH,
    HELSEID_DISCOVERY_PATH,
    HELSEID_LOGIN_PATH,
    HELSEID_PAR_PATH,
    HELSEID_REVOCATION_PATH,
    HELSEID_TOKEN_PATH,
)
from bridge.sandbox.tokens import OAuthError
from bridge.sandbox.wire import dump

PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
STYLE = """
body { font-family: system-ui, sans-serif; max-width: 40rem; margin: 2rem auto; color: #1a202c; }
h1 { font-size: 1.4rem; } .banner { background: #975a16; color: #fff; padding: .5rem 1rem; }
form.person { border: 1px solid #cbd5e0; border-radius: .4rem; padding: .8rem 1rem;
  margin: .6rem 0; }
form.person button { font-size: 1rem; padding: .4rem 1rem; } .meta { color: #4a5568; }
"""


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    text = (
        f'<!doctype html><html lang="nb"><head><meta charset="utf-8"><title>{html.escape(title)}'
        f"</title><style>{STYLE}</style></head><body>"
        '<div class="banner">KUHR-sandkasse · HelseID (test) · kun testpersoner</div>'
        f"{body}</body></html>"
    )
    return HTMLResponse(text, status_code=status, headers=PAGE_HEADERS)


def _error_page(description: str, status: int = 400) -> HTMLResponse:
    return _page(
        "Innlogging feilet",
        f'<h1>Innlogging feilet</h1><p id="error">{html.escape(description)}</p>'
        "<p>Start innloggingen på nytt fra programmet (<code>bkm-bridge login</code>).</p>",
        status,
    )


def login_router(sandbox: Sandbox) -> APIRouter:
    router = APIRouter(tags=["HelseID (login)"])
    settings = sandbox.settings

    @router.get(HELSEID_DISCOVERY_PATH)
    async def discovery() -> Response:
        body = {
            "issuer": settings.helseid_issuer,
            "authorization_endpoint": settings.url(HELSEID_AUTHORIZE_PATH),
            "pushed_authorization_request_endpoint": settings.url(HELSEID_PAR_PATH),
            "require_pushed_authorization_requests": True,
            "token_endpoint": settings.url(HELSEID_TOKEN_PATH),
            "revocation_endpoint": settings.url(HELSEID_REVOCATION_PATH),
            "grant_types_supported": ["authorization_code", "client_credentials", "refresh_token"],
            "response_types_supported": ["code"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["private_key_jwt"],
            "dpop_signing_alg_values_supported": ["ES256", "RS256", "PS256"],
            "scopes_supported": sorted(
                {"openid", "profile", "offline_access", "hdir:kuhr-krav-api/krav"}
            ),
        }
        return Response(dump(body), media_type="application/json")

    @router.post(HELSEID_PAR_PATH)
    async def par(request: Request) -> Response:
        form = await read_form(request)
        answer = sandbox.tokens.push_authorization(form)
        return Response(dump(answer), status_code=201, media_type="application/json",
                        headers={"Cache-Control": "no-store"})  # fmt: skip

    @router.post(HELSEID_REVOCATION_PATH)
    async def revocation(request: Request) -> Response:
        """RFC 7009: the client ends a login (bkm-bridge logout)."""
        sandbox.tokens.revoke(await read_form(request))
        return Response(status_code=200, headers={"Cache-Control": "no-store"})

    @router.get(HELSEID_AUTHORIZE_PATH)
    async def authorize(request: Request) -> Response:
        client_id = request.query_params.get("client_id", "")
        request_uri = request.query_params.get("request_uri", "")
        if not request_uri:
            return _error_page(
                "HelseID krever PAR: send parameterne til PAR-endepunktet og bruk request_uri."
            )
        try:
            pending = sandbox.tokens.logins.pending(request_uri, client_id)
        except LoginError as exc:
            return _error_page(exc.description)
        persons = sorted(sandbox.registry.persons.values(), key=lambda p: p.name)
        forms = []
        for person in persons:
            facts = [f"fødselsnummer {person.pid}"]
            if person.hpr_number:
                facts.append(f"HPR {person.hpr_number}")
            facts.append(f"sikkerhetsnivå {person.security_level}")
            forms.append(
                f'<form class="person" method="post" action="{HELSEID_LOGIN_PATH}">'
                f'<input type="hidden" name="request_uri" value="{html.escape(request_uri)}">'
                f'<input type="hidden" name="client_id" value="{html.escape(client_id)}">'
                f'<input type="hidden" name="pid" value="{html.escape(person.pid)}">'
                f'<button type="submit" id="person-{html.escape(person.pid)}">'
                f"Logg inn som {html.escape(person.name)}</button>"
                f'<div class="meta">{html.escape(" · ".join(facts))}</div></form>'
            )
        cancel = (
            f'<form method="post" action="{HELSEID_LOGIN_PATH}">'
            f'<input type="hidden" name="request_uri" value="{html.escape(request_uri)}">'
            f'<input type="hidden" name="client_id" value="{html.escape(client_id)}">'
            '<input type="hidden" name="cancel" value="1">'
            '<button type="submit" id="cancel">Avbryt</button></form>'
        )
        client = sandbox.registry.clients.get(client_id)
        who = html.escape(client.name if client else client_id)
        body = (
            f"<h1>Logg inn med HelseID</h1><p>{who} ber om tilgang til KUHR Krav API på dine "
            f"vegne. Velg en testperson:</p>{''.join(forms)}{cancel}"
            f'<p class="meta">Sendes tilbake til {html.escape(pending.redirect_uri)}</p>'
        )
        return _page("Logg inn med HelseID", body)

    @router.post(HELSEID_LOGIN_PATH)
    async def login(request: Request) -> Response:
        form = await read_form(request)
        client_id, request_uri = form.get("client_id", ""), form.get("request_uri", "")
        try:
            pending = sandbox.tokens.logins.pending(request_uri, client_id)
            if form.get("cancel"):
                query: dict[str, Any] = {
                    "error": "access_denied",
                    "error_description": "the user cancelled the login",
                }
            else:
                pid = form.get("pid", "")
                if sandbox.tokens.person(pid) is None:
                    return _error_page("Ukjent testperson.")
                code, pending = sandbox.tokens.logins.issue_code(request_uri, client_id, pid)
                query = {"code": code}
        except LoginError as exc:
            return _error_page(exc.description)
        if pending.state is not None:
            query["state"] = pending.state
        query["iss"] = settings.helseid_issuer
        return RedirectResponse(f"{pending.redirect_uri}?{urlencode(query)}", status_code=303)

    return router


async def read_form(request: Request) -> dict[str, str]:
    """An `application/x-www-form-urlencoded` body (OAuth's endpoints take nothing else)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise OAuthError(
            400, "invalid_request", "the body must be application/x-www-form-urlencoded"
        )
    body = await request.body()
    try:
        return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
    except UnicodeDecodeError:
        raise OAuthError(400, "invalid_request", "the form is not UTF-8") from None
