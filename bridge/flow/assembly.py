"""Settings → the parts that run, built once and in one place for `watch`, `migrate` and the
one-off commands (in the manner of uvicorn's `Config.load()` → `Server`): the sandbox (when the
environment is the sandbox), the target, the token provider, the KUHR client, the journal, the
pipeline's options and the pre-control.

Callers choose the topology (a daemon, a bulk run with sending processes, one command); they
never repeat how a part is made from the settings.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AsyncExitStack, ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from bridge.config import ConfigError, Environment, Settings, read_toml
from bridge.flow.journal import Journal
from bridge.flow.options import PipelineOptions
from bridge.flow.precheck import Prechecker, sandbox_clock, wall_clock
from bridge.kuhr.auth import TokenProvider
from bridge.kuhr.client import AsyncKuhrClient, KuhrClient
from bridge.kuhr.target import (
    Target,
    client_options,
    read_sandbox_info,
    resolve_target,
    token_provider_for,
)
from bridge.paths import migrate_journal_file, state_dir, watch_journal_file
from bridge.runtime.redaction import remember_patient_data
from bridge.sandbox.child import SandboxProcess


@dataclass(frozen=True)
class Served:
    """The KUHR a run talks to, before anything is resolved from it: a sandbox's
    `sandbox.json` values (None outside the sandbox), its clock speed, and whether this
    process started it. Plain data: it travels to migrate's sending processes."""

    info: dict[str, Any] | None = None
    speed: float = 1.0
    embedded: bool = False


@dataclass(frozen=True)
class KuhrParts:
    """What talking to KUHR needs, resolved from the settings once."""

    target: Target
    tokens: TokenProvider
    speed: float  # the sandbox clock's speed (1.0 elsewhere)
    client_options: dict[str, Any] = field(default_factory=dict)
    sandbox_opne_data_url: str | None = None  # the sandbox's copy of Helfo's open data API

    def async_client(self, **overrides: Any) -> AsyncKuhrClient:
        return AsyncKuhrClient(
            self.target.api_url, self.tokens, **{**self.client_options, **overrides}
        )


def serve_sandbox(
    settings: Settings,
    stack: ExitStack | AsyncExitStack,
    *,
    clock: datetime | None = None,
    speed: float | None = None,
) -> Served:
    """The sandbox a command talks to. Nothing outside the sandbox environment; the standalone
    one given by kuhr.sandbox_state_dir; else one embedded for as long as `stack` is open,
    served from a child process (see bridge.sandbox.child)."""
    k = settings.kuhr
    if k.environment is not Environment.SANDBOX:
        return Served()
    if k.sandbox_state_dir is not None:
        info = read_sandbox_info(k.sandbox_state_dir)
        return Served(info, float(info.get("speed", 1.0)), False)
    speed = speed or k.sandbox_speed
    child = SandboxProcess(clock=clock, speed=speed)
    stack.callback(child.stop)
    return Served(child.info, speed, True)


def kuhr_parts(settings: Settings, served: Served) -> KuhrParts:
    """Target, token provider and client options for the KUHR `served` describes."""
    target = resolve_target(settings, served.info, embedded=served.embedded)
    return KuhrParts(
        target=target,
        tokens=token_provider_for(target, settings),
        speed=served.speed,
        client_options=client_options(settings, target),
        sandbox_opne_data_url=(served.info or {}).get("opne_data_url"),
    )


def open_kuhr(settings: Settings, stack: ExitStack | AsyncExitStack, **sandbox: Any) -> KuhrParts:
    """The sandbox (if any; `sandbox`: its clock and speed, as for `serve_sandbox`) started
    for the life of `stack`, and the parts to talk to KUHR."""
    return kuhr_parts(settings, serve_sandbox(settings, stack, **sandbox))


@dataclass
class Connection:
    target: Target
    client: KuhrClient
    tokens: TokenProvider


@contextmanager
def connect(settings: Settings) -> Iterator[Connection]:
    """A ready sync client for the configured KUHR (the one-off commands); for the sandbox
    without a state dir, an embedded sandbox runs for the duration of the block."""
    with ExitStack() as stack:
        parts = open_kuhr(settings, stack)
        client = stack.enter_context(
            KuhrClient(parts.target.api_url, parts.tokens, **parts.client_options)
        )
        yield Connection(target=parts.target, client=client, tokens=parts.tokens)


# --------------------------------------------------------------------------- journals


def watch_journal_path(settings: Settings) -> Path:
    return watch_journal_file(state_dir(settings.watch.state_dir), settings.kuhr.environment.value)


def migrate_journal_path(settings: Settings, state: Path | None = None) -> Path:
    folder = state or state_dir(settings.watch.state_dir)
    return migrate_journal_file(folder, settings.kuhr.environment.value)


def open_watch_journal(settings: Settings) -> Journal:
    return Journal(watch_journal_path(settings))


# --------------------------------------------------------------------------- the pipeline


def pipeline_options(
    settings: Settings, *, time_scale: float = 1.0, **more: Any
) -> PipelineOptions:
    """The pipeline's options from `[watch]`, `[praksis]` and `[xml]`. An accelerated
    sandbox (`time_scale` > 1) moves claims faster: it is polled as often, in its time."""
    watch = settings.watch
    base = PipelineOptions()
    scale = max(1.0, time_scale)
    options: dict[str, Any] = {
        "environment": settings.kuhr.environment.value,
        "follow": watch.follow,
        "praksis_id": watch.praksis_id,
        "praksis_rules": tuple(settings.praksis.rules),
        "receipts_dir": watch.receipts_dir,
        "archive_dir": watch.archive_dir,
        "error_dir": watch.error_dir,
        "allow_mismatch": watch.allow_mismatch,
        "max_bytes": settings.xml.max_file_bytes,
        "xsd_dirs": tuple(settings.xml.xsd_dirs),
        "concurrency": watch.concurrency,
        "poll_first": max(0.05, base.poll_first / scale),
        "poll_max": max(0.2, base.poll_max / scale),
        "poll_max_payment": max(0.2, base.poll_max_payment / scale),
        "unsent_control_max": base.unsent_control_max / scale,
        "learn_patient_data": remember_patient_data,
        "production_folders": production_folders(settings),
    }
    return PipelineOptions(**{**options, **more})


def production_folders(settings: Settings) -> tuple[Path, ...]:
    """The folders of a production settings file while this run is not prod (the dry run
    with `--env sandbox` or `--env dev`): its `[watch] folders` and `receipts_dir`."""
    path = settings.config_file
    if path is None or settings.kuhr.environment is Environment.PROD:
        return ()
    try:
        data = read_toml(path)
    except ConfigError:
        return ()
    if str((data.get("kuhr") or {}).get("environment", "")).lower() != Environment.PROD.value:
        return ()
    watch = data.get("watch") or {}
    folders = [Path(f) for f in watch.get("folders") or []]
    if watch.get("receipts_dir"):
        folders.append(Path(watch["receipts_dir"]))
    return tuple(folders)


def prechecker(settings: Settings, target: Target | None = None) -> Prechecker:
    """The pre-control: on a sandbox it dates claims by the sandbox's clock (read from its
    admin API), elsewhere by the wall clock."""
    admin_url = target.admin_url if target is not None else None
    return Prechecker.from_settings(
        settings, clock=sandbox_clock(admin_url) if admin_url else wall_clock
    )
