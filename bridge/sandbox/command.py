"""`bkm-bridge sandbox`: run the KUHR sandbox in the foreground until Ctrl-C (or SIGTERM).

FastAPI and uvicorn are imported inside the command, so other commands start fast.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    app.command("sandbox")(sandbox)


def sandbox(
    host: Annotated[str, typer.Option(help="Address to listen on (keep it on loopback).")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="Port; 0 picks a free one.", min=0, max=65535)] = 0,
    clock: Annotated[
        str | None,
        typer.Option(
            help="Start time of the sandbox clock, ISO 8601 "
            "(default: the seed's 2026-01-06T15:30:00+01:00)."
        ),
    ] = None,
    speed: Annotated[float, typer.Option(help="Simulated seconds per real second.", min=0.0)] = 1.0,
    state_dir: Annotated[
        Path | None,
        typer.Option(
            help="Write sandbox.json (URLs, client id, the client's private key) here; "
            "keys are kept here across restarts."
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            help="TOML file with more actors, praksiser, clients, frikort holders, takster.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the sandbox's random choices.")] = 0,
    token_lifetime: Annotated[
        int, typer.Option(help="Access token lifetime in seconds.", min=1)
    ] = 120,
    manual_control_share: Annotated[
        float,
        typer.Option(help="Share of meldinger that go to manual control first.", min=0.0, max=1.0),
    ] = 0.0,
    unsent_control_share: Annotated[
        float,
        typer.Option(
            help="Share of meldinger never sent to control (ikke_sendt_til_kontroll).",
            min=0.0,
            max=1.0,
        ),
    ] = 0.0,
    error_rate: Annotated[
        float, typer.Option(help="Share of API requests answered 5xx.", min=0.0, max=1.0)
    ] = 0.0,
    latency_ms: Annotated[
        float, typer.Option(help="Latency added to each API request.", min=0.0)
    ] = 0.0,
    rate_limit_every: Annotated[
        int, typer.Option(help="Answer every Nth API request 429 (0: never).", min=0)
    ] = 0,
    retry_after: Annotated[int, typer.Option(help="Retry-After seconds on a 429.", min=0)] = 1,
    drop_rate: Annotated[
        float,
        typer.Option(help="Share of API connections dropped without an answer.", min=0.0, max=1.0),
    ] = 0.0,
    lost_response_rate: Annotated[
        float,
        typer.Option(
            help="Share of API requests processed but answered by a dropped connection.",
            min=0.0,
            max=1.0,
        ),
    ] = 0.0,
    access_log: Annotated[
        bool, typer.Option(help="Log each request (paths and status only).")
    ] = True,
    refresh_token_lifetime: Annotated[
        int,
        typer.Option(help="How long a personal HelseID login lasts, in seconds.", min=1),
    ] = 10 * 3600,
    api_dpop_nonce: Annotated[
        bool, typer.Option(help="Let the API, too, ask for a DPoP nonce (use_dpop_nonce).")
    ] = False,
    public_url: Annotated[
        str | None,
        typer.Option(
            help="The address clients reach the sandbox at, when it sits behind a TLS front "
            "or a proxy (token audiences and DPoP htu are checked against it)."
        ),
    ] = None,
) -> None:
    """Run the KUHR sandbox: a local stand-in for Helfo's KUHR Krav API (see docs/sandbox.md)."""
    from bridge.sandbox.clock import parse_iso
    from bridge.sandbox.server import SandboxStartError, start_sandbox
    from bridge.sandbox.settings import SandboxSettings

    try:
        start = parse_iso(clock) if clock else None
    except ValueError:
        raise typer.BadParameter(
            f"not an ISO 8601 date-time: {clock}", param_hint="--clock"
        ) from None
    faults = {
        "error_rate": error_rate,
        "latency_ms": latency_ms,
        "rate_limit": {"every": rate_limit_every, "retry_after": retry_after},
        "drop_rate": drop_rate,
        "lost_response_rate": lost_response_rate,
    }
    settings = SandboxSettings(
        seed=seed,
        token_lifetime_seconds=token_lifetime,
        manual_control_share=manual_control_share,
        unsent_control_share=unsent_control_share,
        faults=faults,
        access_log=access_log,
        speed=speed,
        refresh_token_lifetime_seconds=refresh_token_lifetime,
        public_url=public_url.rstrip("/") if public_url else None,
        api_dpop_nonce=api_dpop_nonce,
    )
    try:
        running = start_sandbox(
            host=host, port=port, state_dir=state_dir, clock=start, config=config, settings=settings
        )
    except (SandboxStartError, ValueError, OSError) as exc:
        typer.echo(f"sandbox: {exc}", err=True)
        raise typer.Exit(1) from None
    info = running.info
    lines = [
        f"KUHR sandbox serving at {info['base_url']}",
        f"  API       {info['api_url']}",
        f"  docs      {info['base_url']}/docs",
        f"  admin     {info['admin_url']}",
        f"  tokens    {info['maskinporten']['token_url']} (Maskinporten), "
        f"{info['helseid']['token_url']} (HelseID)",
        f"  login     {info['helseid']['authorize_url']} (HelseID, test persons)",
        f"  client id {info['client_id']}",
        f"  clock     {info['clock']} x{running.sandbox.clock.speed:g}",
    ]
    if running.info_path is not None:
        lines.append(f"  sandbox.json (with the client's private key): {running.info_path}")
    else:
        lines.append("  (give --state-dir to get sandbox.json with the client's private key)")
    lines.append("Ctrl-C stops it.")
    typer.echo("\n".join(lines))
    sys.stdout.flush()

    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while running.running and not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        running.stop()
    typer.echo("KUHR sandbox stopped.")
