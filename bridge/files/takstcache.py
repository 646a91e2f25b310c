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
from datetime import datetime
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

import platformdirs
import simplejson

from bridge.core.takster import (
    CACHE_FORMAT,
    CacheError,
    Fagomraade,
    NlkKode,
    Refusjonskategorisats,
    Takstkode,
    TakstTable,
)
from bridge.files.fsutil import atomic_write
from bridge.kuhr.opendata import OpenDataClient

CACHE_FOLDER = "opendata"
SNAPSHOT_FILE = "takster-snapshot.json"


def default_cache_dir(state_dir: Path | None = None) -> Path:
    """`<state folder>/opendata`; the state folder defaults to the platform's per-user one."""
    base = state_dir or Path(platformdirs.user_state_dir("bkm-bridge", appauthor=False))
    return base / CACHE_FOLDER


def cache_file(directory: Path, environment: str) -> Path:
    """One file per environment: a sandbox's illustrative table never checks a PROD claim."""
    return directory / f"takster-{environment}.json"


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
