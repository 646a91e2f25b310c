"""The sandbox's own statement of the JSON BKM (bridge/sandbox/schema) against the
documentation's every example, the bridge's converted fixtures and the superseded shapes, and
each kind of schema violation as the submit endpoint answers it over loopback."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import simplejson
from jsonschema import Draft202012Validator, FormatChecker
from support.sandbox import (  # noqa: F401 (fixtures)
    FIXTURES,
    Jose,
    jose_fixture,
    keys_fixture,
    load_fixture,
    sandbox_fixture,
    serve,
)

from bridge.sandbox import RunningSandbox
from bridge.sandbox.keys import KeyMaterial

DOC_EXAMPLES = FIXTURES / "doc-examples"
XML_FIXTURES = FIXTURES.parent
DOC_PRAKSIS = "1000005649"  # the praksisId of the documentation's examples


def _schema() -> dict[str, Any]:
    text = (
        resources.files("bridge.sandbox.schema")
        .joinpath("behandlerkravmelding.schema.json")
        .read_text("utf-8")
    )
    return json.loads(text)


def _validator(part: str = "melding") -> Draft202012Validator:
    """A plain jsonschema validator of the shipped schema (or one of its $defs, `name[]` for a
    list of them): independent of the sandbox's own error mapping."""
    schema = _schema()
    if part != "melding":
        name = part.removesuffix("[]")
        ref = {"$ref": f"#/$defs/{name}"}
        target = {"type": "array", "items": ref} if part.endswith("[]") else ref
        schema = {"$schema": schema["$schema"], "$defs": schema["$defs"], **target}
    return Draft202012Validator(schema, format_checker=FormatChecker())


def _doc_example(name: str) -> dict[str, Any]:
    return simplejson.loads((DOC_EXAMPLES / name).read_text("utf-8"), use_decimal=True)


def _as_json(data: Any) -> Any:
    """Decimal amounts as JSON numbers for the plain validator (which also takes floats)."""
    return json.loads(simplejson.dumps(data, use_decimal=True))


ALL_EXAMPLES = sorted(p.name for p in DOC_EXAMPLES.glob("*.json"))
MELDINGER = [n for n in ALL_EXAMPLES if _doc_example(n)["part"] == "melding"]


@pytest.fixture(scope="module")
def served(keys: KeyMaterial, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    """The default helseaktør, with the documentation examples' praksis added."""
    config = tmp_path_factory.mktemp("schema") / "sandbox.toml"
    config.write_text(
        f"""
[[actors]]
name = "lege"
pid = "15837510047"
orgnr = "999999999"

[[actors.praksiser]]
praksisId = "1004326178"
navn = "Kurbadet Helsesenter"
orgnr = "999999999"
type = "FALE"
gyldigePerioder = [{{ fraOgMedDato = 2020-01-01, tilOgMedDato = 2028-07-15 }}]

[[actors.praksiser]]
praksisId = "{DOC_PRAKSIS}"
navn = "Dokumentasjonens praksis"
type = "FALE"
gyldigePerioder = [{{ fraOgMedDato = 2010-01-01 }}]
""",
        encoding="utf-8",
    )
    running = serve(keys, config=config)
    yield running
    running.stop()


@pytest.fixture
def token(jose: Jose) -> str:
    return jose.token()


def feilmeldinger(response: Any) -> list[dict[str, str]]:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["status"] == "feil_i_melding"
    uuid.UUID(body["behandlerkravmeldingId"])
    return body["feilmeldinger"]


# --------------------------------------------------------------------------- the schema itself


def _objects(node: Any) -> Iterator[dict[str, Any]]:
    """Every object definition (the conditions under `if` describe, they do not define)."""
    if isinstance(node, dict):
        if "properties" in node:
            yield node
        for key, value in node.items():
            if key != "if":
                yield from _objects(value)
    elif isinstance(node, list):
        for value in node:
            yield from _objects(value)


def test_the_schema_is_draft_2020_12_and_closed() -> None:
    schema = _schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)
    objects = [o for o in _objects(schema) if "required" in o or "additionalProperties" in o]
    assert len(objects) > 15
    assert all(o.get("additionalProperties") is False for o in objects)
    assert schema["required"] == ["praksisId", "behandlerkrav"]


def test_every_doc_example_is_kept_with_its_source() -> None:
    assert len(MELDINGER) == 7  # every whole melding in the docs (the fragments come on top)
    for name in ALL_EXAMPLES:
        doc = _doc_example(name)
        assert ".md, line " in doc["source"] and "2026-04-24" in doc["source"], name


