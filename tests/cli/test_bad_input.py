"""Bad input through the CLI: each file gets its clear error and code, nothing is written or
printed for it, and the other files of the same run are still converted.

Every case runs in-process (`CliRunner` on `bridge.cli.app`) for `validate`, `convert --out`
and single-file `convert`; one batch of all cases and the 50 MB file run as real subprocesses,
whose peak RSS is measured. Timings are printed (`pytest -s`), never asserted.
"""

from __future__ import annotations

import http.server
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from support.bad_input import (
    BAD_CASES,
    BKM_NS,
    MARKER,
    MB,
    MERKNAD,
    NAVN,
    PRAKSIS_ID,
    BadCase,
    Env,
    good_claim,
    krav,
)
from typer.testing import CliRunner

from bridge.cli.app import app
from bridge.core.legacy.writer import write_bkm_xml
from bridge.core.model import load_json


class _RecordingHandler(http.server.BaseHTTPRequestHandler):
    requests: list[str] = []  # noqa: RUF012 - shared on purpose: the test reads it

    def do_GET(self) -> None:
        type(self).requests.append(self.path)
        body = b'<!ENTITY leak "fetched">'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def dtd_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RecordingHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/bkm.dtd"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def env(tmp_path: Path, dtd_server: str) -> Env:
    return Env(tmp_path, dtd_server)


# --------------------------------------------------------------------------- helpers


def _problem_lines(stderr: str, path: Path, code: str) -> list[int | None]:
    """Lines named by `FILE:LINE: CODE: …` (None for `FILE: CODE: …`) for this file and code."""
    pattern = re.compile(rf"^{re.escape(str(path))}(?::(\d+))?: {code}: \S", re.MULTILINE)
    return [int(m.group(1)) if m.group(1) else None for m in pattern.finditer(stderr)]


