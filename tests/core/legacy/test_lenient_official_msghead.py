"""The official KITH MsgHead 1.2 schema and the bridge's envelopes agree both ways.

- Every MsgHead envelope the bridge accepts (each fixture the tests convert, the real-world
  deviations after lenient reading, what the bridge's own writer makes) is valid against the
  official MsgHead 1.2 schema (copied into tests/fixtures/official-xsd/). Its RefDoc/Content is
  `processContents="strict"`, so the claim inside is checked too: against the bridge's BKM
  schema, the official one not being public.
- The bridge's own, reconstructed MsgHead schema (xsd/msghead-v1_2.xsd) accepts the shapes the
  official schema allows and real EPJs write: it is never the stricter of the two.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree
from support import paths

from bridge.core.convert import ConvertContext, convert
from bridge.core.legacy import lenient
from bridge.core.legacy.namespaces import BKM_NS, MSGHEAD_NS
from bridge.core.legacy.read import read_legacy
from bridge.core.legacy.schemas import SchemaRegistry, builtin_xsd_dir

OFFICIAL = paths.FIXTURES / "official-xsd"
BASE64_NS = "http://www.kith.no/xmlstds/base64container"


def _parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


@pytest.fixture(scope="module")
def official(tmp_path_factory: pytest.TempPathFactory) -> etree.XMLSchema:
    """Official MsgHead 1.2 (+ xmldsig) and Base64Container, with the bridge's BKM schema for
    the claim inside Content."""
    imports = {
        MSGHEAD_NS: OFFICIAL / "MsgHead-v1_2.xsd",
        BASE64_NS: OFFICIAL / "kith-base64.xsd",
        BKM_NS: builtin_xsd_dir() / "bkm-2006-12-20.xsd",
    }
    lines = "".join(
        f'<xs:import namespace="{ns}" schemaLocation="{path.resolve().as_uri()}"/>'
        for ns, path in imports.items()
    )
    wrapper = tmp_path_factory.mktemp("xsd") / "all.xsd"
    wrapper.write_text(
        '<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" '
        f'targetNamespace="urn:bkm-bridge:test:all">{lines}</xs:schema>',
        encoding="utf-8",
    )
    return etree.XMLSchema(etree.parse(str(wrapper), _parser()))


@pytest.fixture(scope="module")
def registry() -> SchemaRegistry:
    return SchemaRegistry()


def _errors(schema: etree.XMLSchema, root: etree._Element) -> list[str]:
    if schema.validate(root):
        return []
    return [f"line {e.line}: {e.message}" for e in schema.error_log]


def _accepted_envelopes() -> list[Path]:
    """Every fixture with a MsgHead root that the bridge converts without an error."""
    found = []
    for path in sorted(paths.FIXTURES.rglob("*.xml")):
        data = path.read_bytes()
        if b"<MsgHead" not in data[:2048]:
            continue
        if convert(data, ConvertContext()).ok:
            found.append(path)
    return found


ACCEPTED = _accepted_envelopes()


def test_the_fixtures_hold_msghead_envelopes_of_every_kind() -> None:
    names = {p.relative_to(paths.FIXTURES).as_posix() for p in ACCEPTED}
    assert {"alle-felter.xml", "real-world/clean.xml", "real-world/epj-2023.xml"} <= names
    assert len(ACCEPTED) >= 15


@pytest.mark.parametrize(
    "path", ACCEPTED, ids=[p.relative_to(paths.FIXTURES).as_posix() for p in ACCEPTED]
)
def test_official_msghead_schema_accepts_every_envelope_the_bridge_accepts(
    official: etree.XMLSchema, path: Path
) -> None:
    """As the bridge reads it: after the lenient pass (a bare Ident in the MsgHead becomes Id
    and TypeId, or is left out), which is the envelope the bridge acted on."""
    data = path.read_bytes()
    document, problems = read_legacy(data)
    assert document is not None and document.msghead is not None, problems
    lenient.normalise(document, data)
    assert _errors(official, document.msghead) == []


def test_the_bridges_writer_makes_envelopes_the_official_schema_accepts(
    official: etree.XMLSchema,
) -> None:
    from bridge.core.legacy.writer import write_bkm_xml
    from bridge.core.model import Behandlerkrav

    result = convert((paths.FIXTURES / "alle-felter.xml").read_bytes(), ConvertContext())
    assert isinstance(result.behandlerkrav, Behandlerkrav)
    written = write_bkm_xml(result.behandlerkrav, msg_id="5e0c3c0e-9d3e-4a39-a8a4-1b1c1c4f6a01")
    assert _errors(official, etree.fromstring(written, _parser())) == []


# An envelope using the optional parts of the official MsgHead 1.2 that real EPJs write
# (ProcessingStatus, Ack, TypeHealthcareProfessional, several Idents, Address, TeleCom,
# Document/ContentType, RefDoc/Id, MimeType, Description, a Patient, OtherReceiver).
OFFICIAL_SHAPES = """<?xml version="1.0" encoding="UTF-8"?>
<MsgHead xmlns="http://www.kith.no/xmlstds/msghead/2006-05-24">
  <MsgInfo>
    <Type V="BKM" DN="Behandlerkravmelding"/>
    <MIGversion>v1.2 2006-05-24</MIGversion>
    <GenDate>2016-09-26T13:43:19.7652193+02:00</GenDate>
    <MsgId>04db7c38-3a4c-43ca-92eb-e2564857bc97</MsgId>
    <ProcessingStatus V="P" DN="Produksjon"/>
    <RequestedPriority V="N" DN="Normal"/>
    <Ack V="J" DN="Ja"/>
    <ConversationRef>
      <RefToParent>1</RefToParent>
      <RefToConversation>1</RefToConversation>
    </ConversationRef>
    <Sender>
      <ComMethod V="EDI" DN="EDI"/>
      <Organisation>
        <OrganisationName>Fjellheim legesenter</OrganisationName>
        <TypeOrganisation V="102" S="2.16.578.1.12.4.1.1.9040" DN="Legekontor"/>
        <Ident>
          <Id>910825518</Id>
          <TypeId V="ENH" S="2.16.578.1.12.4.1.1.9051" DN="Organisasjonsnummer"/>
        </Ident>
        <Ident>
          <Id>8094355</Id>
          <TypeId V="HER" S="2.16.578.1.12.4.1.1.9051" DN="HER-id"/>
        </Ident>
        <Address>
          <Type V="PST" DN="Postadresse"/>
          <StreetAdr>Postboks 1</StreetAdr>
          <PostalCode>0001</PostalCode>
          <City>Oslo</City>
        </Address>
        <TeleCom>
          <TypeTelecom V="WP" DN="Arbeidsplass"/>
          <TeleAddress V="tel:22000000"/>
        </TeleCom>
        <HealthcareProfessional>
          <TypeHealthcareProfessional V="LE" DN="Lege"/>
          <RoleToPatient V="4" S="2.16.578.1.12.4.1.1.9034" DN="Fastlege"/>
          <FamilyName>Lege</FamilyName>
          <GivenName>Test</GivenName>
          <Ident>
            <Id>9144889</Id>
            <TypeId V="HPR" S="2.16.578.1.12.4.1.1.8116" DN="HPR-nummer"/>
          </Ident>
          <Ident>
            <Id>8094356</Id>
            <TypeId V="HER" S="2.16.578.1.12.4.1.1.8116" DN="HER-id"/>
          </Ident>
        </HealthcareProfessional>
      </Organisation>
    </Sender>
    <Receiver>
      <ComMethod V="EDI" DN="EDI"/>
      <Organisation>
        <OrganisationName>Helfo</OrganisationName>
        <Ident>
          <Id>986965610</Id>
          <TypeId V="ENH" S="2.16.578.1.12.4.1.1.9051" DN="Organisasjonsnummer"/>
        </Ident>
        <Organisation>
          <OrganisationName>Helfo Behandlerkrav</OrganisationName>
          <Ident>
            <Id>79768</Id>
            <TypeId V="HER" S="2.16.578.1.12.4.1.1.9051" DN="HER-id"/>
          </Ident>
        </Organisation>
      </Organisation>
    </Receiver>
    <OtherReceiver>
      <RoleReceiver V="KOPI" DN="Kopimottaker"/>
      <Organisation>
        <OrganisationName>Arkiv</OrganisationName>
        <Ident>
          <Id>910825519</Id>
          <TypeId V="ENH" S="2.16.578.1.12.4.1.1.9051" DN="Organisasjonsnummer"/>
        </Ident>
      </Organisation>
    </OtherReceiver>
    <Patient>
      <FamilyName>Pasient</FamilyName>
      <GivenName>Test</GivenName>
      <Ident>
        <Id>15858010060</Id>
        <TypeId V="FNR" S="2.16.578.1.12.4.1.1.8116" DN="Fødselsnummer"/>
      </Ident>
    </Patient>
  </MsgInfo>
  <Document>
    <DocumentConnection V="H" DN="Hoveddokument"/>
    <ContentType V="BKM" S="2.16.578.1.12.4.1.1.8279" DN="Behandlerkravmelding"/>
    <ContentDescription>Behandlerkrav</ContentDescription>
    <RefDoc>
      <IssueDate V="2016-09-26T13:43:19"/>
      <MsgType V="XML" DN="XML-instans"/>
      <Id>04db7c38-3a4c-43ca-92eb-e2564857bc97</Id>
      <MimeType>text/xml</MimeType>
      <Description>Behandlerkravmelding</Description>
      <Content>
        CLAIM
      </Content>
    </RefDoc>
  </Document>
  SIGNATURE
