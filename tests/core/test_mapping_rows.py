"""Every row of the mapping table has a test: an XML fragment in, the JSON field out.

The expected values are written by hand from the official mapping table
(behandlerkravmelding_json_med_xml_mapping_2026-01-08), not derived from the code.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from bridge.core.convert import ConvertContext, convert
from bridge.core.mapping import mappings_dir, read_table_rows
from bridge.core.model import Behandlerkravmelding, to_jsonable
from bridge.core.rules import RULE_CODES

NS = "http://www.kith.no/xmlstds/bkm/2006-12-20"
TABLE = mappings_dir() / "bkm-2006-12-20.csv"


def bkm(
    *,
    krav_attrs: str = 'navnEPJ="TestEPJ"',
    krav_children: str = "",
    regning: str = "",
    patient: str = "",
    behandling: str = "",
    takster: str = '<Takst><Verdi V="100.00" U="NOK"/><Kode>2ad</Kode><Antall>1</Antall></Takst>',
    refusjon: str = '<Refusjon V="100.00" U="NOK"/>',
    krav: str = (
        '<Krav><AntallRegninger>1</AntallRegninger><SumKravSamlet V="100.00" U="NOK"/></Krav>'
    ),
    guid: str = "<GUID>11111111-2222-3333-4444-555555555555</GUID>",
) -> bytes:
    patient_el = f"<Patient>{patient}</Patient>" if patient else ""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<BehandlerKrav xmlns="{NS}" {krav_attrs}>
  {krav_children}
  <Enkeltregning>
    {guid}
    <RegningNr>42</RegningNr>
    <DatoTid>2026-01-06T13:03:00</DatoTid>
    {regning}
    {patient_el}
    <Behandling>
      {behandling}
      {takster}
      {refusjon}
    </Behandling>
  </Enkeltregning>
  {krav}
</BehandlerKrav>""".encode()


def json_of(xml: bytes) -> dict[str, Any]:
    """The JSON of a fragment about one row. A fragment may break a documented rule (a
    pasient with only an etternavn): those are tested in test_rules.py, not here."""
    result = convert(xml, ConvertContext(praksis_id="1004326178"))
    errors = [p for p in result.errors if p.code not in RULE_CODES]
    assert not errors, [p.format("test.xml") for p in result.problems]
    assert result.behandlerkrav is not None
    return to_jsonable(
        Behandlerkravmelding(praksisId="1004326178", behandlerkrav=result.behandlerkrav)
    )


def regning(data: dict[str, Any]) -> dict[str, Any]:
    return data["behandlerkrav"]["regninger"][0]


FNR = "47908702367"
ICPC2 = "2.16.578.1.12.4.1.1.7170"

