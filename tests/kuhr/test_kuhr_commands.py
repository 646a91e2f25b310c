"""`bkm-bridge praksis | submit | status | config check` as a user runs them, against an
embedded sandbox (no configuration at all) or a standalone one (`--sandbox-state-dir`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
from support.kuhr import FIXTURES
from typer.testing import CliRunner

from bridge.cli.kuhr import register
from bridge.sandbox.keys import KeyMaterial
from bridge.sandbox.server import RunningSandbox, start_sandbox

SEED_XML = FIXTURES / "seed-workflow.xml"


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


@pytest.fixture(autouse=True)
def _no_user_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.upper().startswith("BKM_BRIDGE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def standalone(
    sandbox_keys: KeyMaterial, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningSandbox]:
    """A standalone sandbox whose actor has a second praksis for orgnr 999999999 valid from
    2026-01-01 (so automatic resolution of the seed claim is ambiguous there)."""
    state = tmp_path_factory.mktemp("sandbox-state")
    config = state / "sandbox.toml"
    config.write_text(
        """
[[actors]]
name = "klinikk"
orgnr = "999999999"

[[actors.praksiser]]
praksisId = "2000000001"
navn = "Kurbadet Helsesenter"
orgnr = "999999999"
type = "FALE"
status = "ok"
gyldigePerioder = [{ fraOgMedDato = "2020-01-01", tilOgMedDato = "2028-07-15" }]

[[actors.praksiser]]
praksisId = "2000000002"
navn = "Kurbadet Fysioterapi"
orgnr = "999999999"
type = "FYSI"
status = "ok"
gyldigePerioder = [{ fraOgMedDato = "2026-01-01" }]
""",
        encoding="utf-8",
    )
    with start_sandbox(keys=sandbox_keys, state_dir=state, config=config) as running:
        yield running


def _invoke(app: typer.Typer, *args: str | Path) -> Any:
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_praksis_table_on_the_embedded_sandbox(app: typer.Typer) -> None:
    result = _invoke(app, "praksis")
    assert result.exit_code == 0, result.stderr
    assert "SANDBOX (embedded)" in result.stderr
    lines = result.stdout.splitlines()
    kurbadet = next(line for line in lines if "1004326178" in line)
    for text in ("Kurbadet Helsesenter", "999999999", "FALE", "ok", "2020-01-01–2028-07-15"):
        assert text in kurbadet
    assert any("1004326468" in line and "Sentrum Legevakt" in line for line in lines)


def test_praksis_json(app: typer.Typer) -> None:
    result = _invoke(app, "praksis", "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)  # stdout is pure JSON; the banner is on stderr
    assert [p["praksisId"] for p in data["praksiser"]] == ["1004326178", "1004326468"]
    assert data["praksiser"][0]["gyldigePerioder"] == [
        {"fraOgMedDato": "2020-01-01", "tilOgMedDato": "2028-07-15"}
    ]


def test_submit_wait_prints_the_seed_results(app: typer.Typer) -> None:
    result = _invoke(app, "submit", SEED_XML, "--wait")
    assert result.exit_code == 1, result.stderr  # regninger 4 and 6 avvist: someone must act
    assert "2 of 3 regning(er) avvist" in result.stderr
    out = result.stdout
    assert "for praksis 1004326178 (automatic: Kurbadet Helsesenter)" in out
    assert "status: mottatt" in out
    assert "kontrollstatus ferdig_kontrollert" in out
    rows = {line.split()[1]: line for line in out.splitlines() if line.startswith("│ ")}
    assert "avvist" in rows["4"] and "470" in rows["4"]
    assert "godkjent" in rows["5"]
    assert "avvist" in rows["6"] and "766" in rows["6"]
    assert "regning 6: merknad 766: Enkeltregning er datert frem i tid" in out
    assert "Control finished: 2 avvist, 1 godkjent." in out
    assert "advancing the embedded sandbox's clock" in result.stderr


def test_submit_wait_json_matches_the_seed(app: typer.Typer) -> None:
    result = _invoke(app, "submit", SEED_XML, "--wait", "--json")
    assert result.exit_code == 1, result.stderr  # two regninger avvist
    data = json.loads(result.stdout)
    assert data["praksisId"] == "1004326178"
    assert data["result"]["status"] == "mottatt"
    [row] = data["details"]["behandlerkravmeldinger"]
    assert row["behandlerkravmeldingId"] == data["result"]["behandlerkravmeldingId"]
    got = [
        (r["regningsnummer"], r["status"], [m["nummer"] for m in r["merknader"]])
        for r in row["innsending"]["regninger"]
    ]
    assert got == [("4", "avvist", ["470"]), ("5", "godkjent", []), ("6", "avvist", ["766"])]


def test_submit_without_wait(app: typer.Typer) -> None:
    result = _invoke(app, "submit", SEED_XML, "--praksis-id", "1004326178")
    assert result.exit_code == 0, result.stderr
    assert "for praksis 1004326178 (explicit)" in result.stdout
    assert "behandlerkravmeldingId: " in result.stdout
    assert "status: mottatt" in result.stdout
    assert "Regninger" not in result.stdout


def test_submit_unknown_praksis_prints_feilmeldinger(app: typer.Typer) -> None:
    result = _invoke(app, "submit", SEED_XML, "--praksis-id", "1111111111")
    assert result.exit_code == 1
    assert "status: feil_i_melding" in result.stdout
    assert "UKJENT_PRAKSISID: Oppgitt praksisId 1111111111 finnes ikke" in result.stdout


def test_submit_bad_file_sends_nothing(app: typer.Typer, tmp_path: Path) -> None:
    bad = tmp_path / "broken.xml"
    bad.write_text("<BehandlerKrav><Enkeltregning>", encoding="utf-8")
    result = _invoke(app, "submit", bad)
    assert result.exit_code == 1
    assert f"{bad}:" in result.stderr and "XML_MALFORMED" in result.stderr
    assert "not sent" in result.stderr
    assert "SANDBOX" not in result.stderr  # nothing was started, nothing sent


def test_submit_missing_file_is_a_usage_error(app: typer.Typer, tmp_path: Path) -> None:
    assert _invoke(app, "submit", tmp_path / "nope.xml").exit_code == 2


def test_ambiguous_praksis_lists_the_candidates(
    app: typer.Typer, standalone: RunningSandbox
) -> None:
    state = standalone.info_path.parent
    result = _invoke(app, "submit", SEED_XML, "--sandbox-state-dir", state)
    assert result.exit_code == 1
    err = result.stderr
    assert "PRAKSIS_MISSING" in err
    assert "2 praksiser of orgnr 999999999" in err
    assert "2000000001  Kurbadet Helsesenter  orgnr 999999999  type FALE" in err
    assert "2000000002  Kurbadet Fysioterapi  orgnr 999999999  type FYSI" in err
    assert "--praksis-id" in err


def test_rule_in_config_file_resolves_the_ambiguity(
    app: typer.Typer, standalone: RunningSandbox, tmp_path: Path
) -> None:
    config = tmp_path / "bkm-bridge.toml"
    config.write_text(
        f"""
