"""The pre-control's rules, each against a takst table synced from the sandbox's open data
endpoints over loopback (the sandbox is stopped before the checks run: they work offline from
the cache), and the `precheck` and `convert` commands."""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import typer
from support.paths import FIXTURES
from typer.testing import CliRunner

from bridge.cli.precheck import register
from bridge.core.convert import ConvertContext
from bridge.core.model import Behandlerkravmelding
from bridge.core.precheck import Finding, Mode, PrecheckOutcome, fagomraade_for, precheck_melding
from bridge.core.problems import Severity
from bridge.core.takster import TakstTable
from bridge.files.reading import convert_file
from bridge.files.takstcache import cache_file, load_table, sync
from bridge.flow.precheck import Prechecker
from bridge.kuhr.opendata import OpenDataClient
from bridge.sandbox import start_sandbox
from bridge.sandbox.keys import generate_keys

SEED = FIXTURES / "seed-arbeidsflyt.xml"
SEED_CORRECTED = FIXTURES / "seed-arbeidsflyt-rettet.xml"
SEED_MOMENT = datetime.fromisoformat("2026-01-06T15:30:00+01:00")
FNR = "47908702367"
OTHER_FNR = "47908500667"


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The sandbox's open data (with the test rows of sandbox-takster.toml), synced once."""
    directory = tmp_path_factory.mktemp("opendata")
    config = FIXTURES / "opendata" / "sandbox-takster.toml"
    with (
        start_sandbox(keys=generate_keys(), config=config) as running,
        OpenDataClient(running.info["opne_data_url"]) as client,
    ):
        sync(client, cache_file(directory, "sandbox"), fagomraader=["LE", "TH"], now=SEED_MOMENT)
    yield directory  # the sandbox is gone: everything below runs offline


@pytest.fixture(scope="module")
def table(cache_dir: Path) -> TakstTable:
    return load_table(cache_file(cache_dir, "sandbox"))


