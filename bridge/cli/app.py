"""Every `bkm-bridge` command. Thin: parse arguments, call the modules, print, set exit codes.

Exit codes: one rule for every command, in bridge/cli/exits.py (and README.md).
Problems go to stderr as `FILE:LINE: CODE: sentence`; results go to stdout.
"""

# Imports inside command functions are deliberate: every start registers every command, and
# importing all their subsystems up front (FastAPI, aiohttp, xmlschema, the migration) makes
# each command start ~5 s slower (1.4 s against 6.6 s, python -c 'import …', loaded machine).

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from bridge import __version__
from bridge.cli import helptext
from bridge.cli.exits import ExitCode, exit_code_for, nothing_found, require_paths
from bridge.cli.options import ConfigOpt
from bridge.core.convert import DEFAULT_MAX_BYTES, ConvertContext, ConvertResult
from bridge.core.model import dump_json
from bridge.errors import BridgeError
from bridge.files.batch import SourceFile, convert_to_folder, find_xml_files
from bridge.files.reading import convert_file
from bridge.paths import InstallationError, check_installation

helptext.install()  # `--help` in words (PATH..., TEXT, YYYY-MM-DD), not Python's types

app = typer.Typer(
    name="bkm-bridge",
    help="Bridge legacy BKM XML claims to Helfo's KUHR Krav API.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        print(f"bkm-bridge {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print the version and exit.", callback=_print_version, is_eager=True
        ),
    ] = False,
) -> None:
    """Bridge legacy BKM XML claims to Helfo's KUHR Krav API."""


PathsArg = Annotated[
    list[Path], typer.Argument(help="Files, or folders walked recursively for *.xml.")
]
XsdDirOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--xsd-dir",
        help="Extra folder of XSDs; wins over the built-in schema for the same namespace.",
        file_okay=False,
    ),
]
AllowMismatchOpt = Annotated[
    bool,
    typer.Option(
        "--allow-mismatch",
        help="Accept AntallRegninger/SumKravSamlet that disagree with the regninger (warning).",
    ),
]
MaxBytesOpt = Annotated[
    int | None,
    typer.Option("--max-bytes", help="Refuse files larger than this (default 32 MiB).", min=1),
]


def _context(
    praksis_id: str | None,
    xsd_dirs: list[Path] | None,
    allow_mismatch: bool,
    max_bytes: int | None,
    config: Path | None,
) -> ConvertContext:
    """Flags win; otherwise the `[xml]` settings (xsd_dirs, max_file_bytes) apply."""
    xml_dirs, xml_max = _xml_settings(config)
    dirs = xsd_dirs or xml_dirs
    registry = None
    if dirs:
        from bridge.core.legacy.schemas import SchemaRegistry

        registry = SchemaRegistry(extra_dirs=dirs)
    return ConvertContext(
        praksis_id=praksis_id,
        allow_mismatch=allow_mismatch,
        registry=registry,
        max_bytes=max_bytes or xml_max,
        envelope=False,  # convert and validate print the claim and its problems only
    )


def _xml_settings(config: Path | None) -> tuple[list[Path], int]:
    """The `[xml]` settings; loading the settings machinery only when something is configured
    keeps `convert` quick to start (it is called once per file by some EPJ scripts)."""
    import os

    configured = config is not None or any(
        name.upper().startswith(("BKM_BRIDGE_CONFIG", "BKM_BRIDGE_XML")) for name in os.environ
    )
    if not configured and not Path("bkm-bridge.toml").is_file():
        return [], DEFAULT_MAX_BYTES
    from bridge.config import ConfigError, load_settings

    try:
        xml = load_settings(config).xml
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from None
    return list(xml.xsd_dirs), xml.max_file_bytes


def _report(source: Path, result: ConvertResult, precheck: Any = None) -> None:
    for problem in result.problems:
        print(problem.format(str(source)), file=sys.stderr)
    if precheck is not None and result.ok and result.melding is not None:
        for finding in precheck(result.melding):  # pre-control findings: warnings only
            print(finding.format(str(source)), file=sys.stderr)


