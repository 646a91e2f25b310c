"""The problem codes the code emits, the catalogue, and the README's table agree."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from support.paths import ROOT

import bridge
from bridge.core.problems import PROBLEM_CODES, STAFF_TEXT, Problem, Severity


def test_readme_lists_every_code_with_its_meaning() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("<!-- problem-codes:start -->")[1].split("<!-- problem-codes:end -->")[0]
    rows = dict(re.findall(r"^\| `([A-Z_]+)` \| (.+?) \|$", block, re.M))
    assert rows == PROBLEM_CODES


def test_every_code_the_package_emits_is_catalogued() -> None:
    emitted = set()
    for path in Path(bridge.__file__).parent.rglob("*.py"):  # the package that runs
        emitted |= set(re.findall(r'Problem\(\s*"([A-Z_]+)"', path.read_text(encoding="utf-8")))
    assert emitted, "expected to find Problem(...) calls"
    assert emitted <= set(PROBLEM_CODES)


def test_unknown_codes_are_refused() -> None:
    with pytest.raises(ValueError):
        Problem("NO_SUCH_CODE", "x")


def test_problem_formats() -> None:
    p = Problem("XML_MALFORMED", "The XML is not well-formed.", line=7, path="BehandlerKrav/Krav")
    assert p.format("in/a.xml") == (
        "in/a.xml:7: XML_MALFORMED: The XML is not well-formed. (at BehandlerKrav/Krav)"
    )
    w = Problem("GUID_DERIVED", "derived", severity=Severity.WARNING)
    assert w.format("a.xml") == "a.xml: GUID_DERIVED: derived [warning]"
    assert p.as_dict() == {
        "kode": "XML_MALFORMED",
        "melding": STAFF_TEXT["XML_MALFORMED"],
        "detalj": "The XML is not well-formed.",
        "linje": 7,
        "sti": "BehandlerKrav/Krav",
    }


def test_every_code_has_a_norwegian_staff_sentence_without_operator_advice() -> None:
    assert set(STAFF_TEXT) == set(PROBLEM_CODES)
    for code, text in STAFF_TEXT.items():
        assert text.endswith("."), code
        # No flags, settings or English: that advice goes to the log and the CLI.
        assert not re.search(r"--[a-z]|\[\[|[a-z]+\.[a-z_]+ ?=|max_file_bytes", text), code
        assert not re.search(r"\b(the|file|please|give)\b", text, re.I), code


def test_operator_advice_stays_out_of_the_receipt_form() -> None:
    p = Problem("PRAKSIS_MISSING", "no praksis fits; give --praksis-id or a [[praksis.rules]]")
    assert p.as_dict() == {"kode": "PRAKSIS_MISSING", "melding": STAFF_TEXT["PRAKSIS_MISSING"]}
    assert "--praksis-id" in p.format("a.xml")  # … and it is in the CLI/log form
