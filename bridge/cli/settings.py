"""The one loader of settings for the commands (a module of its own: `convert` and `validate`
start without loading the settings machinery)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bridge.cli.exits import reported
from bridge.config import Settings, load_settings


def settings_or_exit(config: Path | None, overrides: dict[str, Any] | None = None) -> Settings:
    """The settings a command runs with; a bad file or value ends it: `configuration error:
    …` on stderr, exit 2. (The one loader of the commands; `config check` reports instead.)"""
    with reported("configuration error"):
        return load_settings(config, overrides)
