"""The sandbox as a FastAPI app: the KUHR Krav API routes, the two token endpoints and the
admin API. `create_app(settings)` is usable on its own (e.g. with `httpx.ASGITransport`).
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.responses import Response
from starlette.requests import ClientDisconnect

from bridge.sandbox.admin import admin_router
from bridge.sandbox.core import Sandbox
from bridge.sandbox.faults import FaultMiddleware
from bridge.sandbox.keys import KeyMaterial
from bridge.sandbox.login_page import login_router, read_form
from bridge.sandbox.opendata import date_param, opendata_router
from bridge.sandbox.settings import (
    API_PREFIX,
    HELSEID_TOKEN_PATH,
    MASKINPORTEN_TOKEN_PATH,
    TEST_TOKEN_PATH,
    SandboxSettings,
)
from bridge.sandbox.tokens import AccessGrant, AuthError, OAuthError
from bridge.sandbox.wire import BehandlerkravmeldingListe, PraksisListe, SendInnResponse, dump

_JOSE_BODY = {
    "requestBody": {
        "required": True,
        "description": "The BKM JSON, encrypted as compact JWE (RSA-OAEP-256 + A256GCM, kid from "
        "/kuhr/krav/v1/jwk), directly or as an unsigned nested JWT (cty JWT), optionally zip DEF.",
        "content": {"application/jose": {"schema": {"type": "string"}}},
    }
}


def json_response(data: Any, status: int = 200, **headers: str) -> Response:
    return Response(
        dump(data),
        status_code=status,
        media_type="application/json",
        headers=headers or None,
    )


def _error(status: int, error: str, description: str) -> Response:
    return json_response({"error": error, "error_description": description}, status)


def create_app(
    settings: SandboxSettings | None = None, *, keys: KeyMaterial | None = None
) -> FastAPI:
    """A sandbox app with its own state (`app.state.sandbox`, a `Sandbox`)."""
    sandbox = Sandbox(settings or SandboxSettings(), keys)
    app = FastAPI(
        title="KUHR Krav API sandbox",
        description="A local stand-in for Helfo's KUHR Krav API (bkm-bridge). See docs/sandbox.md.",
        version="1",
    )
    app.state.sandbox = sandbox
    app.add_middleware(FaultMiddleware, state=sandbox.faults)

    @app.exception_handler(AuthError)
    async def _auth_error(request: Request, exc: AuthError) -> Response:
        del request
        body = {"error": exc.error, "error_description": exc.description}
        headers = {"WWW-Authenticate": exc.www_authenticate()}
        if exc.nonce:
            headers["DPoP-Nonce"] = exc.nonce
        return json_response(body, exc.status, **headers)

    @app.exception_handler(OAuthError)
    async def _oauth_error(request: Request, exc: OAuthError) -> Response:
        del request
        return json_response(exc.body(), exc.status, **exc.headers())

    def grant_of(request: Request) -> AccessGrant:
        headers = request.headers
        return sandbox.authenticate(
            headers.get("authorization"), headers.get("dpop"), request.method, request.url.path
        )

    # ------------------------------------------------------------------ KUHR Krav API

    @app.get(f"{API_PREFIX}/data/praksis", response_model=PraksisListe, tags=["KUHR Krav API"])
    async def hent_praksiser(request: Request) -> Response:
        grant = grant_of(request)
        return json_response(sandbox.praksiser(grant))

    @app.post(
        f"{API_PREFIX}/process/sendinnbehandlerkravmelding",
        response_model=SendInnResponse,
        responses={400: {"model": SendInnResponse}},
        openapi_extra=_JOSE_BODY,
        tags=["KUHR Krav API"],
    )
    async def send_inn(request: Request) -> Response:
        grant = grant_of(request)
        length = request.headers.get("content-length")
        limit = sandbox.settings.max_body_bytes
        if length is not None and length.isdigit() and int(length) > limit:
            return _error(413, "payload_too_large", f"the body may be at most {limit} bytes")
        try:
            body = await request.body()
        except ClientDisconnect:  # the client hung up mid-body (a dropped connection)
            return Response(status_code=400)
        if len(body) > limit:
            return _error(413, "payload_too_large", f"the body may be at most {limit} bytes")
        status, answer = sandbox.submit(grant, body)
        return json_response(answer, status)

    @app.get(
        f"{API_PREFIX}/data/behandlerkravmelding",
        response_model=BehandlerkravmeldingListe,
        tags=["KUHR Krav API"],
    )
    async def hent_oversikt(
        request: Request,
        fomMottattdato: str | None = Query(None, description="yyyy-MM-dd, inclusive"),
        tomMottattdato: str | None = Query(None, description="yyyy-MM-dd, inclusive"),
    ) -> Response:
        grant = grant_of(request)
        try:
            fom = date_param("fomMottattdato", fomMottattdato)
            tom = date_param("tomMottattdato", tomMottattdato)
        except ValueError as exc:
            return _error(400, "invalid_request", str(exc))
        return json_response(sandbox.overview(grant, fom, tom))

    @app.get(
        f"{API_PREFIX}/data/behandlerkravmelding/{{behandlerkravmeldingId}}",
        response_model=BehandlerkravmeldingListe,
        tags=["KUHR Krav API"],
    )
    async def hent_detaljer(request: Request, behandlerkravmeldingId: str) -> Response:
        grant = grant_of(request)
        found = sandbox.details(grant, behandlerkravmeldingId)
        if found is None:
            return _error(404, "not_found", "no behandlerkravmelding with that id for this actor")
        return json_response(found)

    @app.get(f"{API_PREFIX}/jwk", tags=["KUHR Krav API"])
    async def hent_jwk(request: Request) -> Response:
        grant_of(request)
        return Response(sandbox.keyring.jwks_bytes, media_type="application/json")

    # ------------------------------------------------------------------ token endpoints

    @app.post(MASKINPORTEN_TOKEN_PATH, tags=["Token endpoints"])
    async def maskinporten_token(request: Request) -> Response:
        """RFC 7523 JWT grant, as Maskinporten."""
        answer = sandbox.tokens.maskinporten(await read_form(request))
        return json_response(answer, 200, **{"Cache-Control": "no-store"})

    @app.post(HELSEID_TOKEN_PATH, tags=["Token endpoints"])
    async def helseid_token(request: Request) -> Response:
        """HelseID's token endpoint: client credentials, authorization code and refresh token
        grants, each with a private_key_jwt client assertion and a DPoP proof."""
        form = await read_form(request)
        answer = sandbox.tokens.helseid(form, request.headers.get("dpop"))
        return json_response(answer, 200, **{"Cache-Control": "no-store"})

    @app.post(TEST_TOKEN_PATH, tags=["Token endpoints"])
    async def test_token(request: Request) -> Response:
        """A stand-in for HelseID's test token service (DEV): a token and a DPoP proof."""
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            raise OAuthError(400, "invalid_request", "the body must be JSON") from None
        if not isinstance(body, dict):
            raise OAuthError(400, "invalid_request", "the body must be a JSON object")
        answer = sandbox.tokens.test_token(body, request.headers.get("x-auth-key"))
        return json_response(answer, 200, **{"Cache-Control": "no-store"})

    app.include_router(login_router(sandbox))
    app.include_router(admin_router(sandbox))
    app.include_router(opendata_router(sandbox))
    return app
