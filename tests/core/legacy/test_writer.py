"""The legacy XML writer: layout as in alle-felter.xml, encodings, envelopes, refusals."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from lxml import etree
from support.paths import FIXTURES

from bridge.core.legacy.writer import Sender, write_bkm_xml
from bridge.core.model import (
    Behandlerkrav,
    Behandlerkravmelding,
    Eea,
    Identifikasjon,
    NlkKode,
    Prosedyrekode,
    Rekvirent,
    Tann,
    UtforendeBehandler,
    load_json,
)
from bridge.core.timezone import OSLO

BKM = "{http://www.kith.no/xmlstds/bkm/2006-12-20}"
MSGHEAD = "{http://www.kith.no/xmlstds/msghead/2006-05-24}"
ALLE_FELTER_MSG_ID = "6f1c2d8e-1b4a-4c55-9a57-0c9d3f6b2a10"
ALLE_FELTER_GEN_DATE = datetime(2014, 5, 17, 12, 0, tzinfo=OSLO)


def _parse(data: bytes) -> etree._Element:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    return etree.fromstring(data, parser)


def _tree(el: etree._Element) -> tuple[Any, ...]:
    """Element tree as comparable data: tag, attributes (display names `DN` left out: they are
    free text no field maps from), stripped text, children in order."""
    attrs = tuple(sorted((k, v) for k, v in el.attrib.items() if k != "DN"))
    text = (el.text or "").strip()
    return (el.tag, attrs, text, tuple(_tree(child) for child in el))


@pytest.fixture
def krav() -> Behandlerkrav:
    data = load_json((FIXTURES / "alle-felter.expected.json").read_text(encoding="utf-8"))
    return Behandlerkravmelding.model_validate(data).behandlerkrav


def _bkm(data: bytes) -> etree._Element:
    root = _parse(data)
    return root if root.tag == f"{BKM}BehandlerKrav" else root.find(f".//{BKM}BehandlerKrav")


def _write_alle_felter(krav: Behandlerkrav, **options: Any) -> bytes:
    return write_bkm_xml(
        krav,
        sender=Sender(name="Kongsvinger Tannhelse"),
        msg_id=ALLE_FELTER_MSG_ID,
        gen_date=ALLE_FELTER_GEN_DATE,
        versjon_epj="3.1",
        **options,
    )


# --------------------------------------------------------------------------- layout


def test_alle_felter_model_writes_the_reference_file(krav: Behandlerkrav) -> None:
    written = _write_alle_felter(krav)
    reference = (FIXTURES / "alle-felter.xml").read_bytes()
    assert _tree(_parse(written)) == _tree(_parse(reference))


def test_compact_output_is_the_same_tree(krav: Behandlerkrav) -> None:
    compact = _write_alle_felter(krav, pretty=False)
    assert compact.count(b"\n") == 1  # only after the XML declaration
    assert _tree(_parse(compact)) == _tree(_parse(_write_alle_felter(krav)))


def test_bare_envelope_is_the_behandlerkrav_alone(krav: Behandlerkrav) -> None:
    root = _parse(write_bkm_xml(krav, envelope="bare", versjon_epj="3.1"))
    reference = _bkm((FIXTURES / "alle-felter.xml").read_bytes())
    assert root.tag == f"{BKM}BehandlerKrav"
    assert _tree(root) == _tree(reference)


def test_base64_envelope_holds_the_whole_msghead(krav: Behandlerkrav) -> None:
    container = _parse(_write_alle_felter(krav, envelope="base64"))
    assert container.tag == f"{MSGHEAD}Base64Container"
    inner = base64.b64decode("".join(container.text.split()), validate=True)
    assert _tree(_parse(inner)) == _tree(_parse(_write_alle_felter(krav)))


def test_base64_envelope_keeps_the_inner_encoding(krav: Behandlerkrav) -> None:
    container = _parse(_write_alle_felter(krav, envelope="base64", encoding="ISO-8859-1"))
    inner = base64.b64decode("".join(container.text.split()))
    assert inner.startswith(b'<?xml version="1.0" encoding="ISO-8859-1"?>')


def test_msghead_sender_facts() -> None:
    krav = _small_krav()
    sender = Sender(name="Bø Legesenter", orgnr="912345678", her_id="8765", hpr="1234567")
    root = _parse(write_bkm_xml(krav, sender=sender, msg_id="m-1"))
    info = root.find(f"{MSGHEAD}MsgInfo")
    assert info.findtext(f"{MSGHEAD}MsgId") == "m-1"
    assert info.find(f"{MSGHEAD}Type").get("V") == "BKM"
    assert info.findtext(f"{MSGHEAD}MIGversion") == "v1.2 2006-05-24"
    org = info.find(f"{MSGHEAD}Sender/{MSGHEAD}Organisation")
    assert org.findtext(f"{MSGHEAD}OrganisationName") == "Bø Legesenter"
    idents = {
        i.find(f"{MSGHEAD}TypeId").get("V"): i.findtext(f"{MSGHEAD}Id")
        for i in org.findall(f"{MSGHEAD}Ident")
    }
    assert idents == {"ENH": "912345678", "HER": "8765"}
    hcp = org.find(f"{MSGHEAD}HealthcareProfessional/{MSGHEAD}Ident")
    assert (hcp.findtext(f"{MSGHEAD}Id"), hcp.find(f"{MSGHEAD}TypeId").get("V")) == (
        "1234567",
        "HPR",
    )
    receiver = info.find(f"{MSGHEAD}Receiver/{MSGHEAD}Organisation")
    assert receiver.findtext(f"{MSGHEAD}Ident/{MSGHEAD}Id") == "986965610"
    content = f"{MSGHEAD}Document/{MSGHEAD}RefDoc/{MSGHEAD}Content"
    assert root.find(f"{content}/{BKM}BehandlerKrav") is not None


def test_msg_id_defaults_to_a_fresh_uuid() -> None:
    krav = _small_krav()
    ids = {_parse(write_bkm_xml(krav)).findtext(f"{MSGHEAD}MsgInfo/{MSGHEAD}MsgId") for _ in "ab"}
    assert len(ids) == 2


# --------------------------------------------------------------------------- values


def _small_krav(**regning: Any) -> Behandlerkrav:
    base: dict[str, Any] = {
        "guid": "a5c3a1d0-0000-4000-8000-000000000001",
        "regningsnummer": "1",
        "tidspunkt": datetime(2026, 1, 6, 13, 35, tzinfo=OSLO),
        "pasient": {"etternavn": "Ærlig-Østbø", "fornavn": "Åse Bjørg", "kjonn": "2"},
        "takster": [{"belop": Decimal("155.00"), "kode": "2ad", "antall": 1}],
        "belop": Decimal("155.00"),
    }
    base.update(regning)
    return Behandlerkrav.model_validate(
        {"regninger": [base], "antallRegninger": 1, "belop": base["belop"]}
    )


def _enkeltregning(data: bytes) -> etree._Element:
    return _bkm(data).find(f"{BKM}Enkeltregning")


@pytest.mark.parametrize(
    ("tidspunkt", "local_time", "expected"),
    [
        (datetime(2014, 5, 17, 11, 20, tzinfo=OSLO), True, "2014-05-17T11:20:00"),
        (datetime(2014, 1, 17, 9, 0, tzinfo=UTC), True, "2014-01-17T10:00:00"),
        (datetime(2014, 7, 1, 22, 30, tzinfo=UTC), True, "2014-07-02T00:30:00"),
        (datetime(2014, 5, 17, 11, 20, tzinfo=OSLO), False, "2014-05-17T11:20:00+02:00"),
        (
            datetime(2014, 5, 17, 11, 20, tzinfo=timezone(timedelta(hours=-3))),
            False,
            "2014-05-17T11:20:00-03:00",
        ),
    ],
)
def test_datotid_is_oslo_wall_clock_or_offset(
    tidspunkt: datetime, local_time: bool, expected: str
) -> None:
    data = write_bkm_xml(_small_krav(tidspunkt=tidspunkt), local_time=local_time)
    assert _enkeltregning(data).findtext(f"{BKM}DatoTid") == expected


def test_amounts_are_exact_decimals() -> None:
    krav = _small_krav(
        kreditering=True,
        takster=[
            {"belop": Decimal("-1234567.89"), "kode": "2ad", "antall": 2},
            {"belop": Decimal("1E+2"), "kode": "L1", "antall": 1},
        ],
        belop=Decimal("-0.10"),
    )
    regning = _enkeltregning(write_bkm_xml(krav))
    verdier = [t.find(f"{BKM}Verdi").attrib for t in regning.iter(f"{BKM}Takst")]
    assert verdier == [{"V": "-1234567.89", "U": "NOK"}, {"V": "100", "U": "NOK"}]
    assert [t.findtext(f"{BKM}Antall") for t in regning.iter(f"{BKM}Takst")] == ["2", "1"]
    assert regning.find(f"{BKM}Behandling/{BKM}Refusjon").get("V") == "-0.10"
    assert regning.findtext(f"{BKM}Kreditering") == "true"
    krav_el = _bkm(write_bkm_xml(krav)).find(f"{BKM}Krav")
    assert krav_el.find(f"{BKM}SumKravSamlet").get("V") == "-0.10"


def test_sumkrav_layout_and_guid_tag() -> None:
    data = write_bkm_xml(_small_krav(), layout="sumkrav", guid_tag="Guid")
    regning = _enkeltregning(data)
    assert regning.find(f"{BKM}Behandling/{BKM}Refusjon") is None
    assert regning.find(f"{BKM}Behandling/{BKM}SumKrav/{BKM}Refusjon").get("V") == "155.00"
    assert regning.findtext(f"{BKM}Guid") == "a5c3a1d0-0000-4000-8000-000000000001"
    assert regning.find(f"{BKM}GUID") is None


def test_krav_totals_are_written_as_given_not_recomputed() -> None:
    krav = _small_krav().model_copy(update={"antallRegninger": 3, "belop": Decimal("999.00")})
    krav_el = _bkm(write_bkm_xml(krav)).find(f"{BKM}Krav")
    assert krav_el.findtext(f"{BKM}AntallRegninger") == "3"
    assert krav_el.find(f"{BKM}SumKravSamlet").get("V") == "999.00"


def test_markup_characters_are_escaped() -> None:
    merknad = "Pasient <ikke> møtt & \"ringt\" 'to' ganger"
    krav = _small_krav(merknad=merknad, pasient={"etternavn": 'A&B "<x>"'})
    regning = _enkeltregning(write_bkm_xml(krav, navn_epj='EPJ "<&>"'))
    assert regning.findtext(f"{BKM}Merknad") == merknad
    assert regning.findtext(f"{BKM}Patient/{BKM}FamilyName") == 'A&B "<x>"'


def test_a_character_xml_cannot_hold_is_refused() -> None:
    with pytest.raises(ValueError, match="U\\+0001"):
        write_bkm_xml(_small_krav(merknad="bad \x01 byte"))


def test_empty_optional_fields_are_left_out() -> None:
    regning = _enkeltregning(write_bkm_xml(_small_krav()))
    assert [child.tag.removeprefix(BKM) for child in regning] == [
        "GUID",
        "RegningNr",
        "DatoTid",
        "Patient",
        "Behandling",
    ]
    behandling = regning.find(f"{BKM}Behandling")
    assert [child.tag.removeprefix(BKM) for child in behandling] == ["Takst", "Refusjon"]


# --------------------------------------------------------------------------- encodings

NAVN = "Ærlig-Østbø Åsen"


@pytest.mark.parametrize(
    ("encoding", "bom", "prefix"),
    [
        ("UTF-8", False, b"<?xml"),
        ("UTF-8", True, b"\xef\xbb\xbf<?xml"),
        ("ISO-8859-1", False, b"<?xml"),
        ("windows-1252", False, b"<?xml"),
        ("UTF-16", True, b"\xff\xfe<\x00?\x00"),
        ("UTF-16", False, b"<\x00?\x00"),
    ],
)
def test_encodings_keep_norwegian_letters(encoding: str, bom: bool, prefix: bytes) -> None:
    krav = _small_krav(pasient={"etternavn": NAVN, "fornavn": "Per"}, merknad="Kostet 5 €")
    data = write_bkm_xml(krav, encoding=encoding, bom=bom)
    assert data.startswith(prefix)
    root = _parse(data)
    assert root.getroottree().docinfo.encoding.upper() == encoding.upper()
    regning = root.find(f".//{BKM}Enkeltregning")
    assert regning.findtext(f"{BKM}Patient/{BKM}FamilyName") == NAVN
    assert regning.findtext(f"{BKM}Merknad") == "Kostet 5 €"


def test_single_byte_encodings_write_one_byte_per_letter() -> None:
    krav = _small_krav(pasient={"etternavn": NAVN})
    assert NAVN.encode("iso-8859-1") in write_bkm_xml(krav, encoding="ISO-8859-1")
    assert NAVN.encode("cp1252") in write_bkm_xml(krav, encoding="windows-1252")


def test_letters_outside_latin1_become_character_references() -> None:
    krav = _small_krav(pasient={"etternavn": "Łukasiewicz"})
    data = write_bkm_xml(krav, encoding="ISO-8859-1")
    assert b"&#321;ukasiewicz" in data
    assert _enkeltregning(data).findtext(f"{BKM}Patient/{BKM}FamilyName") == "Łukasiewicz"


def test_bom_on_a_single_byte_encoding_is_refused() -> None:
    with pytest.raises(ValueError, match="byte order mark"):
        write_bkm_xml(_small_krav(), encoding="ISO-8859-1", bom=True)


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("field", "update"),
    [
        ("pasient.eea", {"pasient": {"etternavn": "X", "eea": Eea(cardId="80578000")}}),
        ("rekvirent", {"rekvirent": Rekvirent(hprNr="1234567")}),
        ("nlkkoder", {"nlkkoder": [NlkKode(belop=Decimal("10.00"), kode="701a")]}),
        ("debitor", {"debitor": "1"}),
        ("norpatkoder", {"norpatkoder": [Prosedyrekode(kode="X")]}),
        ("ncrpkoder", {"ncrpkoder": [Prosedyrekode(kode="X")]}),
        (
            "prosedyrekoder[0].belop",
            {"prosedyrekoder": [Prosedyrekode(kode="ACFE10", belop=Decimal("1.00"))]},
        ),
        (
            "utforendeBehandler.identifikasjon",
            {
                "utforendeBehandler": UtforendeBehandler(
                    identifikasjon=Identifikasjon(id="1234567", type="HPR"), type="1"
                )
            },
        ),
        (
            "henvisning.henvistFra.type",
            {
                "relatertBehandler": Identifikasjon(id="7", type="HPR"),
                "henvisning": {"henvistFra": Identifikasjon(id="7", type="HPR")},
            },
        ),
    ],
)
def test_fields_without_xml_source_raise(field: str, update: dict[str, Any]) -> None:
    krav = _small_krav(**update)
    with pytest.raises(ValueError, match=re.escape(f"regninger[0].{field} ")):
        write_bkm_xml(krav)


def test_empty_lists_without_xml_source_are_accepted() -> None:
    krav = _small_krav(norpatkoder=[], ncrpkoder=[], nlkkoder=[])
    assert _enkeltregning(write_bkm_xml(krav)) is not None


def test_teeth_that_differ_between_takster_raise() -> None:
    takster = [
        {"belop": Decimal("1.00"), "kode": "a", "tenner": [Tann(tannkode="11")]},
        {"belop": Decimal("1.00"), "kode": "b", "tenner": [Tann(tannkode="12")]},
    ]
    with pytest.raises(ValueError, match=r"regninger\[0\]\.takster\[1\]\.tenner"):
        write_bkm_xml(_small_krav(takster=takster, belop=Decimal("2.00")))


def test_shared_teeth_are_written_once_per_behandling() -> None:
    teeth = [Tann(tannkode="25I"), Tann(tannkode="34I")]
    takster = [
        {"belop": Decimal("1.00"), "kode": "a", "tenner": teeth},
        {"belop": Decimal("1.00"), "kode": "b", "tenner": teeth},
    ]
    regning = _enkeltregning(write_bkm_xml(_small_krav(takster=takster, belop=Decimal("2.00"))))
    assert [t.get("V") for t in regning.iter(f"{BKM}Tann")] == ["25I", "34I"]


def test_henvist_fra_must_be_the_relatert_behandler() -> None:
    other = _small_krav(
        relatertBehandler=Identifikasjon(id="1", type="HPR"),
        henvisning={"henvistFra": Identifikasjon(id="2")},
    )
    with pytest.raises(ValueError, match=r"henvistFra\.id differs"):
        write_bkm_xml(other)
    alone = _small_krav(henvisning={"henvistFra": Identifikasjon(id="2")})
    with pytest.raises(ValueError, match="henvistFra needs relatertBehandler"):
        write_bkm_xml(alone)


def test_a_regning_without_takster_is_refused() -> None:
    with pytest.raises(ValueError, match=r"regninger\[0\]\.takster is empty"):
        write_bkm_xml(_small_krav(takster=[]))


def test_an_identity_without_type_keeps_the_required_typeid_empty() -> None:
    krav = _small_krav(utforendeBehandler=UtforendeBehandler(id="12345678"))
    ident = _enkeltregning(write_bkm_xml(krav)).find(f"{BKM}Behandling/{BKM}Behandlerident")
    assert ident.findtext(f"{BKM}Id") == "12345678"
    assert ident.find(f"{BKM}TypeId").attrib == {}
