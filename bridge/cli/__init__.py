"""The `bkm-bridge` command line: every command, thin. A client of the library that nothing
imports back. `main` is the console script's entry point (bridge.cli.app holds the Typer app;
`exits` maps errors to exit codes; `settings` is the commands' one settings loader)."""

from bridge.cli.app import main

__all__ = [
    "app",
    "exits",
    "keys",
    "kuhr",
    "login",
    "main",
    "migrate",
    "options",
    "precheck",
    "service",
    "settings",
    "sweep",
    "watch",
]