@pytest.mark.parametrize("name", ALL_EXAMPLES)
def test_doc_example_passes_the_schema_except_superseded_fields(name: str) -> None:
    doc = _doc_example(name)
    errors = list(_validator(doc["part"]).iter_errors(_as_json(doc["example"])))
    if not doc["refused"]:
        assert errors == [], [e.message for e in errors]
    else:
        # Refused on exactly the paths the fixture names (superseded or inconsistent there).
        paths = set()
        for error in errors:
            where = ".".join(
                f"[{p}]" if isinstance(p, int) else p for p in error.absolute_path
            ).replace(".[", "[")
            if error.validator == "additionalProperties":
                known = error.schema["properties"]
                paths |= {f"{where}.{k}" if where else k for k in error.instance if k not in known}
            elif error.validator == "required":
                missing = [k for k in error.validator_value if k not in error.instance]
                paths |= {f"{where}.{k}" if where else k for k in missing}
            else:
                paths.add(where)
        assert paths == {r["felt"] for r in doc["refused"]}


@pytest.mark.parametrize("name", MELDINGER)
def test_doc_example_over_http(jose: Jose, token: str, name: str) -> None:
    doc = _doc_example(name)
    body = simplejson.dumps(doc["example"], use_decimal=True).encode("utf-8")
    response = jose.submit_raw(jose.encrypt(body, token), token)
    if not doc["refused"]:
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "mottatt"
        return
    got = feilmeldinger(response)
    assert len(got) == len(doc["refused"]), got
    for want in doc["refused"]:
        assert any(
            f["kode"] == want["kode"] and f["melding"].endswith(want["felt"]) for f in got
        ), (want, got)


# --------------------------------------------------------------------------- the bridge's output


