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
import re
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator

if TYPE_CHECKING:
    import httpx

HELFO_OPNE_DATA_URL = "https://opne-data-api.helserefusjon.no/v1"
DEFAULT_TIMEOUT_SECONDS = 30.0


class OpenDataError(Exception):
    """The open data API could not be reached or answered something unusable."""


def as_date(value: Any) -> date | None:
    """A `yyyy-MM-dd` date; a date-time keeps its date part; empty is None."""
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def as_flag(value: Any) -> bool | None:
    """true/false, also as J/N, Ja/Nei, 1/0 (the API's XML heritage)."""
    if value in (None, ""):
        return None
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"true", "j", "ja", "1", "y", "yes"}:
        return True
    if text in {"false", "n", "nei", "0", "no"}:
        return False
    raise ValueError(f"not a yes/no value: {value!r}")


class _Row(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    @field_validator("fradato", "tildato", mode="before", check_fields=False)
    @classmethod
    def _dates(cls, value: Any) -> date | None:
        return as_date(value)


class Takstkode(_Row):
    """One row of `takstkoder`: a takst code's rates and rules in one validity period."""

    takst_id: int | str | None = None
    takstkode: str
    fagomraade: str | None = None
    fradato: date | None = None
    tildato: date | None = None
    honorar: Decimal | None = None
    refusjon: Decimal | None = None
    egenandel: Decimal | None = None
    pasient_egenbetaling: Decimal | None = None
    maks_repetisjoner: int | None = None
    repetisjonsprosent: Decimal | None = None
    redusert_ref_fra_repetisjon: int | None = None
    redusert_repetisjonsprosent: Decimal | None = None
    spesialisttakst: bool | None = None
    ugyldig_kombinasjon: str | None = None
    krever_takst: str | None = None
    krever_prosedyre: str | None = None
    krever_diagnose: str | None = None
    maks_antall_per_aar: int | None = None
    maks_antall_per_kalender_aar: int | None = None
    maks_antall_gjelder_pasient: str | None = None
    minimum_tidsbruk: int | str | None = None
    beskrivelse: str | None = None
    resource_id: str | None = None
    tidsbruk_per_rep: int | str | None = None

    @field_validator("spesialisttakst", mode="before")
    @classmethod
    def _flag(cls, value: Any) -> bool | None:
        return as_flag(value)

    @field_validator(
        "ugyldig_kombinasjon",
        "krever_takst",
        "krever_prosedyre",
        "krever_diagnose",
        "maks_antall_gjelder_pasient",
        mode="before",
    )
    @classmethod
    def _text(cls, value: Any) -> str | None:
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, bool):
            return "Ja" if value else None
        if isinstance(value, list | tuple):
            return ", ".join(str(v) for v in value)
        return str(value)

    def covers(self, day: date) -> bool:
        return (self.fradato is None or self.fradato <= day) and (
            self.tildato is None or day <= self.tildato
        )


class Refusjonskategorisats(_Row):
    refusjonskategoriid: int | str | None = None
    refusjonskategori: str | None = None
    refusjonssats: Decimal | None = None
    fradato: date | None = None
    tildato: date | None = None


class NlkKode(_Row):
    """One row of `nlkkoder` (the laboratory code list)."""

    nlkKodeid: int | str | None = None
    nlkKode: str
    norsk_bruksnavn: str | None = None
    komponent: str | None = None
    system: str | None = None
    enhet: str | None = None
    egenskapsart: str | None = None
    spesifisertKomponent: str | None = None
    npuDefinisjon: str | None = None
    npuSpesialitet: str | None = None
    fagomraadeSekundaert: str | None = None
    fagomraadeNlk: str | None = None
    fradato: date | None = None
    tildato: date | None = None
    refusjonskategori: str | None = None
    erstattesAv: str | None = None
    hvaEndret: str | None = None
    sistEndretDato: str | None = None
    stjernekode: str | bool | None = None
    ugyldigKombinasjon: str | None = None
    systemSpesifikasjon: str | None = None
    egenskapsartSpesifikasjon: str | None = None
    gruppering: str | None = None
    refusjonskategorisats: list[Refusjonskategorisats] = []

    def covers(self, day: date) -> bool:
        return (self.fradato is None or self.fradato <= day) and (
            self.tildato is None or day <= self.tildato
        )


class Fagomraade(_Row):
    """One row of `fagomraader`. The documentation shows the columns Kode and Beskrivelse
    without naming the JSON fields; `fagomraade` is accepted for the code as well."""

    kode: str = Field(validation_alias=AliasChoices("kode", "fagomraade", "Kode"))
    beskrivelse: str | None = Field(
        None, validation_alias=AliasChoices("beskrivelse", "Beskrivelse")
    )


Row = TypeVar("Row", bound=_Row)


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


def matcher(pattern: str | None) -> Callable[[Any], bool]:
    """`%` is the API's wildcard (sent as %25); without one the value must match whole.
    Case-insensitive, as a person typing a search expects."""
    if not pattern:
        return lambda _value: True
    regex = re.compile(".*".join(re.escape(part) for part in pattern.split("%")), re.I | re.S)
    return lambda value: value is not None and regex.fullmatch(str(value)) is not None


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
