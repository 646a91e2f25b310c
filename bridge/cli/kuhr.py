"""`bkm-bridge praksis | submit | status | config check`: the KUHR commands (thin shell).

Results go to stdout (a table, or JSON with `--json`); problems and the environment banner
("SANDBOX (embedded)", "DEV", "PROD") go to stderr, so `--json` output stays machine-readable.
Exit codes (bridge.cli.exits): 0 ok, 1 a claim needs attention (not accepted, feil_i_melding,
a regning avvist, a timeout) or KUHR failed, 2 usage or configuration error.
"""

# Imports inside command functions are deliberate: every start registers every command, and
# importing all their subsystems up front (FastAPI, aiohttp, xmlschema, the migration) makes
# each command start ~5 s slower (1.4 s against 6.6 s, python -c 'import …', loaded machine).

from __future__ import annotations

import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

from bridge.cli.exits import ExitCode, exit_code_for_regninger, require_paths
from bridge.cli.options import ConfigOpt, EnvOpt, JsonOpt, SandboxStateDirOpt
from bridge.cli.settings import settings_or_exit
from bridge.config import ConfigError, Environment, Settings, load_settings
from bridge.core.model import (
    Behandlerkrav,
    Behandlerkravmelding,
    BehandlerkravmeldingListe,
    BehandlerkravmeldingStatus,
    Kontrollstatus,
    Meldingsstatus,
    PraksisListe,
    dump_json,
    to_jsonable,
)
from bridge.core.praksis import (
    PraksisResolutionError,
    Sender,
    describe,
    periods_text,
    resolve_praksis,
)
from bridge.flow.assembly import Connection, connect
from bridge.kuhr.auth import TokenError
from bridge.kuhr.client import KuhrError, KuhrUnavailable, SendInnResult
from bridge.kuhr.identity import identity_checks
from bridge.kuhr.jwe import JwksError
from bridge.kuhr.proxy import ProxyRule

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
# How far an embedded sandbox's clock moves per poll of `submit --wait`.
SANDBOX_ADVANCE_SECONDS = 30


def _out() -> Console:
    # Piped or captured output gets room for whole ids and dates instead of 80 columns.
    width = None if sys.stdout.isatty() else 400
    return Console(soft_wrap=True, highlight=False, width=width)


def _err(text: str) -> None:
    print(text, file=sys.stderr)


def _settings(
    config: Path | None,
    environment: Environment | None,
    state_dir: Path | None,
    **more: Any,
) -> Settings:
    overrides = {"kuhr.environment": environment, "kuhr.sandbox_state_dir": state_dir, **more}
    return settings_or_exit(config, overrides)


@contextmanager
def _connected(settings: Settings) -> Iterator[Connection]:
    """Connect, print the banner, and turn every remote failure into a message + exit 1."""
    standalone = settings.kuhr.sandbox_state_dir
    try:
        with connect(settings) as conn:
            _err(f"{conn.target.label} · {conn.target.api_url}")
            yield conn
    except ConfigError as exc:
        _err(f"configuration error: {exc}")
        raise typer.Exit(ExitCode.USAGE) from None
    except (TokenError, KuhrUnavailable) as exc:
        _err(f"error: {exc}")
        if settings.kuhr.environment is Environment.SANDBOX and standalone is not None:
            _err(
                "is the sandbox running? start it with "
                f"`bkm-bridge sandbox --state-dir {standalone}`"
            )
        raise typer.Exit(ExitCode.FAILED) from None
    except (KuhrError, JwksError) as exc:
        _err(f"error: {exc}")
        raise typer.Exit(ExitCode.FAILED) from None
    except httpx.HTTPError as exc:  # the sandbox admin API (clock) while waiting
        _err(f"error: sandbox admin API failed: {type(exc).__name__}")
        raise typer.Exit(ExitCode.FAILED) from None


def _print_json(data: Any) -> None:
    sys.stdout.write(dump_json(data) + "\n")


# --------------------------------------------------------------------------- praksis


def _praksis_table(liste: PraksisListe) -> Table:
    table = Table(title="Praksiser")
    for column in ("praksisId", "navn", "orgnr", "type", "status", "gyldige perioder"):
        table.add_column(column)
    for p in liste.praksiser:
        table.add_row(
            p.praksisId, p.navn or "", p.orgnr or "", p.type or "", p.status, periods_text(p)
        )
    return table


