"""POST sendinnbehandlerkravmelding: both payload forms (with and without zip), every documented
error code with HTTP 400 and a behandlerkravmeldingId, and clear answers to bad encryption."""

from __future__ import annotations

import base64
import copy
import json
import uuid
from typing import Any

import pytest
from jwcrypto import jwe, jwk
from support.sandbox import (  # noqa: F401 (fixtures)
    Jose,
    jose_fixture,
    keys_fixture,
    load_fixture,
    sandbox_fixture,
    served_fixture,
)


@pytest.fixture
def token(jose: Jose) -> str:
    return jose.token()


def claim(**changes: Any) -> dict[str, Any]:
    """The seed's corrected claim (one approvable regning) with a fresh guid."""
    data = load_fixture("seed-claim-corrected.json")
    data["behandlerkrav"]["regninger"][0]["guid"] = str(uuid.uuid4())
    data.update(changes)
    return data


def assert_feil(response, kode: str) -> str:
    """The documented error shape; returns the melding text."""
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["status"] == "feil_i_melding"
    uuid.UUID(body["behandlerkravmeldingId"])
    codes = [f["kode"] for f in body["feilmeldinger"]]
    assert kode in codes, body
    return " | ".join(f["melding"] for f in body["feilmeldinger"] if f["kode"] == kode)


@pytest.mark.parametrize(
    ("nested", "zip_def"), [(False, False), (True, False), (False, True), (True, True)]
)
def test_both_payload_forms_with_and_without_zip(
    jose: Jose, token: str, nested: bool, zip_def: bool
) -> None:
    response = jose.submit(claim(), token, nested=nested, zip_def=zip_def)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "mottatt"
    [entry] = jose.details(body["behandlerkravmeldingId"], token)
    assert entry["meldingsstatus"] == "mottatt"


def test_zip_def_header_really_means_compressed(jose: Jose, token: str) -> None:
    compact = jose.encrypt(claim(), token, zip_def=True)
    header = json.loads(base64.urlsafe_b64decode(compact.split(".")[0] + "=="))
    assert header["zip"] == "DEF"


def test_nested_jwt_may_carry_registered_claims(jose: Jose, token: str) -> None:
    data = claim()
    data.update({"iat": 1767709800, "jti": str(uuid.uuid4())})
    assert jose.submit(data, token, nested=True).status_code == 200


def test_signed_nested_jwt_is_refused(jose: Jose, token: str) -> None:
    key = jwk.JWK.generate(kty="oct", size=256)
    from jwcrypto import jwt as jwt_

    signed = jwt_.JWT(header={"alg": "HS256"}, claims=claim())
    signed.make_signed_token(key)
    body = jose.encrypt(signed.serialize().encode(), token, header={"cty": "JWT"})
    assert "usignert" in assert_feil(jose.submit_raw(body, token), "UKJENT_FORMAT")


def test_plain_json_body_is_refused_with_a_reason(jose: Jose, token: str) -> None:
    response = jose.submit_raw(json.dumps(claim()), token, content_type="application/json")
    assert "ukryptert JSON" in assert_feil(response, "UKJENT_FORMAT")


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ("not a jwe", "kompakt JWE"),
        ("a.b.c", "fant 3 del"),
        ("!!!.a.b.c.d", "base64url"),
        (base64.urlsafe_b64encode(b"[1]").decode().rstrip("=") + ".a.b.c.d", "JSON-objekt"),
    ],
)
def test_malformed_jwe_is_refused_with_a_reason(
    jose: Jose, token: str, body: str, words: str
) -> None:
    assert words in assert_feil(jose.submit_raw(body, token), "UKJENT_FORMAT")


def test_unknown_kid_names_the_current_one(jose: Jose, token: str) -> None:
    current = jose.jwks(token)["keys"][0]["kid"]
    melding = assert_feil(jose.submit(claim(), token, kid="old-key-2019"), "UKJENT_FORMAT")
    assert "old-key-2019" in melding and current in melding


def test_missing_kid_is_refused(jose: Jose, token: str) -> None:
    key = jwk.JWK(**jose.jwks(token)["keys"][0])
    raw = jwe.JWE(
        json.dumps(claim()).encode(), json.dumps({"alg": "RSA-OAEP-256", "enc": "A256GCM"})
    )
    raw.add_recipient(key)
    assert "kid" in assert_feil(
        jose.submit_raw(raw.serialize(compact=True), token), "UKJENT_FORMAT"
    )


@pytest.mark.parametrize(
    ("alg", "enc", "named"),
    [("RSA-OAEP", "A256GCM", "RSA-OAEP"), ("RSA-OAEP-256", "A128GCM", "A128GCM")],
)
def test_wrong_algorithms_are_named(jose: Jose, token: str, alg: str, enc: str, named: str) -> None:
    body = jose.encrypt(claim(), token, header={"alg": alg, "enc": enc})
    melding = assert_feil(jose.submit_raw(body, token), "UKJENT_FORMAT")
    assert named in melding


