"""Helfo's open data tables as the pre-control reads them: the row models and the loaded table.

The models keep the API's own field names (takst_id, takstkode, fradato, ugyldig_kombinasjon,
nlkKode …) and ignore fields they do not know, so the bridge keeps working when Helfo adds one.
Amounts are Decimal. `TakstTable` indexes the rows of a cache (bridge.files.takstcache reads
and writes the file; bridge.kuhr.opendata fetches the rows) and parses a row into a model only
when a claim asks for its code.
"""

from __future__ import annotations

import re
import threading
from collections import defaultdict
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

from bridge.core.timezone import OSLO
from bridge.errors import BridgeError


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


def matcher(pattern: str | None) -> Callable[[Any], bool]:
    """`%` is the API's wildcard (sent as %25); without one the value must match whole.
    Case-insensitive, as a person typing a search expects."""
    if not pattern:
        return lambda _value: True
    regex = re.compile(".*".join(re.escape(part) for part in pattern.split("%")), re.I | re.S)
    return lambda value: value is not None and regex.fullmatch(str(value)) is not None


CACHE_FORMAT = 1


class CacheError(BridgeError):
    """The cache file cannot be read or is not a takst cache."""


def _fetched(section: dict[str, Any] | None) -> datetime | None:
    if not section or not section.get("fetched_at"):
        return None
    return datetime.fromisoformat(section["fetched_at"])


def _age_text(then: datetime, now: datetime) -> str:
    seconds = max(0.0, (now - then).total_seconds())
    if seconds < 3600:
        return f"{int(seconds // 60)} minutes old"
    if seconds < 2 * 86400:
        return f"{int(seconds // 3600)} hours old"
    return f"{int(seconds // 86400)} days old"


