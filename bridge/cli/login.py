"""`bkm-bridge login | logout`: the behandler's personal HelseID login (authorization code +
PKCE in the system browser, back to a loopback address); its refresh token is stored protected
and used by every command and the daemon until the login ends."""

from __future__ import annotations

import sys
import time
import webbrowser
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated

import typer

from bridge.cli.exits import ExitCode, reported
from bridge.cli.options import ConfigOpt, EnvOpt, SandboxStateDirOpt
from bridge.cli.settings import settings_or_exit
from bridge.config import AuthMethod, ConfigError, Environment, Settings
from bridge.errors import BridgeError
from bridge.flow.assembly import open_kuhr
from bridge.kuhr.discovery import endpoints
from bridge.kuhr.login import DEFAULT_TIMEOUT_SECONDS, HelseIdLogin
from bridge.kuhr.login_store import LoginStore
from bridge.kuhr.login_tokens import describe
from bridge.kuhr.target import helseid_client, login_file

GRANT_LINES = '[auth]\nmethod = "helseid"\ngrant = "authorization_code"'


def _err(text: str) -> None:
    print(text, file=sys.stderr)


def _login_settings(
    config: Path | None, environment: Environment | None, state_dir: Path | None
) -> Settings:
    settings = settings_or_exit(
        config, {"kuhr.environment": environment, "kuhr.sandbox_state_dir": state_dir}
    )
    auth = settings.auth
    if auth.method is not AuthMethod.HELSEID or auth.grant != "authorization_code":
        _err(
            "configuration error: `bkm-bridge login` is a behandler's personal HelseID login; "
            f"set in the settings:\n{GRANT_LINES}"
        )
        raise typer.Exit(ExitCode.USAGE)
    k = settings.kuhr
    if k.environment is Environment.SANDBOX and k.sandbox_state_dir is None:
        _err(
            "configuration error: a login needs a sandbox that outlives the command: start "
            "`bkm-bridge sandbox --state-dir DIR` and give --sandbox-state-dir DIR "
            "(or kuhr.sandbox_state_dir)"
        )
        raise typer.Exit(ExitCode.USAGE)
    return settings


def _until(epoch: float) -> str:
    left = epoch - time.time()
    hours, minutes = divmod(max(0, int(left)) // 60, 60)
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(epoch))
    return f"{when} (in {hours} h {minutes} min)"


def login_command(
    config: ConfigOpt = None,
    environment: EnvOpt = None,
    sandbox_state_dir: SandboxStateDirOpt = None,
    no_browser: Annotated[
        bool,
        typer.Option("--no-browser", help="Only print the address to open (same machine)."),
    ] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds to wait for the login.", min=1)
    ] = DEFAULT_TIMEOUT_SECONDS,
) -> None:
    """Log in with HelseID as the behandler the claims are sent for (opens the browser)."""
    settings = _login_settings(config, environment, sandbox_state_dir)
    store = LoginStore(login_file(settings))
    with ExitStack() as stack, reported("login failed"):
        parts = open_kuhr(settings, stack)
        target = parts.target
        _err(f"{target.label} · HelseID at {target.helseid_authority}")
        client = helseid_client(target, settings)
        assert target.helseid_authority is not None
        flow = HelseIdLogin(
            client,
            endpoints(target.helseid_authority, client.http_client),
            api_scope=target.scope,
            redirect_uri=settings.auth.redirect_uri,
            http=client.http_client,
        )

        def show(url: str) -> None:
            _err("Log in with HelseID in the browser. If no browser opens, open this address")
            _err("on this machine (the login comes back to a local address):")
            _err(f"  {url}")
            sys.stderr.flush()

        record = flow.run(
            open_browser=None if no_browser else webbrowser.open, on_url=show, timeout=timeout
        )
        store.save(record)
    print(f"Logged in: {describe(record)}.")
    if record.refresh_expires_at:
        print(f"The login lasts until {_until(record.refresh_expires_at)}; the bridge renews")
        print("its tokens itself until then. Log in again before it ends.")
    print(f"Stored in {store.path} ({store.protection}).")


def _revoke(settings: Settings, refresh_token: str) -> str:
    """End the login at HelseID too (best effort); what to tell the person."""
    k = settings.kuhr
    if k.environment is Environment.SANDBOX and k.sandbox_state_dir is None:
        return "(no sandbox to tell)"
    try:
        with ExitStack() as stack:
            target = open_kuhr(settings, stack).target
            client = helseid_client(target, settings)
            assert target.helseid_authority is not None
            found = endpoints(target.helseid_authority, client.http_client)
            if found.revocation_endpoint is None:
                return "(HelseID offers no revocation: the login ends by itself)"
            client.revoke(found.revocation_endpoint, refresh_token)
    except BridgeError as exc:
        return f"(HelseID could not be told: {exc}; the login ends there by itself)"
    return "and HelseID has ended the login"


def logout_command(
    config: ConfigOpt = None,
    environment: EnvOpt = None,
    sandbox_state_dir: SandboxStateDirOpt = None,
) -> None:
    """Forget the personal HelseID login: ends it at HelseID and removes the stored token."""
    settings = settings_or_exit(
        config, {"kuhr.environment": environment, "kuhr.sandbox_state_dir": sandbox_state_dir}
    )
    store = LoginStore(login_file(settings))
    try:
        record = store.load()
    except ConfigError:
        record = None  # unreadable here: removing it is all that can be done
    told = _revoke(settings, record.refresh_token) if record is not None else ""
    if store.delete():
        print(f"Logged out: removed {store.path} {told}".rstrip() + ".")
    else:
        print(f"Nobody was logged in ({store.path} does not exist).")


def register(app: typer.Typer) -> None:
    app.command("login")(login_command)
    app.command("logout")(logout_command)