def _invoke(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def _assert_no_leak(text: str) -> None:
    assert MARKER not in text
    assert "fetched" not in text
    passwd = Path("/etc/passwd")
    if passwd.exists():
        for line in passwd.read_text(errors="replace").splitlines()[:5]:
            assert line not in text


def _write_pair(env: Env, case: BadCase) -> tuple[Path, Path]:
    bad = env.tmp / f"{case.name}.xml"
    bad.write_bytes(case.make(env))
    good = env.tmp / "good.xml"
    good.write_bytes(good_claim())
    return bad, good


# --------------------------------------------------------------------------- per case


@pytest.mark.parametrize("case", BAD_CASES, ids=str)
def test_validate_reports_the_bad_file_and_passes_the_good(env: Env, case: BadCase) -> None:
    bad, good = _write_pair(env, case)
    _RecordingHandler.requests.clear()
    start = time.perf_counter()
    result = _invoke("validate", str(bad), str(good))
    elapsed = time.perf_counter() - start
    print(f"validate {case.name}: {elapsed * 1000:.1f} ms")

    assert result.exit_code == 1
    lines = _problem_lines(result.stderr, bad, case.code)
    assert lines, result.stderr
    if case.line is not None:
        assert lines == [case.line(bad.read_bytes())]
    assert str(bad) not in result.stdout
    assert f"{good}: OK" in result.stdout
    assert str(good) not in result.stderr
    _assert_no_leak(result.stdout + result.stderr)
    assert _RecordingHandler.requests == []


@pytest.mark.parametrize("case", BAD_CASES, ids=str)
def test_convert_writes_nothing_for_the_bad_file(env: Env, case: BadCase) -> None:
    bad, good = _write_pair(env, case)
    out = env.tmp / "out"
    _RecordingHandler.requests.clear()
    start = time.perf_counter()
    result = _invoke("convert", str(bad), str(good), "--praksis-id", PRAKSIS_ID, "--out", str(out))
    elapsed = time.perf_counter() - start
    print(f"convert --out {case.name}: {elapsed * 1000:.1f} ms")

    assert result.exit_code == 1
    assert _problem_lines(result.stderr, bad, case.code)
    assert sorted(p.name for p in out.iterdir()) == ["good.json"]
    converted = load_json((out / "good.json").read_text(encoding="utf-8"))
    assert converted["behandlerkrav"]["regninger"][0]["pasient"]["etternavn"] == NAVN
    assert str(bad) not in result.stdout
    _assert_no_leak(result.stdout + result.stderr)
    assert _RecordingHandler.requests == []

    alone = _invoke("convert", str(bad), "--praksis-id", PRAKSIS_ID)
    assert alone.exit_code == 1
    assert alone.stdout == ""
    assert _problem_lines(alone.stderr, bad, case.code)


def test_mismatches_convert_with_allow_mismatch_as_warnings(tmp_path: Path) -> None:
    path = tmp_path / "sum.xml"
    path.write_bytes(write_bkm_xml(krav(belop=Decimal("240.00"), antallRegninger=2)))
    result = _invoke("convert", str(path), "--praksis-id", PRAKSIS_ID, "--allow-mismatch")
    assert result.exit_code == 0, result.stderr
    melding = load_json(result.stdout)
    assert melding["behandlerkrav"]["belop"] == Decimal("240.00")
    assert melding["behandlerkrav"]["antallRegninger"] == 2
    for code in ("SUM_MISMATCH", "COUNT_MISMATCH"):
        (warning,) = [
            line for line in result.stderr.splitlines() if line.startswith(f"{path}:")
            and f" {code}: " in line
        ]  # fmt: skip
        assert warning.endswith("[warning]")


def test_missing_guid_is_derived_the_same_on_every_run(tmp_path: Path) -> None:
    path = tmp_path / "uten-guid.xml"
    data = good_claim()
    path.write_bytes(re.sub(rb"\s*<GUID>[^<]*</GUID>", b"", data))
    runs = [_invoke("convert", str(path), "--praksis-id", PRAKSIS_ID) for _ in range(2)]
    guids = []
    for result in runs:
        assert result.exit_code == 0, result.stderr
        assert _problem_lines(result.stderr, path, "GUID_DERIVED")
        guids.append(load_json(result.stdout)["behandlerkrav"]["regninger"][0]["guid"])
    assert guids[0] == guids[1]
    assert uuid.UUID(guids[0])
    assert guids[0] != "0b8dc559-6c2d-419b-aeef-faaf537c6117"


def test_a_file_that_does_not_exist(tmp_path: Path) -> None:
    missing = tmp_path / "finnes-ikke.xml"
    good = tmp_path / "good.xml"
    good.write_bytes(good_claim())
    result = _invoke("validate", str(missing), str(good))
    assert result.exit_code == 1
    assert _problem_lines(result.stderr, missing, "FILE_UNREADABLE")
    assert f"{good}: OK" in result.stdout
    alone = _invoke("convert", str(missing), "--praksis-id", PRAKSIS_ID)
    assert alone.exit_code == 1
    assert alone.stdout == ""
    assert _problem_lines(alone.stderr, missing, "FILE_UNREADABLE")


def test_a_folder_with_one_bad_and_one_good_file(tmp_path: Path) -> None:
    inbox = tmp_path / "inn"
    inbox.mkdir()
    (inbox / "bad.xml").write_bytes(good_claim()[:200])
    (inbox / "good.xml").write_bytes(good_claim())
    out = tmp_path / "out"
    result = _invoke("convert", str(inbox), "--praksis-id", PRAKSIS_ID, "--out", str(out))
    assert result.exit_code == 1
    assert _problem_lines(result.stderr, inbox / "bad.xml", "XML_MALFORMED")
    assert sorted(p.name for p in out.iterdir()) == ["good.json"]
    melding = load_json((out / "good.json").read_text(encoding="utf-8"))
    assert melding["praksisId"] == PRAKSIS_ID
    assert melding["behandlerkrav"]["regninger"][0]["merknad"] == MERKNAD


@pytest.mark.parametrize(
    ("encoding", "bom"),
    [("UTF-8", False), ("UTF-8", True), ("ISO-8859-1", False), ("windows-1252", False),
     ("UTF-16", True)],
)  # fmt: skip
def test_good_encodings_keep_norwegian_letters(
    tmp_path: Path, encoding: str, bom: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BKM_BRIDGE_PRECHECK__MODE", "off")  # takst amounts are not the point here
    path = tmp_path / "claim.xml"
    path.write_bytes(good_claim(encoding=encoding, bom=bom))
    result = _invoke("convert", str(path), "--praksis-id", PRAKSIS_ID)
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    regning = load_json(result.stdout)["behandlerkrav"]["regninger"][0]
    assert regning["pasient"]["etternavn"] == NAVN
    assert regning["pasient"]["fornavn"] == "Åse"
    assert regning["merknad"] == MERKNAD


# --------------------------------------------------------------------------- real processes


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    peak_rss_mb: float


def _run_measured(*args: str, cwd: Path) -> Run:
    """`python -m bridge ARGS` as a child process, with its own peak RSS (os.wait4)."""
    out_path, err_path = cwd / ".stdout", cwd / ".stderr"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "bridge", *args], stdout=out, stderr=err, cwd=cwd
        )
        timer = threading.Timer(120, proc.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Run(
        proc.returncode,
        out_path.read_text(encoding="utf-8"),
        err_path.read_text(encoding="utf-8"),
        seconds,
        usage.ru_maxrss / 1024,  # kilobytes on Linux
    )


needs_wait4 = pytest.mark.skipif(not hasattr(os, "wait4"), reason="needs os.wait4 (POSIX)")


@needs_wait4
def test_a_50_mb_file_is_refused_without_reading_it(tmp_path: Path) -> None:
    big = tmp_path / "stor.xml"
    with big.open("wb") as handle:
        handle.write(b'<?xml version="1.0" encoding="UTF-8"?>\n<BehandlerKrav xmlns="')
        handle.write(BKM_NS + b'">\n<Avdeling>')
        chunk = b"x" * MB
        for _ in range(50):
            handle.write(chunk)
        handle.write(b"</Avdeling>\n</BehandlerKrav>\n")
    good = tmp_path / "good.xml"
    good.write_bytes(good_claim())
    out = tmp_path / "out"

    # What the same command costs on a small file: reading 50 MB would add at least 50 MB.
    baseline = _run_measured("validate", str(good), cwd=tmp_path)
    assert baseline.returncode == 0, baseline.stderr
    print(f"validate one small file: peak RSS {baseline.peak_rss_mb:.0f} MB")
    for args in (
        ("validate", str(big), str(good)),
        ("convert", str(big), str(good), "--praksis-id", PRAKSIS_ID, "--out", str(out)),
    ):
        run = _run_measured(*args, cwd=tmp_path)
        print(f"{args[0]} 50 MB file: {run.seconds:.2f} s, peak RSS {run.peak_rss_mb:.0f} MB")
        assert run.returncode == 1, run.stderr
        assert _problem_lines(run.stderr, big, "FILE_TOO_LARGE")
        assert str(big) not in run.stdout
        assert run.peak_rss_mb < 200
        assert run.peak_rss_mb < baseline.peak_rss_mb + 25
    assert sorted(p.name for p in out.iterdir()) == ["good.json"]


@needs_wait4
def test_all_bad_files_in_one_real_run(env: Env) -> None:
    inbox = env.tmp / "inn"
    inbox.mkdir()
    for case in BAD_CASES:
        (inbox / f"{case.name}.xml").write_bytes(case.make(env))
    for encoding, bom in (("UTF-8", True), ("ISO-8859-1", False), ("UTF-16", True)):
        (inbox / f"good-{encoding}.xml").write_bytes(good_claim(encoding=encoding, bom=bom))
    goods = sorted(p.stem for p in inbox.glob("good-*.xml"))
    out = env.tmp / "out"
    _RecordingHandler.requests.clear()

    validate = _run_measured("validate", str(inbox), cwd=env.tmp)
    convert = _run_measured(
        "convert", str(inbox), "--praksis-id", PRAKSIS_ID, "--out", str(out), cwd=env.tmp
    )
    for name, run in (("validate", validate), ("convert --out", convert)):
        print(
            f"{name} over {len(BAD_CASES)} bad + {len(goods)} good files: {run.seconds:.2f} s, "
            f"peak RSS {run.peak_rss_mb:.0f} MB"
        )
        assert run.returncode == 1
        for case in BAD_CASES:
            assert _problem_lines(run.stderr, inbox / f"{case.name}.xml", case.code), case.name
            assert f"{case.name}.xml" not in run.stdout
        _assert_no_leak(run.stdout + run.stderr)
        assert run.peak_rss_mb < 200
    for stem in goods:
        assert f"{inbox / stem}.xml: OK" in validate.stdout
    assert sorted(p.stem for p in out.iterdir()) == goods
    for stem in goods:
        melding = load_json((out / f"{stem}.json").read_text(encoding="utf-8"))
        assert melding["behandlerkrav"]["regninger"][0]["pasient"]["etternavn"] == NAVN
    assert _RecordingHandler.requests == []
