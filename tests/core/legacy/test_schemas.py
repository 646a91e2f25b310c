"""The schema registry: built-in XSDs, lookup by namespace, sentences, no network."""

from __future__ import annotations

import http.server
import pickle
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from lxml import etree
from support import paths

from bridge.core.legacy.explain import MAX_PROBLEMS
from bridge.core.legacy.namespaces import APPREC_NS, BKM_NS, MSGHEAD_NS
from bridge.core.legacy.schemas import SchemaLoadError, SchemaRegistry, default_registry
from bridge.core.problems import Problem

FIXTURES = paths.FIXTURES / "schemas"
ALLE_FELTER = (FIXTURES / "alle-felter.xml").read_text(encoding="utf-8")
BKM = f"{{{BKM_NS}}}"


def parse(text: str) -> etree._Element:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    return etree.fromstring(text.encode("utf-8"), parser)


def behandlerkrav(text: str) -> etree._Element:
    """The BehandlerKrav inside a MsgHead document, as read.py hands it over."""
    found = parse(text).find(f".//{BKM}BehandlerKrav")
    assert found is not None
    return found


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    """1-based line of the n-th occurrence of `needle` in `text`."""
    at = -1
    for _ in range(occurrence):
        at = text.index(needle, at + 1)
    return text.count("\n", 0, at) + 1


def replaced(old: str, new: str, text: str = ALLE_FELTER) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


@pytest.fixture(scope="module")
def registry() -> SchemaRegistry:
    return SchemaRegistry()


# --------------------------------------------------------------------------- valid claims


def test_builtin_registry_knows_the_three_namespaces() -> None:
    registry = default_registry()
    assert registry is default_registry()
    assert registry.namespaces() == {BKM_NS, MSGHEAD_NS, APPREC_NS}
    assert registry.knows(BKM_NS)
    assert not registry.knows("urn:nobody")
    assert registry.source(BKM_NS).name == "bkm-2006-12-20.xsd"
    assert registry.source(MSGHEAD_NS).name == "msghead-v1_2.xsd"
    assert registry.source(APPREC_NS).name == "apprec-v1_0.xsd"
    with pytest.raises(KeyError):
        registry.source("urn:nobody")


def test_every_builtin_schema_compiles() -> None:
    SchemaRegistry().compile_all()


def test_alle_felter_behandlerkrav_validates(registry: SchemaRegistry) -> None:
    assert registry.validate(behandlerkrav(ALLE_FELTER)) == []


def test_msghead_around_the_claim_validates(registry: SchemaRegistry) -> None:
    root = parse(ALLE_FELTER)
    assert etree.QName(root).namespace == MSGHEAD_NS
    assert registry.validate(root) == []


def test_sumkrav_layout_with_guid_spelling_validates(registry: SchemaRegistry) -> None:
    root = etree.parse(str(FIXTURES / "bkm-sumkrav-guid.xml")).getroot()
    assert root.find(f"{BKM}Enkeltregning/{BKM}Guid") is not None
    assert root.find(f"{BKM}Enkeltregning/{BKM}Behandling/{BKM}SumKrav/{BKM}Refusjon") is not None
    assert registry.validate(root) == []


def test_reordered_children_validate(registry: SchemaRegistry) -> None:
    root = etree.parse(str(FIXTURES / "bkm-reordered.xml")).getroot()
    assert etree.QName(root[0]).localname == "Krav"
    assert registry.validate(root) == []


def test_behandling_without_any_amount_validates(registry: SchemaRegistry) -> None:
    text = replaced('<Refusjon V="435.00" U="NOK"/>', "")
    assert registry.validate(behandlerkrav(text)) == []


@pytest.mark.parametrize("value", ["true", "false", "1", "0"])
def test_booleans_accept_words_and_digits(registry: SchemaRegistry, value: str) -> None:
    text = replaced("<Kreditering>false</Kreditering>", f"<Kreditering>{value}</Kreditering>")
    assert registry.validate(behandlerkrav(text)) == []


