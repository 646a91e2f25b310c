"""`--help` is readable (types in words, one date notation: YYYY-MM-DD) for every command,
and `watch --http-port` serves the status endpoint on that port."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import click
import httpx
import typer
from typer.testing import CliRunner

from bridge.cli import app as cli_app
from bridge.cli import keys, kuhr, login, migrate, precheck, service, watch
from bridge.sandbox import command as sandbox_command

PYTHON_TYPES = re.compile(r"<(list\[|str>|int>|float>|bool>|Path>|path>|int range|float range)")
OTHER_DATE_NOTATIONS = re.compile(r"%[YmdHMSz]|yyyy|dd\.MM|MM/dd")


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("convert")(cli_app.convert)
    app.command("validate")(cli_app.validate)
    for module in (kuhr, watch, migrate, service, precheck, login, keys, sandbox_command):
        module.register(app)
    return app


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group) or getattr(command, "commands", None):
            found += _commands(command, (*prefix, name))
        else:
            found.append((*prefix, name))
    return found


def test_every_help_names_types_in_words_and_dates_one_way() -> None:
    app = _app()
    commands = _commands(typer.main.get_command(app))  # type: ignore[arg-type]
    assert ("watch",) in commands and ("config", "check") in commands and len(commands) > 15
    env = {"COLUMNS": "200", "TERMINAL_WIDTH": "200"}
    for command in commands:
        result = CliRunner().invoke(app, [*command, "--help"], env=env)
        assert result.exit_code == 0, (command, result.output)
        text = result.output
        assert not PYTHON_TYPES.findall(text), (command, PYTHON_TYPES.findall(text))
        assert not OTHER_DATE_NOTATIONS.findall(text), (command, text)
    migrate_help = CliRunner().invoke(app, ["migrate", "--help"], env=env).output
    assert re.search(r"--from\s+YYYY-MM-DD", migrate_help)
    watch_help = CliRunner().invoke(app, ["watch", "--help"], env=env).output
    assert re.search(r"folders\.\.\.\s+PATH\s", watch_help)
    assert re.search(r"--http-port\s+INTEGER", watch_help)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_watch_http_port_serves_the_status_endpoint(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("BKM_BRIDGE_")}
    env["BKM_BRIDGE_WATCH__STATE_DIR"] = str(tmp_path / "state")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bridge", "watch", str(inbox), "--http-port", str(port)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        answer = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2, trust_env=False)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        assert answer is not None, proc.stderr.read() if proc.poll() is not None else "no answer"
        assert answer.status_code == 200, answer.text
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    assert proc.returncode == 0
