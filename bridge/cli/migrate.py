"""`bkm-bridge migrate`: the command around `bridge.migrate.Migration` (arguments, the live
progress display, --quiet / --json, Ctrl-C, exit codes)."""

# Imports inside command functions are deliberate: every start registers every command, and
# importing all their subsystems up front (FastAPI, aiohttp, xmlschema, the migration) makes
# each command start ~5 s slower (1.4 s against 6.6 s, python -c 'import …', loaded machine).

from __future__ import annotations

import json
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from bridge.cli.exits import ExitCode, exit_code_for_outcomes
from bridge.cli.options import ConfigOpt, EnvOpt
from bridge.cli.settings import settings_or_exit

# Progress line: outcomes (bridge.core.outcomes.Status words) in this order first.
_ORDER = (
    "sendt",
    "kontrollert",
    "konvertert",
    "avvist_lokalt",
    "feil_i_melding",
    "duplikat",
    "feilet_midlertidig",
    "venter",
    "ignorert",
)


def register(app: typer.Typer) -> None:
    app.command("migrate")(migrate_command)


def migrate_command(
    paths: Annotated[
        list[Path],
        typer.Argument(help="Folders (walked recursively), files and .zip archives."),
    ],
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Convert and validate only; nothing is sent."),
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="With --dry-run: write NAME.json per file here.", file_okay=False
        ),
    ] = None,
    receipts: Annotated[
        Path | None,
        typer.Option(
            "--receipts",
            help="Write receipts here, mirroring the archive's tree (needed for zips and "
            "read-only archives); default: beside the originals.",
            file_okay=False,
        ),
    ] = None,
    report: Annotated[
        Path | None,
        typer.Option(
            "--report",
            help="CSV of every file; FILE.summary.json and FILE.html are written beside it.",
            dir_okay=False,
        ),
    ] = None,
    concurrency: Annotated[
        int, typer.Option("--concurrency", help="Submissions in flight.", min=1, max=64)
    ] = 8,
    rate: Annotated[
        str | None,
        typer.Option("--rate", help="At most this many submissions, e.g. 50/s or 600/min."),
    ] = None,
    since: Annotated[
        datetime | None,
        typer.Option(
            "--from", help="Only files modified on or after this day.", formats=["%Y-%m-%d"]
        ),
    ] = None,
    until: Annotated[
        datetime | None,
        typer.Option(
            "--to", help="Only files modified on or before this day.", formats=["%Y-%m-%d"]
        ),
    ] = None,
    follow: Annotated[
        bool,
        typer.Option("--follow", help="Wait for KUHR's control results (receipts and report)."),
    ] = False,
    workers: Annotated[
        int | None,
        typer.Option("--workers", help="Conversion processes (default: one per core).", min=1),
    ] = None,
    senders: Annotated[
        int | None,
        typer.Option(
            "--senders",
            help="Processes that send, each a share of the archive "
            "(default: one per core once there are 1,000 files).",
            min=1,
            max=16,
        ),
    ] = None,
    praksis_id: Annotated[
        str | None, typer.Option("--praksis-id", help="Send every claim for this praksis.")
    ] = None,
    allow_mismatch: Annotated[
        bool | None,
        typer.Option(
            "--allow-mismatch/--no-allow-mismatch",
            help="Accept AntallRegninger/SumKravSamlet that disagree with the regninger.",
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="No progress display; print the summary as JSON.")
    ] = False,
    config: ConfigOpt = None,
    environment: EnvOpt = None,
    state_dir: Annotated[
        Path | None,
        typer.Option(
            "--state-dir",
            help="Where the journal lives (default: the watch.state_dir setting).",
            file_okay=False,
        ),
    ] = None,
    sandbox_speed: Annotated[
        float | None,
        typer.Option(
            "--sandbox-speed", help="Embedded sandbox: simulated s per real s.", min=0.001
        ),
    ] = None,
    log_level: Annotated[
        str, typer.Option("--log-level", help="DEBUG, INFO, WARNING or ERROR.")
    ] = "WARNING",
) -> None:
    """Migrate an archive of legacy claims: convert in parallel, submit each file version at
    most once, resume after an interruption, report every file."""
    from bridge.files.discovery import DateRange
    from bridge.migrate.migration import Migration
    from bridge.migrate.options import MigrateOptions, MigrationError
    from bridge.migrate.rate import parse_rate

    settings = settings_or_exit(config, {"kuhr.environment": environment})
    try:
        per_second = parse_rate(rate) if rate is not None else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--rate") from None
    dates = DateRange(since.date() if since else None, until.date() if until else None)
    if dates.since and dates.until and dates.since > dates.until:
        raise typer.BadParameter("--from is after --to")
    options = MigrateOptions(
        paths=tuple(paths),
        dry_run=dry_run,
        out_dir=out,
        receipts_dir=receipts,
        report=report,
        concurrency=concurrency,
        rate=per_second,
        dates=dates,
        follow=follow,
        workers=workers,
        senders=senders,
        praksis_id=praksis_id,
        allow_mismatch=allow_mismatch,
        state_dir=state_dir,
        sandbox_speed=sandbox_speed,
    )
    try:
        migration = Migration(settings, options)
    except MigrationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(ExitCode.USAGE) from None
    live = not (quiet or as_json) and sys.stderr.isatty()
    try:
        with _stop_on_signals(migration), _display(migration, live, log_level):
            result = migration.run()
    except MigrationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(ExitCode.FAILED) from None
    except KeyboardInterrupt:  # the second Ctrl-C: the journal still resumes the next run
        print("interrupted; run the same command again to resume", file=sys.stderr)
        raise typer.Exit(ExitCode.INTERRUPTED) from None
    except Exception as exc:  # start-up trouble (KUHR, journal): a sentence, not a traceback
        from bridge.migrate.tally import JournalLockedError

        if isinstance(exc, JournalLockedError):
            print(f"error: {exc}", file=sys.stderr)
            raise typer.Exit(ExitCode.FAILED) from None
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        raise typer.Exit(ExitCode.FAILED) from None
    if as_json:
        sys.stdout.write(json.dumps(result.summary, indent=2, ensure_ascii=False) + "\n")
    elif not quiet:
        print(_summary_line(result.summary, result.report_paths), file=sys.stderr)
    if result.interrupted:
        raise typer.Exit(ExitCode.INTERRUPTED)
    summary = result.summary
    raise typer.Exit(
        exit_code_for_outcomes(
            summary["outcomes"],
            rejected_regninger=summary.get("rejected_regninger", 0),
            not_checked=summary.get("problems", {}).get("PRAKSIS_NOT_CHECKED", 0),
        )
    )