# --------------------------------------------------------------------------- invalid claims


def only_problem(registry: SchemaRegistry, element: etree._Element) -> Problem:
    problems = registry.validate(element)
    assert len(problems) == 1, problems
    assert problems[0].code == "SCHEMA_INVALID"
    return problems[0]


def test_missing_regningnr(registry: SchemaRegistry) -> None:
    text = replaced("<RegningNr>12496</RegningNr>", "")
    problem = only_problem(registry, behandlerkrav(text))
    assert problem.message == "Enkeltregning is missing its RegningNr element"
    assert problem.line == line_of(text, "<Enkeltregning>")
    assert problem.path == "BehandlerKrav/Enkeltregning[1]"


def test_missing_regningnr_and_datotid_are_both_named(registry: SchemaRegistry) -> None:
    text = replaced("<RegningNr>12496</RegningNr>", "")
    text = replaced("<DatoTid>2014-05-17T11:20:00</DatoTid>", "", text)
    messages = {p.message for p in registry.validate(behandlerkrav(text))}
    assert messages == {
        "Enkeltregning is missing its RegningNr element",
        "Enkeltregning is missing its DatoTid element",
    }


def test_bad_amount(registry: SchemaRegistry) -> None:
    text = replaced('<Verdi V="435.00" U="NOK"/>', '<Verdi V="abc" U="NOK"/>')
    problem = only_problem(registry, behandlerkrav(text))
    assert problem.message == (
        "Verdi/@V 'abc' is not an amount (expected a decimal number like 435.00)"
    )
    assert problem.line == line_of(text, '<Verdi V="abc"')
    assert problem.path == "BehandlerKrav/Enkeltregning[1]/Behandling/Takst[1]/Verdi"


def test_amount_with_three_decimals(registry: SchemaRegistry) -> None:
    text = replaced('<SumKravSamlet V="435.00"', '<SumKravSamlet V="435.005"')
    problem = only_problem(registry, behandlerkrav(text))
    assert "SumKravSamlet/@V '435.005'" in problem.message
    assert "decimals" in problem.message
    assert problem.path == "BehandlerKrav/Krav/SumKravSamlet"


def test_bad_datotid(registry: SchemaRegistry) -> None:
    text = replaced("<DatoTid>2014-05-17T11:20:00</DatoTid>", "<DatoTid>2014-13-01T10:00</DatoTid>")
    problem = only_problem(registry, behandlerkrav(text))
    assert problem.message.startswith("DatoTid '2014-13-01T10:00' is not a valid date and time")
    assert problem.line == line_of(text, "<DatoTid>")
    assert problem.path == "BehandlerKrav/Enkeltregning[1]/DatoTid"


def test_unknown_element(registry: SchemaRegistry) -> None:
    text = replaced("<Kreditering>", "<Foo>1</Foo>\n            <Kreditering>")
    problem = only_problem(registry, behandlerkrav(text))
    assert problem.message == "Unexpected element Foo inside Enkeltregning"
    assert problem.line == line_of(text, "<Foo>")
    assert problem.path == "BehandlerKrav/Enkeltregning[1]/Foo"


def test_behandling_without_takst(registry: SchemaRegistry) -> None:
    start = ALLE_FELTER.index("<Takst>")
    end = ALLE_FELTER.index("</Takst>") + len("</Takst>")
    text = ALLE_FELTER[:start] + ALLE_FELTER[end:]
    problem = only_problem(registry, behandlerkrav(text))
    assert problem.message == "Behandling is missing its Takst element"
    assert problem.line == line_of(text, "<Behandling>")


def test_takst_without_kode(registry: SchemaRegistry) -> None:
    text = replaced("<Kode>3ad</Kode>", "")
    problem = only_problem(registry, behandlerkrav(text))
    assert problem.message == "Takst is missing its Kode element"
    assert problem.line == line_of(text, "<Takst>")


