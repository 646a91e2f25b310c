"""Lenient reading: real-world deviations with one meaning convert to the same claim as the
clean file, each with a LEGACY_VARIANT warning at its line; ambiguous ones are refused.

Every file in tests/fixtures/real-world/ is the same claim (clean.xml) written the way a real
EPJ wrote it (see the comment at the top of each file).
"""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from lxml import etree
from support import paths

from bridge.core.convert import ConvertContext, ConvertResult, convert
from bridge.core.legacy import lenient
from bridge.core.legacy.read import read_legacy
from bridge.core.model import dump_json
from bridge.core.problems import Severity

REAL_WORLD = paths.FIXTURES / "real-world"
DS = "http://www.w3.org/2000/09/xmldsig#"
CONTEXT = ConvertContext(praksis_id="1")
PATIENT_FNR = "15858010060"  # synthetic (month + 80), in clean.xml's Patient/Ident


def load(name: str) -> bytes:
    return (REAL_WORLD / name).read_bytes()


def converted(name: str) -> ConvertResult:
    return convert(load(name), CONTEXT)


def claim_json(result: ConvertResult) -> dict[str, object]:
    assert result.melding is not None, result.problems
    return json.loads(dump_json(result.melding))


def line_of(data: bytes, needle: str, occurrence: int = 1) -> int:
    """1-based line of the n-th `needle` below the root's start tag (the comment above it
    describes the deviation in the same words)."""
    at = data.index(b"<MsgHead")
    for _ in range(occurrence):
        at = data.index(needle.encode("utf-8"), at + 1)
    return data.count(b"\n", 0, at) + 1


def variants(result: ConvertResult) -> list[tuple[int | None, str | None]]:
    found = [p for p in result.problems if p.code == "LEGACY_VARIANT"]
    assert all(p.severity is Severity.WARNING for p in found)
    return [(p.line, p.path) for p in found]


CLEAN = converted("clean.xml")


def test_the_clean_file_converts_without_any_warning() -> None:
    assert CLEAN.ok
    assert CLEAN.problems == []


# (file, [(text whose line the warning names, occurrence, element path)])
DEVIATIONS = {
    "bare-ident.xml": [
        ("<Ident>9144889</Ident>", 1, "HealthcareProfessional/Ident"),
        (f"<Ident>{PATIENT_FNR}</Ident>", 1, "BehandlerKrav/Enkeltregning/Patient/Ident"),
        ("<Behandlerident>", 1, "BehandlerKrav/Enkeltregning/Behandling/Behandlerident"),
    ],
    "guid-braces.xml": [("<Guid>{", 1, "BehandlerKrav/Enkeltregning/Guid")],
    "guid-upper.xml": [("<GUID>04DB", 1, "BehandlerKrav/Enkeltregning/GUID")],
    "typeid-swapped.xml": [
        ('V="HPR-nummer"', 1, "HealthcareProfessional/Ident/TypeId"),
        ('V="HPR-nummer"', 2, "Behandling/Behandlerident/TypeId"),
    ],
    "code-spaces.xml": [
        ('V=" HER"', 1, "Sender/Organisation/Ident[2]/TypeId"),
        ('V="FNR "', 1, "Patient/Ident/TypeId"),
    ],
    "fraction-digits.xml": [
        ("<GenDate>", 1, "MsgHead/MsgInfo/GenDate"),
        ("<DatoTid>", 1, "BehandlerKrav/Enkeltregning/DatoTid"),
    ],
    "type-lom.xml": [('<Type V="LOM"', 1, "MsgHead/MsgInfo/Type")],
    "type-pom.xml": [('<Type V="POM"', 1, "MsgHead/MsgInfo/Type")],
    "signature.xml": [("<ds:Signature", 1, "MsgHead/Signature")],
    "crlf.xml": [("<Guid>{", 1, "BehandlerKrav/Enkeltregning/Guid")],
    "epj-2023.xml": [
        ('<Type V="LOM"', 1, "MsgHead/MsgInfo/Type"),
        ("<GenDate>", 1, "MsgHead/MsgInfo/GenDate"),
        ('V=" HER"', 1, "Organisation/Ident[2]/TypeId"),
        ('V="HPR-nummer"', 1, "HealthcareProfessional/Ident/TypeId"),
        ("<Guid>{", 1, "BehandlerKrav/Enkeltregning/Guid"),
        ("<DatoTid>", 1, "BehandlerKrav/Enkeltregning/DatoTid"),
        ("<Behandlerident>", 1, "Behandling/Behandlerident"),
        ("<ds:Signature", 1, "MsgHead/Signature"),
    ],
}


