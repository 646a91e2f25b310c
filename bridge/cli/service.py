"""`bkm-bridge service …`: install and run the bridge as a Windows service, or print a systemd
unit for this install. The Windows commands call bridge.daemon.winservice (pywin32, Windows only);
`systemd-unit` only reads the settings. The runner the Windows service wraps is built by
bridge.daemon.service.
"""

# Imports inside command functions are deliberate: every start registers every command, and
# importing all their subsystems up front (FastAPI, aiohttp, xmlschema, the migration) makes
# each command start ~5 s slower (1.4 s against 6.6 s, python -c 'import …', loaded machine).

from __future__ import annotations

import getpass
import sys
import sysconfig
from pathlib import Path
from typing import Annotated, Any

import typer

from bridge.cli.exits import ExitCode
from bridge.cli.options import ConfigOpt
from bridge.config import ConfigError, find_config_file, load_settings
from bridge.daemon.service import load_service_settings, service_log_file

service_app = typer.Typer(
    name="service",
    help="Run bkm-bridge as a Windows service (install/remove/start/stop/status) or under "
    "systemd (systemd-unit).",
    no_args_is_help=True,
)


def on_windows() -> bool:
    return sys.platform == "win32"


def _winservice() -> Any:
    if not on_windows():
        print(
            "`bkm-bridge service install|remove|start|stop|status` manages a Windows service "
            "and works only on Windows. On Linux, run the bridge under systemd: "
            "`bkm-bridge service systemd-unit --config FILE` prints the unit "
            "(see service/README.md).",
            file=sys.stderr,
        )
        raise typer.Exit(ExitCode.USAGE)
    try:
        from bridge.daemon import winservice
    except ImportError as exc:
        print(
            f"pywin32 is missing ({exc.name}): reinstall bkm-bridge with pip on this machine",
            file=sys.stderr,
        )
        raise typer.Exit(ExitCode.FAILED) from None
    return winservice


def _fail(message: str, code: int = 1) -> typer.Exit:
    print(message, file=sys.stderr)
    return typer.Exit(code)


# --------------------------------------------------------------------------- settings


# --------------------------------------------------------------------------- Windows


@service_app.command("install")
def install_command(
    config: ConfigOpt = None,
    account: Annotated[
        str | None,
        typer.Option(
            "--account",
            help="Windows account the service runs as (default NT SERVICE\\bkm-bridge, a "
            "virtual account; a gMSA ends with $; LocalSystem is not recommended).",
        ),
    ] = None,
    ask_password: Annotated[
        bool,
        typer.Option("--ask-password", help="Prompt for the account's password (domain user)."),
    ] = False,
    delayed: Annotated[
        bool,
        typer.Option("--delayed", help="Automatic (delayed start): after the network is up."),
    ] = False,
) -> None:
    """Install the Windows service: automatic start, restart on failure, its settings file."""
    winservice = _winservice()
    try:
        path, settings = load_service_settings(config)
    except ConfigError as exc:
        raise _fail(f"configuration error: {exc}", 2) from None
    password = getpass.getpass(f"Password for {account}: ") if ask_password else None
    try:
        winservice.install(path, account=account or winservice.DEFAULT_ACCOUNT, password=password,
                           delayed=delayed)  # fmt: skip
    except winservice.ServiceCommandError as exc:
        raise _fail(str(exc)) from None
    print(f"Installed {winservice.SERVICE_NAME} (automatic start, restarts on failure)")
    print(f"  settings: {path}")
    print(f"  log file: {service_log_file(settings)}")
    print("Start it with: bkm-bridge service start")


@service_app.command("remove")
def remove_command() -> None:
    """Remove the Windows service (stop it first)."""
    winservice = _winservice()
    try:
        winservice.remove()
    except winservice.ServiceCommandError as exc:
        raise _fail(str(exc)) from None
    print(f"Removed {winservice.SERVICE_NAME}")


WaitOpt = Annotated[
    int, typer.Option("--wait", help="Wait up to this many seconds for the new state.", min=0)
]


def _change(action: str, wait: int) -> None:
    """Ask the service manager to start or stop the service and say the state it reached."""
    winservice = _winservice()
    try:
        state = getattr(winservice, action)(wait)
    except winservice.ServiceCommandError as exc:
        raise _fail(str(exc)) from None
    print(f"{winservice.SERVICE_NAME}: {state}")


@service_app.command("start")
def start_command(wait: WaitOpt = 30) -> None:
    """Start the Windows service."""
    _change("start", wait)


@service_app.command("stop")
def stop_command(wait: WaitOpt = 30) -> None:
    """Stop the Windows service (work in flight resumes from the journal at the next start)."""
    _change("stop", wait)


@service_app.command("status")
def status_command() -> None:
    """Say whether the Windows service is running (exit 0), stopped (3) or not installed (4)."""
    winservice = _winservice()
    try:
        state = winservice.status()
    except winservice.ServiceCommandError as exc:
        raise _fail(str(exc)) from None
    print(f"{winservice.SERVICE_NAME}: {state}")
    if state == "not installed":
        raise typer.Exit(ExitCode.SERVICE_NOT_INSTALLED)
    if state != "running":
        raise typer.Exit(ExitCode.SERVICE_NOT_RUNNING)


# --------------------------------------------------------------------------- systemd


@service_app.command("systemd-unit")
def systemd_unit_command(
    config: ConfigOpt = None,
    user: Annotated[
        str, typer.Option("--user", help="The dedicated system user the bridge runs as.")
    ] = "bkm-bridge",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the unit here, not to stdout.")
    ] = None,
) -> None:
    """Print a systemd unit for this install (this interpreter, these settings, hardened)."""
    from bridge.daemon.systemd import DEFAULT_STATE_DIR, render_unit

    path = find_config_file(config)
    if path is None:
        raise _fail("give --config FILE: the unit runs the bridge with that settings file", 2)
    try:
        settings = load_settings(path)
    except ConfigError as exc:
        raise _fail(f"configuration error: {exc}", 2) from None
    watch = settings.watch
    if not watch.folders:
        raise _fail(f"{path}: [watch] folders is empty: list the folders to watch", 2)
    environment = {}
    state_dir = watch.state_dir
    if state_dir is None:
        state_dir = DEFAULT_STATE_DIR
        environment["BKM_BRIDGE_WATCH__STATE_DIR"] = str(state_dir)
    package_root = _package_root()
    if package_root is not None:
        environment["PYTHONPATH"] = str(package_root)
    writable = [
        *watch.folders,
        *(d for d in (watch.receipts_dir, watch.archive_dir, watch.error_dir) if d is not None),
    ]
    log_file = settings.logging.log_file
    unit = render_unit(
        config_file=path,
        state_dir=state_dir,
        writable=writable,
        log_dir=log_file.parent if log_file else None,
        user=user,
        environment=environment,
    )
    if output is None:
        sys.stdout.write(unit)
        return
    output.write_text(unit, encoding="utf-8")
    print(f"Wrote {output}; install it as /etc/systemd/system/bkm-bridge.service", file=sys.stderr)


def _package_root() -> Path | None:
    """The folder holding the `bridge` package when it is not installed into site-packages
    (a source checkout), so the unit can put it on PYTHONPATH."""
    import bridge

    package_parent = Path(bridge.__file__).resolve().parent.parent
    for key in ("purelib", "platlib"):
        if Path(sysconfig.get_paths()[key]).resolve() == package_parent:
            return None
    return package_parent


def register(app: typer.Typer) -> None:
    app.add_typer(service_app, name="service")