def test_antall_zero(registry: SchemaRegistry) -> None:
    text = replaced("<Antall>1</Antall>", "<Antall>0</Antall>")
    problem = only_problem(registry, behandlerkrav(text))
    assert problem.message == "Antall '0' is not a whole number of 1 or more"


def test_second_krav(registry: SchemaRegistry) -> None:
    extra = '<Krav><AntallRegninger>1</AntallRegninger><SumKravSamlet V="1"/></Krav>'
    text = replaced("</Krav>", "</Krav>\n          " + extra)
    problem = only_problem(registry, behandlerkrav(text))
    assert problem.message == "Krav appears more than once inside BehandlerKrav"
    assert problem.line == line_of(text, "<Krav>", occurrence=2)
    assert problem.path == "BehandlerKrav/Krav[2]"


def test_missing_krav(registry: SchemaRegistry) -> None:
    start = ALLE_FELTER.index("<Krav>")
    end = ALLE_FELTER.index("</Krav>") + len("</Krav>")
    text = ALLE_FELTER[:start] + ALLE_FELTER[end:]
    problem = only_problem(registry, behandlerkrav(text))
    assert problem.message == "BehandlerKrav is missing its Krav element"


def test_refusjon_and_sumkrav_together(registry: SchemaRegistry) -> None:
    both = '<Refusjon V="435.00" U="NOK"/><SumKrav><Refusjon V="435.00"/></SumKrav>'
    text = replaced('<Refusjon V="435.00" U="NOK"/>', both)
    problem = only_problem(registry, behandlerkrav(text))
    assert problem.message == (
        "Behandling has Refusjon and SumKrav/Refusjon; only one of them is allowed"
    )
    assert problem.path is not None and problem.path.endswith("SumKrav[1]/Refusjon")


def test_two_refusjon(registry: SchemaRegistry) -> None:
    text = replaced('<Refusjon V="435.00" U="NOK"/>', '<Refusjon V="1"/><Refusjon V="2"/>')
    problem = only_problem(registry, behandlerkrav(text))
    assert problem.message == "Refusjon appears more than once inside Behandling"


def test_guid_in_both_spellings(registry: SchemaRegistry) -> None:
    text = replaced("<Kreditering>", "<Guid>other</Guid>\n            <Kreditering>")
    problem = only_problem(registry, behandlerkrav(text))
    assert problem.message == "Enkeltregning has GUID and Guid; only one of them is allowed"
    assert problem.line == line_of(text, "<Guid>")


def test_missing_amount_attribute(registry: SchemaRegistry) -> None:
    text = replaced('<Verdi V="435.00" U="NOK"/>', '<Verdi U="NOK"/>')
    problem = only_problem(registry, behandlerkrav(text))
    assert problem.message == "Verdi is missing its V attribute"


def test_blank_regningnr(registry: SchemaRegistry) -> None:
    text = replaced("<RegningNr>12496</RegningNr>", "<RegningNr>  </RegningNr>")
    problem = only_problem(registry, behandlerkrav(text))
    assert problem.message == "RegningNr is empty"


def test_patient_values_are_not_quoted(registry: SchemaRegistry) -> None:
    text = replaced(
        "<DateOfBirth>2014-03-11</DateOfBirth>", "<DateOfBirth>1970-02-30</DateOfBirth>"
    )
    problem = only_problem(registry, behandlerkrav(text))
    assert problem.message.startswith("DateOfBirth is not a valid date")
    assert "1970-02-30" not in problem.message
    assert problem.path == "BehandlerKrav/Enkeltregning[1]/Patient/DateOfBirth"


def test_distinct_errors_in_two_regninger(registry: SchemaRegistry) -> None:
    root = etree.parse(str(FIXTURES / "bkm-sumkrav-guid.xml")).getroot()
    for datotid in root.iter(f"{BKM}DatoTid"):
        datotid.text = "i går"
    problems = registry.validate(root)
    assert [p.path for p in problems] == [
        "BehandlerKrav/Enkeltregning[1]/DatoTid",
        "BehandlerKrav/Enkeltregning[2]/DatoTid",
    ]
    assert problems[0].line != problems[1].line