@pytest.mark.parametrize("name", sorted(DEVIATIONS))
def test_deviation_converts_to_the_clean_claim_with_a_warning_at_its_line(name: str) -> None:
    data = load(name)
    result = convert(data, CONTEXT)
    assert result.ok, result.errors
    assert claim_json(result) == claim_json(CLEAN)  # the same meaning, field for field
    found = variants(result)
    expected = [(line_of(data, text, n), path) for text, n, path in DEVIATIONS[name]]
    assert [line for line, _ in found] == sorted(line for line, _ in expected)
    for (line, path), (want_line, want_path) in zip(
        found, sorted(expected, key=lambda e: e[0]), strict=True
    ):
        assert line == want_line
        assert path is not None and path.endswith(want_path), (path, want_path)
    assert [p for p in result.problems if p.code != "LEGACY_VARIANT"] == []


def test_the_envelope_facts_are_read_with_their_meaning() -> None:
    clean = CLEAN.envelope
    assert clean is not None and clean.sender_her == "8094355" and clean.sender_hpr == "9144889"
    spaces = converted("code-spaces.xml").envelope
    assert spaces is not None and spaces.sender_her == "8094355"
    swapped = converted("typeid-swapped.xml").envelope
    assert swapped is not None and swapped.sender_hpr == "9144889"
    lom = converted("type-lom.xml").envelope
    assert lom is not None and lom.msg_type == "LOM"  # as written: the content decided
    fractions = converted("fraction-digits.xml").envelope
    assert fractions is not None and fractions.gen_date == "2023-03-14T09:12:40.7652193+01:00"


def test_an_unreadable_bare_envelope_ident_is_left_unused_when_the_sender_is_known() -> None:
    result = converted("bare-ident.xml")
    envelope = result.envelope
    assert envelope is not None
    assert envelope.sender_orgnr == "910825518" and envelope.sender_identity == "910825518"
    assert envelope.sender_hpr is None  # HPR-nummer or HER-id: not guessed
    message = next(p.message for p in result.problems if "HealthcareProfessional" in p.message)
    assert "HPR-nummer or a HER-id" in message and "not used" in message


def test_bare_identifiers_get_the_kind_their_form_allows() -> None:
    result = converted("bare-ident.xml")
    regning = claim_json(result)["behandlerkrav"]["regninger"][0]  # type: ignore[index]
    assert regning["utforendeBehandler"]["identifikasjon"] == {"id": "9144889", "type": "HPR"}
    assert regning["pasient"]["identifikasjon"] == {"id": PATIENT_FNR, "type": "FNR"}
    messages = " ".join(p.message for p in result.problems)
    assert "HPR-nummer (HPR)" in messages and "fødselsnummer (FNR)" in messages
    assert PATIENT_FNR not in messages  # no patient data in a warning