def praksis_command(
    json_output: JsonOpt = False,
    config: ConfigOpt = None,
    environment: EnvOpt = None,
    sandbox_state_dir: SandboxStateDirOpt = None,
) -> None:
    """List the praksiser registered for the authenticated actor at KUHR."""
    settings = _settings(config, environment, sandbox_state_dir)
    with _connected(settings) as conn:
        liste = conn.client.hent_praksiser()
    if json_output:
        _print_json(liste)
    elif not liste.praksiser:
        print("No praksis is registered for this actor.")
    else:
        _out().print(_praksis_table(liste))


# --------------------------------------------------------------------------- status


def _money(value: object) -> str:
    return "" if value is None else str(value)


def _overview_table(liste: BehandlerkravmeldingListe) -> Table:
    table = Table(title="Behandlerkravmeldinger")
    # Ids and times must stay whole (they are copied into other commands); the rest may wrap.
    table.add_column("behandlerkravmeldingId", no_wrap=True, min_width=36)
    table.add_column("mottatt", no_wrap=True, min_width=25)
    for column in (
        "melding", "kontroll", "utbetaling", "praksisId", "regninger", "krav", "utbetalt",
    ):  # fmt: skip
        table.add_column(column)
    for m in liste.behandlerkravmeldinger:
        table.add_row(
            m.behandlerkravmeldingId + (" (rebehandling)" if m.rebehandling else ""),
            m.mottattidspunkt.isoformat(timespec="seconds") if m.mottattidspunkt else "",
            m.meldingsstatus,
            m.kontrollstatus or "",
            m.utbetalingsstatus or "",
            m.praksisId or "",
            "" if m.antallRegninger is None else str(m.antallRegninger),
            _money(m.sumKravbelop),
            _money(m.sumUtbetaltbelop),
        )
    return table


def print_details(console: Console, m: BehandlerkravmeldingStatus) -> None:
    """One claim's status, each regning's result and every merknad, for a terminal."""
    title = m.behandlerkravmeldingId + (" (rebehandling)" if m.rebehandling else "")
    console.print(f"Behandlerkravmelding {title}")
    console.print(
        f"  meldingsstatus {m.meldingsstatus} · kontrollstatus {m.kontrollstatus or '-'} · "
        f"utbetalingsstatus {m.utbetalingsstatus or '-'}"
    )
    facts = [
        ("praksisId", m.praksisId),
        ("mottatt", m.mottattidspunkt.isoformat(timespec="seconds") if m.mottattidspunkt else None),
        ("innsendingId", m.innsendingId),
        ("vedtakId", m.vedtakId),
        ("antallRegninger", m.antallRegninger),
        ("sumKravbelop", m.sumKravbelop),
        ("sumUtbetaltbelop", m.sumUtbetaltbelop),
    ]
    shown = [f"{name} {value}" for name, value in facts if value not in (None, "")]
    if shown:
        console.print("  " + " · ".join(shown))
    innsending = m.innsending
    if innsending is not None and innsending.regninger:
        table = Table(title="Regninger")
        table.add_column("regningsnummer")
        table.add_column("guid", no_wrap=True, min_width=36)
        table.add_column("status")
        table.add_column("merknader")
        for r in innsending.regninger:
            table.add_row(
                r.regningsnummer or "",
                r.guid or "",
                r.status,
                ", ".join(x.nummer for x in r.merknader),
            )
        console.print(table)
        for r in innsending.regninger:
            for merknad in r.merknader:
                console.print(
                    f"  regning {r.regningsnummer}: merknad {merknad.nummer}: {merknad.tekst}"
                )
    if innsending is not None:
        for merknad in innsending.merknader:
            console.print(f"  innsending: merknad {merknad.nummer}: {merknad.tekst}")
    vedtak = m.vedtak
    if vedtak is not None:
        u = vedtak.utbetaling
        if u is not None and any(v is not None for v in (u.belop, u.utbetaltdato, u.kontonr)):
            console.print(
                f"  utbetaling: belop {_money(u.belop)} · dato {u.utbetaltdato or '-'} · "
                f"kontonr {u.kontonr or '-'} · kid {u.kid or '-'}"
            )
        for merknad in vedtak.merknader:
            console.print(f"  vedtak: merknad {merknad.nummer}: {merknad.tekst}")


