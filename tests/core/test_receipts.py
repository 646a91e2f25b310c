"""Receipts beside the originals: the JSON receipt, the AppRec, their paths and atomic writes.

The situations come from the seed's normal workflow (regning 4 avvist 470, 5 godkjent, 6 avvist
766; the corrected regning 6 godkjent and later utbetalt) and from the status endpoint's own
example (ingen_utbetaling, with innsending and vedtak merknader). KUHR's answers are the
documented JSON, copied into tests/fixtures/receipts/.
"""

from __future__ import annotations

import json
import os
import threading
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from lxml import etree
from support import paths

from bridge.core.apprec import build_apprec
from bridge.core.convert import ConvertContext, convert
from bridge.core.legacy.read import Envelope, read_legacy
from bridge.core.legacy.schemas import default_registry
from bridge.core.model import (
    Behandlerkravmelding,
    BehandlerkravmeldingListe,
    BehandlerkravmeldingStatus,
    SendInnResponse,
    load_json,
)
from bridge.core.outcomes import STATUS_SENTENCES
from bridge.core.problems import STAFF_TEXT, Problem
from bridge.core.receipts import SANDBOX_WARNING, ReceiptFacts, build_receipt, overall_status
from bridge.files.receipts import is_receipt_name, receipt_paths, write_receipts

FIXTURES = paths.FIXTURES / "receipts"
AR = "{http://www.kith.no/xmlstds/apprec/2004-11-21}"
OSLO = ZoneInfo("Europe/Oslo")
NOW = datetime(2026, 1, 6, 15, 31, 0, tzinfo=OSLO)
SEEN = datetime(2026, 1, 6, 15, 30, 5, tzinfo=OSLO)
SHA = "3f" * 32
FNRS = ("47908702367", "47908500667")
MSG_ID = "9c1f6a52-3d1e-4a6b-8c55-2f0d7e9b1a01"
GUID_4 = "f0bcd358-0676-49c7-94f8-c055c4b21332"
GUID_5 = "b7184d58-0ed4-4277-a60c-720b1daf69f7"
GUID_6 = "32b24c0b-facd-4f5e-aff9-9849ae477db5"


# --------------------------------------------------------------------------- helpers


def _json(name: str) -> Any:
    return load_json((FIXTURES / name).read_text(encoding="utf-8"))


def _claim(name: str = "seed-claim.json") -> Behandlerkravmelding:
    return Behandlerkravmelding.model_validate(_json(name))


def _submit(name: str) -> SendInnResponse:
    return SendInnResponse.model_validate(_json(name))


def _details(name: str) -> list[BehandlerkravmeldingStatus]:
    data = _json(name)
    if "behandlerkravmeldinger" not in data:  # the utbetalt example is a single entry
        data = {"behandlerkravmeldinger": [data]}
    return BehandlerkravmeldingListe.model_validate(data).behandlerkravmeldinger


def _seed_xml() -> bytes:
    return (FIXTURES / "seed-arbeidsflyt.xml").read_bytes()


def _envelope() -> Envelope:
    document, problems = read_legacy(_seed_xml())
    assert document is not None, problems
    return document.envelope


def _facts(state: str, **changes: Any) -> ReceiptFacts:
    base: dict[str, Any] = {
        "source": Path("/inbox/krav-2026-01-06.xml"),
        "sha256": SHA,
        "size": 3903,
        "environment": "prod",
        "state": state,
        "envelope": _envelope(),
        "praksis_id": "1004326178",
        "claim": _claim(),
        "timestamps": {"seen": SEEN},
    }
    base.update(changes)
    return ReceiptFacts(**base)


def _first_control(**changes: Any) -> ReceiptFacts:
    known = {
        "submit": _submit("seed-submit-mottatt.json"),
        "details": _details("seed-detail-kontrollert.json"),
    }
    return _facts("controlled", **(known | changes))


def _corrected(state: str, detail: str | None = None, **changes: Any) -> ReceiptFacts:
    """The seed's corrected claim (regning 6 with the right date) and KUHR's answers to it."""
    known = {
        "claim": _claim("seed-rettet-claim.json"),
        "submit": _submit("seed-rettet-submit-mottatt.json"),
        "details": _details(detail) if detail else [],
    }
    return _facts(state, **(known | changes))


def _local_rejection() -> ReceiptFacts:
    """The seed file with its total edited: conversion refuses it (SUM_MISMATCH)."""
    data = _seed_xml().replace(b'<SumKravSamlet V="434.00"', b'<SumKravSamlet V="999.00"')
    result = convert(data, ConvertContext(praksis_id="1004326178"))
    assert not result.ok
    return _facts("rejected", envelope=result.envelope, problems=result.problems, claim=None)


def _feil_i_melding() -> ReceiptFacts:
    return _facts(
        "feil_i_melding",
        praksis_id="1004326999",
        submit=_submit("submit-ukjent-praksisid.json"),
    )


def _duplicate() -> ReceiptFacts:
    return _facts("duplicate", duplicate_of="/inbox/old/krav-2026-01-06-kopi.xml")


def _rebehandling() -> ReceiptFacts:
    return _facts(
        "controlled",
        submit=_submit("seed-submit-mottatt.json"),
        details=_details("rebehandling-detail.json"),
    )


