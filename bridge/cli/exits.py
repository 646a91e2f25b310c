"""Exit codes, and the one rule every command ends by (README.md, "Exit codes").

    0  done, and nothing needs anyone's attention (warnings do not count)
    1  done, but a file or claim needs attention: rejected here (avvist_lokalt) or by KUHR
       (feil_i_melding, a regning avvist), failed (feilet_midlertidig), not finished
       (venter, ikke_behandlet, a timeout), a failed check, or KUHR/the network failed
    2  not done as asked: bad arguments, a path that does not exist, paths that name no claim
       file, bad settings or installation (a UsageError; click's own code too)
    3  `service status`: installed but not running; 4: not installed
  130  interrupted (Ctrl-C); run the same command again to resume

`exit_code_for` maps an error, `exit_code_for_outcomes` the status words of what a command
processed (bridge.core.outcomes.Status), `exit_code_for_regninger` KUHR's per-regning results.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from enum import IntEnum
from pathlib import Path

import typer

from bridge.core.outcomes import FINE_OUTCOMES
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


def exit_code_for_outcomes(
    outcomes: Mapping[str, int] | Iterable[str],
    *,
    rejected_regninger: int = 0,
    not_checked: int = 0,
) -> ExitCode:
    """0 when every file's word is fine, no regning was rejected and every file was checked
    (a dry run that could not resolve praksis has not checked it), else 1."""
    words = [w for w, n in outcomes.items() if n] if isinstance(outcomes, Mapping) else outcomes
    if rejected_regninger or not_checked or any(str(w) not in FINE_OUTCOMES for w in words):
        return ExitCode.FAILED
    return ExitCode.OK


def exit_code_for_regninger(statuses: Iterable[str]) -> ExitCode:
    """KUHR's control results: 1 when any regning is avvist (someone must correct it)."""
    return ExitCode.FAILED if any(str(s) == "avvist" for s in statuses) else ExitCode.OK


def require_paths(paths: Iterable[Path]) -> None:
    """A path given on the command line that does not exist ends the command with 2, before
    anything is read (a file that disappears while it is read is that file's problem: 1)."""
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        print(f"error: does not exist: {', '.join(missing)}", file=sys.stderr)
        raise typer.Exit(ExitCode.USAGE)


def nothing_found(paths: Iterable[Path]) -> None:
    """Paths that name no claim file (an empty folder): said, and exit 2 – nothing was checked."""
    names = ", ".join(str(p) for p in paths)
    print(f"error: no *.xml files in {names}: nothing was checked", file=sys.stderr)
    raise typer.Exit(ExitCode.USAGE)


@contextmanager
def reported(prefix: str = "error", *, code: ExitCode | None = None) -> Iterator[None]:
    """A BridgeError inside the block ends the command: `PREFIX: message` on stderr, and the
    error's exit code (or `code`)."""
    try:
        yield
    except BridgeError as exc:
        print(f"{prefix}: {exc}", file=sys.stderr)
        raise typer.Exit(code if code is not None else exit_code_for(exc)) from None