def test_problems_are_capped(registry: SchemaRegistry) -> None:
    regning = (
        "<Enkeltregning><RegningNr>{n}</RegningNr><DatoTid>not a time</DatoTid>"
        '<Behandling><Takst><Verdi V="1"/><Kode>2ad</Kode></Takst></Behandling></Enkeltregning>\n'
    )
    count = MAX_PROBLEMS + 10
    text = (
        f'<BehandlerKrav xmlns="{BKM_NS}">\n'
        + "".join(regning.format(n=n) for n in range(count))
        + '<Krav><AntallRegninger>1</AntallRegninger><SumKravSamlet V="1"/></Krav>'
        + "</BehandlerKrav>"
    )
    problems = registry.validate(parse(text))
    assert len(problems) == MAX_PROBLEMS + 1
    assert all(p.code == "SCHEMA_INVALID" for p in problems)
    assert problems[-1].message == "… and 10 more schema problems"
    assert problems[0].line == 2
    assert problems[MAX_PROBLEMS - 1].line == MAX_PROBLEMS + 1


def test_unknown_namespace(registry: SchemaRegistry) -> None:
    problems = registry.validate(parse('<Foo xmlns="urn:nobody"/>'))
    assert [p.code for p in problems] == ["UNKNOWN_NAMESPACE"]
    assert "urn:nobody" in problems[0].message
    assert problems[0].line == 1


def test_element_without_namespace(registry: SchemaRegistry) -> None:
    problems = registry.validate(parse("<BehandlerKrav/>"))
    assert [p.code for p in problems] == ["UNKNOWN_NAMESPACE"]
    assert "BehandlerKrav" in problems[0].message


def test_msghead_missing_msgid(registry: SchemaRegistry) -> None:
    text = replaced("<MsgId>6f1c2d8e-1b4a-4c55-9a57-0c9d3f6b2a10</MsgId>", "")
    problem = only_problem(registry, parse(text))
    assert problem.message == "MsgInfo is missing its MsgId element"
    assert problem.path == "MsgHead/MsgInfo"


def test_msghead_does_not_check_the_claim_inside(registry: SchemaRegistry) -> None:
    # The claim is checked against its own schema, by its own namespace.
    text = replaced("<RegningNr>12496</RegningNr>", "")
    assert registry.validate(parse(text)) == []
    assert registry.validate(behandlerkrav(text)) != []


def test_validation_is_safe_from_several_threads(registry: SchemaRegistry) -> None:
    good = behandlerkrav(ALLE_FELTER)
    bad_text = replaced("<DatoTid>2014-05-17T11:20:00</DatoTid>", "<DatoTid>x</DatoTid>")
    bad = behandlerkrav(bad_text)
    results: list[tuple[int, int]] = []

    def work() -> None:
        for _ in range(25):
            results.append((len(registry.validate(good)), len(registry.validate(bad))))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(results) == {(0, 1)}


def test_a_registry_sent_to_another_process_is_rebuilt_there() -> None:
    strict = FIXTURES / "dropin-strict"
    registry = SchemaRegistry([strict])
    registry.compile_all()
    copy = pickle.loads(pickle.dumps(registry))
    assert copy is not registry
    assert copy.source(BKM_NS) == registry.source(BKM_NS)
    reordered = etree.parse(str(FIXTURES / "bkm-reordered.xml")).getroot()
    assert copy.validate(reordered) != []


# --------------------------------------------------------------------------- AppRec


def test_apprec_example_validates(registry: SchemaRegistry) -> None:
    root = etree.parse(str(FIXTURES / "apprec-ok.xml")).getroot()
    assert registry.validate(root) == []