def _ingen_utbetaling() -> ReceiptFacts:
    return _facts(
        "no_payment",
        claim=None,
        envelope=None,
        details=_details("doc-detail-ingen-utbetaling.json"),
    )


def _apprec(facts: ReceiptFacts, now: datetime = NOW) -> etree._Element:
    data = build_apprec(facts, now=now)
    assert data is not None
    return etree.fromstring(data)


def _errors(root: etree._Element) -> list[tuple[str, str]]:
    return [(e.get("V"), e.get("DN")) for e in root.iter(f"{AR}Error")]


def _status(root: etree._Element) -> str:
    return root.find(f"{AR}Status").get("V")


def _regninger(receipt: dict[str, Any]) -> dict[str, tuple[str, list[str]]]:
    return {
        r["regningsnummer"]: (r["status"], [m["nummer"] for m in r["merknader"]])
        for r in receipt["regninger"]
    }


FINAL_SITUATIONS = {
    "first-control": _first_control,
    "corrected": lambda: _corrected("controlled", "seed-rettet-detail-kontrollert.json"),
    "paid": lambda: _corrected("paid", "seed-rettet-detail-utbetalt.json"),
    "local-rejection": _local_rejection,
    "feil-i-melding": _feil_i_melding,
    "duplicate": _duplicate,
    "rebehandling": _rebehandling,
    "ingen-utbetaling": _ingen_utbetaling,
}


# --------------------------------------------------------------------------- the seed workflow


def test_first_control_result_lists_each_regning_with_its_merknader() -> None:
    receipt = build_receipt(_first_control())

    assert receipt["status"] == "delvis_godkjent"
    assert receipt["kontrollresultat"] == "delvis_godkjent"
    assert receipt["tilstand"] == "controlled"
    assert receipt["behandlerkravmeldingId"] == "5138fbfe-3c9c-406f-b854-91177b00bb1a"
    assert receipt["praksisId"] == "1004326178"
    assert receipt["meldingsstatus"] == "ferdig_behandlet"
    assert receipt["kontrollstatus"] == "ferdig_kontrollert"
    assert receipt["utbetalingsstatus"] == "ikke_sendt_til_utbetaling"
    assert receipt["mottattidspunkt"] == "2026-01-06T15:30:29+01:00"
    assert receipt["sumKravbelop"] == Decimal("434")
    assert _regninger(receipt) == {
        "4": ("avvist", ["470"]),
        "5": ("godkjent", []),
        "6": ("avvist", ["766"]),
    }
    assert [r["guid"] for r in receipt["regninger"]] == [GUID_4, GUID_5, GUID_6]
    assert receipt["regninger"][2]["merknader"][0]["tekst"].startswith(
        "Enkeltregning er datert frem i tid"
    )
    assert receipt["vedtak"] is None  # KUHR's vedtak is all nulls at this point
    assert receipt["feilmeldinger"] == [] and receipt["problemer"] == []
    assert receipt["avsender"] == {
        "navn": "Kurbadet Helsesenter",
        "orgnr": "999999999",
        "herId": None,
        "hprNr": None,
        "msgId": MSG_ID,
        "genDate": "2026-01-06T15:30:00",
        "konvolutt": "msghead",
    }
    assert receipt["tidspunkter"] == {"seen": "2026-01-06T15:30:05+01:00"}
    assert receipt["melding"] == STATUS_SENTENCES["delvis_godkjent"]


def test_first_control_apprec_is_status_3_with_one_error_per_rejected_regning() -> None:
    root = _apprec(_first_control())

    assert _status(root) == "3"
    errors = _errors(root)
    assert [v for v, _ in errors] == ["470", "766"]
    assert errors[0][1].startswith("Regning 4 er avvist av Helfo (merknad 470: Takst 1bd/1be/1bk")
    assert errors[1][1].startswith(
        "Regning 6 er avvist av Helfo (merknad 766: Enkeltregning er datert frem i tid"
    )
    for _code, text in errors:  # what to do, in Norwegian
        assert text.endswith("Rett regningen i journalsystemet og send den på nytt.")
    # NAV's convention for an answer to a claim: OT is the RegningNr of the rejected regning.
    assert [e.get("OT") for e in root.iter(f"{AR}Error")] == ["4", "6"]
    for error in root.iter(f"{AR}Error"):
        assert error.get("S") == "2.16.578.1.12.4.1.1.8222"
    original = root.find(f"{AR}OriginalMsgId")
    assert original.find(f"{AR}MsgType").get("V") == "BKM"
    assert original.findtext(f"{AR}IssueDate") == "2026-01-06T15:30:00"
    assert original.findtext(f"{AR}Id") == MSG_ID
    receiver = root.find(f"{AR}Receiver/{AR}HCP/{AR}Inst")
    assert receiver.findtext(f"{AR}Name") == "Kurbadet Helsesenter"
    assert receiver.findtext(f"{AR}Id") == "999999999"
    assert receiver.find(f"{AR}TypeId").get("V") == "ENH"
    sender = root.find(f"{AR}Sender/{AR}HCP/{AR}Inst")
    assert sender.findtext(f"{AR}Id") == "986965610"  # Helfo, as the MsgHead addressed it
    assert "Helfo" in sender.findtext(f"{AR}Name") and "bkm-bridge" in sender.findtext(f"{AR}Name")
    assert root.find(f"{AR}MsgType").get("V") == "APPREC"
    assert root.findtext(f"{AR}MIGversion") == "v1.0 2004-11-21"
    assert root.findtext(f"{AR}GenDate") == "2026-01-06T15:31:00"


