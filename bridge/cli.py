"""Every `bkm-bridge` command. Thin: parse arguments, call the modules, print, set exit codes.

Exit codes: 0 all good, 1 some file or claim failed, 2 usage error (click's default).
Problems go to stderr as `FILE:LINE: CODE: sentence`; results go to stdout.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    name="bkm-bridge",
    help="Bridge legacy BKM XML claims to Helfo's KUHR Krav API.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


# Subsystems with several commands keep them beside their code and register them here.
def _register_subsystem_commands() -> None:
    from bridge.kuhr import command as kuhr_command
    from bridge.sandbox import command as sandbox_command

    sandbox_command.register(app)
    kuhr_command.register(app)


def main() -> None:
    _register_subsystem_commands()
    app()
