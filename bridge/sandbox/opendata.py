"""Helfo's open data endpoints, served from the sandbox's own tables under `/opne-data/v1`.

`takstkoder` comes from the sandbox's takst table (`takstkoder.json` plus `[[takster]]` rows of
a sandbox config), `nlkkoder` and `refusjonskategorisatser` from `nlkkoder.json`, `fagomraader`
from the documented code list. Same paths, query parameters and field names as
`https://opne-data-api.helserefusjon.no/v1`, so `bkm-bridge takster sync` runs against the
sandbox exactly as against Helfo. No token (the data is public); JSON only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import date
from decimal import Decimal
from importlib import resources
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from bridge.sandbox.core import Sandbox
from bridge.sandbox.settings import OPNE_DATA_PREFIX
from bridge.sandbox.takster import as_date, bundled_rows
from bridge.sandbox.wire import dump

# Every field of a `takstkoder` row, in the open data API's order (missing ones are served as
# null): the fields of the sandbox's own takstkoder.json.
TAKST_FIELDS = (
    "takst_id",
    "takstkode",
    "fagomraade",
    "fradato",
    "tildato",
    "honorar",
    "refusjon",
    "egenandel",
    "pasient_egenbetaling",
    "maks_repetisjoner",
    "repetisjonsprosent",
    "redusert_ref_fra_repetisjon",
    "redusert_repetisjonsprosent",
    "spesialisttakst",
    "ugyldig_kombinasjon",
    "krever_takst",
    "krever_prosedyre",
    "krever_diagnose",
    "maks_antall_per_aar",
    "maks_antall_per_kalender_aar",
    "maks_antall_gjelder_pasient",
    "minimum_tidsbruk",
    "beskrivelse",
    "resource_id",
    "tidsbruk_per_rep",
)

FAGOMRAADER = {
    "AP": "Audiopedagog",
    "APO": "Apotek",
    "BE": "Behandlingsreiser i utlandet",
    "BI": "Bidragsreiser",
    "FBV": "Fritt behandlingsvalg",
    "FY": "Fysioterapi",
    "HS": "Helsestasjon",
    "JO": "Jordmor",
    "KI": "Kiropraktor",
    "KU": "Kurssentra",
    "LE": "Lege",
    "LOGO": "Logoped",
    "LR": "Privat lab/radiologi",
    "MU": "Multidose",
    "OP": "Optiker",
    "OR": "Ortoptist",
    "PO": "Poliklinikk",
    "PR": "Pasientreiser",
    "PS": "Psykolog",
    "PT": "Primærhelseteam",
    "RE": "Rehabiliteringsinstitusjon",
    "TH": "Tannhelse",
    "TP": "Tannpleier",
}
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class _BadRequest(ValueError):
    pass


def _nlk_tables() -> dict[str, list[dict[str, Any]]]:
    text = resources.files("bridge.sandbox").joinpath("nlkkoder.json").read_text("utf-8")
    return json.loads(text, parse_float=Decimal)


def _json(data: Any, status: int = 200) -> Response:
    return Response(dump(data), status_code=status, media_type="application/json")


def matcher(pattern: str | None) -> Callable[[Any], bool]:
    """The API's search: `%` is a wildcard (sent as %25); without one the value must match
    whole. Case-insensitive."""
    if not pattern:
        return lambda _value: True
    regex = re.compile(".*".join(re.escape(part) for part in pattern.split("%")), re.I | re.S)
    return lambda value: value is not None and regex.fullmatch(str(value)) is not None


def date_param(name: str, value: str | None) -> date | None:
    """A yyyy-MM-dd query parameter (None when absent or empty); ValueError names it."""
    if not value:
        return None
    try:
        if not _DATE.match(value):
            raise ValueError
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{name} must be a date as yyyy-MM-dd") from None


def _gyldigdato(value: str | None) -> date | None:
    try:
        return date_param("gyldigdato", value)
    except ValueError as err:
        raise _BadRequest(str(err)) from None


def _valid_on(row: Mapping[str, Any], day: date | None) -> bool:
    if day is None:
        return True
    start, end = as_date(row.get("fradato")), as_date(row.get("tildato"))
    return (start is None or start <= day) and (end is None or day <= end)


def _samhandlertype(value: str | None) -> None:
    if value and value.upper() not in {"PO", "LR"}:
        raise _BadRequest("samhandlertype must be PO or LR")


def _wants_json(request: Request) -> bool:
    accept = request.headers.get("accept", "*/*").lower()
    return any(kind in accept for kind in ("application/json", "*/*", "application/*"))


def _served(row: Mapping[str, Any]) -> dict[str, Any]:
    """A takst row as the API serves it: every documented field, dates as yyyy-MM-dd (a sandbox
    config may write TOML dates, or "" for an open end)."""
    out = {name: row.get(name) for name in TAKST_FIELDS}
    out |= {k: v for k, v in row.items() if k not in TAKST_FIELDS}
    for name in ("fradato", "tildato"):
        day = as_date(out[name])
        out[name] = day.isoformat() if day else None
    return out


def opendata_router(sandbox: Sandbox) -> APIRouter:
    """The open data routes over this sandbox's tables (rows are fixed when it starts)."""
    takster = [_served(row) for row in [*bundled_rows(), *sandbox.registry.takst_rows]]
    nlk = _nlk_tables()
    router = APIRouter(prefix=OPNE_DATA_PREFIX, tags=["Open data (Helfo)"])

    def answer(request: Request, rows: Callable[[], Iterable[Any]]) -> Response:
        if not _wants_json(request):
            return _json({"error": "not_acceptable", "error_description": "JSON only"}, 406)
        try:
            return _json(list(rows()))
        except _BadRequest as exc:
            return _json({"error": "invalid_request", "error_description": str(exc)}, 400)

    @router.get("/takstkoder")
    async def takstkoder(
        request: Request,
        fagomraade: str | None = Query(None, description="e.g. LE, TH (comma separated)"),
        gyldigdato: str | None = Query(None, description="yyyy-MM-dd"),
        takstkode: str | None = Query(None, description="% is a wildcard"),
        beskrivelse: str | None = Query(None, description="% is a wildcard"),
        offisielle_ugyldige_takstkombinasjoner: str | None = Query(None, description="ja/nei"),
    ) -> Response:
        def rows() -> Iterable[dict[str, Any]]:
            day = _gyldigdato(gyldigdato)
            if offisielle_ugyldige_takstkombinasjoner not in (None, "", "ja", "nei"):
                raise _BadRequest("offisielle_ugyldige_takstkombinasjoner must be ja or nei")
            wanted = {f.strip().upper() for f in (fagomraade or "").split(",") if f.strip()}
            code, text = matcher(takstkode), matcher(beskrivelse)
            return [
                row
                for row in takster
                if (not wanted or str(row.get("fagomraade", "")).upper() in wanted)
                and _valid_on(row, day)
                and code(row.get("takstkode"))
                and text(row.get("beskrivelse"))
            ]

        return answer(request, rows)

    @router.get("/nlkkoder")
    async def nlkkoder(
        request: Request,
        gyldigdato: str | None = Query(None, description="yyyy-MM-dd"),
        nlkkode: str | None = Query(None, description="% is a wildcard"),
        samhandlertype: str | None = Query(None, description="PO or LR"),
    ) -> Response:
        def rows() -> Iterable[dict[str, Any]]:
            day = _gyldigdato(gyldigdato)
            _samhandlertype(samhandlertype)
            code = matcher(nlkkode)
            return [r for r in nlk["nlkkoder"] if _valid_on(r, day) and code(r.get("nlkKode"))]

        return answer(request, rows)

    @router.get("/refusjonskategorisatser")
    async def refusjonskategorisatser(
        request: Request,
        gyldigdato: str | None = Query(None, description="yyyy-MM-dd"),
        samhandlertype: str | None = Query(None, description="PO or LR"),
    ) -> Response:
        def rows() -> Iterable[dict[str, Any]]:
            day = _gyldigdato(gyldigdato)
            _samhandlertype(samhandlertype)
            return [r for r in nlk["refusjonskategorisatser"] if _valid_on(r, day)]

        return answer(request, rows)

    @router.get("/fagomraader")
    async def fagomraader(request: Request) -> Response:
        return answer(
            request, lambda: [{"kode": k, "beskrivelse": v} for k, v in FAGOMRAADER.items()]
        )

    return router
