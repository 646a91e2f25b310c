"""The code lists and conditional rules of the KUHR Krav API documentation, checked before a
claim is sent (bridge.core.rules), through `check_rules` on claims built as the model reads
them, through `convert` on legacy XML, and through `bkm-bridge validate` and `convert`."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest
from support.paths import FIXTURES
from typer.testing import CliRunner

from bridge.cli.app import app
from bridge.core.convert import ConvertContext, convert
from bridge.core.model import Behandlerkrav
from bridge.core.problems import Problem, Severity
from bridge.core.rules import check_rules, code_lists, praksis_rules

FNR = "47908702367"


def regning(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "guid": "0b8dc559-6c2d-419b-aeef-faaf537c6117",
        "regningsnummer": "12496",
        "tidspunkt": "2026-01-06T13:35:00+01:00",
        "pasient": {"identifikasjon": {"id": FNR, "type": "FNR"}, "kjonn": "2"},
        "takster": [{"belop": "435.00", "kode": "3ad", "antall": 1}],
        "belop": "435.00",
    }
    base.update(changes)
    return base


def krav(*regninger: dict[str, Any], **fields: Any) -> Behandlerkrav:
    items = list(regninger) or [regning()]
    return Behandlerkrav.model_validate(
        {"regninger": items, "antallRegninger": len(items), "belop": "0", **fields}
    )


def found(problems: list[Problem]) -> list[tuple[str, str | None, Severity]]:
    return [(p.code, p.path, p.severity) for p in problems]


E, W = Severity.ERROR, Severity.WARNING
R0 = "behandlerkrav.regninger[0]"


def test_a_claim_that_follows_the_documentation_has_no_problems() -> None:
    assert check_rules(krav()) == []
    assert check_rules(krav(), praksistype="FALE") == []


# --------------------------------------------------------------------------- code lists


@pytest.mark.parametrize(
    ("change", "path"),
    [
        (
            {"pasient": {"identifikasjon": {"id": FNR, "type": "FNR"}, "kjonn": "3"}},
            "pasient.kjonn",
        ),
        (
            {"pasient": {"identifikasjon": {"id": FNR, "type": "SSN"}}},
            "pasient.identifikasjon.type",
        ),
        (
            {"utforendeBehandler": {"identifikasjon": {"id": "9144900", "type": "HNR"}}},
            "utforendeBehandler.identifikasjon.type",
        ),
        (
            {
                "utforendeBehandler": {
                    "identifikasjon": {"id": "9144900", "type": "ENH"},
                    "type": "1",
                }
            },
            "utforendeBehandler.identifikasjon.type",
        ),
        ({"relatertBehandler": {"id": "9144900", "type": "UID"}}, "relatertBehandler.type"),
        ({"moderasjonskode": "X"}, "moderasjonskode"),
        (
            {"prosedyrekoder": [{"kodeverk": "M", "kode": "A"}, {"kodeverk": "Z", "kode": "B"}]},
            "prosedyrekoder[1].kodeverk",
        ),
    ],
)
def test_a_code_outside_a_complete_list_is_an_error(change: dict[str, Any], path: str) -> None:
    problems = check_rules(krav(regning(**change)))
    assert found(problems) == [("KODEVERK_CODE_UNKNOWN", f"{R0}.{path}", E)]
    assert problems[0].message.startswith(f"Regning 12496: {path} is ")


def test_the_sentence_names_the_list_and_where_it_is_documented() -> None:
    [problem] = check_rules(
        krav(regning(pasient={"identifikasjon": {"id": FNR, "type": "FNR"}, "kjonn": "M"}))
    )
    assert problem.message == (
        "Regning 12496: pasient.kjonn is 'M', which is not a code of 3101 Kjønn (1 Mann, "
        "2 Kvinne, 9 Ikke spesifisert) (behandlerkravmelding_json.md, pasient.kjonn)."
    )
    assert FNR not in problem.message


def test_every_documented_code_is_accepted() -> None:
    lists = code_lists()
    for kjonn in lists["kjonn"].codes:
        pasient = {"identifikasjon": {"id": FNR, "type": "FNR"}, "kjonn": kjonn}
        assert check_rules(krav(regning(pasient=pasient))) == []
    for idtype in lists["pasient_idtype"].codes:
        pasient = {"identifikasjon": {"id": "1", "type": idtype}}
        assert check_rules(krav(regning(pasient=pasient))) == []
    for kodeverk in ("K", "M", "R", "Q", "G"):  # G: the example with all fields
        prosedyre = [{"kodeverk": kodeverk, "kode": "ACFE10"}]
        assert check_rules(krav(regning(prosedyrekoder=prosedyre))) == []
    assert check_rules(krav(regning(moderasjonskode="S"))) == []


def test_lists_the_docs_only_give_examples_of_warn_on_a_strange_shape_only() -> None:
    fine = regning(
        arsakFriEgenandel="C",  # not among the examples, but shaped like a 7461 code
        debitor="1",
        utforendeBehandler={"identifikasjon": {"id": "9144900", "type": "HPR"}, "type": "1"},
    )
    assert check_rules(krav(fine)) == []
    odd = regning(
        arsakFriEgenandel="frikort",
        debitor="Helfo",
        utforendeBehandler={"identifikasjon": {"id": "9144900", "type": "HPR"}, "type": "lege"},
    )
    problems = check_rules(krav(odd))
    assert found(problems) == [
        ("KODEVERK_CODE_UNKNOWN", f"{R0}.arsakFriEgenandel", W),
        ("KODEVERK_CODE_UNKNOWN", f"{R0}.debitor", W),
        ("KODEVERK_CODE_UNKNOWN", f"{R0}.utforendeBehandler.type", W),
    ]
    assert "kodeverk 7461; documented: A Smittefarlig sykdom" in problems[0].message
    assert "check it against the code list" in problems[1].message


# --------------------------------------------------------------------------- formats


def test_tannkode_is_two_digits_and_an_optional_surface() -> None:
    good = [{"tannkode": t} for t in ("00", "01", "11", "11I", "16O", "41L")]
    takst = {"belop": "435.00", "kode": "3ad", "antall": 1, "tenner": good}
    assert check_rules(krav(regning(takster=[takst]))) == []
    bad = {**takst, "tenner": [{"tannkode": "11"}, {"tannkode": "1"}, {"tannkode": "25io"}]}
    problems = check_rules(krav(regning(takster=[bad])))
    assert found(problems) == [
        ("FIELD_FORMAT_INVALID", f"{R0}.takster[0].tenner[1].tannkode", E),
        ("FIELD_FORMAT_INVALID", f"{R0}.takster[0].tenner[2].tannkode", E),
    ]
    assert "tannkode '1' (takst 3ad) is not two digits" in problems[0].message
    assert problems[0].message.endswith("(behandlerkravmelding_json.md, takster.tenner; ISO 3950).")


def test_trygdenasjon_is_an_iso_landkode() -> None:
    pasient = {"identifikasjon": {"id": FNR, "type": "FNR"}, "trygdenasjon": "SE"}
    assert check_rules(krav(regning(pasient=pasient))) == []
    pasient["trygdenasjon"] = "Sverige"
    assert found(check_rules(krav(regning(pasient=pasient)))) == [
        ("FIELD_FORMAT_INVALID", f"{R0}.pasient.trygdenasjon", E)
    ]


def test_npe1_needs_the_npe_saksnummer_in_merknad() -> None:
    takster = [{"belop": "100", "kode": "Npe1", "antall": 1}]
    assert check_rules(krav(regning(takster=takster, merknad="NPE sak 2025/11223"))) == []
    problems = check_rules(krav(regning(takster=takster, merknad="se vedlegg")))
    assert found(problems) == [("FIELD_REQUIRED", f"{R0}.merknad", E)]
    assert "saksnummer as YYYY/12345" in problems[0].message


# --------------------------------------------------------------------------- general rules


def test_a_korrigering_can_only_set_betalt_egenandel_to_true() -> None:
    ok = regning(korrigeringBetaltEgenandel=True, betaltEgenandel=True, belop=None, pasient=None)
    assert check_rules(krav(ok)) == []
    back = regning(korrigeringBetaltEgenandel=True, betaltEgenandel=False, belop=None)
    problems = check_rules(krav(back))
    assert found(problems) == [("BETALT_EGENANDEL_KORRIGERING_INVALID", f"{R0}.betaltEgenandel", E)]
    assert "erBetalt can only be changed from false to true" in problems[0].message


def test_a_kreditering_with_a_positive_amount_is_a_warning() -> None:
    assert check_rules(krav(regning(kreditering=True, belop="-435.00"))) == []
    assert found(check_rules(krav(regning(kreditering=True)))) == [
        ("KREDITERING_AMOUNT_POSITIVE", f"{R0}.belop", W)
    ]


def test_a_pasient_without_ident_needs_fodselsdato_and_both_names() -> None:
    named = {"fodselsdato": "1970-03-11", "fornavn": "Åse", "etternavn": "Ås"}
    assert check_rules(krav(regning(pasient=named))) == []
    problems = check_rules(krav(regning(pasient={"etternavn": "Ås", "kjonn": "2"})))
    assert found(problems) == [("FIELD_REQUIRED", f"{R0}.pasient.fodselsdato", E)]
    assert "Ås" not in problems[0].message
    only_date = check_rules(krav(regning(pasient={"fodselsdato": "1970-03-11", "etternavn": "Ås"})))
    assert found(only_date) == [("FIELD_REQUIRED", f"{R0}.pasient.fornavn", E)]
    # A kreditering refers to the original by guid: its pasient is not judged.
    assert (
        check_rules(krav(regning(kreditering=True, belop="-1", pasient={"etternavn": "Ås"}))) == []
    )


def test_stonadspunkt_1_names_the_sjelden_medisinsk_tilstand() -> None:
    assert check_rules(krav(regning(stonadspunkt="1", sjeldenMedisinskTilstand="FAB"))) == []
    assert found(check_rules(krav(regning(stonadspunkt="1")))) == [
        ("FIELD_REQUIRED", f"{R0}.sjeldenMedisinskTilstand", E)
    ]


# --------------------------------------------------------------------------- praksis rules


def test_avdeling_and_resh_for_rehabilitering_poliklinikk_and_utland() -> None:
    for praksistype in ("OPPT", "SYKE", "BEUT"):
        problems = praksis_rules(krav(), praksistype)
        assert found(problems) == [
            ("FIELD_REQUIRED", "behandlerkrav.avdeling", E),
            ("FIELD_REQUIRED", "behandlerkrav.reshId", E),
        ], praksistype
        assert problems[0].message.startswith("behandlerkrav.avdeling is missing;")
    given = krav(avdeling="Akuttmottaket, Kongsvinger", reshId="123456")
    assert praksis_rules(given, "OPPT") == []
    assert praksis_rules(krav(), "FALE") == []


def test_henvisningsdato_for_kjeveortoped_from_2026() -> None:
    stonad = {"stonadspunkt": "15"}
    before = regning(tidspunkt="2025-12-31T10:00:00+01:00", **stonad)
    from_2026 = regning(tidspunkt="2026-01-02T10:00:00+01:00", **stonad)
    assert praksis_rules(krav(before), "TAKJ") == []
    problems = praksis_rules(krav(from_2026), "TAKJ")
    assert found(problems) == [("FIELD_REQUIRED", f"{R0}.henvisning.dato", E)]
    assert "from 01.01.2026 (praksis type TAKJ)" in problems[0].message
    with_date = regning(henvisning={"dato": "2025-11-01"}, **{**from_2026, **stonad})
    assert praksis_rules(krav(with_date), "TAFK") == []
    assert praksis_rules(krav(from_2026), "TANN") == []  # a tannlege, not a kjeveortoped


def test_henvisnings_id_for_ortoptist() -> None:
    assert found(praksis_rules(krav(), "ORTO")) == [("FIELD_REQUIRED", f"{R0}.henvisning.id", E)]
    assert praksis_rules(krav(regning(henvisning={"id": "H-1"})), "ORTO") == []


def test_utforende_behandler_for_kommunal_fysioterapi_and_no_diagnose() -> None:
    plain = regning(diagnoser=[{"kode": "L73"}])
    assert found(praksis_rules(krav(plain), "KOFY")) == [
        ("FIELD_REQUIRED", f"{R0}.utforendeBehandler", E),
        ("FIELD_NOT_USED", f"{R0}.diagnoser", W),
    ]
    behandler = {"identifikasjon": {"id": "9144900", "type": "HPR"}}
    assert praksis_rules(krav(regning(utforendeBehandler=behandler)), "FYKO") == []
    assert found(praksis_rules(krav(plain), "PASI")) == [("FIELD_NOT_USED", f"{R0}.diagnoser", W)]


def test_tannhelse_fields() -> None:
    # stonadspunkt for every behandling of a tannlege or tannpleier
    assert found(praksis_rules(krav(), "TANN")) == [("FIELD_REQUIRED", f"{R0}.stonadspunkt", E)]
    assert praksis_rules(krav(regning(stonadspunkt="4h")), "TAPL") == []
    # the 600-takster need the referring behandler's HPR number
    kjeve = regning(stonadspunkt="15", takster=[{"belop": "500", "kode": "601a"}])
    assert found(praksis_rules(krav(kjeve), "TANN")) == [
        ("FIELD_REQUIRED", f"{R0}.relatertBehandler", E)
    ]
    kjeve["relatertBehandler"] = {"id": "9144900", "type": "HPR"}
    assert praksis_rules(krav(kjeve), "TANN") == []
    # moderasjonskode and stonadspunkt are the tannleges' fields
    assert found(praksis_rules(krav(regning(moderasjonskode="S", stonadspunkt="4h")), "FALE")) == [
        ("FIELD_NOT_USED", f"{R0}.moderasjonskode", W),
        ("FIELD_NOT_USED", f"{R0}.stonadspunkt", W),
    ]
    assert praksis_rules(krav(regning(moderasjonskode="S", stonadspunkt="4h")), "TANN") == []


def test_diagnose_kodeverk_and_sykdomsliste_by_praksis_type() -> None:
    icpc = [{"kodeverk": "2.16.578.1.12.4.1.1.7170", "kode": "L73"}]
    icd = [{"kodeverk": "2.16.578.1.12.4.1.1.7110", "kode": "F32"}]
    assert praksis_rules(krav(regning(diagnoser=icd)), "PSNO") == []
    problems = praksis_rules(krav(regning(diagnoser=icpc)), "PSNO")
    assert found(problems) == [("KODEVERK_CODE_UNKNOWN", f"{R0}.diagnoser[0].kodeverk", W)]
    assert "shall use ICD-10" in problems[0].message
    assert "L73" not in problems[0].message  # a diagnosis is patient data: never named
    assert praksis_rules(krav(regning(diagnoser=icpc)), "FYNO") == []
    assert found(praksis_rules(krav(regning(diagnoser=icd)), "KINO")) == [
        ("KODEVERK_CODE_UNKNOWN", f"{R0}.diagnoser[0].kodeverk", W)
    ]
    assert praksis_rules(krav(regning(diagnoser=icpc)), "FALE") == []  # lege: either
    assert found(praksis_rules(krav(regning(sjeldenMedisinskTilstand="4")), "FYNO")) == [
        ("FIELD_NOT_USED", f"{R0}.sjeldenMedisinskTilstand", W)
    ]


def test_an_unknown_or_missing_praksis_type_runs_no_praksis_rule() -> None:
    assert praksis_rules(krav(), None) == []
    assert praksis_rules(krav(), "XXXX") == []


# --------------------------------------------------------------------------- convert and CLI


def _tannlege_xml(tannkode: str = "25I", sex: str | None = None) -> bytes:
    data = (FIXTURES / "tannlege-egenandel.xml").read_bytes()
    data = data.replace(b'<Tann V="25I"/>', f'<Tann V="{tannkode}"/>'.encode())
    if sex is not None:
        data = data.replace(b"<Patient>", f'<Patient>\n              <Sex V="{sex}"/>'.encode())
    return data


def test_convert_reports_a_rule_at_the_regnings_line_and_builds_no_claim() -> None:
    data = _tannlege_xml(tannkode="251")
    result = convert(data, ConvertContext(praksis_id="1004326999"))
    assert not result.ok and result.melding is None
    [problem] = result.errors
    assert problem.code == "FIELD_FORMAT_INVALID"
    line = data[: data.index(b"<Enkeltregning>")].count(b"\n") + 1
    assert problem.line == line


def test_convert_with_the_praksis_type_runs_its_rules_too() -> None:
    data = _tannlege_xml().replace(b'<Behandlingsform V="4h"/>', b"")
    assert convert(data, ConvertContext(praksis_id="1")).ok
    result = convert(data, ConvertContext(praksis_id="1", praksistype="TANN"))
    assert [p.code for p in result.errors] == ["FIELD_REQUIRED"]


@pytest.fixture
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.upper().startswith("BKM_BRIDGE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.mark.usefixtures("_isolated")
def test_validate_and_convert_report_the_rule_and_write_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "tann.xml"
    bad.write_bytes(_tannlege_xml(sex="3"))
    runner = CliRunner()
    checked = runner.invoke(app, ["validate", str(bad)])
    assert checked.exit_code != 0
    assert "KODEVERK_CODE_UNKNOWN: Regning 101: pasient.kjonn is '3'" in checked.stderr
    assert "(behandlerkravmelding_json.md, pasient.kjonn)" in checked.stderr
    out = tmp_path / "out"
    converted = runner.invoke(
        app, ["convert", "--praksis-id", "1004326999", "--out", str(out), str(bad)]
    )
    assert converted.exit_code != 0
    assert "KODEVERK_CODE_UNKNOWN" in converted.stderr
    assert not out.exists() or not any(out.iterdir())
    good = tmp_path / "god.xml"
    good.write_bytes(_tannlege_xml(sex="2"))
    assert runner.invoke(app, ["validate", str(good)]).exit_code == 0


def test_the_rules_do_not_change_the_claim() -> None:
    claim = krav(regning(pasient={"etternavn": "Ås"}))
    before = copy.deepcopy(claim.model_dump())
    check_rules(claim, praksistype="OPPT")
    assert claim.model_dump() == before
