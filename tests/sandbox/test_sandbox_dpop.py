"""DPoP (RFC 9449) as the sandbox's HelseID and API check it, driven by the plain JOSE client:
the nonce challenge, then each part of a proof the API refuses (htm, htu, iat, a reused jti,
ath, another key, Bearer for a bound token), and Maskinporten's tokens staying Bearer."""

from __future__ import annotations

import time
from typing import Any

import pytest
from jwcrypto import jwk
from support.sandbox import (  # noqa: F401 (fixtures)
    API,
    Jose,
    jose_fixture,
    keys_fixture,
    sandbox_fixture,
    served_fixture,
)

PRAKSIS = API + "/data/praksis"


def test_the_first_token_request_gets_a_nonce_challenge(jose: Jose) -> None:
    url = jose.info["helseid"]["token_url"]
    first = jose.http.post(
        url,
        data={
            "grant_type": "client_credentials",
            "scope": "hdir:kuhr-krav-api/krav",
            "client_id": jose.client_id,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": jose.assertion(jose.helseid_claims()),
        },
        headers={"DPoP": jose.proof("POST", url)},
    )
    assert first.status_code == 400
    assert first.json()["error"] == "use_dpop_nonce"
    assert first.headers["DPoP-Nonce"]
    answered = jose.helseid()  # repeats with the nonce
    assert answered.status_code == 200, answered.text
    assert answered.json()["token_type"] == "DPoP"


def test_helseid_refuses_a_token_request_without_dpop(jose: Jose) -> None:
    response = jose.helseid(dpop=False)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_dpop_proof"
    assert "requires DPoP" in response.json()["error_description"]


def _bound_token(jose: Jose) -> str:
    response = jose.helseid()
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def _get(jose: Jose, token: str, proof: str | None, scheme: str = "DPoP") -> Any:
    headers = {"Authorization": f"{scheme} {token}"}
    if proof is not None:
        headers["DPoP"] = proof
    return jose.http.get(PRAKSIS, headers=headers)


def test_a_bound_token_with_a_good_proof_reaches_the_api(jose: Jose) -> None:
    token = _bound_token(jose)
    response = _get(jose, token, jose.proof("GET", jose.base_url + PRAKSIS, token))
    assert response.status_code == 200, response.text
    assert [p["praksisId"] for p in response.json()["praksiser"]] == ["1004326178", "1004326468"]


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"htm": "POST"}, "htm must be GET"),
        ({"htu": "http://127.0.0.1:1/kuhr/krav/v1/data/praksis"}, "htu must be"),
        ({"iat": int(time.time()) - 3600}, "iat is too far"),
        ({"ath": "AAAA"}, "ath does not match"),
        ({"jti": None}, "needs a jti"),
    ],
)
def test_the_api_refuses_a_proof_that_does_not_fit(
    jose: Jose, change: dict[str, Any], says: str
) -> None:
    token = _bound_token(jose)
    response = _get(jose, token, jose.proof("GET", jose.base_url + PRAKSIS, token, **change))
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_dpop_proof"
    assert says in response.json()["error_description"]
    assert response.headers["WWW-Authenticate"].startswith("DPoP ")


def test_a_proof_is_good_once(jose: Jose) -> None:
    token = _bound_token(jose)
    proof = jose.proof("GET", jose.base_url + PRAKSIS, token)
    assert _get(jose, token, proof).status_code == 200
    again = _get(jose, token, proof)
    assert again.status_code == 401
    assert "jti has been used before" in again.json()["error_description"]


def test_a_proof_by_another_key_or_none_is_refused(jose: Jose) -> None:
    token = _bound_token(jose)
    other = jwk.JWK.generate(kty="EC", crv="P-256")
    stolen = _get(jose, token, jose.proof("GET", jose.base_url + PRAKSIS, token, key=other))
    assert stolen.status_code == 401
    assert "another key" in stolen.json()["error_description"]
    assert _get(jose, token, None).status_code == 401
    as_bearer = _get(jose, token, None, scheme="Bearer")
    assert as_bearer.status_code == 401
    assert "Authorization: DPoP" in as_bearer.json()["error_description"]


def test_maskinporten_tokens_stay_bearer(jose: Jose) -> None:
    response = jose.maskinporten()
    assert response.status_code == 200
    assert response.json()["token_type"] == "Bearer"
    token = response.json()["access_token"]
    assert jose.get("/data/praksis", token).status_code == 200
    refused = _get(jose, token, jose.proof("GET", jose.base_url + PRAKSIS, token))
    assert refused.status_code == 401
    assert "not DPoP-bound" in refused.json()["error_description"]