def test_content_encrypted_for_another_key_fails_clearly(jose: Jose, token: str) -> None:
    stranger = jwk.JWK.generate(kty="RSA", size=2048)
    kid = jose.jwks(token)["keys"][0]["kid"]
    body = jose.encrypt(claim(), token, key=stranger, kid=kid)
    assert "kunne ikke dekrypteres" in assert_feil(jose.submit_raw(body, token), "UKJENT_FORMAT")


def test_tampered_ciphertext_fails_the_tag(jose: Jose, token: str) -> None:
    parts = jose.encrypt(claim(), token).split(".")
    ciphertext = bytearray(base64.urlsafe_b64decode(parts[3] + "=" * (-len(parts[3]) % 4)))
    ciphertext[0] ^= 1
    parts[3] = base64.urlsafe_b64encode(bytes(ciphertext)).decode().rstrip("=")
    melding = assert_feil(jose.submit_raw(".".join(parts), token), "UKJENT_FORMAT")
    assert "Autentiseringstaggen" in melding


def test_payload_that_is_not_json(jose: Jose, token: str) -> None:
    response = jose.submit_raw(jose.encrypt(b"praksisId=1", token), token)
    assert "verken JSON eller en JWT" in assert_feil(response, "UKJENT_FORMAT")


def test_payload_with_broken_json(jose: Jose, token: str) -> None:
    response = jose.submit_raw(jose.encrypt(b'{"praksisId": ', token), token)
    assert "JSON-format" in assert_feil(response, "UKJENT_FORMAT")


def test_unknown_field_is_named(jose: Jose, token: str) -> None:
    data = claim()
    data["behandlerkrav"]["regninger"][0]["pasient"]["favorittfarge"] = "blå"
    melding = assert_feil(jose.submit(data, token), "UKJENT_FELT")
    assert "behandlerkrav.regninger[0].pasient.favorittfarge" in melding


def test_mangler_praksisid(jose: Jose, token: str) -> None:
    data = claim()
    del data["praksisId"]
    assert assert_feil(jose.submit(data, token), "MANGLER_PRAKSISID")


def test_mangler_behandlerkrav_as_documented(jose: Jose, token: str) -> None:
    # Eksempel 2 of the endpoint documentation.
    melding = assert_feil(jose.submit({"praksisId": "1004326178"}, token), "MANGLER_BEHANDLERKRAV")
    assert melding == "Mangler påkrevd felt behandlerkrav"


@pytest.mark.parametrize("regninger", [None, []])
def test_mangler_regninger(jose: Jose, token: str, regninger: list | None) -> None:
    data = claim()
    if regninger is None:
        del data["behandlerkrav"]["regninger"]
    else:
        data["behandlerkrav"]["regninger"] = regninger
    assert assert_feil(jose.submit(data, token), "MANGLER_REGNINGER")


def test_mangler_guid_names_the_regning(jose: Jose, token: str) -> None:
    data = claim()
    second = copy.deepcopy(data["behandlerkrav"]["regninger"][0])
    del second["guid"]
    data["behandlerkrav"]["regninger"].append(second)
    assert "regninger[1]" in assert_feil(jose.submit(data, token), "MANGLER_GUID")


def test_wrong_datatype_says_where(jose: Jose, token: str) -> None:
    data = claim()
    data["behandlerkrav"]["regninger"][0]["tidspunkt"] = "i går"
    melding = assert_feil(jose.submit(data, token), "UKJENT_FORMAT")
    assert "behandlerkrav.regninger[0].tidspunkt" in melding
    assert "i går" not in melding  # values are not echoed: they may be patient data


def test_ukjent_praksisid(jose: Jose, token: str) -> None:
    melding = assert_feil(jose.submit(claim(praksisId="1000005649"), token), "UKJENT_PRAKSISID")
    assert "1000005649" in melding


def test_duplikat_krav_and_a_correction_is_not_a_duplicate(jose: Jose, token: str) -> None:
    data = claim()
    first = jose.submit(data, token)
    assert first.status_code == 200
    again = jose.submit(data, token, nested=True)  # another wrapping, the same content
    assert_feil(again, "DUPLIKAT_KRAV")
    assert again.json()["behandlerkravmeldingId"] != first.json()["behandlerkravmeldingId"]

    corrected = copy.deepcopy(data)
    corrected["behandlerkrav"]["regninger"][0]["tidspunkt"] = "2026-01-06T14:55:00+01:00"
    assert jose.submit(corrected, token).status_code == 200

    stats = jose.admin("GET", "stats")
    assert stats["submissions_received"] == 3
    assert stats["submissions_accepted"] == 2
    assert stats["submissions_rejected"] == 1


def test_rejected_melding_is_visible_as_feil_i_melding(jose: Jose, token: str) -> None:
    response = jose.submit({"praksisId": "1004326178"}, token)
    melding_id = response.json()["behandlerkravmeldingId"]
    [entry] = jose.details(melding_id, token)
    assert entry["meldingsstatus"] == "feil_i_melding"


def test_oversized_body_is_refused(jose: Jose, token: str) -> None:
    response = jose.submit_raw(b"x" * (8 * 1024 * 1024 + 1), token)
    assert response.status_code == 413
