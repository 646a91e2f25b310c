"""`bkm-bridge keys new | public`: the client's signing keys, without openssl.

`keys new` writes a key pair and prints the public JWK to register for the client in
Samarbeidsportalen (Maskinporten) or HelseID selvbetjening; `keys public FILE` prints the public
JWK of a key the bridge already has. The public JWK goes to stdout, the advice to stderr.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from bridge.cli.exits import ExitCode, reported
from bridge.kuhr.auth import load_key_file
from bridge.kuhr.keys import make_key, public_jwk

NameOpt = Annotated[
    str,
    typer.Option("--name", help="File name stem: NAME.private.jwk.json, NAME.public.jwk.json."),
]


def new_command(
    out: Annotated[
        Path, typer.Option("--out", help="Folder for the key files.", file_okay=False)
    ] = Path("."),
    name: NameOpt = "bkm-bridge",
    kid: Annotated[
        str | None, typer.Option("--kid", help="Key id (default: bkm-bridge-DATE-RANDOM).")
    ] = None,
    valid_days: Annotated[
        int,
        typer.Option("--valid-days", help="Days until it is to be replaced (0: no end).", min=0),
    ] = 365,
    bits: Annotated[int, typer.Option("--bits", help="RSA key size.", min=2048, max=8192)] = 3072,
) -> None:
    """Make a signing key pair and print the public JWK to register for the client."""
    try:
        made = make_key(out, name, kid=kid, valid_days=valid_days or None, bits=bits)
    except FileExistsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(ExitCode.USAGE) from None
    sys.stdout.write(json.dumps(made.public, indent=2) + "\n")
    sys.stdout.flush()
    lines = [
        f"Private key: {made.private_file} (kid {made.kid}; readable by you only: keep it so, "
        "and back it up as you would a password)",
        f"Public key:  {made.public_file} (the JSON above)",
    ]
    if made.expires_at is not None:
        lines.append(
            f"Replace it before {made.expires_at.date()}: config check and /healthz warn 30 days "
            "ahead."
        )
    lines += [
        "Next:",
        "  1. Register the public key for your client: Maskinporten in Samarbeidsportalen,",
        "     HelseID in HelseID selvbetjening (upload the .public.jwk.json file).",
        "  2. A first key:   auth.key_file = the private file, auth.key_id = the kid.",
        "     A replacement: auth.next_key_file = the private file; the bridge uses it as soon",
        "     as it is registered, then make it auth.key_file and remove the old key there.",
        "  3. bkm-bridge config check",
    ]
    print("\n".join(lines), file=sys.stderr)


def public_command(
    file: Annotated[Path, typer.Argument(help="A private key: JWK or PEM.", dir_okay=False)],
    kid: Annotated[str | None, typer.Option("--kid", help="Key id to put in the JWK.")] = None,
) -> None:
    """Print the public JWK of a private key file (to register it for the client)."""
    with reported("error"):
        key = load_key_file(file, kid, what="key file")
    sys.stdout.write(json.dumps(public_jwk(key.key, key.kid), indent=2) + "\n")


def register(app: typer.Typer) -> None:
    keys_app = typer.Typer(help="Make and show the client's signing keys.", no_args_is_help=True)
    keys_app.command("new")(new_command)
    keys_app.command("public")(public_command)
    app.add_typer(keys_app, name="keys")