</MsgHead>
"""


def _official_shapes() -> str:
    clean = (paths.FIXTURES / "real-world" / "clean.xml").read_text(encoding="utf-8")
    claim = clean[clean.index("<BehandlerKrav") : clean.index("</BehandlerKrav>") + 16]
    signed = (paths.FIXTURES / "real-world" / "signature.xml").read_text(encoding="utf-8")
    signature = signed[signed.index("<ds:Signature") : signed.index("</ds:Signature>") + 15]
    return OFFICIAL_SHAPES.replace("CLAIM", claim).replace("SIGNATURE", signature)


def test_the_official_shapes_are_official(official: etree.XMLSchema) -> None:
    root = etree.fromstring(_official_shapes().encode("utf-8"), _parser())
    assert _errors(official, root) == []


def test_the_bridges_msghead_schema_accepts_the_official_shapes() -> None:
    root = etree.fromstring(_official_shapes().encode("utf-8"), _parser())
    assert SchemaRegistry().validate(root) == []


def test_the_official_shapes_convert_like_the_clean_file() -> None:
    data = _official_shapes().encode("utf-8")
    result = convert(data, ConvertContext(praksis_id="1"))
    clean = convert(
        (paths.FIXTURES / "real-world" / "clean.xml").read_bytes(), ConvertContext(praksis_id="1")
    )
    assert result.ok and result.melding == clean.melding
    assert result.envelope is not None and result.envelope.sender_orgnr == "910825518"
    warnings = [(p.code, p.path) for p in result.problems]
    assert warnings == [
        ("LEGACY_VARIANT", "MsgHead/MsgInfo/GenDate"),  # 7 fraction digits
        ("LEGACY_VARIANT", "MsgHead/Signature"),
    ]


@pytest.mark.parametrize(
    "path", ACCEPTED, ids=[p.relative_to(paths.FIXTURES).as_posix() for p in ACCEPTED]
)
def test_the_bridges_msghead_schema_accepts_every_envelope_the_bridge_accepts(
    registry: SchemaRegistry, path: Path
) -> None:
    data = path.read_bytes()
    document, _ = read_legacy(data)
    assert document is not None and document.msghead is not None
    lenient.normalise(document, data)
    assert registry.validate(document.msghead) == []