def test_corrected_regning_is_godkjent_and_apprec_ok_without_errors() -> None:
    facts = _corrected("controlled", "seed-rettet-detail-kontrollert.json")
    receipt = build_receipt(facts)

    assert receipt["status"] == "godkjent"
    assert receipt["behandlerkravmeldingId"] == "f00ddf25-f4f1-49b7-acd7-88cf4cbf9c71"
    assert _regninger(receipt) == {"6": ("godkjent", [])}
    root = _apprec(facts)
    assert _status(root) == "1"
    assert _errors(root) == []


def test_paid_receipt_shows_utbetalt_with_kontonr_and_exact_amount() -> None:
    facts = _corrected("paid", "seed-rettet-detail-utbetalt.json")
    receipt = build_receipt(facts)

    assert overall_status(facts) == "utbetalt"
    assert receipt["kontrollresultat"] == "godkjent"
    assert receipt["utbetalingsstatus"] == "utbetalt"
    assert receipt["vedtak"] == {
        "vedtakId": "100001812531790",
        "utbetaling": {
            "belop": Decimal("360"),
            "utbetaltdato": "2026-01-07T23:45:57+01:00",
            "kontonr": "12345678901",
            "kid": None,
        },
        "merknader": [],
    }
    assert _status(_apprec(facts)) == "1"


def test_amounts_are_written_with_their_exact_digits(tmp_path: Path) -> None:
    data = _json("seed-rettet-detail-utbetalt.json")
    data["vedtak"]["utbetaling"]["belop"] = Decimal("360.50")
    data["sumUtbetaltbelop"] = Decimal("64.10")
    detail = BehandlerkravmeldingStatus.model_validate(data)
    facts = _corrected("paid", details=[detail])
    facts.source = tmp_path / "krav.xml"

    [json_path, _] = write_receipts(facts, now=NOW)
    text = json_path.read_text(encoding="utf-8")
    assert '"belop": 360.50' in text
    assert '"sumUtbetaltbelop": 64.10' in text
    assert load_json(text)["vedtak"]["utbetaling"]["belop"] == Decimal("360.50")


def test_waiting_claims_have_behandles_regninger_and_no_apprec() -> None:
    submitted = _facts("submitted", submit=_submit("seed-submit-mottatt.json"))
    receipt = build_receipt(submitted)
    assert receipt["status"] == "sendt"
    assert receipt["meldingsstatus"] == "mottatt"
    assert receipt["behandlerkravmeldingId"] == "5138fbfe-3c9c-406f-b854-91177b00bb1a"
    assert _regninger(receipt) == {n: ("behandles", []) for n in ("4", "5", "6")}
    assert build_apprec(submitted, now=NOW) is None

    for state in ("seen", "converted", "submitting"):
        facts = _facts(state)
        assert overall_status(facts) == "venter"
        assert build_apprec(facts, now=NOW) is None


def test_control_in_progress_is_still_sendt() -> None:
    data = _json("seed-detail-kontrollert.json")["behandlerkravmeldinger"][0]
    data["kontrollstatus"] = "kontrolleres"
    for regning in data["innsending"]["regninger"]:
        regning["status"], regning["merknader"] = "behandles", []
    facts = _facts("submitted", details=[BehandlerkravmeldingStatus.model_validate(data)])
    assert overall_status(facts) == "sendt"
    assert build_receipt(facts)["kontrollresultat"] is None
    assert build_apprec(facts, now=NOW) is None


def test_transient_failure_keeps_the_callers_sentence_and_has_no_apprec() -> None:
    facts = _facts("failed", message="KUHR answered 503; will retry at 15:35.")
    receipt = build_receipt(facts)
    assert receipt["status"] == "feilet_midlertidig"
    assert receipt["melding"] == "KUHR answered 503; will retry at 15:35."
    assert build_apprec(facts, now=NOW) is None


# --------------------------------------------------------------------------- final rejections


def test_local_rejection_lists_problems_and_apprec_is_avvist() -> None:
    facts = _local_rejection()
    receipt = build_receipt(facts)

    assert receipt["status"] == "avvist_lokalt"
    assert receipt["behandlerkravmeldingId"] is None
    assert receipt["regninger"] == []  # nothing was built, nothing sent
    codes = [p["kode"] for p in receipt["problemer"]]
    assert "SUM_MISMATCH" in codes
    problem = receipt["problemer"][codes.index("SUM_MISMATCH")]
    krav_line = _seed_xml().split(b"<Krav>")[0].count(b"\n") + 1
    assert krav_line <= problem["linje"] <= krav_line + 2 and problem["melding"]

    assert problem["melding"] == STAFF_TEXT["SUM_MISMATCH"]  # Norwegian, what to do
    assert "SumKravSamlet" in problem["detalj"]  # the technical text, for the IT person

    root = _apprec(facts)
    assert _status(root) == "2"
    dn = f"{STAFF_TEXT['SUM_MISMATCH']} (linje {problem['linje']})"
    assert ("SUM_MISMATCH", dn) in _errors(root)
    sender = root.find(f"{AR}Sender/{AR}HCP/{AR}Inst").findtext(f"{AR}Name")
    assert "ikke sendt til Helfo" in sender
    assert root.find(f"{AR}OriginalMsgId").findtext(f"{AR}Id") == MSG_ID