@pytest.mark.parametrize(
    ("written", "sent"),
    [
        ("{04db7c38-3a4c-43ca-92eb-e2564857bc97}", "04db7c38-3a4c-43ca-92eb-e2564857bc97"),
        ("04DB7C38-3A4C-43CA-92EB-E2564857BC97", "04db7c38-3a4c-43ca-92eb-e2564857bc97"),
        ("{04DB7C38-3A4C-43CA-92EB-E2564857BC97}", "04db7c38-3a4c-43ca-92eb-e2564857bc97"),
        ("  {04db7c38-3a4c-43ca-92eb-e2564857bc97}\n", "04db7c38-3a4c-43ca-92eb-e2564857bc97"),
    ],
)
def test_a_guid_is_sent_lower_case_without_braces(written: str, sent: str) -> None:
    data = load("clean.xml").replace(b"04db7c38-3a4c-43ca-92eb-e2564857bc97", written.encode())
    result = convert(data, CONTEXT)
    assert claim_json(result)["behandlerkrav"]["regninger"][0]["guid"] == sent  # type: ignore[index]
    (warning,) = [p for p in result.problems if p.code == "LEGACY_VARIANT"]
    assert written.strip() in warning.message and sent in warning.message


def test_a_guid_that_is_not_a_uuid_is_sent_as_written() -> None:
    data = load("clean.xml").replace(b"04db7c38-3a4c-43ca-92eb-e2564857bc97", b"EPJ-20230314-1")
    result = convert(data, CONTEXT)
    assert result.problems == []
    assert claim_json(result)["behandlerkrav"]["regninger"][0]["guid"] == "EPJ-20230314-1"  # type: ignore[index]


def test_crlf_gives_the_same_claim_and_the_same_lines_as_lf() -> None:
    crlf = load("crlf.xml")
    assert crlf.count(b"\r\n") == crlf.count(b"\n")
    lf = crlf.replace(b"\r\n", b"\n")
    from_crlf, from_lf = convert(crlf, CONTEXT), convert(lf, CONTEXT)
    assert claim_json(from_crlf) == claim_json(from_lf) == claim_json(CLEAN)
    assert from_crlf.problems == from_lf.problems


def _enveloped_digest(data: bytes) -> str:
    """The digest an enveloped-signature reference (URI="", c14n 1.0, SHA-256) covers."""
    root = etree.fromstring(data)
    sig = root.find(f"{{{DS}}}Signature")
    assert sig is not None
    before = sig.getprevious()
    before.tail = (before.tail or "") + (sig.tail or "")
    sig.tail = None
    root.remove(sig)
    return base64.b64encode(hashlib.sha256(etree.tostring(root, method="c14n")).digest()).decode()


@pytest.mark.parametrize("name", ["signature.xml", "epj-2023.xml"])
def test_the_signed_bytes_stay_verifiable(name: str) -> None:
    """Converting reads a copy: the file's bytes, and so the digest its signature covers, are
    the same afterwards (the lenient rewrites happen in the parsed tree only)."""
    data = load(name)
    before = hashlib.sha256(data).hexdigest()
    digest = etree.fromstring(data).findtext(f".//{{{DS}}}DigestValue")
    assert _enveloped_digest(data) == digest
    result = convert(data, CONTEXT)
    assert result.ok
    assert hashlib.sha256(data).hexdigest() == before
    assert _enveloped_digest(data) == digest
    assert hashlib.sha256(load(name)).hexdigest() == before


# --------------------------------------------------------------------------- ambiguous files


AMBIGUOUS = {
    "ambiguous-bare-ident.xml": (
        "<Ident>15458010088</Ident>",
        "Ident holds a bare identifier",
        "cannot be told from the number",
    ),
    "ambiguous-typeid.xml": ('V="Fødselsnummer"', "TypeId says V='Fødselsnummer' DN='HPR'", ""),
    "ambiguous-msghead-ident.xml": (
        "<Ident>9144889</Ident>",
        "Ident holds a bare identifier",
        "(DNR, FNR, HER, HNR, HPR)",
    ),
    "ambiguous-guid-brace.xml": ("<GUID>{", "has a brace on one side only", ""),
    "ambiguous-two-claims.xml": ("<Document>", "holds 2 BehandlerKrav", ""),
}