# json_path → (xml, function picking the field from the JSON, expected value)
CASES: dict[str, tuple[bytes, Any, Any]] = {
    "praksisId": (bkm(), lambda d: d["praksisId"], "1004326178"),
    "behandlerkrav.avdeling": (
        bkm(krav_children="<Avdeling>Akuttmottaket, Kongsvinger</Avdeling>"),
        lambda d: d["behandlerkrav"]["avdeling"],
        "Akuttmottaket, Kongsvinger",
    ),
    "behandlerkrav.navnEPJ": (
        bkm(krav_attrs='navnEPJ="PasientJournalen v1.0" versjonEPJ="1.0"'),
        lambda d: d["behandlerkrav"]["navnEPJ"],
        "PasientJournalen v1.0",
    ),
    "behandlerkrav.reshId": (
        bkm(krav_children="<RESH>123456</RESH>"),
        lambda d: d["behandlerkrav"]["reshId"],
        "123456",
    ),
    "behandlerkrav.regninger[]": (
        bkm(),
        lambda d: len(d["behandlerkrav"]["regninger"]),
        1,
    ),
    "behandlerkrav.regninger[].guid": (
        bkm(guid="<Guid>f0bcd358-0676-49c7-94f8-c055c4b21332</Guid>"),
        lambda d: regning(d)["guid"],
        "f0bcd358-0676-49c7-94f8-c055c4b21332",
    ),
    "behandlerkrav.regninger[].korrigeringBetaltEgenandel": (
        bkm(regning='<BetaltEgenandel erBetalt="1" korrigering="true"/>'),
        lambda d: regning(d)["korrigeringBetaltEgenandel"],
        True,
    ),
    "behandlerkrav.regninger[].betaltEgenandel": (
        bkm(regning='<BetaltEgenandel erBetalt="1" korrigering="0"/>'),
        lambda d: (regning(d)["betaltEgenandel"], regning(d)["korrigeringBetaltEgenandel"]),
        (True, False),
    ),
    "behandlerkrav.regninger[].kreditering": (
        bkm(regning="<Kreditering>true</Kreditering>"),
        lambda d: regning(d)["kreditering"],
        True,
    ),
    "behandlerkrav.regninger[].regningsnummer": (
        bkm(),
        lambda d: regning(d)["regningsnummer"],
        "42",
    ),
    "behandlerkrav.regninger[].tidspunkt": (
        bkm(),  # 2026-01-06T13:03:00 without offset: winter, CET
        lambda d: regning(d)["tidspunkt"],
        "2026-01-06T13:03:00+01:00",
    ),
    "behandlerkrav.regninger[].merknad": (
        bkm(regning="<Merknad>Pasienten ble henvist på nytt</Merknad>"),
        lambda d: regning(d)["merknad"],
        "Pasienten ble henvist på nytt",
    ),
    "behandlerkrav.regninger[].pasient.etternavn": (
        bkm(patient="<FamilyName>Ærlig-Østbø</FamilyName>"),
        lambda d: regning(d)["pasient"],
        {"etternavn": "Ærlig-Østbø"},
    ),
    "behandlerkrav.regninger[].pasient.fornavn": (
        bkm(patient="<GivenName>Åse</GivenName>"),
        lambda d: regning(d)["pasient"],
        {"fornavn": "Åse"},
    ),
    "behandlerkrav.regninger[].pasient.kjonn": (
        bkm(patient='<Sex V="1" DN="Mann"/>'),
        lambda d: regning(d)["pasient"],
        {"kjonn": "1"},
    ),
    "behandlerkrav.regninger[].pasient.trygdenasjon": (
        bkm(patient='<Nationality V="SE" DN="Sverige"/>'),
        lambda d: regning(d)["pasient"],
        {"trygdenasjon": "SE"},
    ),
    "behandlerkrav.regninger[].pasient.identifikasjon.id": (
        bkm(patient=f'<Ident><Id>{FNR}</Id><TypeId V="FNR" S="2.16.578.1.12.4.1.1.8116"/></Ident>'),
        lambda d: regning(d)["pasient"]["identifikasjon"]["id"],
        FNR,
    ),
    "behandlerkrav.regninger[].pasient.identifikasjon.type": (
        bkm(patient='<Ident><Id>41017012345</Id><TypeId V="DNR"/></Ident>'),
        lambda d: regning(d)["pasient"]["identifikasjon"],
        {"id": "41017012345", "type": "DNR"},
    ),
    "behandlerkrav.regninger[].pasient.fodselsdato": (
        bkm(patient="<DateOfBirth>1982-03-30</DateOfBirth>"),
        lambda d: regning(d)["pasient"]["fodselsdato"],
        "1982-03-30",
    ),
    "behandlerkrav.regninger[].arsakFriEgenandel": (
        bkm(behandling='<KodeEgenandel V="B" DN="Barn under 16 år"/>'),
        lambda d: regning(d)["arsakFriEgenandel"],
        "B",
    ),
    "behandlerkrav.regninger[].diagnoser[]": (
        bkm(behandling=f'<Diagnose V="L73" S="{ICPC2}"/><Diagnose V="U71" S="{ICPC2}"/>'),
        lambda d: [x["kode"] for x in regning(d)["diagnoser"]],
        ["L73", "U71"],
    ),
    "behandlerkrav.regninger[].diagnoser[].kodeverk": (
        bkm(behandling='<Diagnose V="J06.9" S="2.16.578.1.12.4.1.1.7110"/>'),
        lambda d: regning(d)["diagnoser"][0]["kodeverk"],
        "2.16.578.1.12.4.1.1.7110",
    ),
    "behandlerkrav.regninger[].diagnoser[].kode": (
        bkm(behandling=f'<Diagnose V="L73" S="{ICPC2}" DN="Ankelsymptom"/>'),
        lambda d: regning(d)["diagnoser"],
        [{"kodeverk": ICPC2, "kode": "L73"}],
    ),
    "behandlerkrav.regninger[].sjeldenMedisinskTilstand": (
        bkm(behandling='<Sykdomslistepunkt V="FAB"/>'),
        lambda d: regning(d)["sjeldenMedisinskTilstand"],
        "FAB",
    ),
    "behandlerkrav.regninger[].henvisning.dato": (
        bkm(behandling="<HenvisningsDato>2025-12-20</HenvisningsDato>"),
        lambda d: regning(d)["henvisning"]["dato"],
        "2025-12-20",
    ),
    "behandlerkrav.regninger[].henvisning.id": (
        bkm(behandling="<HenvisningsId>H-77</HenvisningsId>"),
        lambda d: regning(d)["henvisning"],
        {"id": "H-77"},
    ),
    "behandlerkrav.regninger[].henvisning.diagnoser[]": (
        bkm(behandling=f'<HenvisningsDiagnose V="L09" S="{ICPC2}"/>'),
        lambda d: regning(d)["henvisning"]["diagnoser"],
        [{"kodeverk": ICPC2, "kode": "L09"}],
    ),
    "behandlerkrav.regninger[].henvisning.diagnoser[].kodeverk": (
        bkm(behandling='<HenvisningsDiagnose V="M54.5" S="2.16.578.1.12.4.1.1.7110"/>'),
        lambda d: regning(d)["henvisning"]["diagnoser"][0]["kodeverk"],
        "2.16.578.1.12.4.1.1.7110",
    ),
    "behandlerkrav.regninger[].henvisning.diagnoser[].kode": (
        bkm(behandling='<HenvisningsDiagnose V="M54.5" S="2.16.578.1.12.4.1.1.7110"/>'),
        lambda d: regning(d)["henvisning"]["diagnoser"][0]["kode"],
        "M54.5",
    ),
    "behandlerkrav.regninger[].henvisning.henvistFra.id": (
        bkm(behandling='<RelatertBehandler><Id>70008786</Id><TypeId V="HPR"/></RelatertBehandler>'),
        lambda d: regning(d)["henvisning"],
        {"henvistFra": {"id": "70008786"}},  # type has no XML source since 2026-01-08
    ),
    # The table's utforendeBehandler.id/.type, in the shape documented since 2026-04-23.
    "behandlerkrav.regninger[].utforendeBehandler.identifikasjon.id": (
        bkm(behandling='<Behandlerident><Id>9144889</Id><TypeId V="HPR"/></Behandlerident>'),
        lambda d: regning(d)["utforendeBehandler"]["identifikasjon"]["id"],
        "9144889",
    ),
    "behandlerkrav.regninger[].utforendeBehandler.identifikasjon.type": (
        bkm(behandling='<Behandlerident><Id>9144889</Id><TypeId V="HPR"/></Behandlerident>'),
        lambda d: regning(d)["utforendeBehandler"],
        {"identifikasjon": {"id": "9144889", "type": "HPR"}},
    ),
    "behandlerkrav.regninger[].relatertBehandler.id": (
        bkm(behandling='<RelatertBehandler><Id>70008786</Id><TypeId V="HPR"/></RelatertBehandler>'),
        lambda d: regning(d)["relatertBehandler"]["id"],
        "70008786",
    ),
    "behandlerkrav.regninger[].relatertBehandler.type": (
        bkm(behandling='<RelatertBehandler><Id>70008786</Id><TypeId V="HPR"/></RelatertBehandler>'),
        lambda d: regning(d)["relatertBehandler"],
        {"id": "70008786", "type": "HPR"},
    ),
    "behandlerkrav.regninger[].moderasjonskode": (
        bkm(behandling='<Moderasjonskode V="S" DN="Søskenmoderasjon"/>'),
        lambda d: regning(d)["moderasjonskode"],
        "S",
    ),
    "behandlerkrav.regninger[].stonadspunkt": (
        bkm(behandling='<Behandlingsform V="4h"/>'),
        lambda d: regning(d)["stonadspunkt"],
        "4h",
    ),
    "behandlerkrav.regninger[].prosedyrekoder[]": (
        bkm(
            behandling="<Prosedyrekode><Kodeverk>M</Kodeverk><Kode>ACFE10</Kode></Prosedyrekode>"
            "<Prosedyrekode><Kodeverk>K</Kodeverk><Kode>ABC01</Kode></Prosedyrekode>"
        ),
        lambda d: regning(d)["prosedyrekoder"],
        [{"kodeverk": "M", "kode": "ACFE10"}, {"kodeverk": "K", "kode": "ABC01"}],
    ),
    "behandlerkrav.regninger[].prosedyrekoder[].kodeverk": (
        bkm(behandling="<Prosedyrekode><Kode>ACFE10</Kode><Kodeverk>M</Kodeverk></Prosedyrekode>"),
        lambda d: regning(d)["prosedyrekoder"][0]["kodeverk"],
        "M",
    ),
    "behandlerkrav.regninger[].prosedyrekoder[].kode": (
        bkm(behandling="<Prosedyrekode><Kodeverk>M</Kodeverk><Kode>ACFE20</Kode></Prosedyrekode>"),
        lambda d: regning(d)["prosedyrekoder"][0]["kode"],
        "ACFE20",
    ),
    "behandlerkrav.regninger[].takster[]": (
        bkm(
            takster='<Takst><Verdi V="15.00"/><Kode>2ad</Kode></Takst>'
            '<Takst><Verdi V="255.00"/><Kode>2cd</Kode><Antall>1</Antall></Takst>',
            refusjon='<Refusjon V="270.00"/>',
            krav='<Krav><AntallRegninger>1</AntallRegninger><SumKravSamlet V="270.00"/></Krav>',
        ),
        lambda d: [t["kode"] for t in regning(d)["takster"]],
        ["2ad", "2cd"],
    ),
    "behandlerkrav.regninger[].takster[].belop": (
        bkm(takster='<Takst><Verdi V="74.10" U="NOK"/><Kode>1bd</Kode></Takst>'),
        lambda d: regning(d)["takster"][0]["belop"],
        Decimal("74.10"),
    ),
    "behandlerkrav.regninger[].takster[].kode": (
        bkm(takster='<Takst><Kode>1bd</Kode><Verdi V="74.00" U="NOK"/></Takst>'),
        lambda d: regning(d)["takster"][0]["kode"],
        "1bd",
    ),
    "behandlerkrav.regninger[].takster[].antall": (
        bkm(
            takster='<Takst><Verdi V="10.00"/><Kode>A</Kode><Antall>3</Antall></Takst>'
            '<Takst><Verdi V="20.00"/><Kode>B</Kode></Takst>'
        ),
        lambda d: [t["antall"] for t in regning(d)["takster"]],
        [3, 1],  # a missing Antall means 1
    ),
    "behandlerkrav.regninger[].takster[].tenner[]": (
        bkm(
            behandling='<Tann V="25I"/><Tann V="34I"/>',
            takster='<Takst><Verdi V="50.00"/><Kode>501</Kode></Takst>'
            '<Takst><Verdi V="50.00"/><Kode>502</Kode></Takst>',
        ),
        lambda d: [t["tenner"] for t in regning(d)["takster"]],
        [[{"tannkode": "25I"}, {"tannkode": "34I"}]] * 2,  # every takst carries the teeth
    ),
    "behandlerkrav.regninger[].takster[].tenner[].tannkode": (
        bkm(behandling='<Tann V="11M"/>'),
        lambda d: regning(d)["takster"][0]["tenner"][0]["tannkode"],
        "11M",
    ),
    "behandlerkrav.regninger[].belop": (
        bkm(refusjon='<SumKrav><EgenandelHonorar V="0"/><Refusjon V="100.00" U="NOK"/></SumKrav>'),
        lambda d: regning(d)["belop"],
        Decimal("100.00"),
    ),
    "behandlerkrav.antallRegninger": (
        bkm(),
        lambda d: d["behandlerkrav"]["antallRegninger"],
        1,
    ),
    "behandlerkrav.belop": (
        bkm(),
        lambda d: d["behandlerkrav"]["belop"],
        Decimal("100.00"),
    ),
}