def test_broken_apprec_is_rejected(registry: SchemaRegistry) -> None:
    text = (FIXTURES / "apprec-ok.xml").read_text(encoding="utf-8")
    text = replaced('<Status V="3"', '<Status V="4"', text)
    text = replaced('<MsgType V="APPREC"/>', '<MsgType V="BKM"/>', text)
    problems = registry.validate(parse(text))
    assert {p.message for p in problems} == {
        "Status/@V '4' is not one of the allowed values (1, 2, 3)",
        "MsgType/@V 'BKM' must be 'APPREC'",
    }
    assert {p.line for p in problems} == {line_of(text, "<Status"), line_of(text, "<MsgType")}


def test_apprec_keeps_the_standard_order(registry: SchemaRegistry) -> None:
    text = (FIXTURES / "apprec-ok.xml").read_text(encoding="utf-8")
    status = '<Status V="3" DN="OK, feil i delmelding"/>'
    text = replaced(status, "", text)
    text = replaced("</OriginalMsgId>", "</OriginalMsgId>" + status, text)
    problem = only_problem(registry, parse(text))
    assert (
        problem.message == "Error is not allowed at this place inside AppRec (expected Status here)"
    )


# --------------------------------------------------------------------------- drop-in folders


def test_dropin_folder_takes_precedence() -> None:
    reordered = etree.parse(str(FIXTURES / "bkm-reordered.xml")).getroot()
    assert SchemaRegistry().validate(reordered) == []

    strict = FIXTURES / "dropin-strict"
    registry = SchemaRegistry([strict])
    assert registry.source(BKM_NS) == strict / "kith-behandlerkrav-official.xsd"
    assert registry.source(MSGHEAD_NS).name == "msghead-v1_2.xsd"  # still the built-in
    problems = registry.validate(reordered)
    assert problems and {p.code for p in problems} == {"SCHEMA_INVALID"}
    assert any(p.path == "BehandlerKrav/Krav" for p in problems)
    # A claim in the order the strict schema wants still passes it.
    assert registry.validate(behandlerkrav(ALLE_FELTER)) == []


def test_dropin_folder_can_require_more() -> None:
    text = replaced(' navnEPJ="TestEPJ"', "")
    registry = SchemaRegistry([FIXTURES / "dropin-strict"])
    problem = only_problem(registry, behandlerkrav(text))
    assert problem.message == "BehandlerKrav is missing its navnEPJ attribute"


def test_first_dropin_folder_wins() -> None:
    strict, lenient = FIXTURES / "dropin-strict", FIXTURES / "dropin-lenient"
    reordered = etree.parse(str(FIXTURES / "bkm-reordered.xml")).getroot()
    assert SchemaRegistry([lenient, strict]).validate(reordered) == []
    assert SchemaRegistry([strict, lenient]).validate(reordered) != []


def test_missing_dropin_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SchemaLoadError, match="does not exist"):
        SchemaRegistry([tmp_path / "nowhere"])


def test_broken_dropin_file_is_ignored(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "broken.xsd").write_text("<xs:schema", encoding="utf-8")
    registry = SchemaRegistry([tmp_path])
    assert registry.source(BKM_NS).parent.name == "xsd"
    assert "broken.xsd" in caplog.text


def test_schema_split_with_include_is_found_by_its_main_file(tmp_path: Path) -> None:
    (tmp_path / "a-part.xsd").write_text(
        xsd(
            "urn:test:split",
            '<xs:simpleType name="Code"><xs:restriction base="xs:token">'
            '<xs:pattern value="[A-Z]+"/></xs:restriction></xs:simpleType>',
        ),
        encoding="utf-8",
    )
    (tmp_path / "b-main.xsd").write_text(
        xsd(
            "urn:test:split",
            '<xs:include schemaLocation="a-part.xsd"/><xs:element name="Root" type="t:Code"/>',
        ),
        encoding="utf-8",
    )
    registry = SchemaRegistry([tmp_path])
    assert registry.source("urn:test:split").name == "b-main.xsd"
    assert registry.validate(parse('<Root xmlns="urn:test:split">ABC</Root>')) == []
    problem = only_problem(registry, parse('<Root xmlns="urn:test:split">abc</Root>'))
    assert problem.message == "Root 'abc' does not have the expected form"