@pytest.mark.parametrize("name", sorted(AMBIGUOUS))
def test_an_ambiguous_deviation_is_refused_with_a_sentence_naming_it(name: str) -> None:
    data = load(name)
    needle, names, detail = AMBIGUOUS[name]
    result = convert(data, CONTEXT)
    assert not result.ok and result.melding is None
    (error,) = result.errors
    assert error.code == "LEGACY_AMBIGUOUS"
    assert names in error.message and detail in error.message
    occurrence = 2 if name == "ambiguous-two-claims.xml" else 1
    assert error.line == line_of(data, needle, occurrence)
    assert error.path


def test_a_refused_bare_patient_ident_does_not_show_the_number() -> None:
    (error,) = converted("ambiguous-bare-ident.xml").errors
    assert "15458010088" not in error.message


def test_a_guid_closed_but_not_opened_is_ambiguous_too() -> None:
    data = load("clean.xml").replace(
        b"04db7c38-3a4c-43ca-92eb-e2564857bc97", b"04db7c38-3a4c-43ca-92eb-e2564857bc97}"
    )
    (error,) = convert(data, CONTEXT).errors
    assert error.code == "LEGACY_AMBIGUOUS" and "brace on one side only" in error.message


# --------------------------------------------------------------------------- the pass itself


def test_warnings_per_kind_are_capped_with_a_count_of_the_rest() -> None:
    text = load("clean.xml").decode("utf-8")
    start = text.index("<Enkeltregning>")
    end = text.index("</Enkeltregning>") + len("</Enkeltregning>")
    regning = text[start:end]
    guid = "04db7c38-3a4c-43ca-92eb-e2564857bc9"
    copies = [
        regning.replace(f"{guid}7", f"{{{guid}{i}}}").replace("20230314-1", f"20230314-{i}")
        for i in range(8)
    ]
    text = text[:start] + "\n".join(copies) + text[end:]
    text = text.replace("<AntallRegninger>1<", "<AntallRegninger>8<")
    text = text.replace('<SumKravSamlet V="198.00"', '<SumKravSamlet V="1584.00"')
    result = convert(text.encode("utf-8"), CONTEXT)
    assert result.ok, result.errors
    found = [p for p in result.problems if p.code == "LEGACY_VARIANT"]
    assert len(found) == lenient.MAX_WARNINGS_PER_KIND + 1
    assert found[-1].message.startswith("3 more of the kind above (GUID spelling)")
    guids = [r["guid"] for r in claim_json(result)["behandlerkrav"]["regninger"]]  # type: ignore[index]
    assert guids == [f"{guid}{i}" for i in range(8)]


def test_stray_spaces_around_a_diagnosis_code_are_read_without_showing_the_code() -> None:
    data = load("clean.xml").replace(b'<Diagnose V="L03"', b'<Diagnose V=" L03 "')
    result = convert(data, CONTEXT)
    assert claim_json(result) == claim_json(CLEAN)
    (warning,) = result.warnings
    assert warning.line == line_of(data, "<Diagnose")
    assert "L03" not in warning.message  # a diagnosis is patient data


@pytest.mark.parametrize(
    "name",
    [
        "alle-felter.xml",
        "seed-arbeidsflyt.xml",
        "seed-arbeidsflyt-rettet.xml",
        "schemas/bkm-sumkrav-guid.xml",
        "schemas/bkm-reordered.xml",
        "real-world/clean.xml",
    ],
)
def test_a_clean_file_is_left_exactly_as_parsed(name: str) -> None:
    data = (paths.FIXTURES / name).read_bytes()
    document, problems = read_legacy(data)
    assert document is not None and problems == []
    root = document.krav.getroottree().getroot()
    before = etree.tostring(root)
    assert lenient.normalise(document, data) == []
    assert etree.tostring(root) == before