def _summary_line(summary: dict[str, Any], reports: tuple[Path, ...]) -> str:
    outcomes = ", ".join(f"{k} {v:,}" for k, v in summary["outcomes"].items()) or "no files"
    text = (
        f"{'Dry run' if summary.get('dry_run') else 'Migration'}"
        f"{' interrupted' if summary.get('interrupted') else ''}: {summary['files']:,} file(s) "
        f"in {summary['seconds']:.1f} s ({outcomes})."
    )
    if summary.get("merknader"):
        top = sorted(summary["merknader"].items(), key=lambda kv: -kv[1])[:5]
        text += " Merknader: " + ", ".join(f"{k} ×{v:,}" for k, v in top) + "."
    if summary.get("dry_run") and summary.get("checked"):
        text += f" {summary['checked'][0].upper()}{summary['checked'][1:]}."
    if reports:
        text += f" Report: {reports[0]}"
    if summary.get("interrupted"):
        text += " Run the same command again to resume."
    return text


@contextmanager
def _stop_on_signals(migration: Any) -> Iterator[None]:
    """First Ctrl-C/SIGTERM: stop cleanly (steps in flight finish, the report is written);
    a second Ctrl-C: stop now (the journal still resumes the next run)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def handler(signum: int, _frame: Any) -> None:
        migration.stop()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    for sig in previous:
        signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextmanager
def _display(migration: Any, live: bool, log_level: str) -> Iterator[None]:
    """A live display on stderr (a bar with files/s and ETA, and a line of counts by outcome)
    while the run lasts; log lines print above it. Without a terminal: log lines only."""
    from bridge.runtime.logs import reset_logging, setup_logging

    if not live:
        setup_logging(log_level)
        try:
            yield
        finally:
            reset_logging()
        return
    from rich.console import Console, Group
    from rich.live import Live
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    tally = migration.tally
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]} files/s"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    label = "dry run" if migration.options.dry_run else "migrate"
    task = progress.add_task(label, total=None, rate="0")

    class Display:
        def __rich__(self) -> Group:
            elapsed = max(tally.elapsed(), 1e-6)
            progress.update(
                task,
                total=tally.total,
                completed=tally.done,
                rate=f"{tally.done / elapsed:,.0f}",
            )
            text = Text(_outcomes_text(tally.outcomes) or "starting…", style="dim")
            if tally.stopping:
                text.append("  stopping: finishing what is in flight…", style="yellow")
            return Group(progress, text)

    with Live(Display(), console=Console(stderr=True), refresh_per_second=4):
        setup_logging(log_level)  # after the display starts: log lines print above it
        try:
            yield
        finally:
            reset_logging()


def _outcomes_text(outcomes: Any) -> str:
    known = [k for k in _ORDER if outcomes.get(k)]
    rest = sorted(k for k, v in outcomes.items() if v and k not in _ORDER)
    return " · ".join(f"{k.replace('_', ' ')} {outcomes[k]:,}" for k in [*known, *rest])
