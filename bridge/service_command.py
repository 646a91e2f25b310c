"""`bkm-bridge service …`: install and run the bridge as a Windows service, or print a systemd
unit for this install. The Windows commands call bridge.winservice (pywin32, Windows only);
`systemd-unit` only reads the settings. `service_runner()` builds the runner the Windows
service wraps: settings from one file, logs to a rotating file (a service has no console).
"""

from __future__ import annotations

import getpass
import sys
import sysconfig
from pathlib import Path
from typing import Annotated, Any

import typer

from bridge.cli_options import ConfigOpt
from bridge.config import ConfigError, Settings, find_config_file, load_settings
from bridge.logs import setup_from_settings
from bridge.paths import check_installation
from bridge.runner import Runner, RunOptions

service_app = typer.Typer(
    name="service",
    help="Run bkm-bridge as a Windows service (install/remove/start/stop/status) or under "
    "systemd (systemd-unit).",
    no_args_is_help=True,
)
LOG_NAME = "bkm-bridge.log"


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
        raise typer.Exit(2)
    try:
        from bridge import winservice
    except ImportError as exc:
        print(
            f"pywin32 is missing ({exc.name}): reinstall bkm-bridge with pip on this machine",
            file=sys.stderr,
        )
        raise typer.Exit(1) from None
    return winservice


def _fail(message: str, code: int = 1) -> typer.Exit:
    print(message, file=sys.stderr)
    return typer.Exit(code)


# --------------------------------------------------------------------------- settings


def load_service_settings(config: Path | None) -> tuple[Path, Settings]:
    """The settings file a service runs with (absolute) and its settings, checked for what
    an unattended process needs: folders to watch and a state folder of its own."""
    path = find_config_file(config)
    if path is None:
        raise ConfigError(
            "a service needs a settings file: give --config FILE (or set BKM_BRIDGE_CONFIG)"
        )
    path = path.absolute()
    settings = load_settings(path)
    problems = service_setting_problems(settings)
    if problems:
        raise ConfigError(f"{path}: " + "; ".join(problems))
    return path, settings


def service_setting_problems(settings: Settings) -> list[str]:
    watch = settings.watch
    problems = []
    if not watch.folders:
        problems.append("[watch] folders is empty: list the folders the EPJ writes claims into")
    for folder in watch.folders:
        if not Path(folder).is_absolute():
            problems.append(f"[watch] folders: {folder} is not an absolute path")
    if watch.state_dir is None:
        problems.append(
            "[watch] state_dir is not set: a service needs a fixed folder for its journal, "
            "e.g. C:/ProgramData/bkm-bridge/state or /var/lib/bkm-bridge"
        )
    return problems


def service_log_file(settings: Settings) -> Path:
    """`[logging] log_file`, else `logs/bkm-bridge.log` beside the journal."""
    if settings.logging.log_file is not None:
        return settings.logging.log_file
    assert settings.watch.state_dir is not None
    return settings.watch.state_dir / "logs" / LOG_NAME


def service_runner(config_file: Path | None) -> Runner:
    """The runner the Windows service wraps (logging set up for a process without console).

    Raises InstallationError (logged to the event log by the service) before anything runs
    when the shipped schemas or mapping tables are missing."""
    check_installation()
    _, settings = load_service_settings(config_file)
    log_settings = settings.logging.model_copy(update={"log_file": service_log_file(settings)})
    setup_from_settings(log_settings, stream=None)
    return Runner(settings, RunOptions(folders=tuple(settings.watch.folders)))


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


@service_app.command("start")
def start_command(wait: WaitOpt = 30) -> None:
    """Start the Windows service."""
    winservice = _winservice()
    try:
        state = winservice.start(wait)
    except winservice.ServiceCommandError as exc:
        raise _fail(str(exc)) from None
    print(f"{winservice.SERVICE_NAME}: {state}")


@service_app.command("stop")
def stop_command(wait: WaitOpt = 30) -> None:
    """Stop the Windows service (work in flight resumes from the journal at the next start)."""
    winservice = _winservice()
    try:
        state = winservice.stop(wait)
    except winservice.ServiceCommandError as exc:
        raise _fail(str(exc)) from None
    print(f"{winservice.SERVICE_NAME}: {state}")


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
        raise typer.Exit(4)
    if state != "running":
        raise typer.Exit(3)


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
    from bridge.systemd import DEFAULT_STATE_DIR, render_unit

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