def status_command(
    behandlerkravmelding_id: Annotated[
        str | None, typer.Argument(help="Show one claim's details instead of the overview.")
    ] = None,
    fom: Annotated[
        str | None, typer.Option("--fom", help="Received on or after (YYYY-MM-DD).")
    ] = None,
    tom: Annotated[
        str | None, typer.Option("--tom", help="Received on or before (YYYY-MM-DD).")
    ] = None,
    json_output: JsonOpt = False,
    config: ConfigOpt = None,
    environment: EnvOpt = None,
    sandbox_state_dir: SandboxStateDirOpt = None,
    local: Annotated[
        bool, typer.Option("--local", help="Show what this bridge's journal knows instead.")
    ] = False,
    state: Annotated[
        list[str] | None, typer.Option("--state", help="With --local: only these states.")
    ] = None,
    state_dir: Annotated[
        Path | None,
        typer.Option("--state-dir", help="With --local: the journal's folder.", file_okay=False),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", help="With --local: at most this many.")] = 200,
) -> None:
    """The overview of submitted claims, or one claim's control results and payment."""
    if local:
        from bridge.cli.watch import print_local_status

        settings = _settings(config, environment, None, **{"watch.state_dir": state_dir})
        print_local_status(settings, state, json_output, limit)
        return
    if behandlerkravmelding_id is not None and not _ID.fullmatch(behandlerkravmelding_id):
        raise typer.BadParameter(f"not a behandlerkravmeldingId: {behandlerkravmelding_id!r}")
    fom_date = _date_option(fom, "--fom")
    tom_date = _date_option(tom, "--tom")
    if behandlerkravmelding_id and (fom_date or tom_date):
        raise typer.BadParameter("--fom/--tom filter the overview; leave them out with an ID")
    settings = _settings(config, environment, sandbox_state_dir)
    with _connected(settings) as conn:
        if behandlerkravmelding_id:
            liste = conn.client.hent_behandlerkravmelding(behandlerkravmelding_id)
        else:
            liste = conn.client.hent_status(fom_date, tom_date)
    if json_output:
        _print_json(liste)
        return
    console = _out()
    if not liste.behandlerkravmeldinger:
        console.print("No behandlerkravmelding found.")
    elif behandlerkravmelding_id:
        for row in liste.behandlerkravmeldinger:
            print_details(console, row)
    else:
        console.print(_overview_table(liste))


def _date_option(value: str | None, name: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{name} must be a date like 2026-01-31, not {value!r}") from None


# --------------------------------------------------------------------------- submit


def _finished(rows: list[BehandlerkravmeldingStatus]) -> bool:
    return bool(rows) and all(
        r.kontrollstatus == Kontrollstatus.FERDIG_KONTROLLERT
        or r.meldingsstatus == Meldingsstatus.FEIL_I_MELDING
        for r in rows
    )


def _advance_sandbox_clock(conn: Connection, seconds: int) -> None:
    assert conn.target.admin_url is not None
    response = httpx.post(
        conn.target.admin_url.rstrip("/") + "/clock",
        json={"advance_seconds": seconds},
        timeout=10,
        trust_env=False,  # the sandbox is on loopback: never through a proxy
    )
    response.raise_for_status()


def wait_for_control(
    conn: Connection,
    behandlerkravmelding_id: str,
    *,
    timeout: float,
    on_poll: Callable[[BehandlerkravmeldingListe], None] | None = None,
) -> BehandlerkravmeldingListe | None:
    """Poll until every row is ferdig_kontrollert (or feil_i_melding); None on timeout.

    On an embedded sandbox the sandbox clock is advanced between polls, so claims finish
    their control in well under a second of real time."""
    fast = conn.target.embedded and conn.target.admin_url is not None
    deadline = time.monotonic() + timeout
    delay = 0.2 if fast else 2.0
    while True:
        liste = conn.client.hent_behandlerkravmelding(behandlerkravmelding_id)
        if on_poll is not None:
            on_poll(liste)
        if _finished(liste.behandlerkravmeldinger):
            return liste
        if time.monotonic() + delay > deadline:
            return None
        if fast:
            _advance_sandbox_clock(conn, SANDBOX_ADVANCE_SECONDS)
        time.sleep(delay)
        if not fast:
            delay = min(delay * 1.5, 15.0)


def _convert(file: Path) -> tuple[Behandlerkrav, Sender]:
    """The claim without a praksisId yet, and who the envelope says sent it."""
    from bridge.core.convert import ConvertContext
    from bridge.files.reading import convert_file

    result = convert_file(file, ConvertContext(praksis_id=None))
    for problem in result.problems:
        _err(problem.format(str(file)))
    if not result.ok or result.behandlerkrav is None:
        _err(f"{file}: not sent: the file has errors (see above)")
        raise typer.Exit(ExitCode.FAILED)
    envelope = result.envelope
    if envelope is None:
        return result.behandlerkrav, Sender()
    return result.behandlerkrav, Sender(orgnr=envelope.sender_orgnr, hpr=envelope.sender_hpr)


def _summary(details: BehandlerkravmeldingListe) -> str:
    row = details.behandlerkravmeldinger[-1]
    if row.meldingsstatus == Meldingsstatus.FEIL_I_MELDING:
        return "Control finished: feil_i_melding (the claim cannot be processed)."
    regninger = row.innsending.regninger if row.innsending else []
    counts = Counter(r.status for r in regninger)
    parts = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    return f"Control finished: {parts or 'no regninger'}."


def _print_submit(file: Path, result: SendInnResult, praksis_text: str) -> None:
    print(f"Sent {file.name} for praksis {praksis_text}")
    if result.already_received:
        print(
            "status: already received – an earlier attempt reached KUHR before the connection "
            "failed, and the retry was refused as DUPLIKAT_KRAV. The claim is at KUHR; find its "
            f"behandlerkravmeldingId with `bkm-bridge status --fom {date.today().isoformat()}`."
        )
        return
    if result.behandlerkravmeldingId:
        print(f"behandlerkravmeldingId: {result.behandlerkravmeldingId}")
    print(f"status: {result.status}")
    for feil in result.feilmeldinger or []:
        print(f"  {feil.kode}: {feil.melding}")


def submit_command(
    file: Annotated[Path, typer.Argument(help="Legacy BKM XML file.", dir_okay=False)],
    wait: Annotated[
        bool, typer.Option("--wait", help="Follow the claim until its control is finished.")
    ] = False,
    praksis_id: Annotated[
        str | None, typer.Option("--praksis-id", help="Send for this praksis (no lookup).")
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds --wait waits at most.", min=1)
    ] = 300.0,
    sandbox_speed: Annotated[
        float | None,
        typer.Option("--sandbox-speed", help="Clock speed of an embedded sandbox.", min=0.001),
    ] = None,
    json_output: JsonOpt = False,
    config: ConfigOpt = None,
    environment: EnvOpt = None,
    sandbox_state_dir: SandboxStateDirOpt = None,
) -> None:
    """Convert a legacy claim, choose its praksis, encrypt it and send it to KUHR."""
    require_paths([file])
    settings = _settings(
        config, environment, sandbox_state_dir, **{"kuhr.sandbox_speed": sandbox_speed}
    )
    krav, sender = _convert(file)
    with _connected(settings) as conn:
        try:
            resolution = resolve_praksis(
                krav,
                sender=sender,
                explicit=praksis_id,
                rules=settings.praksis.rules,
                folder=file.parent,
                praksiser=conn.client.hent_praksiser,
            )
        except PraksisResolutionError as exc:
            _err(f"{file}: PRAKSIS_MISSING: {exc}")
            raise typer.Exit(ExitCode.FAILED) from None
        melding = Behandlerkravmelding(praksisId=resolution.praksis_id, behandlerkrav=krav)
        result = conn.client.send_inn(melding)
        praksis_text = resolution.praksis_id + (
            f" ({resolution.how}: {resolution.praksis.navn})"
            if resolution.praksis is not None and resolution.praksis.navn
            else f" ({resolution.how})"
        )
        if not json_output:  # the id first, before any waiting that might fail
            _print_submit(file, result, praksis_text)
            sys.stdout.flush()
        details: BehandlerkravmeldingListe | None = None
        timed_out = False
        if result.accepted and result.behandlerkravmeldingId and wait:
            if conn.target.embedded:
                _err(
                    f"SANDBOX: advancing the embedded sandbox's clock {SANDBOX_ADVANCE_SECONDS} s "
                    "per poll (admin API) so the control finishes quickly"
                )
            details = wait_for_control(conn, result.behandlerkravmeldingId, timeout=timeout)
            timed_out = details is None
    if json_output:
        out: dict[str, Any] = {"praksisId": resolution.praksis_id, "praksis": resolution.how}
        out["result"] = to_jsonable(result)
        if details is not None:
            out["details"] = to_jsonable(details)
        _print_json(out)
    elif details is not None:
        console = _out()
        for row in details.behandlerkravmeldinger:
            print_details(console, row)
        console.print(_summary(details))
    if not result.accepted:
        raise typer.Exit(ExitCode.FAILED)
    if timed_out:
        _err(
            f"control not finished after {timeout:.0f} s; follow it with "
            f"`bkm-bridge status {result.behandlerkravmeldingId}`"
        )
        raise typer.Exit(ExitCode.FAILED)
    if details is not None:
        rows = details.behandlerkravmeldinger
        if any(r.meldingsstatus == Meldingsstatus.FEIL_I_MELDING for r in rows):
            raise typer.Exit(ExitCode.FAILED)
        latest = rows[-1].innsending if rows else None  # the last row: a rebehandling's result
        statuses = [r.status for r in latest.regninger] if latest is not None else []
        code = exit_code_for_regninger(statuses)
        if code:
            _err(
                f"{file}: {statuses.count('avvist')} of {len(statuses)} regning(er) avvist; "
                "see the merknader above, correct the claim and send it again"
            )
            raise typer.Exit(code)


# --------------------------------------------------------------------------- config check


def _origin_line(settings: Settings, dotted: str, label: str, value: object) -> str:
    return f"  {label}: {value} (from {settings.origin(dotted)})"


def _show_config(settings: Settings) -> None:
    a, k = settings.auth, settings.kuhr
    print("Configuration")
    print(f"  file: {settings.config_file or '(none)'}")
    print(_origin_line(settings, "kuhr.environment", "environment", k.environment.value))
    print(_origin_line(settings, "kuhr.proxy", "proxy", ProxyRule(k.proxy).describe()))
    if k.environment is Environment.SANDBOX:
        where = k.sandbox_state_dir or "embedded (started for this command)"
        print(_origin_line(settings, "kuhr.sandbox_state_dir", "sandbox", where))
        print(_origin_line(settings, "auth.method", "auth", a.method.value))
        return
    print(_origin_line(settings, "auth.method", "auth", a.method.value))
    if a.method.value == "helseid":
        print(_origin_line(settings, "auth.grant", "grant", a.grant))
    print(_origin_line(settings, "auth.client_id", "client_id", a.client_id or "(not set)"))
    if a.pkcs12_file:
        print(_origin_line(settings, "auth.pkcs12_file", "certificate", a.pkcs12_file))
        if a.pkcs12_password is not None:
            print(_origin_line(settings, "auth.pkcs12_password", "certificate password", "set"))
        elif a.pkcs12_password_file is not None:
            print(
                _origin_line(
                    settings, "auth.pkcs12_password_file", "password file", a.pkcs12_password_file
                )
            )
    elif a.key_file:
        print(_origin_line(settings, "auth.key_file", "signing key", a.key_file))
    else:
        print("  signing key: (not set)")
    if a.key_id:
        print(_origin_line(settings, "auth.key_id", "key id", a.key_id))
    if a.consumer_org:
        print(_origin_line(settings, "auth.consumer_org", "on behalf of orgnr", a.consumer_org))


def _check(name: str, run: Callable[[], str], fix: str) -> bool:
    try:
        detail = run()
    except (TokenError, KuhrError, JwksError, ConfigError) as exc:
        print(f"[FAIL] {name}: {exc}")
        print(f"       fix: {getattr(exc, 'hint', '') or fix}")
        return False
    except httpx.HTTPError as exc:
        print(f"[FAIL] {name}: {type(exc).__name__}")
        print(f"       fix: {fix}")
        return False
    print(f"[ OK ] {name}: {detail}")
    return True


def _report_identity(checks: dict[str, dict[str, Any]]) -> bool:
    """The login and key lines of `config check` (bridge.kuhr.identity); False on a FAIL."""
    ok = True
    login = checks.get("login")
    if login is not None:
        what = login.get("who", "")
        if login.get("expires_at"):
            what += f"; lasts until {login['expires_at']}"
        if not login["ok"]:
            print(f"[FAIL] login: {login.get('error')}")
            print("       fix: bkm-bridge login")
            ok = False
        elif login.get("warning"):
            print(f"[WARN] login: {what}: {login['warning']}")
        else:
            print(f"[ OK ] login: {what}")
    keys = checks.get("keys")
    if keys is not None:
        for key in keys["keys"]:
            until = "no end date"
            if "expires_at" in key:
                until = f"valid until {key['expires_at'][:10]} ({key['days_left']} days)"
            use = " (in use)" if key["key"] == keys.get("in_use") else ""
            state = "[ OK ]" if key["ok"] and "warning" not in key else "[WARN]"
            if not key["ok"]:
                state = "[FAIL]" if not keys["ok"] else "[WARN]"
            print(f"{state} key {key['key']}{use}: {until}")
        if not keys["ok"]:
            print(f"       fix: {keys.get('error')}")
            ok = False
        elif keys.get("warning"):
            print(f"[WARN] keys: {keys['warning']}")
    return ok


def _report_local(settings: Settings) -> list[str]:
    """The watch settings and the local checks (bridge.daemon.preflight); the failed names."""
    from bridge.daemon.preflight import local_checks, watch_lines
    from bridge.flow.precheck import wall_clock

    print("Watch")
    for line in watch_lines(settings):
        print(f"  {line}")
    failed = []
    for check in local_checks(settings, now=wall_clock()):
        mark = {"ok": "[ OK ]", "warn": "[WARN]", "fail": "[FAIL]"}[check.level]
        print(f"{mark} {check.name}: {check.detail}")
        if check.level != "ok" and check.fix:
            print(f"       fix: {check.fix}")
        if check.failed:
            failed.append(check.name)
    return failed


def config_check_command(
    config: ConfigOpt = None,
    environment: EnvOpt = None,
    sandbox_state_dir: SandboxStateDirOpt = None,
) -> None:
    """Check that the setup can run: settings, folders, state and log, HTTP port, takst
    table, and end to end at KUHR: a token, KUHR's encryption key, the praksis list, keys."""
    try:
        settings = load_settings(
            config, {"kuhr.environment": environment, "kuhr.sandbox_state_dir": sandbox_state_dir}
        )
    except ConfigError as exc:
        print(f"[FAIL] configuration: {exc}")
        raise typer.Exit(ExitCode.USAGE) from None
    _show_config(settings)
    failed = _report_local(settings)
    ok = not failed
    try:
        with connect(settings) as conn:
            target = conn.target
            print(f"Target: {target.label} · {target.api_url}")
            print(f"  token service: {target.token_url} (scope {target.scope})")

            def token() -> str:
                t = conn.tokens.token_sync()
                return (
                    f"{conn.tokens.kind} issued a {t.token_type} token "
                    f"(scope {t.scope or target.scope}, valid {t.lifetime:.0f} s)"
                )

            def jwks() -> str:
                data = conn.client.hent_jwks()
                kids = [str(key.get("kid")) for key in data.get("keys", [])]
                key = conn.client.encryption_key()
                return (
                    f"{len(kids)} key(s) ({', '.join(kids)}); encrypting for kid {key.get('kid')}"
                )

            def praksis() -> str:
                liste = conn.client.hent_praksiser()
                if not liste.praksiser:
                    raise KuhrError("KUHR lists no praksis for this actor")
                return f"{len(liste.praksiser)} praksis(er): " + "; ".join(
                    describe(p) for p in liste.praksiser
                )

            remote = _check("token", token, "check auth.client_id, the key and its registration")
            remote = remote and _check(
                "JWKS", jwks, "check kuhr.api_url and that the token's scope is granted"
            )
            remote = remote and _check(
                "praksis list",
                praksis,
                "register a praksis for this organisation/behandler with Helfo",
            )
            remote = _report_identity(identity_checks(conn.tokens, every_key=True)) and remote
            ok = ok and remote
    except ConfigError as exc:
        print(f"[FAIL] configuration: {exc}")
        raise typer.Exit(ExitCode.USAGE) from None
    except (TokenError, KuhrError, JwksError) as exc:
        print(f"[FAIL] connection: {exc}")
        raise typer.Exit(ExitCode.FAILED) from None
    if not ok:
        names = f": {', '.join(failed)}" if failed else ""
        print(f"Not ready: some checks failed{names} (see [FAIL] above).")
        raise typer.Exit(ExitCode.FAILED)
    print("All checks passed.")


# --------------------------------------------------------------------------- registration


def register(app: typer.Typer) -> None:
    app.command("praksis")(praksis_command)
    app.command("submit")(submit_command)
    app.command("status")(status_command)
    config_app = typer.Typer(help="Inspect and check the configuration.", no_args_is_help=True)
    config_app.command("check")(config_check_command)
    app.add_typer(config_app, name="config")
