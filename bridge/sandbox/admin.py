"""The admin API under /sandbox/admin: the clock, faults, key rotation, rebehandling (what KUHR
does by hand after an error of its own), client keys (what the self-service portals register),
ending logins, counts and reset. No authentication: the sandbox
listens on loopback for tests and local development.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from bridge.sandbox.clock import parse_iso
from bridge.sandbox.core import Decision, RebehandlingError, Sandbox
from bridge.sandbox.merknader import given
from bridge.sandbox.settings import ADMIN_PREFIX
from bridge.sandbox.wire import dump


def _json(data: Any, status: int = 200) -> Response:
    return Response(dump(data), status_code=status, media_type="application/json")


def _bad(description: str) -> Response:
    return _json({"error": "invalid_request", "error_description": description}, 400)


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise ValueError("the body must be a JSON object")
    return data


def admin_router(sandbox: Sandbox) -> APIRouter:
    router = APIRouter(prefix=ADMIN_PREFIX, tags=["Sandbox admin"])

    def clock_state() -> dict[str, Any]:
        return {
            "now": sandbox.clock.now_datetime().isoformat(timespec="seconds"),
            "speed": sandbox.clock.speed,
        }

    @router.get("/clients/{client_id}/keys")
    async def client_keys(client_id: str) -> Response:
        try:
            return _json({"client_id": client_id, "kids": sandbox.client_keys(client_id)})
        except LookupError as exc:
            return _json({"error": "not_found", "error_description": str(exc)}, 404)

    @router.post("/clients/{client_id}/keys")
    async def register_key(client_id: str, request: Request) -> Response:
        """Register a public JWK for a client, as HelseID selvbetjening and Samarbeidsportalen
        do (`bkm-bridge keys new` prints one)."""
        try:
            kids = sandbox.register_client_key(client_id, await _body(request))
        except LookupError as exc:
            return _json({"error": "not_found", "error_description": str(exc)}, 404)
        except (ValueError, TypeError) as exc:
            return _bad(f"not a public JWK: {exc}")
        return _json({"client_id": client_id, "kids": kids})

    @router.delete("/clients/{client_id}/keys/{kid}")
    async def remove_key(client_id: str, kid: str) -> Response:
        try:
            return _json(
                {"client_id": client_id, "kids": sandbox.remove_client_key(client_id, kid)}
            )
        except LookupError as exc:
            return _json({"error": "not_found", "error_description": str(exc)}, 404)

    @router.post("/logins/end")
    async def end_logins() -> Response:
        """End every personal HelseID login (as an expired or revoked HelseID session): the
        next refresh is refused and the bridge says a new login is due."""
        return _json({"ended": sandbox.tokens.logins.end_all()})

    @router.get("/clock")
    async def get_clock() -> Response:
        return _json(clock_state())

    @router.post("/clock")
    async def move_clock(request: Request) -> Response:
        """`{"advance_seconds": N}`, `{"set": ISO}` and/or `{"speed": N}`. Statuses are read off
        the clock, so whatever became due shows at once."""
        try:
            body = await _body(request)
            if not set(body) & {"advance_seconds", "set", "speed"}:
                raise ValueError("give advance_seconds, set or speed")
            if "set" in body:
                sandbox.clock.set(parse_iso(str(body["set"])))
            if "advance_seconds" in body:
                seconds = float(body["advance_seconds"])
                if seconds < 0:
                    raise ValueError("advance_seconds must not be negative")
                sandbox.clock.advance(seconds)
            if "speed" in body:
                sandbox.clock.set_speed(float(body["speed"]))
        except (ValueError, TypeError) as exc:
            return _bad(str(exc))
        return _json(clock_state())

    @router.get("/faults")
    async def get_faults() -> Response:
        return _json(sandbox.faults.config.as_json())

    @router.post("/faults")
    async def set_faults(request: Request) -> Response:
        """Replace the faults; `{}` clears them. Knobs: error_rate, error_statuses, latency_ms,
        rate_limit {every, retry_after}, drop_rate, lost_response_rate, token_endpoints."""
        try:
            return _json(sandbox.set_faults(await _body(request)))
        except (ValueError, TypeError) as exc:
            return _bad(str(exc))

    @router.get("/tokens")
    async def get_tokens() -> Response:
        return _json({"lifetime_seconds": sandbox.tokens.lifetime, "issued": sandbox.tokens.issued})

    @router.post("/tokens")
    async def set_tokens(request: Request) -> Response:
        """`{"lifetime_seconds": N}`: the lifetime of access tokens issued from now on (tests of
        token refresh use a short one); `{"refresh_lifetime_seconds": N}`: of logins made from
        now on."""
        try:
            body = await _body(request)
            if "refresh_lifetime_seconds" in body:
                refresh = int(body["refresh_lifetime_seconds"])
                if refresh < 1:
                    raise ValueError("refresh_lifetime_seconds must be at least 1")
                sandbox.tokens.logins.refresh_lifetime = refresh
            lifetime = int(body.get("lifetime_seconds", sandbox.tokens.lifetime))
            if lifetime < 1:
                raise ValueError("lifetime_seconds must be at least 1")
        except (KeyError, ValueError, TypeError) as exc:
            return _bad(f"give lifetime_seconds >= 1 ({exc})")
        sandbox.tokens.lifetime = lifetime
        return _json(
            {
                "lifetime_seconds": lifetime,
                "refresh_lifetime_seconds": sandbox.tokens.logins.refresh_lifetime,
                "issued": sandbox.tokens.issued,
            }
        )

    @router.post("/rotate-keys")
    async def rotate_keys(request: Request) -> Response:
        """A new JWE key with a new kid; the old kid stops working unless `{"keep_old": true}`."""
        try:
            body = await _body(request)
        except ValueError as exc:
            return _bad(str(exc))
        return _json(sandbox.rotate_keys(keep_old=bool(body.get("keep_old", False))))

    def rebehandle(melding_id: str | None, guid: str | None, body: dict[str, Any]) -> Response:
        try:
            decisions = _decisions(body.get("regninger"))
            entry = sandbox.rebehandling(melding_id, guid=guid, decisions=decisions)
        except RebehandlingError as exc:
            return _json({"error": "not_found", "error_description": str(exc)}, 404)
        except (ValueError, TypeError) as exc:
            return _bad(str(exc))
        return _json(entry)

    @router.post("/rebehandling")
    async def rebehandling(request: Request) -> Response:
        """A rebehandling in KUHR: `{"behandlerkravmeldingId": ID}` or `{"guid": GUID}` (the
        latest accepted melding with that regning), optionally `{"regninger": {GUID:
        "godkjent" | "avvist" | {"status": …, "merknader": [{"nummer", "tekst"}]}}}`. Answers
        the new entry (rebehandling: true)."""
        try:
            body = await _body(request)
            melding_id, guid = body.get("behandlerkravmeldingId"), body.get("guid")
            for name, value in (("behandlerkravmeldingId", melding_id), ("guid", guid)):
                if value is not None and not isinstance(value, str):
                    raise ValueError(f"{name} must be a string")
            if melding_id is None and guid is None:
                raise ValueError("give behandlerkravmeldingId or guid")
        except ValueError as exc:
            return _bad(str(exc))
        return rebehandle(melding_id, guid, body)

    @router.post("/rebehandling/{behandlerkravmeldingId}")
    async def rebehandling_of(request: Request, behandlerkravmeldingId: str) -> Response:
        """The same, with the melding's id in the path."""
        try:
            body = await _body(request)
        except ValueError as exc:
            return _bad(str(exc))
        return rebehandle(behandlerkravmeldingId, None, body)

    @router.get("/stats")
    async def stats(by_guid: bool = True) -> Response:
        return _json(sandbox.stats(by_guid=by_guid))

    @router.post("/reset")
    async def reset() -> Response:
        """Forget every melding and count, clear faults, and set the clock back to its start."""
        sandbox.reset()
        return _json({"reset": True, **clock_state()})

    return router


def _decisions(data: Any) -> dict[str, Decision] | None:
    """A rebehandling body's `regninger`: guid → "godkjent", "avvist" or {"status", "merknader"}."""
    if data is None:
        return None
    if not isinstance(data, dict):
        raise ValueError("regninger maps guid to a result")
    out: dict[str, Decision] = {}
    for guid, value in data.items():
        spec = {"status": value} if isinstance(value, str) else value
        if not isinstance(spec, dict) or spec.get("status") not in ("godkjent", "avvist"):
            raise ValueError(f'regninger.{guid}: status must be "godkjent" or "avvist"')
        merknader = None
        if "merknader" in spec:
            listed = spec["merknader"]
            if not isinstance(listed, list) or not all(
                isinstance(m, dict) and isinstance(m.get("nummer"), str | int) for m in listed
            ):
                raise ValueError(f"regninger.{guid}.merknader: a list of {{nummer, tekst}}")
            merknader = tuple(
                given(str(m["nummer"]), None if m.get("tekst") is None else str(m["tekst"]))
                for m in listed
            )
        out[str(guid)] = (spec["status"] == "godkjent", merknader)
    return out