def _precheck(config: Path | None) -> Any:
    """The pre-control hook (bridge.cli.precheck), or None when precheck.mode is off."""
    from bridge.cli.precheck import convert_precheck

    return convert_precheck(config)


@app.command()
def convert(
    paths: PathsArg,
    praksis_id: Annotated[
        str, typer.Option("--praksis-id", help="The praksisId the claims are sent for.")
    ],
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Write NAME.json per file here instead of printing JSON."),
    ] = None,
    allow_mismatch: AllowMismatchOpt = False,
    xsd_dir: XsdDirOpt = None,
    max_bytes: MaxBytesOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Convert legacy BKM XML to the JSON BKM that KUHR's API takes."""
    require_paths(paths)
    context = _context(praksis_id, xsd_dir, allow_mismatch, max_bytes, config)
    precheck = _precheck(config)
    if out is None:
        if len(paths) != 1 or paths[0].is_dir():
            raise typer.BadParameter("give --out DIR to convert several files or a folder")
        result = convert_file(paths[0], context)
        _report(paths[0], result, precheck)
        if result.melding is None:
            raise typer.Exit(ExitCode.FAILED)
        sys.stdout.write(dump_json(result.melding) + "\n")
        return

    def report(source: SourceFile, result: ConvertResult) -> None:
        _report(source.path, result, precheck)

    summary = convert_to_folder(find_xml_files(paths), out, context, on_result=report)
    if summary.total == 0:
        nothing_found(paths)
    print(
        f"Converted {summary.converted} of {summary.total} file(s) into {out}"
        + (f"; {summary.failed} failed" if summary.failed else "")
        + (f"; {summary.warnings} warning(s)" if summary.warnings else "")
        + "."
    )
    if summary.failed:
        codes = ", ".join(f"{code} ×{n}" for code, n in summary.problem_counts.most_common())
        print(f"Problems: {codes}", file=sys.stderr)
        raise typer.Exit(ExitCode.FAILED)


@app.command()
def validate(
    paths: PathsArg,
    allow_mismatch: AllowMismatchOpt = False,
    xsd_dir: XsdDirOpt = None,
    max_bytes: MaxBytesOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Check legacy BKM XML files (schema, values, totals) without converting or sending."""
    require_paths(paths)
    context = _context(None, xsd_dir, allow_mismatch, max_bytes, config)
    failed = checked = 0
    for source in find_xml_files(paths):
        checked += 1
        result = convert_file(source.path, context)
        _report(source.path, result)
        if result.ok:
            print(f"{source.path}: OK")
        else:
            failed += 1
    if not checked:
        nothing_found(paths)
    if failed:
        raise typer.Exit(ExitCode.FAILED)


# Subsystems with several commands keep them beside their code and register them here.
def _register_subsystem_commands() -> None:
    from bridge.cli import kuhr as kuhr_command
    from bridge.cli import watch as watch_commands
    from bridge.sandbox import command as sandbox_command

    sandbox_command.register(app)
    kuhr_command.register(app)
    watch_commands.register(app)
    for name in (
        "bridge.cli.migrate",
        "bridge.cli.service",
        "bridge.cli.precheck",
        "bridge.cli.login",
        "bridge.cli.keys",
        "bridge.cli.sweep",
    ):
        if importlib.util.find_spec(name) is not None:
            importlib.import_module(name).register(app)


# The conversion commands start without loading the other subsystems (HTTP client, sandbox,
# daemon): an EPJ script may call `convert` once per file.
_FAST_COMMANDS = {"convert", "validate"}


def main() -> None:
    if not {"--version", "--help"} & set(sys.argv[1:2]):
        try:
            check_installation()  # before any file is read: never blame a claim for it
        except InstallationError as exc:
            print(f"bkm-bridge: installation problem: {exc}", file=sys.stderr)
            sys.exit(exit_code_for(exc))
    if len(sys.argv) < 2 or sys.argv[1] not in _FAST_COMMANDS:
        _register_subsystem_commands()
    try:
        app()
    except BridgeError as exc:  # one a command did not report itself: said here, in one line
        print(f"bkm-bridge: error: {exc}", file=sys.stderr)
        sys.exit(exit_code_for(exc))