[kuhr]
sandbox_state_dir = "{standalone.info_path.parent}"

[[praksis.rules]]
sender_orgnr = "999999999"
praksis_id = "2000000002"
""",
        encoding="utf-8",
    )
    httpx.post(standalone.info["admin_url"] + "/reset", timeout=10)
    result = _invoke(app, "submit", SEED_XML, "--config", config)
    assert result.exit_code == 0, result.stderr
    assert "for praksis 2000000002 (rule 1)" in result.stdout
    assert "SANDBOX (standalone at http://127.0.0.1:" in result.stderr


def test_status_overview_and_details(app: typer.Typer, standalone: RunningSandbox) -> None:
    state = standalone.info_path.parent
    httpx.post(standalone.info["admin_url"] + "/reset", timeout=10)
    sent = _invoke(
        app, "submit", SEED_XML, "--praksis-id", "2000000001", "--sandbox-state-dir", state
    )
    assert sent.exit_code == 0, sent.stderr
    melding_id = sent.stdout.split("behandlerkravmeldingId: ")[1].split()[0]
    httpx.post(standalone.info["admin_url"] + "/clock", json={"advance_seconds": 60}, timeout=10)

    overview = _invoke(app, "status", "--sandbox-state-dir", state)
    assert overview.exit_code == 0, overview.stderr
    lines = [line for line in overview.stdout.splitlines() if melding_id in line]
    assert len(lines) == 1, overview.stdout
    [line] = lines
    for text in ("2026-01-06T15:30:00+01:00", "ferdig_behandlet", "ferdig_kontrollert",
                 "2000000001", "434.00"):  # fmt: skip
        assert text in line

    details = _invoke(app, "status", melding_id, "--sandbox-state-dir", state)
    assert details.exit_code == 0
    assert f"Behandlerkravmelding {melding_id}" in details.stdout
    assert "regning 4: merknad 470:" in details.stdout

    as_json = _invoke(app, "status", "--json", "--fom", "2026-01-06", "--sandbox-state-dir", state)
    ids = [
        m["behandlerkravmeldingId"] for m in json.loads(as_json.stdout)["behandlerkravmeldinger"]
    ]
    assert ids == [melding_id]
    later = _invoke(app, "status", "--json", "--fom", "2026-01-07", "--sandbox-state-dir", state)
    assert json.loads(later.stdout) == {"behandlerkravmeldinger": []}


def test_status_usage_errors(app: typer.Typer) -> None:
    bad_date = _invoke(app, "status", "--fom", "06.01.2026")
    assert bad_date.exit_code == 2
    assert "--fom must be a date like 2026-01-31" in bad_date.output
    assert _invoke(app, "status", "some-id", "--fom", "2026-01-01").exit_code == 2


def test_status_of_unknown_id_is_a_remote_failure(
    app: typer.Typer, standalone: RunningSandbox
) -> None:
    state = standalone.info_path.parent
    result = _invoke(app, "status", "0000-unknown", "--sandbox-state-dir", state)
    assert result.exit_code == 1
    assert "HTTP 404" in result.stderr


def test_missing_standalone_sandbox_says_how_to_start_it(app: typer.Typer, tmp_path: Path) -> None:
    result = _invoke(app, "praksis", "--sandbox-state-dir", tmp_path)
    assert result.exit_code == 2
    assert "bkm-bridge sandbox --state-dir" in result.stderr


def test_config_check_passes_on_the_sandbox(app: typer.Typer) -> None:
    result = _invoke(app, "config", "check")
    assert result.exit_code == 0, result.stdout
    out = result.stdout
    assert "environment: sandbox (from default)" in out
    assert "[ OK ] token: Maskinporten issued a Bearer token" in out
    assert "[ OK ] JWKS: 1 key(s)" in out
    assert "[ OK ] praksis list: 2 praksis(er)" in out
    assert out.rstrip().endswith("All checks passed.")


def test_config_check_failure_says_what_to_fix_and_hides_secrets(
    app: typer.Typer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jwcrypto import jwk

    key_file = tmp_path / "maskinporten.pem"
    key_file.write_bytes(
        jwk.JWK.generate(kty="RSA", size=2048).export_to_pem(private_key=True, password=None)
    )
    config = tmp_path / "bkm-bridge.toml"
    config.write_text(
        f"""