# Rows the official table documents without an XML source: they must never appear.
NO_SOURCE = {
    "behandlerkrav.regninger[].pasient.eea",
    "behandlerkrav.regninger[].henvisning.henvistFra.type",
    "behandlerkrav.regninger[].utforendeBehandler.type",
}


def test_every_table_row_has_a_case() -> None:
    rows = {row.json_path for row in read_table_rows(TABLE)}
    assert rows == set(CASES) | NO_SOURCE


@pytest.mark.parametrize("json_path", sorted(CASES))
def test_mapping_row(json_path: str) -> None:
    xml, pick, expected = CASES[json_path]
    assert pick(json_of(xml)) == expected


def test_rows_without_source_never_appear() -> None:
    data = json_of(
        bkm(
            patient=f'<Ident><Id>{FNR}</Id><TypeId V="FNR"/></Ident>',
            behandling='<RelatertBehandler><Id>70008786</Id><TypeId V="HPR"/></RelatertBehandler>'
            '<Behandlerident><Id>9144889</Id><TypeId V="HPR"/></Behandlerident>',
        )
    )
    assert "eea" not in regning(data)["pasient"]
    assert "type" not in regning(data)["henvisning"]["henvistFra"]
    assert "type" not in regning(data)["utforendeBehandler"]


def test_refusjon_layouts_are_equivalent() -> None:
    newer = json_of(bkm(refusjon='<Refusjon V="100.00"/>'))
    older = json_of(bkm(refusjon='<SumKrav><Refusjon V="100.00"/></SumKrav>'))
    assert newer == older