@pytest.mark.parametrize(
    ("number", "kinds"),
    [
        ("15058010186", {"FNR"}),  # day 15, month 05
        ("55108010087", {"DNR"}),  # day + 40
        ("15458010088", {"HNR", "FNR"}),  # month + 40: H-nummer, or NAV's synthetic FNR
        ("15858010060", {"FNR"}),  # month + 80: Skatteetaten's synthetic FNR
        ("15058010187", set()),  # wrong check digit
        ("1505801018", set()),  # ten digits
        ("9144889", set()),
    ],
)
def test_person_number_kinds(number: str, kinds: set[str]) -> None:
    assert lenient.person_number_kinds(number) == kinds


def test_a_file_still_invalid_after_lenient_reading_gets_the_schema_problem_too() -> None:
    data = load("bare-ident.xml").replace(b"<RegningNr>20230314-1</RegningNr>", b"")
    result = convert(data, CONTEXT)
    assert not result.ok and result.melding is None
    (error,) = result.errors
    assert error.code == "SCHEMA_INVALID"
    assert error.message == "Enkeltregning is missing its RegningNr element"
    assert error.line == line_of(data, "<Enkeltregning>")
    assert len(variants(result)) == 3  # the bare identifiers, still named


def test_crlf_adds_no_warning_of_its_own() -> None:
    """CRLF is how the files travel; XML reads it as LF. Only the braced GUID is reported."""
    assert [p.path for p in converted("crlf.xml").problems] == ["BehandlerKrav/Enkeltregning/Guid"]


BEHANDLER_TYPEID = (
    b'<TypeId V="HPR" S="2.16.578.1.12.4.1.1.8116" DN="HPR-nummer"/>\n              </B'
)


def _with_behandler_typeid(attributes: str) -> bytes:
    new = f"<TypeId {attributes}/>\n              </B".encode()
    data = load("clean.xml")
    assert BEHANDLER_TYPEID in data
    return data.replace(BEHANDLER_TYPEID, new)


@pytest.mark.parametrize(
    "attributes",
    [
        'V="HPR-nummer"',  # the name where the code belongs, no DN
        'V="HPR-nummer" DN="HPR-nummer"',
        'V="Helsepersonellnummer" DN="Lege"',
        'V="" DN="HPR"',  # the code in DN, V empty
        'DN="HPR"',
        'V="HPR-nr" DN="HPR"',
    ],
)
def test_a_typeid_whose_code_can_be_told_is_read_as_that_code(attributes: str) -> None:
    data = _with_behandler_typeid(attributes)
    result = convert(data, CONTEXT)
    assert claim_json(result) == claim_json(CLEAN)
    (warning,) = result.warnings
    assert warning.code == "LEGACY_VARIANT" and "read as V='HPR'" in warning.message
    assert warning.line == line_of(data, f"<TypeId {attributes}")


@pytest.mark.parametrize(
    ("attributes", "sentence"),
    [
        ('V="Fødselsnummer" DN="HPR-nummer"', "both are names, of two different kinds"),
        ('V="Fødselsnummer" DN="HPR"', "V names another kind of identifier (FNR)"),
        ('V="Lege" DN="HPR"', "V names no kind of identifier"),
    ],
)
def test_a_typeid_that_names_two_kinds_is_refused(attributes: str, sentence: str) -> None:
    data = _with_behandler_typeid(attributes)
    (error,) = convert(data, CONTEXT).errors
    assert error.code == "LEGACY_AMBIGUOUS" and sentence in error.message
    assert error.line == line_of(data, f"<TypeId {attributes}")


def test_a_typeid_with_an_unknown_code_and_no_name_is_left_as_written() -> None:
    """Neither side is a known code or name: the lenient reading has nothing to read
    differently; the documented rules (bridge.core.rules) then refuse the code itself."""
    result = convert(_with_behandler_typeid('V="XYZ" DN="Noe annet"'), CONTEXT)
    assert not [p for p in result.problems if p.code.startswith("LEGACY_")]
    [error] = result.errors
    assert error.code == "KODEVERK_CODE_UNKNOWN"
    assert error.path == "behandlerkrav.regninger[0].utforendeBehandler.identifikasjon.type"
    assert "'XYZ'" in error.message


