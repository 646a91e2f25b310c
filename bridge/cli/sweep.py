"""`bkm-bridge sweep`: KUHR's overview swept now, for claims the bridge already followed to
their final state (a rebehandling, a later vedtak or payment), as the daemon does on schedule
(`[kuhr] sweep_interval`). Safe beside a running daemon: both work through the journal."""

# Imports inside the command function are deliberate (see bridge/cli/app.py): every start
# registers every command.

from __future__ import annotations

import dataclasses
import json
import sys
from typing import TYPE_CHECKING

import typer

from bridge.cli.exits import ExitCode
from bridge.cli.options import ConfigOpt, EnvOpt, JournalDirOpt, JsonOpt
from bridge.cli.settings import settings_or_exit
from bridge.config import Settings

if TYPE_CHECKING:
    from bridge.flow.sweep import SweepResult


def sweep_command(
    config: ConfigOpt = None,
    environment: EnvOpt = None,
    state_dir: JournalDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Ask KUHR now what changed for claims already final; rewrite their receipts and AppRecs."""
    settings = settings_or_exit(
        config, {"kuhr.environment": environment, "watch.state_dir": state_dir}
    )
    from bridge.runtime.logs import setup_from_settings

    setup_from_settings(settings.logging)
    import asyncio

    from bridge.flow.pipeline import TRANSIENT_ERRORS

    try:
        result = asyncio.run(_sweep(settings))
    except TRANSIENT_ERRORS as err:
        print(f"sweep: KUHR's overview is not available: {err}", file=sys.stderr)
        raise typer.Exit(ExitCode.FAILED) from None
    if as_json:
        sys.stdout.write(json.dumps(dataclasses.asdict(result), indent=2) + "\n")
    else:
        print(f"sweep: {result.summary()}")
    if result.failed:
        raise typer.Exit(ExitCode.FAILED)


async def _sweep(settings: Settings) -> SweepResult:
    import time
    from contextlib import AsyncExitStack

    from bridge.flow.assembly import open_kuhr, open_watch_journal, pipeline_options
    from bridge.flow.delivery import Delivery
    from bridge.flow.sweep import Sweeper

    async with AsyncExitStack() as stack:
        parts = open_kuhr(settings, stack)
        if parts.target.embedded:
            print(
                "sweep: SANDBOX (embedded): a sandbox started for this command knows none of "
                "the watcher's claims; set kuhr.sandbox_state_dir to the sandbox it uses",
                file=sys.stderr,
            )
        kuhr = parts.async_client()
        stack.push_async_callback(kuhr.aclose)
        journal = open_watch_journal(settings)
        stack.callback(journal.close)
        options = pipeline_options(settings, time_scale=parts.speed)
        delivery = Delivery(journal, options, clock=time.time)
        sweeper = Sweeper(
            journal,
            kuhr,
            delivery,
            follow=settings.watch.follow,
            lease_seconds=options.lease_seconds,
        )
        return await sweeper.sweep()


def register(app: typer.Typer) -> None:
    app.command("sweep")(sweep_command)
