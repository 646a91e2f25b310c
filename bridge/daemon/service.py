"""The bridge as an unattended service (Windows service, systemd): settings from one file only,
checked for what a process without a console needs, and logs to a rotating file."""

from __future__ import annotations

from pathlib import Path

from bridge.config import ConfigError, Settings, find_config_file, load_settings
from bridge.daemon.runner import Runner, RunOptions
from bridge.paths import check_installation
from bridge.runtime.logs import setup_from_settings

LOG_NAME = "bkm-bridge.log"


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
