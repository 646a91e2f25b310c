"""`migrate --dry-run --out DIR` writes exactly what `convert --out DIR` writes (same names,
same bytes), reads zip members in place, and reports every file, bad ones included."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from support.migrate import (
    PATIENT_IDS,
    PRAKSIS_ID,
    claim_xml,
    cli_env,
    read_csv,
    run_migrate,
    write_claims,
    write_zip,
)


def _tree(folder: Path) -> dict[str, bytes]:
    files = (p for p in folder.rglob("*") if p.is_file())
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in files}


def test_dry_run_writes_what_convert_writes(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    write_claims(a, range(0, 4))
    write_claims(a / "sub" / "dypere", range(4, 6))
    (a / "c.xml").write_bytes(claim_xml(6))
    (a / "c.XML").write_bytes(claim_xml(7))  # same JSON name in one folder: c~2.json
    (a / "c~2.xml").write_bytes(claim_xml(8))  # … so this one becomes c~2~2.json
    (a / "c.d.xml").write_bytes(claim_xml(9))
    write_claims(b, range(0, 2))  # same names as in a: krav-0000~2.json …
    (a / "broken.xml").write_bytes(b"<BehandlerKrav>\n  <Enkeltregning>\n")
    write_zip(a / "arkiv.zip", {"2019/krav-0000.xml": claim_xml(0), "x.xml": b"<ikke-xml"})
    env = cli_env(tmp_path / "state")

    out = ["--out", str(tmp_path / "convert"), "--praksis-id", PRAKSIS_ID]
    convert = subprocess.run(
        [sys.executable, "-m", "bridge", "convert", str(a), str(b), *out],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert convert.returncode == 1, convert.stderr  # broken.xml
    report = tmp_path / "rapport" / "dry.csv"
    flags = ["--praksis-id", PRAKSIS_ID, "--report", str(report), "--workers", "2", "--json"]
    migrate = run_migrate(
        [str(a), str(b), "--dry-run", "--out", str(tmp_path / "migrate"), *flags],
        env,
    )
    assert migrate.returncode == 1, migrate.stderr  # bad files make the exit code 1

    converted = _tree(tmp_path / "convert")
    migrated = _tree(tmp_path / "migrate")
    from_zip = {k: v for k, v in migrated.items() if k.startswith("arkiv.zip/")}
    assert {k: v for k, v in migrated.items() if k not in from_zip} == converted
    expected = {"c.json", "c~2.json", "c~2~2.json", "krav-0000~2.json", "sub/dypere/krav-0004.json"}
    assert expected <= set(converted)
    # A member converts to the same JSON as the same bytes in a file, named after its path.
    assert from_zip == {"arkiv.zip/2019/krav-0000.json": converted["krav-0000.json"]}

    summary = json.loads(migrate.stdout)
    assert summary["dry_run"] is True and summary["files"] == 15
    assert summary["outcomes"] == {"avvist_lokalt": 2, "konvertert": 13}
    assert summary["problems"]["XML_MALFORMED"] == 2  # and the pre-control's warnings
    rows = read_csv(report)
    assert len(rows) == 15
    broken = next(r for r in rows if r["file"].endswith("broken.xml"))
    assert (broken["outcome"], broken["problems"], broken["receipt"]) == (
        "avvist_lokalt",
        "XML_MALFORMED",
        "",
    )
    member = next(r for r in rows if r["file"].endswith("!2019/krav-0000.xml"))
    assert member["file"] == f"{a / 'arkiv.zip'}!2019/krav-0000.xml"
    assert member["receipt"] == str(tmp_path / "migrate" / "arkiv.zip" / "2019" / "krav-0000.json")
    assert json.loads(report.with_name("dry.summary.json").read_text())["files"] == 15
    page = report.with_name("dry.html").read_text(encoding="utf-8")
    assert "<svg" in page and "konvertert" in page
    for patient_id in PATIENT_IDS:
        assert patient_id not in migrate.stdout + migrate.stderr + report.read_text()


def test_dry_run_without_out_only_validates(tmp_path: Path) -> None:
    write_claims(tmp_path / "in", range(3))
    (tmp_path / "in" / "annet.xml").write_text('<?xml version="1.0"?><Faktura/>')
    proc = run_migrate(
        [str(tmp_path / "in"), "--dry-run", "--json", "--workers", "1"], cli_env(tmp_path / "s")
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["outcomes"] == {"ignorert": 1, "konvertert": 3}
    assert not (tmp_path / "s").exists()  # a dry run keeps no journal


def test_dry_run_resolves_the_praksis_as_the_real_run_does(tmp_path: Path) -> None:
    """No --praksis-id: the praksis list is fetched once (here from an embedded sandbox) and
    each claim gets the praksis the real run would give it."""
    write_claims(tmp_path / "in", range(2))
    proc = run_migrate(
        [str(tmp_path / "in"), "--dry-run", "--out", str(tmp_path / "o"), "--json"],
        cli_env(tmp_path / "s"),
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["outcomes"] == {"konvertert": 2}
    assert "PRAKSIS_MISSING" not in summary["problems"]
    assert summary["checked"].startswith("praksis resolved with the praksis list from SANDBOX")
    written = sorted((tmp_path / "o").rglob("*.json"))
    assert [json.loads(p.read_text())["praksisId"] for p in written] == [PRAKSIS_ID] * 2


def test_dry_run_names_match_convert_within_one_folder(tmp_path: Path) -> None:
    root = tmp_path / "arkiv"
    for i, name in enumerate(["c.xml", "c.XML", "c~2.xml", "c.Xml", "c.d.xml", "b.xml", "d.xml"]):
        (root / "x").mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(claim_xml(i))
        (root / "x" / name).write_bytes(claim_xml(10 + i))
    env = cli_env(tmp_path / "state")
    out = ["--praksis-id", PRAKSIS_ID, "--out"]
    convert = subprocess.run(
        [sys.executable, "-m", "bridge", "convert", str(root), *out, str(tmp_path / "c")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert convert.returncode == 0
    migrate = run_migrate([str(root), "--dry-run", *out, str(tmp_path / "m"), "--quiet"], env)
    assert migrate.returncode == 0, migrate.stderr
    converted = _tree(tmp_path / "c")
    assert {"c~3.json", "c~2~2.json", "x/c~3.json"} <= set(converted)
    assert _tree(tmp_path / "m") == converted