def test_empty_values_are_left_out() -> None:
    data = json_of(bkm(krav_children="<Avdeling>  </Avdeling>", regning="<Merknad></Merknad>"))
    assert "avdeling" not in data["behandlerkrav"]
    assert "merknad" not in regning(data)
    assert "pasient" not in regning(data)


@pytest.mark.parametrize(
    ("local", "expected"),
    [
        ("2026-01-06T13:03:00", "2026-01-06T13:03:00+01:00"),  # CET
        ("2014-05-17T11:20:00", "2014-05-17T11:20:00+02:00"),  # CEST
        ("2026-03-29T01:59:59", "2026-03-29T01:59:59+01:00"),  # last second of winter time
        ("2026-03-29T03:00:00", "2026-03-29T03:00:00+02:00"),  # first hour of summer time
        ("2026-10-25T01:30:00", "2026-10-25T01:30:00+02:00"),  # before the change back
        ("2026-10-25T03:30:00", "2026-10-25T03:30:00+01:00"),  # after it
        ("2026-10-25T02:30:00", "2026-10-25T02:30:00+02:00"),  # repeated hour: first occurrence
        ("2026-07-01T12:00:00+00:00", "2026-07-01T12:00:00+00:00"),  # an explicit offset is kept
        ("2026-07-01T12:00:00Z", "2026-07-01T12:00:00+00:00"),
        ("2026-07-01T12:00:00.750", "2026-07-01T12:00:00+02:00"),  # seconds precision
    ],
)
def test_datotid_becomes_oslo_time(local: str, expected: str) -> None:
    xml = bkm().replace(b"2026-01-06T13:03:00", local.encode())
    assert regning(json_of(xml))["tidspunkt"] == expected