def test_every_cleanly_converted_xml_fixture_passes_the_schema_and_the_sandbox(
    jose: Jose, tmp_path: Path
) -> None:
    out = tmp_path / "json"
    proc = subprocess.run(
        [sys.executable, "-m", "bridge", "convert", str(XML_FIXTURES), "--praksis-id",
         "1004326178", "--out", str(out)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert "Traceback" not in proc.stderr, proc.stderr
    converted = {p.relative_to(out).with_suffix(".xml").as_posix(): p for p in out.rglob("*.json")}
    # All but the AppRec (not a BKM) and the real-world files whose deviation is ambiguous
    # (refused on purpose) convert; the three under sandbox/ are GUID-only meldinger.
    xml = {p.relative_to(XML_FIXTURES).as_posix() for p in XML_FIXTURES.rglob("*.xml")}
    refused = {x for x in xml if x.startswith("real-world/ambiguous-")}
    assert len(refused) == 5
    assert set(converted) == xml - {"schemas/apprec-ok.xml"} - refused
    assert {
        "alle-felter.xml",
        "sandbox/kreditering-med-guid.xml",
        "sandbox/korrigering-betalt-egenandel-med-guid.xml",
        "sandbox/egenandel-ikke-betalt.xml",
    } <= set(converted)
    validator = _validator()
    for name, path in sorted(converted.items()):
        data = simplejson.loads(path.read_text("utf-8"), use_decimal=True)
        errors = [e.message for e in validator.iter_errors(_as_json(data))]
        assert errors == [], (name, errors)
        jose.admin("POST", "reset")  # the seed claims appear twice: no DUPLIKAT_KRAV here
        token = jose.token()
        response = jose.submit_raw(jose.encrypt(path.read_bytes(), token), token)
        assert response.status_code == 200, (name, response.text)


def test_flat_utforende_behandler_is_refused_over_http(jose: Jose, token: str) -> None:
    data = load_fixture("seed-claim-corrected.json")
    regning = data["behandlerkrav"]["regninger"][0]
    regning["utforendeBehandler"] = {"id": "9144889", "type": "HPR"}  # before 2026-04-23
    got = feilmeldinger(jose.submit(data, token))
    assert {f["kode"] for f in got} == {"UKJENT_FELT", "UKJENT_FORMAT"}
    where = "behandlerkrav.regninger[0].utforendeBehandler"
    assert {"kode": "UKJENT_FELT", "melding": f"Ukjent felt i JSON: {where}.id"} in got
    assert any(f["melding"] == f"Mangler påkrevd felt {where}.identifikasjon" for f in got)

    regning["utforendeBehandler"] = {"identifikasjon": {"id": "9144889", "type": "HPR"}}
    assert jose.submit(data, token).status_code == 200
    regning["guid"] = str(uuid.uuid4())
    regning["utforendeBehandler"]["type"] = "1"  # a kodeverk 8401 code, as documented
    assert jose.submit(data, token).status_code == 200


# --------------------------------------------------------------------------- violations → codes

R = "behandlerkrav.regninger[0]"


def _set(data: dict[str, Any], path: str, value: Any) -> None:
    """Set (or, with ..., delete) the field at a JSON path such as regninger[0].belop."""
    parts = path.replace("[0]", ".0").split(".")
    node: Any = data
    for part in parts[:-1]:
        node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
    if value is ...:
        del node[parts[-1]]
    else:
        node[parts[-1]] = value


VIOLATIONS = {
    # name: (path, value or ... to delete, kode, the melding names/says)
    "praksisId null": ("praksisId", None, "MANGLER_PRAKSISID", "Mangler påkrevd felt praksisId"),
    "praksisId empty": ("praksisId", "", "MANGLER_PRAKSISID", "Mangler påkrevd felt praksisId"),
    "behandlerkrav null": (
        "behandlerkrav", None, "MANGLER_BEHANDLERKRAV", "Mangler påkrevd felt behandlerkrav"
    ),
    "guid empty": (f"{R}.guid", "", "MANGLER_GUID", f"guid i {R}"),
    "guid not a guid": (f"{R}.guid", "regning-6", "UKJENT_FORMAT", f"{R}.guid: forventet en GUID"),
    "regningsnummer missing": (
        f"{R}.regningsnummer", ..., "UKJENT_FORMAT", f"Mangler påkrevd felt {R}.regningsnummer"
    ),
    "tidspunkt without offset": (
        f"{R}.tidspunkt", "2026-01-06T15:00:00", "UKJENT_FORMAT", "YYYY-MM-DDTHH:mm:ss±hh:mm"
    ),
    "tidspunkt not a day": (
        f"{R}.tidspunkt", "2026-02-30T15:00:00+01:00", "UKJENT_FORMAT", f"{R}.tidspunkt"
    ),
    "fodselsdato": (
        f"{R}.pasient.fodselsdato", "30.03.1982", "UKJENT_FORMAT", "en dato som ÅÅÅÅ-MM-DD"
    ),
    "kjonn code": (f"{R}.pasient.kjonn", "3", "UKJENT_FORMAT", "en av kodene 1, 2, 9"),
    "pasient id type": (
        f"{R}.pasient.identifikasjon.type", "HPR", "UKJENT_FORMAT", "FNR, DNR, HNR, PNR, UID, DUF"
    ),
    "belop as text": (f"{R}.belop", "64.00", "UKJENT_FORMAT", f"{R}.belop: forventet et tall"),
    "belop missing": (
        f"{R}.belop", ..., "UKJENT_FORMAT", "kan bare utelates på en kreditering eller"
    ),
    "antall zero": (
        f"{R}.takster[0].antall", 0, "UKJENT_FORMAT", "takster[0].antall: forventet minst 1"
    ),
    "tannkode": (
        f"{R}.takster[0].tenner", [{"tannkode": "tann 11"}], "UKJENT_FORMAT", "ISO 3950"
    ),
    "betaltEgenandel alone": (
        f"{R}.betaltEgenandel", True, "UKJENT_FORMAT",
        f"{R}.korrigeringBetaltEgenandel (skal være med når betaltEgenandel er oppgitt)",
    ),
    "kreditering as text": (
        f"{R}.kreditering", "ja", "UKJENT_FORMAT", "forventet true eller false"
    ),
    "old eea name": (
        f"{R}.pasient.eea", {"eeaGyldighet": ""}, "UKJENT_FELT", f"{R}.pasient.eea.eeaGyldighet"
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(VIOLATIONS))
def test_each_violation_has_the_documented_code_and_names_the_field(
    jose: Jose, token: str, name: str
) -> None:
    path, value, kode, words = VIOLATIONS[name]
    data = load_fixture("seed-claim-corrected.json")
    _set(data, path, value)
    got = feilmeldinger(jose.submit(data, token))
    assert [f["kode"] for f in got] == [kode], got
    assert words in got[0]["melding"]
    if isinstance(value, str) and len(value) > 3:
        assert value not in got[0]["melding"]  # values are never echoed: patient data


def test_every_problem_is_reported_at_once(jose: Jose, token: str) -> None:
    data = load_fixture("seed-claim-corrected.json")
    regning = data["behandlerkrav"]["regninger"][0]
    regning["farge"] = "blå"
    regning["pasient"]["kjonn"] = "K"
    del regning["tidspunkt"]
    second = copy.deepcopy(regning)
    del second["guid"]
    data["behandlerkrav"]["regninger"].append(second)
    got = {(f["kode"], f["melding"]) for f in feilmeldinger(jose.submit(data, token))}
    assert ("UKJENT_FELT", f"Ukjent felt i JSON: {R}.farge") in got
    assert ("MANGLER_GUID", "Mangler påkrevd felt guid i behandlerkrav.regninger[1]") in got
    assert ("UKJENT_FORMAT", f"Mangler påkrevd felt {R}.tidspunkt") in got
    assert len(got) == 7  # farge, kjonn and tidspunkt twice, and the guid


def test_a_guid_only_kreditering_and_korrigering_need_no_belop(jose: Jose, token: str) -> None:
    guid = load_fixture("seed-claim-corrected.json")["behandlerkrav"]["regninger"][0]["guid"]
    base = {"guid": guid, "regningsnummer": "6", "tidspunkt": "2026-01-06T15:00:00+01:00"}
    for flags in (
        {"kreditering": True},
        {"korrigeringBetaltEgenandel": True, "betaltEgenandel": True},
    ):
        claim = {
            "praksisId": "1004326178",
            "behandlerkrav": {"regninger": [{**base, **flags}], "antallRegninger": 1, "belop": 0},
        }
        response = jose.submit(claim, token)
        assert response.status_code == 200, response.text
