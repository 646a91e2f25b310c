"""The local copy of Helfo's open data tables, so the pre-control works offline.

`bkm-bridge takster sync` fetches `takstkoder` (per fagområde), `nlkkoder`,
`refusjonskategorisatser` and `fagomraader` and writes them, each with the time it was fetched
and the URL it came from, to one JSON file per environment under the state folder
(`<state>/opendata/takster-<environment>.json`, written atomically). Rows are kept exactly as the
API sent them. Without a synced file the bridge uses the snapshot shipped as package data
(`bridge/data/takster-snapshot.json`: the sandbox's illustrative table, not Helfo's
normaltariff), and says so.

Loading is cheap and happens once per process per file version: one JSON parse and one pass to
index rows by code; a row becomes a `Takstkode` model only when a claim asks for that code.
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import platformdirs
import simplejson

from bridge.fsutil import atomic_write
from bridge.opendata import (
    Fagomraade,
    NlkKode,
    OpenDataClient,
    Refusjonskategorisats,
    Takstkode,
    matcher,
)

OSLO = ZoneInfo("Europe/Oslo")
CACHE_FORMAT = 1
CACHE_FOLDER = "opendata"
SNAPSHOT_FILE = "takster-snapshot.json"


class CacheError(Exception):
    """The cache file cannot be read or is not a takst cache."""


def default_cache_dir(state_dir: Path | None = None) -> Path:
    """`<state folder>/opendata`; the state folder defaults to the platform's per-user one."""
    base = state_dir or Path(platformdirs.user_state_dir("bkm-bridge", appauthor=False))
    return base / CACHE_FOLDER


def cache_file(directory: Path, environment: str) -> Path:
    """One file per environment: a sandbox's illustrative table never checks a PROD claim."""
    return directory / f"takster-{environment}.json"


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


# --------------------------------------------------------------------------- loading

_loaded: dict[tuple[str, int, int], TakstTable] = {}
_loaded_lock = threading.Lock()


def _parse_json(text: str | bytes) -> Any:
    return json.loads(text, parse_float=Decimal)


def empty_table(path: Path | None = None) -> TakstTable:
    """No table at all: only the rules that need none can run."""
    return TakstTable({"format": CACHE_FORMAT}, path=path, snapshot=False)


def load_snapshot() -> TakstTable:
    with _loaded_lock:
        cached = _loaded.get(("snapshot", 0, 0))
        if cached is not None:
            return cached
    text = resources.files("bridge.data").joinpath(SNAPSHOT_FILE).read_bytes()
    table = TakstTable(_parse_json(text), path=None, snapshot=True)
    with _loaded_lock:
        _loaded[("snapshot", 0, 0)] = table
    return table


def load_table(path: Path | None, *, snapshot: bool = True) -> TakstTable:
    """The synced table at `path`; without one, the bundled snapshot (`snapshot=False`: an
    empty table, for DEV and PROD, where the sandbox's illustrative rates would mislead).
    Loaded once per process (again only when the file changes). A damaged cache file raises
    `CacheError`."""
    if path is None:
        return load_snapshot() if snapshot else empty_table()
    try:
        stat = path.stat()
    except FileNotFoundError:
        return load_snapshot() if snapshot else empty_table(path)
    except OSError as exc:
        raise CacheError(f"cannot read the takst cache {path}: {exc.strerror}") from None
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    with _loaded_lock:
        cached = _loaded.get(key)
    if cached is not None:
        return cached
    try:
        table = TakstTable(_parse_json(path.read_bytes()), path=path, snapshot=False)
    except (OSError, ValueError, CacheError) as exc:
        raise CacheError(f"the takst cache {path} cannot be used: {exc}") from None
    with _loaded_lock:
        _loaded[key] = table
    return table


# --------------------------------------------------------------------------- sync


@dataclass
class SyncReport:
    path: Path
    url: str
    fetched_at: datetime
    takstkoder: dict[str, int] = field(default_factory=dict)  # fagområde → rows
    nlkkoder: int = 0
    refusjonskategorisatser: int = 0
    fagomraader: int = 0


def _read_existing(path: Path) -> dict[str, Any]:
    try:
        data = _parse_json(path.read_bytes())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        return {}  # a damaged cache is replaced by a good one
    return data if isinstance(data, dict) and data.get("format") == CACHE_FORMAT else {}


def _section(rows: list[dict[str, Any]], fetched: datetime, url: str) -> dict[str, Any]:
    return {"fetched_at": fetched.isoformat(timespec="seconds"), "url": url, "rows": rows}


def sync(
    client: OpenDataClient,
    path: Path,
    *,
    fagomraader: Sequence[str] | None = None,
    now: datetime,
) -> SyncReport:
    """Fetch the tables and write them to `path` (atomically, merged with what is there).

    `fagomraader=None` fetches every takst code in one request; named fagområder replace only
    their own sections. Everything is fetched before anything is written: a failed sync
    (`OpenDataError`) leaves the old cache as it was."""
    url = client.base_url
    report = SyncReport(path=path, url=url, fetched_at=now)
    sections: dict[str, dict[str, Any]] = {}
    if fagomraader is None:
        raw, rows = client.fetch("/takstkoder", Takstkode, {})
        grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for original, row in zip(raw, rows, strict=True):
            grouped[row.fagomraade or "?"].append(original)
        sections = {fag: _section(rs, now, url) for fag, rs in grouped.items()}
    else:
        for fag in fagomraader:
            raw, _ = client.fetch("/takstkoder", Takstkode, {"fagomraade": fag})
            sections[fag] = _section(raw, now, url)
    nlk, _ = client.fetch("/nlkkoder", NlkKode, {})
    satser, _ = client.fetch("/refusjonskategorisatser", Refusjonskategorisats, {})
    fags, _ = client.fetch("/fagomraader", Fagomraade, {})

    data = _read_existing(path) if fagomraader is not None else {}
    data.update({"format": CACHE_FORMAT, "note": None})
    data["takstkoder"] = {**(data.get("takstkoder") or {}), **sections}
    data["nlkkoder"] = _section(nlk, now, url)
    data["refusjonskategorisatser"] = _section(satser, now, url)
    data["fagomraader"] = _section(fags, now, url)
    atomic_write(path, write_cache_text(data).encode("utf-8"))

    report.takstkoder = {fag: len(s["rows"]) for fag, s in sorted(sections.items())}
    report.nlkkoder, report.refusjonskategorisatser, report.fagomraader = (
        len(nlk),
        len(satser),
        len(fags),
    )
    return report


def write_cache_text(data: dict[str, Any]) -> str:
    """The cache file's text: amounts as the exact numbers they were read as."""
    return simplejson.dumps(data, use_decimal=True, ensure_ascii=False, indent=1) + "\n"