def test_local_rejection_of_a_built_claim_lists_its_regninger_as_not_sent() -> None:
    problem = Problem(
        "PRAKSIS_MISSING", "no praksis has the sender's orgnr; give --praksis-id or a rule"
    )
    facts = _facts("rejected", problems=[problem], praksis_id=None)
    receipt = build_receipt(facts)
    assert _regninger(receipt) == {n: ("ikke_sendt", []) for n in ("4", "5", "6")}
    # Staff read what to do in Norwegian; the flag advice stays in the log and the CLI.
    assert receipt["problemer"] == [
        {"kode": "PRAKSIS_MISSING", "melding": STAFF_TEXT["PRAKSIS_MISSING"]}
    ]
    apprec = _apprec(facts)
    assert _errors(apprec) == [("PRAKSIS_MISSING", STAFF_TEXT["PRAKSIS_MISSING"])]
    for text in (json.dumps(receipt, default=str), etree.tostring(apprec).decode()):
        assert "--praksis-id" not in text and "praksis.rules" not in text


def test_unreadable_file_without_envelope_still_gets_a_valid_apprec() -> None:
    result = convert(_seed_xml()[:900], ConvertContext(praksis_id="1004326178"))
    assert result.envelope is None
    facts = _facts("rejected", envelope=None, claim=None, problems=result.problems)
    receipt = build_receipt(facts)
    assert receipt["avsender"] is None
    assert [p["kode"] for p in receipt["problemer"]] == ["XML_MALFORMED"]

    root = _apprec(facts)
    assert _errors(root)[0][0] == "XML_MALFORMED"
    receiver = root.find(f"{AR}Receiver/{AR}HCP/{AR}Inst")
    assert receiver.findtext(f"{AR}Name") == "Avsender ikke oppgitt i filen"
    assert receiver.findtext(f"{AR}Id") == "1004326178"  # the praksisId it was meant for
    # No MsgId to refer to: the Id is derived from the file's sha256, the same on every run.
    derived = root.find(f"{AR}OriginalMsgId").findtext(f"{AR}Id")
    assert derived != MSG_ID
    assert _apprec(facts).find(f"{AR}OriginalMsgId").findtext(f"{AR}Id") == derived
    other = _facts("rejected", envelope=None, claim=None, problems=result.problems, sha256="0" * 64)
    assert _apprec(other).find(f"{AR}OriginalMsgId").findtext(f"{AR}Id") != derived
    # No GenDate in the file either: IssueDate is when the bridge first saw it (Oslo time).
    assert root.find(f"{AR}OriginalMsgId").findtext(f"{AR}IssueDate") == "2026-01-06T15:30:05"


def test_feil_i_melding_carries_kuhrs_feilmeldinger() -> None:
    facts = _feil_i_melding()
    receipt = build_receipt(facts)

    assert receipt["status"] == "feil_i_melding"
    assert receipt["meldingsstatus"] == "feil_i_melding"
    assert receipt["praksisId"] == "1004326999"
    assert receipt["feilmeldinger"] == [
        {
            "kode": "UKJENT_PRAKSISID",
            "melding": "Oppgitt praksisId 1004326999 finnes ikke for helseaktøren",
        }
    ]
    assert _regninger(receipt) == {n: ("avvist", []) for n in ("4", "5", "6")}
    root = _apprec(facts)
    assert _status(root) == "2"
    assert _errors(root) == [
        (
            "UKJENT_PRAKSISID",
            "Helfo avviste meldingen: Oppgitt praksisId 1004326999 finnes ikke for "
            "helseaktøren. Rett dette i journalsystemet og send kravet på nytt.",
        )
    ]


def test_duplicate_names_the_earlier_file() -> None:
    facts = _duplicate()
    receipt = build_receipt(facts)

    assert receipt["status"] == "duplikat"
    assert receipt["duplikatAv"] == "/inbox/old/krav-2026-01-06-kopi.xml"
    assert _regninger(receipt) == {n: ("ikke_sendt", []) for n in ("4", "5", "6")}
    root = _apprec(facts)
    assert _status(root) == "2"
    [(code, text)] = _errors(root)
    assert code == "DUPLIKAT_FIL" and "krav-2026-01-06-kopi.xml" in text