@pytest.fixture(autouse=True)
def _no_user_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.upper().startswith("BKM_BRIDGE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def regning(
    nr: str,
    when: str,
    *takster: tuple[str, str] | tuple[str, str, int],
    fnr: str = FNR,
    diagnoser: tuple[str, ...] = ("L73",),
    belop: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    rows = [{"kode": t[0], "belop": t[1], "antall": t[2] if len(t) > 2 else 1} for t in takster]
    total = belop if belop is not None else str(sum(float(t[1]) for t in takster))
    return {
        "guid": str(uuid.uuid4()),
        "regningsnummer": nr,
        "tidspunkt": when,
        "pasient": {"identifikasjon": {"id": fnr, "type": "FNR"}},
        "diagnoser": [{"kodeverk": "2.16.578.1.12.4.1.1.7170", "kode": d} for d in diagnoser],
        "takster": rows,
        "belop": total,
        **extra,
    }


def melding(*regninger: dict[str, Any]) -> Behandlerkravmelding:
    return Behandlerkravmelding.model_validate(
        {
            "praksisId": "1004326178",
            "behandlerkrav": {
                "regninger": list(regninger),
                "antallRegninger": len(regninger),
                "belop": "0",
            },
        }
    )


def check(table: TakstTable, *regninger: dict[str, Any], fag: str | None = "LE") -> list[Finding]:
    return precheck_melding(melding(*regninger), table, now=SEED_MOMENT, praksis_fagomraade=fag)


def codes(findings: list[Finding]) -> list[tuple[str | None, str]]:
    return [(f.regningsnummer, f.code) for f in findings]


# --------------------------------------------------------------------------- the seed


def seed_krav(path: Path = SEED):
    result = convert_file(path, ConvertContext())
    assert result.ok and result.behandlerkrav is not None
    return result.behandlerkrav


def test_the_seed_workflow_claim_at_the_seeds_moment(table: TakstTable) -> None:
    findings = precheck_melding(
        seed_krav(), table, now=SEED_MOMENT, praksis_fagomraade=fagomraade_for("FALE")
    )
    assert codes(findings) == [
        ("4", "ENKEL_KONTAKT_NEAR_KONSULTASJON"),
        ("6", "REGNING_IN_FUTURE"),
    ]
    four, six = findings
    assert four.merknad == "470" and four.takstkode == "1bd"
    assert four.guid == "f0bcd358-0676-49c7-94f8-c055c4b21332"
    assert "within 60 minutes of consultation takst 2ad on regning 5" in four.message
    assert six.merknad == "766"
    assert "06.02.2026 15:00" in six.message and "06.01.2026 15:30" in six.message
    for finding in findings:
        assert FNR not in finding.message and OTHER_FNR not in finding.message
        assert "L73" not in finding.message and "U71" not in finding.message
    # Warnings by default: nothing blocks.
    outcome = PrecheckOutcome(findings, Mode.WARN)
    assert not outcome.blocks
    assert all(p.severity is Severity.WARNING for p in outcome.problems())


def test_the_corrected_seed_claim_is_clean(table: TakstTable) -> None:
    krav = seed_krav(SEED_CORRECTED)
    assert precheck_melding(krav, table, now=SEED_MOMENT, praksis_fagomraade="LE") == []


def test_a_clean_claim_has_no_findings(table: TakstTable) -> None:
    clean = check(
        table,
        regning("1", "2026-01-06T09:00:00+01:00", ("2ad", "15.00"), ("2cd", "255"), ("L1", "26")),
        regning("2", "2026-01-06T11:00:00+01:00", ("1bd", "74"), fnr=OTHER_FNR),
        regning("3", "2026-01-06T12:00:00+01:00", ("R1", "100", 3), belop="175.00"),
        regning("4", "2026-01-06T12:30:00+01:00", ("D1", "30"), ("2ae", "70"), ("K1", "20")),
        regning("5", "2026-01-06T13:00:00+01:00", ("X1", "100"), ("L1", "26")),
        regning("6", "2026-01-06T14:00:00+01:00", ("X4", "40"), ("X2", "50")),
        regning("7", "2026-01-06T14:30:00+01:00", ("2ad", "207"), arsakFriEgenandel="F"),
    )
    assert clean == []


# --------------------------------------------------------------------------- each rule


def test_a_regning_dated_in_the_future(table: TakstTable) -> None:
    findings = check(
        table,
        regning("1", "2026-01-06T15:31:00+01:00", ("1i", "64")),
        regning("2", "2026-01-06T15:30:00+01:00", ("1i", "64")),
    )
    assert codes(findings) == [("1", "REGNING_IN_FUTURE")]


def test_enkel_kontakt_near_a_konsultasjon(table: TakstTable) -> None:
    consultation = regning("10", "2026-01-06T10:00:00+01:00", ("2ad", "15"))
    near = regning("11", "2026-01-06T09:00:00+01:00", ("1bd", "74"))
    far = regning("12", "2026-01-06T11:01:00+01:00", ("1bk", "82"))
    other_patient = regning("13", "2026-01-06T10:10:00+01:00", ("1be", "82"), fnr=OTHER_FNR)
    findings = check(table, consultation, near, far, other_patient)
    assert codes(findings) == [("11", "ENKEL_KONTAKT_NEAR_KONSULTASJON")]
    assert "regning 10" in findings[0].message


def test_unknown_takst_code(table: TakstTable) -> None:
    findings = check(
        table,
        regning("1", "2026-01-06T09:00:00+01:00", ("9zz", "10"), ("2AD", "15"), ("3ad", "435")),
    )
    assert codes(findings) == [("1", "TAKST_UNKNOWN")] * 3
    unknown, case, other_fag = (f.message for f in findings)
    assert unknown == "Regning 1: takst 9zz is not a takst of fagområde LE."
    assert "did you mean 2ad?" in case
    assert "(it is one of fagområde TH)" in other_fag
    # With no fagområde known, a code of any fagområde counts.
    dental = regning("2", "2026-01-06T09:00:00+01:00", ("3ad", "435"))
    assert check(table, dental, fag=None) == []


def test_takst_not_valid_on_the_treatment_date(table: TakstTable) -> None:
    findings = check(
        table,
        regning("1", "2024-06-30T10:00:00+02:00", ("1bd", "71")),
        regning("2", "2023-03-01T10:00:00+01:00", ("1ad", "62")),
        regning("3", "2025-06-30T10:00:00+02:00", ("1bd", "71")),  # the older period
    )
    assert codes(findings) == [("1", "TAKST_NOT_VALID_ON_DATE"), ("2", "TAKST_NOT_VALID_ON_DATE")]
    assert findings[0].message == (
        "Regning 1: takst 1bd was not valid on 30.06.2024 (valid 01.07.2024–30.06.2025, "
        "01.07.2025–)."
    )
    assert "01.07.2016–30.06.2022" in findings[1].message


def test_amount_different_from_the_tables_refusjon(table: TakstTable) -> None:
    findings = check(
        table,
        regning("1", "2026-01-06T09:00:00+01:00", ("2ad", "20.00")),
        regning("2", "2025-01-15T09:00:00+01:00", ("2ad", "15.00")),  # refusjon was 14 then
        regning("3", "2026-01-06T09:30:00+01:00", ("2ad", "200"), arsakFriEgenandel="F"),
    )
    assert codes(findings) == [
        ("1", "TAKST_AMOUNT_DIFFERS"),
        ("2", "TAKST_AMOUNT_DIFFERS"),
        ("3", "TAKST_AMOUNT_DIFFERS"),
    ]
    assert findings[0].message == (
        "Regning 1: takst 2ad is claimed at 20.00, but its refusjon on 06.01.2026 is 15.00."
    )
    assert "its refusjon on 15.01.2025 is 14.00" in findings[1].message
    assert "(207.00 with fri egenandel)" in findings[2].message


def test_antall_and_repetition_rules(table: TakstTable) -> None:
    # R1: refusjon 100, repetitions at 50 %, from the 2nd repetition at 25 %, at most 2.
    findings = check(
        table,
        regning("1", "2026-01-06T09:00:00+01:00", ("R1", "100", 3), belop="300"),
        regning("2", "2026-01-06T09:10:00+01:00", ("R1", "100", 2), belop="150"),
        regning("3", "2026-01-06T09:20:00+01:00", ("R1", "100", 4), belop="400"),
        regning("4", "2026-01-06T09:30:00+01:00", ("2cd", "255", 3), ("2ad", "15"), belop="780"),
    )
    assert codes(findings) == [
        ("1", "REGNING_AMOUNT_DIFFERS"),
        ("3", "TAKST_REPETITIONS_EXCEEDED"),
        ("3", "REGNING_AMOUNT_DIFFERS"),
    ]
    assert findings[0].message == (
        "Regning 1: its amount is 300.00, but its takster come to 175.00 (repetitions at the "
        "table's repetisjonsprosent)."
    )
    assert "used 4 times, but it may be repeated at most 2 times" in findings[1].message
    assert "its amount is 400.00, but its takster come to 200.00" in findings[2].message


def test_refusjon_0_is_a_tannleges_egenandel_report_not_an_amount_that_differs(
    table: TakstTable,
) -> None:
    # The mapping table (behandlerkrav.regninger.belop): tannleger and tannpleiere without
    # direkte oppgjør report egenandeler with Refusjon 0; the takster keep their values.
    report = regning("101", "2026-01-05T09:00:00+01:00", ("3ad", "435"), diagnoser=(), belop="0")
    assert check(table, report, fag="TH") == []
    assert check(table, report, fag=None) == []  # the praksis type is not known
    # A claim of 435 with a regning of 0 is still found, also for a tannlege.
    half = regning("102", "2026-01-05T09:30:00+01:00", ("3ad", "435"), diagnoser=(), belop="200")
    assert codes(check(table, half, fag="TH")) == [("102", "REGNING_AMOUNT_DIFFERS")]
    # Elsewhere a regning of 0 is not a documented report: found, and the sentence says why.
    lege = regning("103", "2026-01-06T09:00:00+01:00", ("2ad", "15"), belop="0")
    findings = check(table, lege, fag="LE")
    assert codes(findings) == [("103", "REGNING_AMOUNT_DIFFERS")]
    assert findings[0].message.endswith(
        "; a regning of 0 reports egenandeler only for tannlege and tannpleier."
    )


def test_block_mode_lets_a_tannleges_egenandel_report_through(table: TakstTable) -> None:
    checker = Prechecker(Mode.BLOCK, lambda: table, clock=lambda: SEED_MOMENT)
    krav = seed_krav(FIXTURES / "tannlege-egenandel.xml")
    assert krav.regninger[0].belop == 0 and krav.belop == 0
    outcome = checker.check(krav, now=checker.now_sync(), praksistype="TANN")
    assert outcome.findings == [] and not outcome.blocks
    # The same file from a fastlege's praksis is held back.
    assert checker.check(krav, now=checker.now_sync(), praksistype="FALE").blocks


def test_invalid_combinations_on_one_regning(table: TakstTable) -> None:
    findings = check(
        table,
        regning("1", "2026-01-06T09:00:00+01:00", ("X1", "100"), ("X2", "50")),
        regning("2", "2026-01-06T09:10:00+01:00", ("X2", "50"), ("X1", "100")),
        regning("3", "2026-01-06T09:20:00+01:00", ("X4", "40"), ("2ad", "15")),
        regning("4", "2026-01-06T12:20:00+01:00", ("1bd", "74"), ("L1", "26"), fnr=OTHER_FNR),
    )
    assert codes(findings) == [
        ("1", "TAKST_INVALID_COMBINATION"),
        ("2", "TAKST_INVALID_COMBINATION"),
        ("3", "TAKST_INVALID_COMBINATION"),
        ("4", "TAKST_INVALID_COMBINATION"),
    ]
    assert findings[0].message == (
        "Regning 1: takst X1 cannot be combined with X2 on the same regning (its "
        "ugyldig_kombinasjon: X2, X3)."
    )
    assert findings[1].message.startswith("Regning 2: takst X1 cannot be combined with X2")
    assert "(its ugyldig_kombinasjon: Alle unntatt X2)" in findings[2].message
    assert "takst 1bd cannot be combined with L1" in findings[3].message


def test_krever_takst(table: TakstTable) -> None:
    findings = check(
        table,
        regning("1", "2026-01-06T09:00:00+01:00", ("2cd", "255")),
        regning("2", "2026-01-06T09:10:00+01:00", ("K1", "20"), ("L1", "26")),
        regning("3", "2026-01-06T09:20:00+01:00", ("K1", "20"), ("2ad", "15")),
    )
    assert codes(findings) == [("1", "TAKST_REQUIRES_TAKST"), ("2", "TAKST_REQUIRES_TAKST")]
    assert findings[0].message == (
        "Regning 1: takst 2cd requires one of the takster 2ad, 2ae, 2ak on the same regning."
    )
    assert "takst K1 requires one of the takster 2ad, 2ae" in findings[1].message


def test_krever_diagnose(table: TakstTable) -> None:
    findings = check(
        table,
        regning("1", "2026-01-06T09:00:00+01:00", ("D1", "30"), diagnoser=("R74",)),
        regning("2", "2026-01-06T09:10:00+01:00", ("D2", "30"), diagnoser=()),
        regning("3", "2026-01-06T09:20:00+01:00", ("D1", "30"), diagnoser=("l79",)),
    )
    assert codes(findings) == [("1", "TAKST_REQUIRES_DIAGNOSE"), ("2", "TAKST_REQUIRES_DIAGNOSE")]
    assert findings[0].message == (
        "Regning 1: takst D1 requires a diagnosis (L7*), and the regning has none of them."
    )
    assert "R74" not in findings[0].message  # the patient's diagnosis is not repeated
    assert findings[1].message.endswith("requires a diagnosis, and the regning has no diagnosis.")


def test_nlk_codes(table: TakstTable) -> None:
    lab = regning("1", "2026-01-06T09:00:00+01:00", ("2ad", "15"))
    lab["nlkkoder"] = [
        {"kode": "NOR05172", "belop": "10.03", "antall": 1},
        {"kode": "NOR99999", "belop": "5", "antall": 1},
        {"kode": "NOR00001", "belop": "5", "antall": 1},
    ]
    findings = check(table, lab)
    assert codes(findings) == [("1", "NLK_UNKNOWN"), ("1", "NLK_NOT_VALID_ON_DATE")]
    assert "NOR99999 is not in the laboratory code list" in findings[0].message
    assert "NOR00001 was not valid on 06.01.2026 (valid 01.01.2012–31.12.2019)" in (
        findings[1].message
    )


def test_kreditering_is_not_priced(table: TakstTable) -> None:
    credit = regning("1", "2026-01-06T09:00:00+01:00", ("2ad", "-15"), kreditering=True)
    assert check(table, credit) == []


def test_a_fagomraade_missing_from_the_cache_is_said_once(table: TakstTable) -> None:
    findings = check(
        table,
        regning("1", "2026-01-06T09:00:00+01:00", ("A1a", "200")),
        regning("2", "2026-02-06T09:00:00+01:00", ("A1a", "200")),
        fag="FY",  # synced: LE and TH only
    )
    assert codes(findings) == [(None, "TAKSTER_UNAVAILABLE"), ("2", "REGNING_IN_FUTURE")]
    assert "takster sync --fagomraade FY" in findings[0].message
    assert not findings[0].blocking


def test_praksis_type_to_fagomraade() -> None:
    assert fagomraade_for("FALE") == "LE"
    assert fagomraade_for("leva") == "LE"
    assert fagomraade_for("TANN") == "TH"
    assert fagomraade_for("FYNO") == "FY"
    assert fagomraade_for("TAPL") == "TP"
    assert fagomraade_for("XXXX") is None and fagomraade_for(None) is None
    # The municipal codes kodeverk.md lists, and the types without a takst section.
    assert [fagomraade_for(t) for t in ("KOFA", "KOLE", "KNFL", "KOFY", "KORI", "KOHS")] == [
        "LE",
        "LE",
        "LE",
        "FY",
        "FY",
        "HS",
    ]
    assert fagomraade_for("OKSY") is None and fagomraade_for("TPUT") is None


# Every code of kodeverk.md's Praksistyper table (kuhr-krav-api-dokumentasjon, 70 codes).
KODEVERK_PRAKSISTYPER = re.findall(
    r"[A-Z]{4}",
    """
AUDI BEUT BIRE FAFY FALE FALO FATU FRBE FYKO FYMT FYNO FYPM FYRT FYUM FYUP FYUV HELS JORD KINO
KNFL KNND KOFA KOFF KOFY KOHS KOLE KOMU KORI KURS LARO LEKO LEVA LOGO MULT OKSY OPPT ORTO PASI
PSNE PSNO PSUT RHFO SPAN SPBA SPES SPFY SPGY SPHU SPIN SPKI SPNE SPOK SPOL SPON SPPS SPRA SPRE
SYKE SYPL TAFK TAFY TAKJ TANN TAPL TAPO TPOF TPPR TPUT URRE UTKA
""",
)


def test_the_praksistype_table_holds_every_code_of_the_kodeverk() -> None:
    from bridge.core.precheck import praksistyper

    assert len(KODEVERK_PRAKSISTYPER) == 70
    assert sorted(praksistyper()) == sorted(KODEVERK_PRAKSISTYPER)


def test_block_mode_turns_findings_into_errors_and_says_why(table: TakstTable) -> None:
    checker = Prechecker(Mode.BLOCK, lambda: table, fagomraade="LE", clock=lambda: SEED_MOMENT)
    outcome = checker.check(seed_krav(), now=checker.now_sync(), praksistype="FALE")
    assert outcome.blocks
    problems = outcome.problems()
    assert [p.code for p in problems] == [
        "ENKEL_KONTAKT_NEAR_KONSULTASJON",
        "REGNING_IN_FUTURE",
        "PRECHECK_BLOCKED",
    ]
    assert all(p.severity is Severity.ERROR for p in problems)
    assert [d["alvorlighet"] for d in outcome.dicts()] == ["feil", "feil"]
    off = Prechecker(Mode.OFF, lambda: table).check(seed_krav(), now=SEED_MOMENT)
    assert off.findings == [] and not off.blocks


def test_an_unreadable_cache_is_a_finding_not_a_crash(tmp_path: Path, cache_dir: Path) -> None:
    broken = cache_file(tmp_path, "sandbox")
    broken.write_text("[]", encoding="utf-8")
    checker = Prechecker(Mode.BLOCK, lambda: load_table(broken))
    outcome = checker.check(seed_krav(), now=SEED_MOMENT)
    assert [f.code for f in outcome.findings] == ["TAKSTER_UNAVAILABLE"]
    assert not outcome.blocks  # a missing table never stops a claim

    edited = json.loads(cache_file(cache_dir, "sandbox").read_text(encoding="utf-8"))
    for row in edited["takstkoder"]["LE"]["rows"]:
        if row["takstkode"] == "2ad":
            row["refusjon"] = "femten"  # edited by hand
    broken.write_text(json.dumps(edited), encoding="utf-8")
    outcome = Prechecker(Mode.WARN, lambda: load_table(broken)).check(seed_krav(), now=SEED_MOMENT)
    assert [f.code for f in outcome.findings] == ["TAKSTER_UNAVAILABLE"]
    assert "rows for 2ad are invalid" in outcome.findings[0].message


# --------------------------------------------------------------------------- the commands


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def invoke(app: typer.Typer, *args: str | Path, **env: str) -> Any:
    return CliRunner().invoke(app, [str(a) for a in args], env=env, catch_exceptions=False)


def test_precheck_command_on_the_seed_claim(app, cache_dir: Path) -> None:
    env = {"BKM_BRIDGE_PRECHECK__CACHE_DIR": str(cache_dir)}
    moment = ["--now", "2026-01-06T15:30"]
    result = invoke(app, "precheck", SEED, "--praksis-type", "FALE", *moment, **env)
    assert result.exit_code == 0  # warnings only (precheck.mode warn): nothing failed
    assert result.stdout.splitlines() == [
        f"{SEED}: ENKEL_KONTAKT_NEAR_KONSULTASJON: Regning 4: takst 1bd is on a regning of its "
        "own within 60 minutes of consultation takst 2ad on regning 5 for the same patient; KUHR "
        "rejects 1bd/1be/1bk used together with a consultation (merknad 470). [warning]",
        f"{SEED}: REGNING_IN_FUTURE: Regning 6: it is dated 06.02.2026 15:00, after the moment "
        "it is checked (06.01.2026 15:30); KUHR rejects a regning dated in the future (merknad "
        "766). [warning]",
        "Pre-control: 2 finding(s) in 1 file(s).",
    ]
    assert "takst table: synced 2026-01-06 15:30" in result.stderr

    as_json = invoke(app, "precheck", SEED, "--fagomraade", "LE", "--json", *moment, **env)
    (entry,) = json.loads(as_json.stdout)
    found = [(f["regningsnummer"], f.get("forventetMerknad")) for f in entry["forhandskontroll"]]
    assert found == [("4", "470"), ("6", "766")]
    clean = invoke(app, "precheck", SEED_CORRECTED, "--praksis-type", "FALE", *moment, **env)
    assert clean.exit_code == 0, clean.stdout
    assert clean.stdout.strip() == "Pre-control: 0 finding(s) in 1 file(s)."


def test_precheck_command_reports_unreadable_files(app, cache_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.xml"
    broken.write_bytes(b"<BehandlerKrav>")
    result = invoke(app, "precheck", broken, BKM_BRIDGE_PRECHECK__CACHE_DIR=str(cache_dir))
    assert result.exit_code == 1
    assert "XML_MALFORMED" in result.stderr
    assert "1 could not be read" in result.stdout


def test_convert_prints_findings_as_warnings_and_keeps_its_json(cache_dir: Path) -> None:
    from bridge.cli.app import app as cli

    env = {"BKM_BRIDGE_PRECHECK__CACHE_DIR": str(cache_dir)}
    args = ["convert", str(FIXTURES / "alle-felter.xml"), "--praksis-id", "1004326178"]
    runner = CliRunner()
    on = runner.invoke(cli, args, env={**env, "BKM_BRIDGE_PRECHECK__FAGOMRAADE": "LE"})
    off = runner.invoke(cli, args, env={**env, "BKM_BRIDGE_PRECHECK__MODE": "off"})
    assert on.exit_code == 0 and off.exit_code == 0
    assert on.stdout == off.stdout
    assert json.loads(on.stdout)["praksisId"] == "1004326178"
    assert (
        f"{FIXTURES / 'alle-felter.xml'}: TAKST_UNKNOWN: Regning 12496: takst 3ad is not a takst "
        "of fagområde LE (it is one of fagområde TH). [warning]"
    ) in on.stderr.splitlines()
    assert "TAKST_UNKNOWN" not in off.stderr
    block = runner.invoke(cli, args, env={**env, "BKM_BRIDGE_PRECHECK__MODE": "block"})
    assert block.exit_code == 0 and block.stdout == off.stdout  # convert only ever warns


def test_dev_and_prod_never_fall_back_to_the_sandboxs_snapshot(app, tmp_path: Path) -> None:
    env = {"BKM_BRIDGE_PRECHECK__CACHE_DIR": str(tmp_path / "empty")}
    args = [
        "precheck",
        SEED,
        "--env",
        "prod",
        "--praksis-type",
        "FALE",
        "--now",
        "2026-01-06T15:30",
    ]
    result = invoke(app, *args, **env)
    assert result.exit_code == 0  # warnings only: a missing table is not the claim's fault
    assert [line.split(": ")[1] for line in result.stdout.splitlines()[:-1]] == [
        "TAKSTER_UNAVAILABLE",
        "ENKEL_KONTAKT_NEAR_KONSULTASJON",
        "REGNING_IN_FUTURE",
    ]
    assert "No takst table has been synced for this environment" in result.stdout
    assert "takst table: none synced" in result.stderr
    sandbox = invoke(app, "precheck", SEED_CORRECTED, "--now", "2026-01-06T15:30", **env)
    assert sandbox.exit_code == 0  # the sandbox environment checks against the snapshot
    assert "bundled snapshot" in sandbox.stderr
