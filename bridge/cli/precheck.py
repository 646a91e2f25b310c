"""`bkm-bridge precheck FILE...` and `bkm-bridge takster sync | search | status` (thin shell).

`precheck` converts each file and prints what KUHR's control is expected to reject, as
`FILE: CODE: sentence [warning]` on stdout (or JSON with `--json`); findings are warnings
(exit 0) unless precheck.mode is block, when they are errors (exit 1), as they would be for the
watcher; a file that cannot be read is exit 1, paths naming no file exit 2 (bridge.cli.exits).
`takster sync` fetches Helfo's open data into the local cache (for environment sandbox:
the sandbox's copy), `takster search` looks a code or a description up, `takster status` says
how old the cache is. `convert_precheck` is the hook `bkm-bridge convert` calls.
"""

# Imports inside command functions are deliberate: every start registers every command, and
# importing all their subsystems up front (FastAPI, aiohttp, xmlschema, the migration) makes
# each command start ~5 s slower (1.4 s against 6.6 s, python -c 'import …', loaded machine).

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from bridge.cli.exits import ExitCode, nothing_found, require_paths
from bridge.cli.options import ConfigOpt, EnvOpt, JsonOpt, SandboxStateDirOpt
from bridge.cli.settings import settings_or_exit
from bridge.environment import Environment

if TYPE_CHECKING:
    from bridge.config import Settings
    from bridge.core.convert import ConvertContext
    from bridge.core.model import Behandlerkravmelding
    from bridge.core.problems import Problem
    from bridge.core.takster import TakstTable
    from bridge.flow.precheck import Prechecker

SANDBOX_INFO_FILE = "sandbox.json"

FagomraadeOpt = Annotated[
    str | None,
    typer.Option("--fagomraade", help="Fagområde of the praksis (LE, TH, FY …)."),
]
UrlOpt = Annotated[
    str | None,
    typer.Option("--url", help="The open data API root (default: see docs/precheck.md)."),
]


def _err(text: str) -> None:
    print(text, file=sys.stderr)


def _settings(
    config: Path | None,
    environment: Environment | None = None,
    state_dir: Path | None = None,
) -> Settings:

    overrides = {"kuhr.environment": environment, "kuhr.sandbox_state_dir": state_dir}
    return settings_or_exit(config, overrides)


def _configured(config: Path | None) -> bool:
    """Whether any settings exist at all (flag, environment variable or ./bkm-bridge.toml)."""
    return (
        config is not None
        or any(name.upper().startswith("BKM_BRIDGE_") for name in os.environ)
        or Path("bkm-bridge.toml").is_file()
    )


def _cache_path(settings: Settings) -> Path:
    from bridge.files.takstcache import cache_file, default_cache_dir

    directory = settings.precheck.cache_dir or default_cache_dir(settings.watch.state_dir)
    return cache_file(directory, settings.kuhr.environment.value)


def _load(settings: Settings) -> TakstTable:
    from bridge.core.takster import CacheError
    from bridge.files.takstcache import load_table

    sandbox = settings.kuhr.environment is Environment.SANDBOX
    try:
        return load_table(_cache_path(settings), snapshot=sandbox)
    except CacheError as exc:
        _err(f"bkm-bridge: {exc}; run `bkm-bridge takster sync`")
        raise typer.Exit(ExitCode.FAILED) from None