def test_rebehandling_updates_the_regning_and_is_listed_separately() -> None:
    facts = _rebehandling()
    receipt = build_receipt(facts)

    # Regning 4 was approved on rebehandling; 6 stays avvist.
    assert _regninger(receipt) == {
        "4": ("godkjent", ["9990"]),
        "5": ("godkjent", []),
        "6": ("avvist", ["766"]),
    }
    assert receipt["regninger"][0]["rebehandlet"] is True
    assert "rebehandlet" not in receipt["regninger"][1]
    assert receipt["status"] == "delvis_godkjent"
    [entry] = receipt["rebehandlinger"]
    assert entry["innsendingId"] == "100001812599001"
    assert entry["mottattidspunkt"] == "2026-01-08T10:00:00+01:00"
    assert entry["sumKravbelop"] == Decimal("74")
    assert [(r["regningsnummer"], r["status"]) for r in entry["regninger"]] == [("4", "godkjent")]
    # The original control result stays at the top level.
    assert receipt["innsendingId"] == "100001812531977"

    root = _apprec(facts)
    assert _status(root) == "3"
    # One Error per regning rejected by its latest result: 4 was approved on rebehandling
    # (its merknad 9990 is in the JSON receipt), so only 6 is left.
    assert _errors(root) == [
        (
            "766",
            "Regning 6 er avvist av Helfo (merknad 766: "
            + receipt["regninger"][2]["merknader"][0]["tekst"].rstrip(". ")
            + "). Rett regningen i journalsystemet og send den på nytt.",
        )
    ]
    assert [e.get("OT") for e in root.iter(f"{AR}Error")] == ["6"]


def test_ingen_utbetaling_keeps_innsending_and_vedtak_merknader() -> None:
    facts = _ingen_utbetaling()
    receipt = build_receipt(facts)

    assert receipt["status"] == "ingen_utbetaling"
    assert receipt["kontrollresultat"] == "delvis_godkjent"
    # The doc's details example has the sums inside innsending, not on the entry.
    assert (receipt["sumKravbelop"], receipt["sumUtbetaltbelop"], receipt["antallRegninger"]) == (
        Decimal("396"),
        Decimal("198"),
        2,
    )
    assert receipt["praksisId"] == "1004326178"
    assert _regninger(receipt) == {"6897": ("avvist", ["710"]), "6898": ("godkjent", [])}
    assert [m["nummer"] for m in receipt["merknader"]] == ["458"]
    assert receipt["vedtak"]["vedtakId"] == "100001811802344"
    assert receipt["vedtak"]["utbetaling"]["kid"] == "123456789"
    assert [m["nummer"] for m in receipt["vedtak"]["merknader"]] == ["1478"]

    root = _apprec(facts)
    assert _status(root) == "3"
    assert [v for v, _ in _errors(root)] == ["710", "458", "1478"]
    assert _errors(root)[0][1].startswith(
        "Regning 6897 er avvist av Helfo (merknad 710: Samhandler har registrert"
    )


def test_all_regninger_avvist_is_avvist_even_without_payment() -> None:
    data = _json("seed-detail-kontrollert.json")["behandlerkravmeldinger"][0]
    data["innsending"]["regninger"][1]["status"] = "avvist"
    data["utbetalingsstatus"] = "ingen_utbetaling"
    facts = _facts("no_payment", details=[BehandlerkravmeldingStatus.model_validate(data)])
    assert overall_status(facts) == "avvist"
    # The message was taken and controlled; its regninger were rejected: Status 3, one Error
    # per rejected regning (NAV's convention), not 2 (which EPJs read as a technical refusal).
    root = _apprec(facts)
    assert _status(root) == "3"
    assert [e.get("OT") for e in root.iter(f"{AR}Error")] == ["4", "5", "6"]
    assert [v for v, _ in _errors(root)] == ["470", "AVVIST", "766"]


def test_sendt_til_utbetaling_follows_the_control_result() -> None:
    data = _json("seed-rettet-detail-kontrollert.json")["behandlerkravmeldinger"][0]
    data.update(utbetalingsstatus="sendt_til_utbetaling", vedtakId="100001812531790")
    facts = _corrected("controlled", details=[BehandlerkravmeldingStatus.model_validate(data)])
    receipt = build_receipt(facts)
    assert receipt["status"] == "sendt_til_utbetaling"
    assert receipt["vedtak"] == {"vedtakId": "100001812531790", "utbetaling": None, "merknader": []}


# --------------------------------------------------------------------------- AppRec rules


@pytest.mark.parametrize("situation", sorted(FINAL_SITUATIONS))
@pytest.mark.parametrize("environment", ["prod", "sandbox"])
def test_every_final_apprec_validates_against_the_xsd(situation: str, environment: str) -> None:
    facts = FINAL_SITUATIONS[situation]()
    facts.environment = environment
    data = build_apprec(facts, now=NOW)
    assert data is not None
    assert data.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")
    assert default_registry().validate(etree.fromstring(data)) == []


def test_the_xsd_check_would_catch_a_broken_apprec() -> None:
    root = _apprec(_first_control())
    root.remove(root.find(f"{AR}OriginalMsgId"))
    assert default_registry().validate(root) != []


def test_apprec_id_is_stable_for_the_same_outcome_and_new_for_another() -> None:
    first = _apprec(_first_control(), now=NOW)
    later = _apprec(_first_control(), now=datetime(2026, 1, 9, 8, 0, tzinfo=OSLO))
    assert first.findtext(f"{AR}Id") == later.findtext(f"{AR}Id")
    assert first.findtext(f"{AR}GenDate") != later.findtext(f"{AR}GenDate")

    rebehandlet = _apprec(_rebehandling())
    assert rebehandlet.findtext(f"{AR}Id") != first.findtext(f"{AR}Id")
    other_file = _apprec(_first_control(sha256="ab" * 32))
    assert other_file.findtext(f"{AR}Id") != first.findtext(f"{AR}Id")
    in_sandbox = _apprec(_first_control(environment="sandbox"))
    assert in_sandbox.findtext(f"{AR}Id") != first.findtext(f"{AR}Id")


