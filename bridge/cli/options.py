"""Command-line options shared by several commands (so each reads and behaves the same)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bridge.environment import Environment

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="Settings file (default: $BKM_BRIDGE_CONFIG, else ./bkm-bridge.toml).",
        dir_okay=False,
    ),
]
EnvOpt = Annotated[
    Environment | None,
    typer.Option("--environment", "--env", help="KUHR environment (overrides the settings)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
JournalDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        help="Where the journal lives (default: the per-user state folder).",
        file_okay=False,
    ),
]
SandboxStateDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--sandbox-state-dir",
        help="Use the running standalone sandbox whose sandbox.json is in this folder.",
        file_okay=False,
    ),
]
