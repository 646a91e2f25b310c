"""The `bkm-bridge` command line: every command, thin. A client of the library that nothing
imports back. `main` is the console script's entry point (bridge.cli.app holds the Typer app;
`exits` holds the one exit-code rule; `settings` is the commands' one settings loader;
`helptext` makes `--help` name types in words)."""

from bridge.cli.app import main

__all__ = [
    "app",
    "exits",
    "helptext",
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