def _sandbox_info(state_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((state_dir / SANDBOX_INFO_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        _err(f"bkm-bridge: no usable {SANDBOX_INFO_FILE} in {state_dir} ({exc})")
        raise typer.Exit(ExitCode.USAGE) from None
    return data if isinstance(data, dict) else {}


def _sandbox_now(settings: Settings) -> datetime | None:
    """The clock of the configured standalone sandbox, if there is one and it answers."""
    k = settings.kuhr
    if k.environment is not Environment.SANDBOX or k.sandbox_state_dir is None:
        return None
    import httpx

    try:
        info = json.loads((k.sandbox_state_dir / SANDBOX_INFO_FILE).read_text(encoding="utf-8"))
        answer = httpx.get(f"{info['admin_url']}/clock", timeout=5.0, trust_env=False)
        answer.raise_for_status()
        return datetime.fromisoformat(answer.json()["now"])
    except (OSError, httpx.HTTPError, KeyError, TypeError, ValueError):
        _err("bkm-bridge: the sandbox's clock is not readable; checking against the wall clock")
        return None


def _parse_now(text: str) -> datetime:
    from bridge.core.timezone import OSLO

    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise typer.BadParameter(f"--now {text!r} is not a time like 2026-01-31T14:30") from None
    return moment.replace(tzinfo=OSLO) if moment.tzinfo is None else moment


# --------------------------------------------------------------------------- convert's hook


def convert_precheck(config: Path | None) -> Callable[[Behandlerkravmelding], list[Problem]] | None:
    """For `bkm-bridge convert`: a function giving a claim's findings as warnings (never
    errors: convert's JSON does not change), or None when precheck.mode is off. The table is
    loaded once, on first use; a broken cache is one warning, not a failed conversion."""
    from bridge.core.precheck import Mode
    from bridge.flow.precheck import Prechecker, wall_clock

    if _configured(config):
        settings = _settings(config)
        if settings.precheck.mode == Mode.OFF:
            return None
        now = _sandbox_now(settings)
        checker = Prechecker.from_settings(settings, clock=(lambda: now) if now else wall_clock)
    else:  # the defaults, without loading the settings machinery (convert starts quickly)
        from bridge.files.takstcache import cache_file, default_cache_dir, load_table

        path = cache_file(default_cache_dir(), Environment.SANDBOX.value)
        # One run, one table: no stat of the cache per file (a failed load is not cached).
        checker = Prechecker(Mode.WARN, functools.cache(lambda: load_table(path)))
    checker.mode = Mode.WARN
    moment = checker.now_sync()

    def findings(melding: Behandlerkravmelding) -> list[Problem]:
        return checker.check(melding, now=moment).problems()

    return findings


# --------------------------------------------------------------------------- precheck


def _precheck_files(
    paths: list[Path],
    checker: Prechecker,
    now: datetime,
    as_json: bool,
    context: ConvertContext,
) -> int:
    from bridge.core.model import dump_json
    from bridge.core.precheck import Mode
    from bridge.files.batch import find_xml_files
    from bridge.files.reading import convert_file

    failed = found = blocking = files = 0
    block = checker.mode is Mode.BLOCK  # findings are errors only where they stop a claim
    results: list[dict[str, Any]] = []
    for source in find_xml_files(paths):
        files += 1
        result = convert_file(source.path, context)
        for problem in result.problems:
            _err(problem.format(str(source.path)))
        if result.behandlerkrav is None or not result.ok:
            failed += 1
            continue
        findings = checker.check(result.behandlerkrav, now=now).findings
        found += len(findings)
        blocking += sum(1 for f in findings if f.blocking) if block else 0
        if as_json:
            rows = [f.as_dict(blocking=block) for f in findings]
            results.append({"fil": str(source.path), "forhandskontroll": rows})
        else:
            for finding in findings:
                print(finding.as_problem(blocking=block).format(str(source.path)))
    if not files:
        nothing_found(paths)
    if as_json:
        sys.stdout.write(dump_json(results) + "\n")
    else:
        print(
            f"Pre-control: {found} finding(s) in {files} file(s)"
            + (f"; {failed} could not be read" if failed else "")
            + "."
        )
    # Warnings (and a missing table alone, which is not the claim's fault) do not fail a run.
    return ExitCode.FAILED if failed or blocking else ExitCode.OK


def precheck(
    paths: Annotated[
        list[Path], typer.Argument(help="Files, or folders walked recursively for *.xml.")
    ],
    fagomraade: FagomraadeOpt = None,
    praksis_type: Annotated[
        str | None,
        typer.Option("--praksis-type", help="Praksis type (FALE, LEVA, TANN …) → its fagområde."),
    ] = None,
    now: Annotated[
        str | None,
        typer.Option(
            "--now",
            help="Check as of this moment (YYYY-MM-DDTHH:MM; default: now, or the sandbox clock).",
        ),
    ] = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
    environment: EnvOpt = None,
    state_dir: SandboxStateDirOpt = None,
) -> None:
    """Check claims against Helfo's open data (takst table) before they are sent."""
    from bridge.core.precheck import Mode, fagomraade_for
    from bridge.flow.precheck import Prechecker, wall_clock

    require_paths(paths)
    settings = _settings(config, environment, state_dir)
    fag = fagomraade.upper() if fagomraade else fagomraade_for(praksis_type)
    if praksis_type and not fag:
        raise typer.BadParameter(f"--praksis-type {praksis_type!r} is not a known praksis type")
    moment = _parse_now(now) if now else (_sandbox_now(settings) or wall_clock())
    table = _load(settings)
    _err(table.describe(wall_clock()))
    mode = Mode.BLOCK if settings.precheck.mode == Mode.BLOCK else Mode.WARN
    checker = Prechecker(mode, lambda: table, fagomraade=fag or settings.precheck.fagomraade)
    raise typer.Exit(_precheck_files(paths, checker, moment, as_json, _convert_context(settings)))


def _convert_context(settings: Settings) -> ConvertContext:
    """Reading as `validate` does: the `[xml]` settings (extra XSD folders, size limit)."""
    from bridge.core.convert import ConvertContext

    registry = None
    if settings.xml.xsd_dirs:
        from bridge.core.legacy.schemas import SchemaRegistry

        registry = SchemaRegistry(extra_dirs=settings.xml.xsd_dirs)
    return ConvertContext(registry=registry, max_bytes=settings.xml.max_file_bytes)


# --------------------------------------------------------------------------- takster


@contextmanager
def _open_data_url(settings: Settings, url: str | None) -> Iterator[tuple[str, str]]:
    """(URL, label) of the open data API to use; an embedded sandbox runs meanwhile when the
    environment is sandbox and no standalone one is configured."""
    from bridge.kuhr.opendata import HELFO_OPNE_DATA_URL

    chosen = url or settings.precheck.opne_data_url
    if chosen:
        yield chosen, "configured"
        return
    k = settings.kuhr
    if k.environment is not Environment.SANDBOX:
        yield HELFO_OPNE_DATA_URL, k.environment.value.upper()
        return
    if k.sandbox_state_dir is not None:
        info = _sandbox_info(k.sandbox_state_dir)
        if "opne_data_url" not in info:
            _err("bkm-bridge: that sandbox serves no open data (an older version?)")
            raise typer.Exit(ExitCode.USAGE)
        yield info["opne_data_url"], f"SANDBOX (standalone at {info.get('base_url')})"
        return
    from bridge.sandbox import start_sandbox

    with start_sandbox() as running:
        yield running.info["opne_data_url"], "SANDBOX (embedded)"


takster_app = typer.Typer(
    help="Helfo's takst tables (open data): sync the local copy, search, status.",
    no_args_is_help=True,
)


@takster_app.command("sync")
def takster_sync(
    fagomraade: Annotated[
        str | None,
        typer.Option("--fagomraade", help="Comma separated (LE,TH,…); default: every fagområde."),
    ] = None,
    url: UrlOpt = None,
    config: ConfigOpt = None,
    environment: EnvOpt = None,
    state_dir: SandboxStateDirOpt = None,
) -> None:
    """Fetch takstkoder, nlkkoder, refusjonskategorisatser and fagomraader into the cache."""
    from bridge.files.takstcache import sync
    from bridge.flow.precheck import wall_clock
    from bridge.kuhr.opendata import OpenDataClient, OpenDataError
    from bridge.kuhr.proxy import sync_transport

    settings = _settings(config, environment, state_dir)
    wanted = [f.strip().upper() for f in fagomraade.split(",") if f.strip()] if fagomraade else None
    path = _cache_path(settings)
    with _open_data_url(settings, url) as (base, label):
        _err(f"{label}: open data from {base}")
        try:
            with OpenDataClient(base, transport=sync_transport(settings.kuhr.proxy)) as client:
                report = sync(client, path, fagomraader=wanted, now=wall_clock())
        except OpenDataError as exc:
            _err(f"bkm-bridge: takster sync failed, the cache is unchanged: {exc}")
            raise typer.Exit(ExitCode.FAILED) from None
        except OSError as exc:
            _err(f"bkm-bridge: cannot write {path}: {exc.strerror}")
            raise typer.Exit(ExitCode.FAILED) from None
    counts = ", ".join(f"{fag} {n}" for fag, n in report.takstkoder.items()) or "none"
    print(
        f"Synced takstkoder ({counts}), {report.nlkkoder} nlkkoder, "
        f"{report.refusjonskategorisatser} refusjonskategorisatser, {report.fagomraader} "
        f"fagområder into {path}."
    )


@takster_app.command("search")
def takster_search(
    text: Annotated[str, typer.Argument(help="A code or words; % or * is a wildcard.")],
    fagomraade: FagomraadeOpt = None,
    dato: Annotated[
        str | None, typer.Option("--dato", help="Only codes valid on this day (YYYY-MM-DD).")
    ] = None,
    offline: Annotated[
        bool, typer.Option("--offline", help="Search the local cache only.")
    ] = False,
    url: UrlOpt = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
    environment: EnvOpt = None,
    state_dir: SandboxStateDirOpt = None,
) -> None:
    """Look up a takst code or description (the open data API's %-wildcard search); falls
    back to the local cache when the API cannot be reached."""
    from bridge.core.takster import Takstkode
    from bridge.flow.precheck import wall_clock
    from bridge.kuhr.opendata import OpenDataClient, OpenDataError
    from bridge.kuhr.proxy import sync_transport

    settings = _settings(config, environment, state_dir)
    try:
        day = date.fromisoformat(dato) if dato else None
    except ValueError:
        raise typer.BadParameter(f"--dato {dato!r} is not a date (YYYY-MM-DD)") from None
    fag = fagomraade.upper() if fagomraade else None
    pattern = text.replace("*", "%")
    rows: list[Takstkode] | None = None
    if not offline:
        try:
            with (
                _open_data_url(settings, url) as (base, label),
                OpenDataClient(base, transport=sync_transport(settings.kuhr.proxy)) as client,
            ):
                _err(f"{label}: searching {base}")
                by_code = client.takstkoder(takstkode=pattern, fagomraade=fag, gyldigdato=day)
                words = pattern if "%" in pattern else f"%{pattern}%"
                by_text = client.takstkoder(beskrivelse=words, fagomraade=fag, gyldigdato=day)
                seen: set[tuple[Any, ...]] = set()
                rows = []
                for row in [*by_code, *by_text]:
                    key = (row.takst_id, row.takstkode, row.fagomraade, row.fradato)
                    if key not in seen:
                        seen.add(key)
                        rows.append(row)
        except OpenDataError as exc:
            _err(f"bkm-bridge: {exc}; searching the local cache instead")
    if rows is None:
        table = _load(settings)
        _err(table.describe(wall_clock()))
        rows = table.search(text, fagomraade=fag, day=day)
    _print_takster(rows, as_json)
    if not rows:
        raise typer.Exit(ExitCode.FAILED)


def _print_takster(rows: list[Any], as_json: bool) -> None:
    from bridge.core.model import dump_json

    if as_json:
        data = [r.model_dump(mode="python", exclude_none=False) for r in rows]
        sys.stdout.write(dump_json(_iso_dates(data)) + "\n")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("takstkode", "fagområde", "fra", "til", "refusjon", "beskrivelse")
    for r in rows:
        table.add_row(
            r.takstkode,
            r.fagomraade or "",
            r.fradato.isoformat() if r.fradato else "",
            r.tildato.isoformat() if r.tildato else "",
            "" if r.refusjon is None else str(r.refusjon),
            r.beskrivelse or "",
        )
    width = None if sys.stdout.isatty() else 400
    Console(soft_wrap=True, highlight=False, width=width).print(table)


def _iso_dates(value: Any) -> Any:
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _iso_dates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_iso_dates(v) for v in value]
    return value


@takster_app.command("status")
def takster_status(
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
    environment: EnvOpt = None,
) -> None:
    """Where the takst table comes from and how old each part of it is."""
    from bridge.core.model import dump_json
    from bridge.flow.precheck import wall_clock

    settings = _settings(config, environment)
    table = _load(settings)
    if as_json:
        body = {
            "fil": str(table.path) if table.path else None,
            "snapshot": table.snapshot,
            "tabeller": table.status(),
        }
        sys.stdout.write(dump_json(body) + "\n")
        return
    print(table.describe(wall_clock()))
    for row in table.status():
        print(f"  {row['tabell']}: {row['rader']} rows, fetched {row['hentet']}")


def register(app: typer.Typer) -> None:
    app.command("precheck")(precheck)
    app.add_typer(takster_app, name="takster")