class TakstTable:
    """The open data tables as loaded: look-ups by code, validity, age.

    `fagomraade=None` in a look-up means "any fagområde" (the praksis type was not known)."""

    def __init__(self, data: dict[str, Any], *, path: Path | None, snapshot: bool) -> None:
        if not isinstance(data, dict) or data.get("format") != CACHE_FORMAT:
            raise CacheError("not a takst cache of a known format")
        self.path = path
        self.snapshot = snapshot
        self.note: str | None = data.get("note")
        self._parsed: dict[tuple[str, str], list[Takstkode]] = {}
        self._lock = threading.Lock()
        try:
            self._index(data)
        except (AttributeError, TypeError, ValueError) as exc:
            raise CacheError(f"the takst cache is damaged ({type(exc).__name__}: {exc})") from None

    def _index(self, data: dict[str, Any]) -> None:
        self._sections: dict[str, dict[str, Any]] = dict(data.get("takstkoder") or {})
        self._raw: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        self._folded: dict[str, set[str]] = defaultdict(set)  # lower-case code → codes
        for fag, section in self._sections.items():
            for row in section.get("rows") or ():
                code = str(row.get("takstkode"))
                self._raw[(fag, code)].append(row)
                self._folded[code.lower()].add(code)
        self._nlk_section: dict[str, Any] | None = data.get("nlkkoder")
        self._nlk_raw: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in (self._nlk_section or {}).get("rows") or ():
            self._nlk_raw[str(row.get("nlkKode"))].append(row)
        self._other = {k: data.get(k) for k in ("refusjonskategorisatser", "fagomraader")}
        for section in (*self._sections.values(), self._nlk_section, *self._other.values()):
            _fetched(section)  # a damaged time shows now, not in the middle of a check

    # ------------------------------------------------------------------ takster

    @property
    def fagomraader(self) -> list[str]:
        return sorted(self._sections)

    def has_fagomraade(self, fagomraade: str | None) -> bool:
        return bool(self._sections) if fagomraade is None else fagomraade in self._sections

    def rows(self, kode: str, fagomraade: str | None) -> list[Takstkode]:
        """Every period of `kode` in that fagområde (or any), oldest first."""
        fags = self._sections if fagomraade is None else (fagomraade,)
        found: list[Takstkode] = []
        for fag in fags:
            found.extend(self._parse(fag, kode))
        return sorted(found, key=lambda r: r.fradato or date.min)

    def _parse(self, fag: str, kode: str) -> list[Takstkode]:
        key = (fag, kode)
        parsed = self._parsed.get(key)
        if parsed is None:
            with self._lock:
                try:
                    parsed = [Takstkode.model_validate(r) for r in self._raw.get(key, ())]
                except ValueError as exc:  # pydantic's ValidationError: a hand-edited cache
                    raise CacheError(f"the takst cache's rows for {kode} are invalid") from exc
                self._parsed[key] = parsed
        return parsed

    def fagomraader_of(self, kode: str) -> list[str]:
        return sorted(fag for fag in self._sections if (fag, kode) in self._raw)

    def similar_codes(self, kode: str) -> list[str]:
        """Codes that differ from `kode` only in upper/lower case (2AD for 2ad)."""
        return sorted(c for c in self._folded.get(kode.lower(), ()) if c != kode)

    def search(
        self, text: str, *, fagomraade: str | None = None, day: date | None = None
    ) -> list[Takstkode]:
        """Codes or descriptions matching `text`: `%` or `*` are wildcards; without one, a code
        must match whole and a description contain the text (case-insensitive)."""
        pattern = text.replace("*", "%")
        code = matcher(pattern)
        words = matcher(pattern if "%" in pattern else f"%{pattern}%")
        hits = []
        for (fag, kode), rows in self._raw.items():
            if fagomraade is not None and fag != fagomraade:
                continue
            for row in rows:
                if code(kode) or words(row.get("beskrivelse")):
                    parsed = Takstkode.model_validate(row)
                    if day is None or parsed.covers(day):
                        hits.append(parsed)
        return sorted(hits, key=lambda r: (r.fagomraade or "", r.takstkode, r.fradato or date.min))

    # ------------------------------------------------------------------ NLK

    @property
    def has_nlk(self) -> bool:
        return bool(self._nlk_section and self._nlk_section.get("rows"))

    def nlk(self, kode: str) -> list[NlkKode]:
        try:
            return [NlkKode.model_validate(r) for r in self._nlk_raw.get(kode, ())]
        except ValueError as exc:
            raise CacheError(f"the takst cache's rows for {kode} are invalid") from exc

    # ------------------------------------------------------------------ age

    def fetched_at(self, fagomraade: str | None = None) -> datetime | None:
        """When the takstkoder of that fagområde (None: the oldest of them) were fetched."""
        if fagomraade is not None:
            return _fetched(self._sections.get(fagomraade))
        times = [t for t in (_fetched(s) for s in self._sections.values()) if t]
        return min(times) if times else None

    def describe(self, now: datetime) -> str:
        """One line saying where the table comes from and how old it is."""
        if not self._sections:
            where = f" at {self.path}" if self.path else ""
            return f"takst table: none synced{where}: run `bkm-bridge takster sync`"
        fetched = self.fetched_at()
        age = _age_text(fetched, now) if fetched else "age unknown"
        when = fetched.astimezone(OSLO).strftime("%Y-%m-%d %H:%M") if fetched else "?"
        fags = ", ".join(self.fagomraader) or "no fagområde"
        if self.snapshot:
            return (
                f"takst table: the bundled snapshot of {when} ({fags}; {age}; an illustrative "
                "extract, not Helfo's full table): run `bkm-bridge takster sync`"
            )
        urls = {s.get("url") for s in self._sections.values() if s.get("url")}
        source = ", ".join(sorted(urls)) or "?"
        return f"takst table: synced {when} from {source} ({fags}; {age})"

    def status(self) -> list[dict[str, Any]]:
        """Each table with its row count and fetch time (for `takster status`)."""
        out = [
            {
                "tabell": f"takstkoder {fag}",
                "rader": len(s.get("rows") or ()),
                "hentet": s.get("fetched_at"),
                "url": s.get("url"),
            }
            for fag, s in sorted(self._sections.items())
        ]
        for name, section in (("nlkkoder", self._nlk_section), *self._other.items()):
            if section:
                out.append(
                    {
                        "tabell": name,
                        "rader": len(section.get("rows") or ()),
                        "hentet": section.get("fetched_at"),
                        "url": section.get("url"),
                    }
                )
        return out