@pytest.mark.parametrize(
    ("text", "expected"), [("true", True), ("1", True), ("false", False), ("0", False)]
)
def test_booleans(text: str, expected: bool) -> None:
    assert (
        regning(json_of(bkm(regning=f"<Kreditering>{text}</Kreditering>")))["kreditering"]
        is expected
    )


def test_amounts_keep_their_digits_and_sign() -> None:
    xml = bkm(
        regning="<Kreditering>true</Kreditering>",
        takster='<Takst><Verdi V="-435.50"/><Kode>3ad</Kode></Takst>',
        refusjon='<Refusjon V="-435.50"/>',
        krav='<Krav><AntallRegninger>1</AntallRegninger><SumKravSamlet V="-435.5"/></Krav>',
    )
    data = json_of(xml)
    assert regning(data)["belop"] == Decimal("-435.50")
    assert str(regning(data)["belop"]) == "-435.50"
    assert data["behandlerkrav"]["belop"] == Decimal("-435.5")


def test_a_typeid_with_v_and_dn_swapped_is_read_as_the_code() -> None:
    # Real EPJ files write TypeId V="HPR-nummer" DN="HPR" (reference: real-world.md). The
    # lenient reading (bridge.core.legacy.lenient) reads the code before the table is applied,
    # and says so; the JSON BKM takes the code only (FNR, DNR or HPR for a behandler).
    ident = '<Id>9144889</Id><TypeId V="HPR-nummer" DN="HPR"/>'
    data = bkm(
        behandling=f"<Behandlerident>{ident}</Behandlerident>",
        patient=f'<Ident><Id>{FNR}</Id><TypeId V="Fødselsnummer" DN="FNR"/></Ident>',
    )
    result = convert(data, ConvertContext(praksis_id="1004326178"))
    assert result.errors == [], [p.format("test.xml") for p in result.errors]
    assert [p.code for p in result.problems] == ["LEGACY_VARIANT", "LEGACY_VARIANT"]
    out = regning(json_of(data))
    assert out["utforendeBehandler"] == {"identifikasjon": {"id": "9144889", "type": "HPR"}}
    assert out["pasient"]["identifikasjon"]["type"] == "FNR"
    # A TypeId that names no code stays as written, and the documented rules say so.
    odd = bkm(behandling='<Behandlerident><Id>9144889</Id><TypeId V="ENH"/></Behandlerident>')
    assert [p.code for p in convert(odd, ConvertContext(praksis_id="1")).errors] == [
        "KODEVERK_CODE_UNKNOWN"
    ]
