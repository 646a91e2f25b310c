"""Exit codes, and the one place that maps the bridge's errors to them.

    0  all good
    1  some file or claim failed, or KUHR/the network did (a BridgeError)
    2  usage: bad arguments, settings or installation (a UsageError; click's own code too)
    3  `service status`: installed but not running; 4: not installed
  130  interrupted (Ctrl-C)
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import IntEnum

import typer

from bridge.errors import BridgeError, UsageError


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1
    USAGE = 2
    SERVICE_NOT_RUNNING = 3
    SERVICE_NOT_INSTALLED = 4
    INTERRUPTED = 130


def exit_code_for(error: BaseException) -> ExitCode:
    """The exit code an error ends a command with."""
    if isinstance(error, UsageError):
        return ExitCode.USAGE
    if isinstance(error, KeyboardInterrupt):
        return ExitCode.INTERRUPTED
    return ExitCode.FAILED


@contextmanager
def reported(prefix: str = "error", *, code: ExitCode | None = None) -> Iterator[None]:
    """A BridgeError inside the block ends the command: `PREFIX: message` on stderr, and the
    error's exit code (or `code`)."""
    try:
        yield
    except BridgeError as exc:
        print(f"{prefix}: {exc}", file=sys.stderr)
        raise typer.Exit(code if code is not None else exit_code_for(exc)) from None