def test_refusals_per_kind_are_capped_too() -> None:
    text = load("clean.xml").decode("utf-8")
    start = text.index("<Enkeltregning>")
    end = text.index("</Enkeltregning>") + len("</Enkeltregning>")
    bare = text[start:end].replace(
        '<Ident>\n                <Id>15858010060</Id>\n                <TypeId V="FNR" '
        'S="2.16.578.1.12.4.1.1.8116" DN="Fødselsnummer"/>\n              </Ident>',
        "<Ident>15458010088</Ident>",
    )
    assert "<Ident>15458010088</Ident>" in bare
    text = text[:start] + "\n".join([bare] * 7) + text[end:]
    errors = convert(text.encode("utf-8"), CONTEXT).errors
    assert [e.code for e in errors] == ["LEGACY_AMBIGUOUS"] * (lenient.MAX_WARNINGS_PER_KIND + 1)
    assert errors[-1].message == "2 more of the kind above (bare identifier) were found."


def _wrapped(data: bytes) -> dict[str, bytes]:
    body = data.split(b"?>", 1)[1]
    start, end = data.index(b"<BehandlerKrav"), data.index(b"</BehandlerKrav>") + 16
    bkm = b'<?xml version="1.0" encoding="UTF-8"?>\n' + data[start:end]
    return {
        "bare": bkm,
        "base64": b"<Base64Container>" + base64.encodebytes(data) + b"</Base64Container>",
        "soap": (
            b'<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/">'
            b"<soap:Body>" + body + b"</soap:Body></soap:Envelope>"
        ),
    }


@pytest.mark.parametrize("kind", ["bare", "base64", "soap"])
def test_lenient_reading_works_inside_every_envelope(kind: str) -> None:
    data = _wrapped(load("epj-2023.xml"))[kind]
    result = convert(data, CONTEXT)
    assert result.ok, result.errors
    assert claim_json(result) == claim_json(CLEAN)
    paths_found = {p.path for p in result.problems}
    assert "BehandlerKrav/Enkeltregning/Guid" in paths_found
    assert "BehandlerKrav/Enkeltregning/Behandling/Behandlerident" in paths_found
    # the envelope is read as meant when there is one
    if kind != "bare":
        assert result.envelope is not None and result.envelope.sender_her == "8094355"
        assert result.envelope.sender_hpr == "9144889"


def test_stray_spaces_are_found_in_a_utf16_file_too() -> None:
    text = load("code-spaces.xml").decode("utf-8").replace('encoding="UTF-8"', 'encoding="UTF-16"')
    result = convert(text.encode("utf-16"), CONTEXT)
    assert claim_json(result) == claim_json(CLEAN)
    assert result.envelope is not None and result.envelope.sender_her == "8094355"
    assert len(variants(result)) == 2


def test_a_claim_in_base64_inside_the_msghead_is_read_leniently_too() -> None:
    data = load("code-spaces.xml").replace(b'<Diagnose V="L03"', b'<Diagnose V=" L03"')
    start, end = data.index(b"<BehandlerKrav"), data.index(b"</BehandlerKrav>") + 16
    inner = b'<?xml version="1.0" encoding="UTF-8"?>\n' + data[start:end]
    container = (
        b'<Base64Container xmlns="http://www.kith.no/xmlstds/base64container">'
        + base64.encodebytes(inner)
        + b"</Base64Container>"
    )
    result = convert(data[:start] + container + data[end:], CONTEXT)
    assert claim_json(result) == claim_json(CLEAN)
    assert result.envelope is not None and result.envelope.sender_her == "8094355"
    assert sorted(p.path or "" for p in result.warnings) == [
        "BehandlerKrav/Enkeltregning/Behandling/Diagnose",
        "BehandlerKrav/Enkeltregning/Patient/Ident/TypeId",
        "MsgHead/MsgInfo/Sender/Organisation/Ident[2]/TypeId",
    ]