def test_apprec_text_is_utf8() -> None:
    data = build_apprec(_first_control(), now=NOW)
    assert data is not None
    assert "forespørsel".encode() in data


def test_receiver_carries_her_and_hpr_of_the_sender() -> None:
    envelope = Envelope(
        kind="msghead",
        msg_id=MSG_ID,
        gen_date="2026-01-06T15:30:00",
        sender_name="Kurbadet Helsesenter",
        sender_orgnr="999999999",
        sender_her="8765432",
        sender_hpr="9144900",
    )
    root = _apprec(_first_control(envelope=envelope))
    inst = root.find(f"{AR}Receiver/{AR}HCP/{AR}Inst")
    extra = [
        (a.findtext(f"{AR}Id"), a.find(f"{AR}Type").get("V"))
        for a in inst.iter(f"{AR}AdditionalId")
    ]
    assert inst.findtext(f"{AR}Id") == "999999999"
    assert extra == [("8765432", "HER"), ("9144900", "HPR")]
    assert default_registry().validate(root) == []


# --------------------------------------------------------------------------- environment


def test_sandbox_receipts_say_so_loudly() -> None:
    facts = _first_control(environment="sandbox")
    receipt = build_receipt(facts)
    assert receipt["miljo"] == "sandbox"
    assert receipt["advarsel"] == SANDBOX_WARNING == "SANDBOX – ikke sendt til Helfo"
    root = _apprec(facts)
    assert SANDBOX_WARNING in root.find(f"{AR}Sender/{AR}HCP/{AR}Inst").findtext(f"{AR}Name")
    assert SANDBOX_WARNING in root.find(f"{AR}Status").get("DN")


def test_prod_receipts_carry_no_warning() -> None:
    facts = _first_control()
    assert "advarsel" not in build_receipt(facts)
    data = build_apprec(facts, now=NOW)
    assert data is not None and b"SANDBOX" not in data
    assert "advarsel" in build_receipt(_first_control(environment="dev"))


def test_facts_take_the_journal_states_and_refuse_unknown_ones() -> None:
    from bridge.core.outcomes import State

    for state in State:
        assert _facts(state).state == state.value
    with pytest.raises(ValueError, match="state"):
        _facts("done")
    with pytest.raises(ValueError, match="environment"):
        _facts("seen", environment="test")


# --------------------------------------------------------------------------- patient data


@pytest.mark.parametrize("situation", sorted(FINAL_SITUATIONS))
def test_no_fodselsnummer_in_either_receipt(situation: str, tmp_path: Path) -> None:
    facts = FINAL_SITUATIONS[situation]()
    facts.source = tmp_path / "krav.xml"
    written = write_receipts(facts, now=NOW)
    assert len(written) == 2
    for path in written:
        data = path.read_bytes()
        for fnr in FNRS:
            assert fnr.encode() not in data, (path.name, fnr)


def test_patient_values_echoed_in_texts_are_hidden() -> None:
    data = _json("seed-claim.json")
    pasient = data["behandlerkrav"]["regninger"][0]["pasient"]
    pasient.update(fornavn="Sta", etternavn="Tomat", fodselsdato="1987-10-07")
    detail = _json("seed-detail-kontrollert.json")
    detail["behandlerkravmeldinger"][0]["innsending"]["regninger"][0]["merknader"].append(
        {"nummer": "9004", "tekst": "Pasient Tomat (47908702367) er ikke registrert."}
    )
    problems = [
        Problem(
            "VALUE_INVALID",
            "Patient/DateOfBirth: '1987-10-07x' is not a date (for pasient.fodselsdato).",
            line=12,
            path="/MsgHead/Document/RefDoc/Content/BehandlerKrav/Enkeltregning[1]/Patient",
        ),
        Problem("SCHEMA_INVALID", "Patient Ident/Id '4790870236' is too short.", line=14),
        Problem("SCHEMA_INVALID", "Id 479087 02367 in Enkeltregning 1 is wrong.", line=15),
    ]
    facts = _facts(
        "controlled",
        claim=Behandlerkravmelding.model_validate(data),
        details=BehandlerkravmeldingListe.model_validate(detail).behandlerkravmeldinger,
        problems=problems,
        environment="sandbox",
    )
    receipt_text = json.dumps(build_receipt(facts), default=str, ensure_ascii=False)
    apprec = build_apprec(facts, now=NOW)
    assert apprec is not None
    for text in (receipt_text, apprec.decode("utf-8")):
        for secret in ("Tomat", "47908702367", "4790870236", "479087 02367", "1987-10-07"):
            assert secret not in text, secret
        assert "[skjult]" in text
    # What is not patient data stays readable.
    assert "merknad 9004: Pasient [skjult] ([skjult]) er ikke registrert" in apprec.decode()


