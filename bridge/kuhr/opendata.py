"""A client for Helfo's open data API (`https://opne-data-api.helserefusjon.no/v1`).

Four tables serve the pre-control: `takstkoder`, `nlkkoder`, `refusjonskategorisatser` and
`fagomraader`. JSON is asked for with the Accept header, as the API documents. The models keep
the API's own field names (takst_id, takstkode, fradato, ugyldig_kombinasjon, nlkKode …) and
ignore fields they do not know, so the client keeps working when Helfo adds one. Amounts are
Decimal: the body is parsed with JSON numbers kept exact.

The API is public: no token, no patient data in either direction. `%` in `takstkode`,
`beskrivelse` and `nlkkode` is the API's wildcard (`%25` on the wire).
"""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from bridge.core.takster import Fagomraade, NlkKode, Refusjonskategorisats, Row, Takstkode
from bridge.errors import BridgeError

if TYPE_CHECKING:
    import httpx

HELFO_OPNE_DATA_URL = "https://opne-data-api.helserefusjon.no/v1"
DEFAULT_TIMEOUT_SECONDS = 30.0


class OpenDataError(BridgeError):
    """The open data API could not be reached or answered something unusable."""


def parse_rows(body: bytes | str, model: type[Row]) -> tuple[list[dict[str, Any]], list[Row]]:
    """The raw rows (amounts as exact Decimals) and the same rows validated by `model`.

    The API answers a JSON array; an object holding one array is accepted too."""
    try:
        data = json.loads(body, parse_float=Decimal)
    except ValueError as exc:
        raise OpenDataError(f"the answer is not JSON: {exc}") from None
    if isinstance(data, dict):
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) != 1:
            raise OpenDataError("the answer is an object without one list of rows")
        data = lists[0]
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise OpenDataError("the answer is not a list of rows")
    try:
        return data, [model.model_validate(r) for r in data]
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        problem = f"a {model.__name__} row is invalid at {where}: {first['msg']}"
        raise OpenDataError(problem) from None


def _params(**values: str | date | None) -> dict[str, str]:
    return {
        k: v.isoformat() if isinstance(v, date) else v for k, v in values.items() if v is not None
    }


class OpenDataClient:
    """Sync client for the open data API; `transport` swaps the network (tests)."""

    def __init__(
        self,
        base_url: str = HELFO_OPNE_DATA_URL,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        transport: httpx.BaseTransport | None = None,
        verify: bool | str = True,
    ) -> None:
        import httpx  # only when talking to the API: the pre-control itself needs no HTTP

        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url,
            headers={"Accept": "application/json", "User-Agent": "bkm-bridge"},
            timeout=timeout,
            transport=transport,
            verify=verify,
            follow_redirects=True,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> OpenDataClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def fetch(
        self, path: str, model: type[Row], params: dict[str, str]
    ) -> tuple[list[dict[str, Any]], list[Row]]:
        """GET one table: (raw rows, validated rows)."""
        import httpx

        try:
            response = self._http.get(path, params=params)
        except httpx.HTTPError as exc:
            raise OpenDataError(
                f"cannot reach the open data API at {self.base_url}: {type(exc).__name__} {exc}"
            ) from None
        if response.status_code != 200:
            raise OpenDataError(
                f"the open data API answered {response.status_code} for {path}"
                + (f": {response.text[:200]}" if response.text else "")
            )
        return parse_rows(response.content, model)

    def takstkoder(
        self,
        *,
        fagomraade: str | None = None,
        gyldigdato: date | None = None,
        takstkode: str | None = None,
        beskrivelse: str | None = None,
    ) -> list[Takstkode]:
        params = _params(
            fagomraade=fagomraade,
            gyldigdato=gyldigdato,
            takstkode=takstkode,
            beskrivelse=beskrivelse,
        )
        return self.fetch("/takstkoder", Takstkode, params)[1]

    def nlkkoder(
        self,
        *,
        gyldigdato: date | None = None,
        nlkkode: str | None = None,
        samhandlertype: str | None = None,
    ) -> list[NlkKode]:
        params = _params(gyldigdato=gyldigdato, nlkkode=nlkkode, samhandlertype=samhandlertype)
        return self.fetch("/nlkkoder", NlkKode, params)[1]

    def refusjonskategorisatser(
        self, *, gyldigdato: date | None = None, samhandlertype: str | None = None
    ) -> list[Refusjonskategorisats]:
        params = _params(gyldigdato=gyldigdato, samhandlertype=samhandlertype)
        return self.fetch("/refusjonskategorisatser", Refusjonskategorisats, params)[1]

    def fagomraader(self) -> list[Fagomraade]:
        return self.fetch("/fagomraader", Fagomraade, {})[1]