[kuhr]
environment = "dev"
max_attempts = 1

[auth]
client_id = "my-client"
key_file = "{key_file.name}"
token_url = "http://127.0.0.1:9/token"
""",
        encoding="utf-8",
    )
    monkeypatch.setenv("BKM_BRIDGE_AUTH__KEY_ID", "dev-key-2026")
    result = _invoke(app, "config", "check", "--config", config)
    assert result.exit_code == 1
    out = result.stdout
    assert f"file: {config}" in out
    assert f"environment: dev (from file {config})" in out
    assert f"signing key: {key_file} (from file {config})" in out
    assert "key id: dev-key-2026 (from env BKM_BRIDGE_AUTH__KEY_ID)" in out
    assert "Target: DEV · https://api-preprod.helserefusjon.no/kuhr/krav/v1" in out
    assert "[FAIL] token: cannot reach http://127.0.0.1:9/token" in out
    assert "fix: check network access to http://127.0.0.1:9/token" in out
    assert "BEGIN" not in out and "PRIVATE" not in out


def test_config_check_never_prints_the_certificate_password(
    app: typer.Typer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BKM_BRIDGE_AUTH__PKCS12_PASSWORD", "hemmelig-passord-123")
    p12 = tmp_path / "virksomhet.p12"
    p12.write_bytes(b"not really pkcs12")
    result = _invoke(
        app, "config", "check", "--env", "prod",
        "--config", _write(tmp_path / "c.toml", f'[auth]\nclient_id = "c"\npkcs12_file = "{p12}"'),
    )  # fmt: skip
    assert result.exit_code == 2  # a setting that cannot be used
    assert "hemmelig-passord-123" not in result.output
    assert "certificate password: set (from env BKM_BRIDGE_AUTH__PKCS12_PASSWORD)" in result.stdout
    assert "environment: prod (from flag)" in result.stdout
    assert "[FAIL] configuration: cannot open PKCS#12 file" in result.stdout


def test_invalid_config_is_a_usage_error(app: typer.Typer, tmp_path: Path) -> None:
    config = _write(tmp_path / "bad.toml", '[kuhr]\nenvironment = "staging"\n')
    result = _invoke(app, "praksis", "--config", config)
    assert result.exit_code == 2
    assert "configuration error" in result.stderr and "environment" in result.stderr
    check = _invoke(app, "config", "check", "--config", config)
    assert check.exit_code == 2
    assert "[FAIL] configuration" in check.stdout


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_the_installed_cli_runs_submit_wait(tmp_path: Path) -> None:
    """The real entry point (`python -m bridge`), as a separate process, no configuration."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("BKM_BRIDGE_")}
    done = subprocess.run(
        [sys.executable, "-m", "bridge", "submit", str(SEED_XML), "--wait"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr  # two of the seed's regninger are avvist
    assert "SANDBOX (embedded)" in done.stderr
    assert "Control finished: 2 avvist, 1 godkjent." in done.stdout


def test_stopped_standalone_sandbox_says_how_to_start_it(
    app: typer.Typer, sandbox_keys: KeyMaterial, tmp_path: Path
) -> None:
    with start_sandbox(keys=sandbox_keys, state_dir=tmp_path / "state"):
        pass  # sandbox.json stays behind, nothing listens any more
    result = _invoke(app, "praksis", "--sandbox-state-dir", tmp_path / "state")
    assert result.exit_code == 1
    assert "cannot reach http://127.0.0.1:" in result.stderr
    assert "is the sandbox running?" in result.stderr
    assert "Traceback" not in result.output
