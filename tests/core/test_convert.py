"""Golden conversions and the convert/validate commands, through the CLI and the library."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from support.paths import FIXTURES

from bridge.core.convert import ConvertContext, convert
from bridge.core.model import dump_json, load_json, to_jsonable
from bridge.files.reading import convert_file


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge", *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        cwd=cwd or tempfile.gettempdir(),  # never the source tree: the installed package runs
        timeout=120,
        env={**os.environ, "COLUMNS": "100"},
    )


def drop_nulls(value: Any) -> Any:
    """The seed writes `"reshId": null`; the bridge leaves empty fields out. Same meaning."""
    if isinstance(value, dict):
        return {k: drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [drop_nulls(v) for v in value]
    return value


def as_decimals(text: str) -> Any:
    return json.loads(text, parse_float=Decimal, parse_int=Decimal)


def test_alle_felter_golden_through_the_cli() -> None:
    proc = run_cli("convert", str(FIXTURES / "alle-felter.xml"), "--praksis-id", "1000005649")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    expected = as_decimals((FIXTURES / "alle-felter.expected.json").read_text())
    assert as_decimals(proc.stdout) == expected
    # Amounts keep the XML's digits as JSON numbers: no float, no string.
    assert '"belop": 435.00' in proc.stdout


@pytest.mark.parametrize(
    ("xml", "expected"),
    [
        ("seed-arbeidsflyt.xml", "seed-arbeidsflyt.expected.json"),
        ("seed-arbeidsflyt-rettet.xml", "seed-arbeidsflyt-rettet.expected.json"),
    ],
)
def test_seed_workflow_claims_convert_to_the_seed_json(xml: str, expected: str) -> None:
    result = convert_file(FIXTURES / xml, ConvertContext(praksis_id="1004326178"))
    assert result.ok, result.problems
    assert result.melding is not None
    got = as_decimals(dump_json(result.melding))
    want = drop_nulls(as_decimals((FIXTURES / expected).read_text()))
    assert got == want  # Decimal equality: 74.00 == 74, as the issue asks ("as decimals")


def test_envelope_facts_are_kept() -> None:
    result = convert_file(FIXTURES / "seed-arbeidsflyt.xml", ConvertContext(praksis_id="1"))
    env = result.envelope
    assert env is not None
    assert env.kind == "msghead"
    assert env.msg_id == "9c1f6a52-3d1e-4a6b-8c55-2f0d7e9b1a01"
    assert env.gen_date == "2026-01-06T15:30:00"
    assert env.msg_type == "BKM"
    assert env.sender_name == "Kurbadet Helsesenter"
    assert env.sender_orgnr == "999999999"
    assert env.receiver_orgnr == "986965610"


def _bare_bkm() -> bytes:
    data = (FIXTURES / "alle-felter.xml").read_text(encoding="utf-8")
    start = data.index("<BehandlerKrav")
    end = data.index("</BehandlerKrav>") + len("</BehandlerKrav>")
    return ('<?xml version="1.0" encoding="UTF-8"?>\n' + data[start:end]).encode()


def test_bare_behandlerkrav_and_base64_container_give_the_same_claim() -> None:
    msghead = (FIXTURES / "alle-felter.xml").read_bytes()
    bare = _bare_bkm()
    container = (
        b'<?xml version="1.0" encoding="UTF-8"?>\n<Base64Container>'
        + base64.encodebytes(msghead)
        + b"</Base64Container>"
    )
    soap = (
        b'<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>'
        + msghead.split(b"?>", 1)[1]
        + b"</soap:Body></soap:Envelope>"
    )
    ctx = ConvertContext(praksis_id="1000005649")
    results = {
        name: convert(data, ctx)
        for name, data in {
            "msghead": msghead,
            "bare": bare,
            "base64": container,
            "soap": soap,
        }.items()
    }
    for name, result in results.items():
        assert result.ok, (name, result.problems)
    kinds = {name: r.envelope.kind for name, r in results.items() if r.envelope}
    assert kinds == {
        "msghead": "msghead",
        "bare": "bare",
        "base64": "base64+msghead",
        "soap": "soap+msghead",
    }
    claims = {name: to_jsonable(r.melding) for name, r in results.items() if r.melding}
    assert claims["bare"] == claims["msghead"] == claims["base64"] == claims["soap"]
    assert results["base64"].envelope.msg_id == "6f1c2d8e-1b4a-4c55-9a57-0c9d3f6b2a10"


@pytest.mark.parametrize(
    ("encoding", "bom"),
    [
        ("UTF-8", b""),
        ("UTF-8", b"\xef\xbb\xbf"),
        ("ISO-8859-1", b""),
        ("windows-1252", b""),
        ("UTF-16", None),
    ],
)
def test_encodings_keep_norwegian_letters(encoding: str, bom: bytes | None) -> None:
    text = _bare_bkm().decode().replace('encoding="UTF-8"', f'encoding="{encoding}"')
    text = text.replace(
        "<FamilyName>Etternavn</FamilyName>", "<FamilyName>Ærøy-Blåbærsen</FamilyName>"
    )
    data = text.encode("utf-16") if bom is None else bom + text.encode(encoding)
    result = convert(data, ConvertContext(praksis_id="1"))
    assert result.ok, result.problems
    assert result.melding is not None
    assert result.melding.behandlerkrav.regninger[0].pasient.etternavn == "Ærøy-Blåbærsen"


def test_convert_folder_writes_one_json_per_file_and_reports_bad_ones(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    (inbox / "sub").mkdir(parents=True)
    (inbox / "a.xml").write_bytes((FIXTURES / "alle-felter.xml").read_bytes())
    (inbox / "sub" / "b.xml").write_bytes((FIXTURES / "seed-arbeidsflyt.xml").read_bytes())
    (inbox / "sub" / "broken.xml").write_bytes(b"<BehandlerKrav>\n<oops>\n")
    (inbox / "notes.txt").write_text("not a claim")
    out = tmp_path / "out"
    proc = run_cli("convert", str(inbox), "--praksis-id", "1004326178", "--out", str(out))
    assert proc.returncode == 1
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.json")) == [
        "a.json",
        "sub/b.json",
    ]
    assert "Converted 2 of 3 file(s)" in proc.stdout
    broken = str(inbox / "sub" / "broken.xml")
    assert any(
        line.startswith(f"{broken}:3: XML_MALFORMED: ") for line in proc.stderr.splitlines()
    ), proc.stderr
    written = load_json((out / "sub" / "b.json").read_text())
    assert written["behandlerkrav"]["belop"] == Decimal("434.00")


def test_convert_folder_all_good_exits_zero(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "x.xml").write_bytes((FIXTURES / "alle-felter.xml").read_bytes())
    proc = run_cli(
        "convert", str(tmp_path / "in"), "--praksis-id", "1", "--out", str(tmp_path / "o")
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "o" / "x.json").is_file()


def test_validate_prints_ok_or_problems() -> None:
    ok = run_cli("validate", str(FIXTURES / "alle-felter.xml"))
    assert ok.returncode == 0
    assert ok.stdout.strip() == f"{FIXTURES / 'alle-felter.xml'}: OK"
    missing = run_cli("validate", str(FIXTURES / "does-not-exist.xml"))
    assert missing.returncode == 2  # a path that was never there: the command line's problem
    assert "does not exist" in missing.stderr


def test_usage_errors_exit_two(tmp_path: Path) -> None:
    assert run_cli("convert", str(FIXTURES / "alle-felter.xml")).returncode == 2  # no praksis id
    two_files = run_cli(
        "convert",
        str(FIXTURES / "alle-felter.xml"),
        str(FIXTURES / "seed-arbeidsflyt.xml"),
        "--praksis-id",
        "1",
    )
    assert two_files.returncode == 2
    assert run_cli("no-such-command").returncode == 2


def test_python_dash_m_and_console_script_are_the_same() -> None:
    via_module = run_cli("--help")
    script = Path(sys.executable).with_name("bkm-bridge")
    via_script = subprocess.run(
        [str(script), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "100"},
    )
    assert via_module.returncode == via_script.returncode == 0
    for command in ("convert", "validate", "sandbox", "praksis", "submit", "status"):
        assert command in via_module.stdout
        assert command in via_script.stdout


def test_an_official_xsd_dropped_in_through_the_config_wins(tmp_path: Path) -> None:
    """`[xml] xsd_dirs` in bkm-bridge.toml: the drop-in schema (stricter about element order)
    serves the BKM namespace instead of the built-in one."""
    reordered = FIXTURES / "schemas" / "bkm-reordered.xml"
    assert run_cli("validate", str(reordered)).returncode == 0  # the built-in accepts it
    config = tmp_path / "bkm-bridge.toml"
    strict = FIXTURES / "schemas" / "dropin-strict"
    config.write_text(f'[xml]\nxsd_dirs = ["{strict.as_posix()}"]\n', encoding="utf-8")
    proc = run_cli("validate", str(reordered), "--config", str(config))
    assert proc.returncode == 1
    assert "SCHEMA_INVALID" in proc.stderr


def test_folder_discovery_is_depth_first_in_name_order_and_takes_only_xml_files(
    tmp_path: Path,
) -> None:
    from bridge.files.batch import find_xml_files

    for name in ["b.xml", "b/x.xml", "a/z.XML", "c.xml", "B.xml", "notes.txt", ".xml", "d/e/f.xml"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("<x/>")
    (tmp_path / "empty").mkdir()
    found = [s.relative.as_posix() for s in find_xml_files([tmp_path])]
    # The order of sorting the full paths (what the output mirrors): "b/x.xml" before "b.xml".
    assert found == ["B.xml", "a/z.XML", "b/x.xml", "b.xml", "c.xml", "d/e/f.xml"]
    assert found == [
        p.relative_to(tmp_path).as_posix()
        for p in sorted(tmp_path.rglob("*"))
        if p.is_file() and p.suffix.lower() == ".xml"
    ]


def test_a_file_over_the_limit_is_refused_before_it_is_read(tmp_path: Path) -> None:
    claim = (FIXTURES / "alle-felter.xml").read_bytes()
    path = tmp_path / "claim.xml"
    path.write_bytes(claim)
    exact = convert_file(path, ConvertContext(praksis_id="1", max_bytes=len(claim)))
    assert exact.ok and exact.melding is not None
    over = convert_file(path, ConvertContext(praksis_id="1", max_bytes=len(claim) - 1))
    assert [p.code for p in over.problems] == ["FILE_TOO_LARGE"]
    assert f"{len(claim):,} bytes" in over.problems[0].message
    gone = convert_file(tmp_path / "missing.xml", ConvertContext(praksis_id="1"))
    assert [p.code for p in gone.problems] == ["FILE_UNREADABLE"]


def test_without_envelope_facts_a_missing_guid_is_still_derived_from_the_sender() -> None:
    """convert --out does not keep the MsgHead's facts, but a regning without GUID still gets
    the GUID the watcher derives (from the sender's orgnr in the MsgHead), never another."""
    import re
    import uuid as uuid_module

    from bridge.core.mapping import GUID_NAMESPACE

    data = re.sub(
        rb"\s*<GUID>[^<]*</GUID>", b"", (FIXTURES / "seed-arbeidsflyt.xml").read_bytes(), count=1
    )
    full = convert(data, ConvertContext(praksis_id="1"))
    lean = convert(data, ConvertContext(praksis_id="1", envelope=False))
    assert full.envelope is not None and full.envelope.sender_orgnr == "999999999"
    assert lean.envelope is None
    assert lean.melding is not None and full.melding is not None
    first = lean.melding.behandlerkrav.regninger[0]
    expected = uuid_module.uuid5(GUID_NAMESPACE, f"999999999|{first.regningsnummer}")
    assert first.guid == str(expected)
    assert dump_json(lean.melding) == dump_json(full.melding)
    assert [p.code for p in lean.problems] == ["GUID_DERIVED"]
