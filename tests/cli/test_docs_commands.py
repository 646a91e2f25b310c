"""The administrator's documents (service/README.md, docs/going-live.md) name only commands and
options that exist: every `bkm-bridge …` line in them is looked up in the CLI itself."""

from __future__ import annotations

import re
from pathlib import Path

import click
import typer

from bridge.cli import app as cli_app
from bridge.cli import keys, kuhr, login, migrate, precheck, service, watch
from bridge.sandbox import command as sandbox_command

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "service" / "README.md", ROOT / "docs" / "going-live.md"]
# `bkm-bridge` (or bkm-bridge.exe) and what follows on the line, up to a closing backtick.
MENTION = re.compile(r"bkm-bridge(?:\.exe)?\"? ((?:[a-z][a-z-]* ?)+)([^`\n]*)")


def _root() -> click.Group:
    app = typer.Typer()
    app.command("convert")(cli_app.convert)
    app.command("validate")(cli_app.validate)
    for module in (kuhr, watch, migrate, service, precheck, login, keys, sandbox_command):
        module.register(app)
    return typer.main.get_command(app)  # type: ignore[return-value]


def _resolve(root: click.Group, words: list[str]) -> tuple[click.Command, list[str]] | None:
    """The command the leading words name, and the words after it; None if the first word is
    not a command (prose such as "bkm-bridge is not on a public package index")."""
    command: click.Command = root
    used = 0
    for word in words:
        children = getattr(command, "commands", None)
        if not children or word not in children:
            break
        command = children[word]
        used += 1
    return (command, words[used:]) if used else None


def _options(command: click.Command) -> set[str]:
    return {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}


def test_every_command_and_option_the_documents_name_exists() -> None:
    root = _root()
    checked = 0
    for document in DOCUMENTS:
        for number, line in enumerate(document.read_text(encoding="utf-8").splitlines(), 1):
            for words, rest in MENTION.findall(line):
                found = _resolve(root, words.split())
                if found is None:
                    continue
                command, _ = found
                assert not getattr(command, "commands", None), (
                    f"{document.name}:{number}: `bkm-bridge {words.strip()}` is a group, "
                    "not a command"
                )
                unknown = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", rest)) - _options(command)
                unknown -= {"--help"}
                assert not unknown, f"{document.name}:{number}: {sorted(unknown)} in {line!r}"
                checked += 1
    assert checked > 40  # the documents are full of commands: the pattern finds them