def test_libxml2_words_are_used_when_xmlschema_cannot_load_the_schema(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = SchemaRegistry([FIXTURES / "dropin-xmlschema-refuses"])
    text = (
        '<Root xmlns="urn:test:lenient">\n'
        "  <B>1</B>\n"
        "  <A>2</A>\n"
        "  <Patient><DateOfBirth>1970-02-30</DateOfBirth></Patient>\n"
        "  <C/>\n"
        "</Root>"
    )
    problems = registry.validate(parse(text))
    assert [(p.code, p.line, p.path) for p in problems] == [
        ("SCHEMA_INVALID", 4, "Root/Patient/DateOfBirth"),
        ("SCHEMA_INVALID", 5, "Root/C"),
    ]
    assert problems[0].message.startswith("DateOfBirth: ")
    assert "1970-02-30" not in problems[0].message
    assert problems[1].message.startswith("C: This element is not expected")
    assert "{urn:test:lenient}" not in problems[1].message
    assert "not-a-valid-restriction.xsd" in caplog.text


# --------------------------------------------------------------------------- no network


def xsd(namespace: str, body: str, doctype: str = "") -> str:
    return (
        f'<?xml version="1.0"?>{doctype}\n'
        f'<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:t="{namespace}" '
        f'xmlns:mh="{MSGHEAD_NS}" targetNamespace="{namespace}" '
        f'elementFormDefault="qualified">{body}</xs:schema>'
    )


@pytest.fixture
def loopback() -> Iterator[tuple[str, list[str]]]:
    """A real HTTP server on 127.0.0.1 that would serve any schema; records every request."""
    requests: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append(self.path)
            body = xsd(
                "urn:test:remote",
                '<xs:simpleType name="Y"><xs:restriction base="xs:string"/></xs:simpleType>',
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requests
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.timeout(30)
def test_remote_import_is_refused(tmp_path: Path, loopback: tuple[str, list[str]]) -> None:
    url, requests = loopback
    (tmp_path / "remote.xsd").write_text(
        xsd(
            "urn:test:main",
            f'<xs:import namespace="urn:test:remote" '
            f'schemaLocation="{url}/remote.xsd"/>'
            '<xs:element name="Root" xmlns:r="urn:test:remote" type="r:Y"/>',
        ),
        encoding="utf-8",
    )
    registry = SchemaRegistry([tmp_path])
    with pytest.raises(SchemaLoadError, match=r"remote\.xsd, which is not a local file"):
        registry.validate(parse('<Root xmlns="urn:test:main">x</Root>'))
    with pytest.raises(SchemaLoadError):
        registry.compile_all()
    assert requests == []


@pytest.mark.timeout(30)
def test_remote_import_inside_a_local_import_is_refused(
    tmp_path: Path, loopback: tuple[str, list[str]]
) -> None:
    url, requests = loopback
    (tmp_path / "part.xsd").write_text(
        xsd(
            "urn:test:part",
            f'<xs:import namespace="urn:test:remote" '
            f'schemaLocation="{url}/remote.xsd"/>'
            '<xs:complexType name="T" xmlns:r="urn:test:remote"><xs:sequence>'
            '<xs:element name="X" type="r:Y"/></xs:sequence></xs:complexType>',
        ),
        encoding="utf-8",
    )
    (tmp_path / "main.xsd").write_text(
        xsd(
            "urn:test:main",
            '<xs:import namespace="urn:test:part" schemaLocation="part.xsd"/>'
            '<xs:element name="Root" xmlns:p="urn:test:part" type="p:T"/>',
        ),
        encoding="utf-8",
    )
    registry = SchemaRegistry([tmp_path])
    with pytest.raises(SchemaLoadError, match=r"needs http://127\.0\.0\.1:\d+/remote\.xsd"):
        registry.validate(parse('<Root xmlns="urn:test:main"><X>1</X></Root>'))
    assert requests == []


@pytest.mark.timeout(30)
def test_import_of_a_known_namespace_uses_the_registry_file(
    tmp_path: Path, loopback: tuple[str, list[str]]
) -> None:
    url, requests = loopback
    (tmp_path / "wrapper.xsd").write_text(
        xsd(
            "urn:test:wrapper",
            f'<xs:import namespace="{MSGHEAD_NS}" '
            f'schemaLocation="{url}/MsgHead-v1_2.xsd"/>'
            '<xs:element name="Wrapper"><xs:complexType><xs:sequence>'
            '<xs:element ref="mh:MsgHead"/></xs:sequence></xs:complexType></xs:element>',
        ),
        encoding="utf-8",
    )
    registry = SchemaRegistry([tmp_path])
    msghead = ALLE_FELTER.split("?>", 1)[1]
    wrapped = f'<Wrapper xmlns="urn:test:wrapper">{msghead}</Wrapper>'
    assert registry.validate(parse(wrapped)) == []
    broken = replaced("<MsgId>6f1c2d8e-1b4a-4c55-9a57-0c9d3f6b2a10</MsgId>", "", wrapped)
    problem = only_problem(registry, parse(broken))
    assert problem.message == "MsgInfo is missing its MsgId element"
    assert requests == []


@pytest.mark.timeout(30)
def test_external_entity_in_a_schema_is_not_fetched(
    tmp_path: Path, loopback: tuple[str, list[str]]
) -> None:
    url, requests = loopback
    doctype = f'<!DOCTYPE xs:schema [<!ENTITY ext SYSTEM "{url}/entity">]>'
    body = (
        "<xs:annotation><xs:documentation>&ext;</xs:documentation></xs:annotation>"
        '<xs:element name="Root" type="xs:string"/>'
    )
    (tmp_path / "entity.xsd").write_text(xsd("urn:test:entity", body, doctype), encoding="utf-8")
    registry = SchemaRegistry([tmp_path])
    assert registry.validate(parse('<Root xmlns="urn:test:entity">x</Root>')) == []
    assert requests == []


@pytest.mark.timeout(30)
def test_schema_location_hints_in_a_claim_are_ignored(
    registry: SchemaRegistry, loopback: tuple[str, list[str]]
) -> None:
    url, requests = loopback
    hint = (
        ' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
        f' xsi:schemaLocation="{BKM_NS} {url}/bkm.xsd"'
    )
    text = replaced(' navnEPJ="TestEPJ"', hint + ' navnEPJ="TestEPJ"')
    assert registry.validate(behandlerkrav(text)) == []
    bad = replaced("<RegningNr>12496</RegningNr>", "", text)
    assert [p.code for p in registry.validate(behandlerkrav(bad))] == ["SCHEMA_INVALID"]
    assert requests == []


FIRST_USE_ON_MANY_THREADS = """
import sys, threading
from pathlib import Path
from bridge.core.convert import ConvertContext, convert
from bridge.core.legacy.schemas import default_registry

data = Path(sys.argv[1]).read_bytes()
start = threading.Barrier(8)
registries, failures = [], []

def first_conversion():
    start.wait()
    registries.append(id(default_registry()))
    result = convert(data, ConvertContext(praksis_id="1004326178"))
    if not result.ok:
        failures.append(sorted({p.code for p in result.problems}))

threads = [threading.Thread(target=first_conversion) for _ in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(len(set(registries)), failures)
"""


@pytest.mark.parametrize("attempt", range(3))
def test_a_burst_of_first_conversions_on_many_threads_shares_one_registry(attempt: int) -> None:
    """A watcher's first burst converts on several threads at once. Each once built its own
    registry and compiled the BKM schema at the same moment, which libxml2 does not survive:
    every later compilation in that process failed. A fresh process per attempt."""
    import subprocess
    import sys

    seed = paths.FIXTURES / "seed-arbeidsflyt.xml"
    done = subprocess.run(
        [sys.executable, "-c", FIRST_USE_ON_MANY_THREADS, str(seed)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split(maxsplit=1) == ["1", "[]\n"], done.stdout