@pytest.mark.parametrize(
    ("fornavn", "etternavn", "tekst"),
    [
        ("Kari", "Bø", "KARI er ikke registrert."),  # upper case
        ("Per", "Bø", "BØ er ikke registrert."),  # a name outside ASCII
        ("Iſak", "Lie", "Isak er ikke registrert."),  # a long s in the name, ASCII text
        ("Ivar", "Lie", "\u0130var er ikke registrert."),  # dotted capital I in the text
        ("ıda", "Lie", "Ida er ikke registrert."),  # dotless i in the name, ASCII text
    ],
)
def test_patient_names_in_kuhr_texts_are_hidden_in_any_case(
    fornavn: str, etternavn: str, tekst: str
) -> None:
    """Names are matched as IGNORECASE does, which also pairs ſ with s and ı, İ with i."""
    data = _json("seed-claim.json")
    data["behandlerkrav"]["regninger"][0]["pasient"].update(fornavn=fornavn, etternavn=etternavn)
    detail = _json("seed-detail-kontrollert.json")
    detail["behandlerkravmeldinger"][0]["innsending"]["regninger"][0]["merknader"].append(
        {"nummer": "9004", "tekst": tekst}
    )
    facts = _facts(
        "controlled",
        claim=Behandlerkravmelding.model_validate(data),
        details=BehandlerkravmeldingListe.model_validate(detail).behandlerkravmeldinger,
    )
    texts = [
        m["tekst"]
        for r in build_receipt(facts)["regninger"]
        for m in r["merknader"]
        if m["nummer"] == "9004"
    ]
    assert texts == ["[skjult] er ikke registrert."]


def test_receipt_lists_regninger_without_patient_fields() -> None:
    receipt = build_receipt(_first_control())
    for regning in receipt["regninger"]:
        assert set(regning) == {"guid", "regningsnummer", "status", "merknader"}


# --------------------------------------------------------------------------- paths and names


def test_receipts_sit_beside_the_original() -> None:
    json_path, apprec_path = receipt_paths(Path("/share/inn/KRAV 17.xml"))
    assert json_path == Path("/share/inn/KRAV 17.xml.kvittering.json")
    assert apprec_path == Path("/share/inn/KRAV 17.apprec.xml")
    json_path, apprec_path = receipt_paths(Path("/share/inn/KRAV17"))
    assert (json_path.name, apprec_path.name) == ("KRAV17.kvittering.json", "KRAV17.apprec.xml")


def test_separate_receipts_folder_mirrors_the_tree(tmp_path: Path) -> None:
    root = tmp_path / "inbox"
    source = root / "2026" / "januar" / "krav.xml"
    out = tmp_path / "kvitteringer"
    assert receipt_paths(source, out, root) == (
        out / "2026" / "januar" / "krav.xml.kvittering.json",
        out / "2026" / "januar" / "krav.apprec.xml",
    )
    assert receipt_paths(source, out)[0] == out / "krav.xml.kvittering.json"
    with pytest.raises(ValueError, match="not inside"):
        receipt_paths(tmp_path / "elsewhere" / "krav.xml", out, root)

    source.parent.mkdir(parents=True)
    source.write_bytes(_seed_xml())
    facts = _first_control(source=source)
    written = write_receipts(facts, receipts_dir=out, root=root, now=NOW)
    assert sorted(written) == sorted(receipt_paths(source, out, root))
    assert sorted(p.name for p in source.parent.iterdir()) == ["krav.xml"]  # original alone


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("krav.xml.kvittering.json", True),
        ("krav.apprec.xml", True),
        ("KRAV.APPREC.XML", True),
        ("krav.XML.Kvittering.JSON", True),
        (".krav.xml.kvittering.json.k2j3h4.tmp", True),
        (".krav.apprec.xml.abcd_12.tmp", True),
        ("krav.xml", False),
        ("apprec.xml", False),
        ("kvittering.json", False),
        ("krav.json", False),
        (".krav.xml.abcd.tmp", False),
        ("krav.apprec.xml.bak", False),
    ],
)
def test_is_receipt_name(name: str, expected: bool) -> None:
    assert is_receipt_name(name) is expected


@pytest.mark.parametrize("name", ["a.xml", "KRAV 1.XML", "noext", "x.y.xml", "æøå.xml"])
def test_every_receipt_path_is_recognised_as_a_receipt(name: str) -> None:
    for path in receipt_paths(Path("/in") / name):
        assert is_receipt_name(path.name)
    assert not is_receipt_name(name)


# --------------------------------------------------------------------------- writing


def test_write_receipts_writes_both_atomically_and_only_on_change(tmp_path: Path) -> None:
    source = tmp_path / "krav.xml"
    source.write_bytes(_seed_xml())
    facts = _first_control(source=source)

    written = write_receipts(facts, now=NOW)
    json_path, apprec_path = receipt_paths(source)
    assert written == [json_path, apprec_path]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "krav.apprec.xml",
        "krav.xml",
        "krav.xml.kvittering.json",
    ]  # no temp files left
    assert load_json(json_path.read_bytes())["status"] == "delvis_godkjent"
    assert _status(etree.fromstring(apprec_path.read_bytes())) == "3"

    assert write_receipts(facts, now=NOW) == []  # nothing changed, nothing touched
    later = datetime(2026, 1, 7, 9, 0, tzinfo=OSLO)
    facts.timestamps["controlled"] = datetime(2026, 1, 6, 15, 30, 50, tzinfo=OSLO)
    # The JSON moves on; the AppRec has the same outcome and is left as the EPJ saw it.
    assert write_receipts(facts, now=later) == [json_path]
    assert etree.fromstring(apprec_path.read_bytes()).findtext(f"{AR}GenDate") == (
        "2026-01-06T15:31:00"
    )


def test_status_moving_on_rewrites_the_receipts(tmp_path: Path) -> None:
    source = tmp_path / "krav.xml"
    json_path, apprec_path = receipt_paths(source)

    waiting = _facts("submitted", source=source, submit=_submit("seed-submit-mottatt.json"))
    assert write_receipts(waiting, now=NOW) == [json_path]
    assert not apprec_path.exists()
    assert load_json(json_path.read_bytes())["status"] == "sendt"

    assert write_receipts(_first_control(source=source), now=NOW) == [json_path, apprec_path]
    rebehandlet = _rebehandling()
    rebehandlet.source = source
    assert write_receipts(rebehandlet, now=NOW) == [json_path, apprec_path]
    assert [v for v, _ in _errors(etree.fromstring(apprec_path.read_bytes()))] == ["766"]


def test_a_new_version_without_answer_removes_the_old_apprec(tmp_path: Path) -> None:
    source = tmp_path / "krav.xml"
    write_receipts(_first_control(source=source), now=NOW)
    json_path, apprec_path = receipt_paths(source)
    assert apprec_path.exists()

    corrected = _facts("seen", source=source, sha256="cd" * 32, claim=None)
    write_receipts(corrected, now=NOW)
    assert not apprec_path.exists()
    receipt = load_json(json_path.read_bytes())
    assert (receipt["status"], receipt["sha256"]) == ("venter", "cd" * 32)


def test_a_reader_never_sees_a_partial_receipt(tmp_path: Path) -> None:
    """Two large receipts are written in turn while a reader keeps reading: every read is one
    of the two complete documents."""
    big = _json("seed-claim.json")
    template = big["behandlerkrav"]["regninger"][1]
    big["behandlerkrav"]["regninger"] = [
        {**template, "guid": f"00000000-0000-4000-8000-{i:012d}", "regningsnummer": str(i)}
        for i in range(3000)
    ]
    claim = Behandlerkravmelding.model_validate(big)
    source = tmp_path / "krav.xml"
    versions = [_facts("submitted", source=source, claim=claim, sha256=c * 64) for c in ("a", "b")]
    json_path, _ = receipt_paths(source)
    write_receipts(versions[0], now=NOW)
    assert json_path.stat().st_size > 300_000

    seen: set[str] = set()
    failures: list[str] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            try:
                seen.add(load_json(json_path.read_bytes())["sha256"])
            except Exception as err:  # any failure is the finding
                failures.append(repr(err))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(40):
            write_receipts(versions[i % 2], now=NOW)
    finally:
        stop.set()
        reader.join()
    assert failures == []
    assert seen <= {"a" * 64, "b" * 64} and seen
    assert [p.name for p in tmp_path.iterdir()] == [json_path.name]


def test_unwritable_receipts_folder_raises_and_leaves_no_temp_file(tmp_path: Path) -> None:
    blocker = tmp_path / "kvitteringer"
    blocker.write_text("a file where the folder should be")
    source = tmp_path / "inbox" / "krav.xml"
    with pytest.raises(OSError):
        write_receipts(_first_control(source=source), receipts_dir=blocker, now=NOW)
    assert sorted(os.listdir(tmp_path)) == ["kvitteringer"]


# --------------------------------------------------------------------------- outcome lines


def test_outcome_lines_speak_the_receipts_words() -> None:
    from bridge.core.receipts import outcome_of

    first = outcome_of(_first_control())
    assert first.line("x.xml") == (
        "x.xml: kontrollert: 2 avvist, 1 godkjent (delvis godkjent; merknader 470, 766)"
    )
    assert first.fields("x.xml") == {
        "file": "x.xml",
        "state": "delvis_godkjent",
        "codes": ["470", "766"],
        "regninger": {"avvist": 2, "godkjent": 1},
    }
    rejected = outcome_of(_local_rejection())
    assert rejected.status == "avvist_lokalt" and "SUM_MISMATCH" in rejected.codes
    assert rejected.line("x.xml").startswith("x.xml: avvist lokalt: ")
    assert outcome_of(_feil_i_melding()).line("x.xml") == (
        "x.xml: feil i melding: UKJENT_PRAKSISID"
    )
    paid = outcome_of(_corrected("paid", "seed-rettet-detail-utbetalt.json"))
    assert paid.line("x.xml") == "x.xml: utbetalt: 1 godkjent"
    assert outcome_of(_duplicate()).line("x.xml") == "x.xml: duplikat"


def test_a_dev_apprec_says_so_in_its_status() -> None:
    facts = _first_control()
    facts.environment = "dev"
    status = _apprec(facts).find(f"{AR}Status")
    assert status.get("V") == "3"
    assert (
        status.get("DN") == "OK, feil i delmelding (TESTMILJØ (dev) – ikke et ekte krav til Helfo)"
    )
