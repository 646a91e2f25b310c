"""Tokens and access: both token endpoints and their refusals, the API's 401/403, token expiry,
Maskinporten delegation, x5c assertions, and that each actor sees only its own data."""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID
from jwcrypto import jwk, jwt
from support.sandbox import (  # noqa: F401 (fixtures)
    Jose,
    jose_fixture,
    keys_fixture,
    load_fixture,
    sandbox_fixture,
    serve,
)

from bridge.sandbox import RunningSandbox, SandboxSettings
from bridge.sandbox.keys import KeyMaterial

FYSIO_PRAKSIS = "2000000001"


def _claims(token: str) -> dict[str, Any]:
    return _header_and_claims(token)[1]


def _header_and_claims(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    head, part = token.split(".")[:2]
    decode = lambda text: json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))  # noqa: E731
    return decode(head), decode(part)


@pytest.fixture(scope="module")
def client_keys() -> dict[str, jwk.JWK]:
    return {
        name: jwk.JWK.generate(kty="RSA", size=2048, kid=f"{name}-key")
        for name in ("fysio", "smal", "leverandor")
    }


@pytest.fixture(scope="module")
def served(
    keys: KeyMaterial, client_keys: dict[str, jwk.JWK], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningSandbox]:
    """The default actor plus a physiotherapy clinic (orgnr only), a supplier that may act for
    the default clinic, and a client with a scope the API does not accept."""
    folder = tmp_path_factory.mktemp("auth")
    for name, key in client_keys.items():
        (folder / f"{name}.jwk").write_text(key.export_public())
    (folder / "sandbox.toml").write_text(
        f"""
[[actors]]
name = "fysio"
orgnr = "888888888"

[[actors.praksiser]]
praksisId = "{FYSIO_PRAKSIS}"
navn = "Fjord Fysioterapi"
orgnr = "888888888"
type = "FYNO"
kontonr = "98765432109"
gyldigePerioder = [{{ fraOgMedDato = 2020-01-01 }}]

[[actors]]
name = "leverandor"
orgnr = "777777777"

[[clients]]
client_id = "fysio-epj"
actor = "fysio"
public_jwk_file = "fysio.jwk"

[[clients]]
client_id = "smal-klient"
actor = "fysio"
public_jwk_file = "smal.jwk"
scopes = ["nav:kuhr/annet"]

[[clients]]
client_id = "leverandor-epj"
actor = "leverandor"
public_jwk_file = "leverandor.jwk"
may_act_for = ["999999999"]
""",
        encoding="utf-8",
    )
    running = serve(keys, config=folder / "sandbox.toml")
    yield running
    running.stop()


@pytest.fixture
def other(
    jose: Jose, sandbox: RunningSandbox, client_keys: dict[str, jwk.JWK]
) -> Iterator[dict[str, Jose]]:
    clients = {
        name: Jose(sandbox.base_url, sandbox.info, key=client_keys[name], client_id=client_id)
        for name, client_id in [
            ("fysio", "fysio-epj"),
            ("smal", "smal-klient"),
            ("leverandor", "leverandor-epj"),
        ]
    }
    yield clients
    for client in clients.values():
        client.close()


def claim(praksis_id: str = "1004326178") -> dict[str, Any]:
    data = load_fixture("seed-claim-corrected.json")
    data["praksisId"] = praksis_id
    data["behandlerkrav"]["regninger"][0]["guid"] = str(uuid.uuid4())
    return data


# ------------------------------------------------------------------ token endpoints


def test_maskinporten_token(jose: Jose) -> None:
    response = jose.maskinporten()
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "nav:kuhr/krav"
    assert body["expires_in"] == 120
    claims = _claims(body["access_token"])
    assert claims["client_id"] == "bkm-bridge-sandbox"
    assert claims["scope"] == "nav:kuhr/krav"
    assert claims["consumer"] == {"authority": "iso6523-actorid-upis", "ID": "0192:999999999"}
    assert claims["iss"] == jose.info["maskinporten"]["audience"]
    assert claims["exp"] - claims["iat"] == 120
    assert claims["jti"]


def test_helseid_machine_token_carries_client_claims_only(jose: Jose) -> None:
    """A client-credentials token is a virksomhet's: its client and organisation, bound to the
    DPoP key, and nothing about a person (no pid, no security level: nobody logged in)."""
    response = jose.helseid()
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "DPoP"
    header, claims = _header_and_claims(body["access_token"])
    assert header["typ"] == "at+jwt"
    assert claims["aud"] == "hdir:kuhr-krav-api"
    assert claims["scope"] == ["hdir:kuhr-krav-api/krav"]
    assert claims["client_id"] == "bkm-bridge-sandbox"
    assert claims["helseid://claims/client/claims/orgnr_parent"] == "999999999"
    assert claims["cnf"] == {"jkt": jose.dpop_key.thumbprint()}
    assert not {"pid", "sub", "helseid://claims/identity/security_level"} & set(claims)
    assert not [name for name in claims if name.startswith("helseid://claims/identity/")]


def _expect_oauth_error(response: httpx.Response, status: int, error: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == error
    assert body["error_description"]


@pytest.mark.parametrize(
    ("overrides", "status", "error"),
    [
        ({"iss": "nobody"}, 401, "invalid_client"),
        ({"aud": "https://maskinporten.no/"}, 400, "invalid_grant"),
        ({"iat": -600, "exp": -500}, 400, "invalid_grant"),  # seconds from now (see below)
        ({"exp": 600}, 400, "invalid_grant"),
        ({"iat": 300, "exp": 360}, 400, "invalid_grant"),
        ({"jti": None}, 400, "invalid_grant"),
        ({"scope": "nav:kuhr/krav nav:annet"}, 400, "invalid_scope"),
        ({"scope": None}, 400, "invalid_scope"),
    ],
    ids=["unknown-client", "wrong-aud", "expired", "too-long", "future", "no-jti", "scope", "none"],
)
def test_maskinporten_refusals(jose: Jose, overrides: dict, status: int, error: str) -> None:
    # iat and exp are given relative to when the test runs, not to when it was collected: a
    # long suite would otherwise let a "future" iat become the past.
    now = int(time.time())
    timed = {k: now + v for k, v in overrides.items() if k in ("iat", "exp")}
    _expect_oauth_error(jose.maskinporten(**{**overrides, **timed}), status, error)


def test_maskinporten_jti_is_single_use(jose: Jose) -> None:
    assertion = jose.assertion(jose.maskinporten_claims())
    assert jose.maskinporten(assertion).status_code == 200
    _expect_oauth_error(jose.maskinporten(assertion), 400, "invalid_grant")


def test_assertion_signed_with_another_key_is_refused(jose: Jose) -> None:
    stranger = jwk.JWK.generate(kty="RSA", size=2048, kid=jose.key["kid"])
    assertion = jose.assertion(jose.maskinporten_claims(), key=stranger)
    _expect_oauth_error(jose.maskinporten(assertion), 400, "invalid_grant")


def test_assertion_with_symmetric_alg_is_refused(jose: Jose) -> None:
    secret = jwk.JWK.generate(kty="oct", size=256)
    assertion = jose.assertion(jose.maskinporten_claims(), header={"alg": "HS256"}, key=secret)
    _expect_oauth_error(jose.maskinporten(assertion), 400, "invalid_grant")


def test_wrong_grant_type(jose: Jose) -> None:
    response = jose.http.post(
        jose.info["maskinporten"]["token_url"], data={"grant_type": "password", "assertion": "x"}
    )
    _expect_oauth_error(response, 400, "unsupported_grant_type")


@pytest.mark.parametrize(
    "overrides",
    [{"sub": "someone-else"}, {"aud": "https://helseid-sts.nhn.no"}, {"jti": None}],
    ids=["sub", "aud", "jti"],
)
def test_helseid_refusals(jose: Jose, overrides: dict) -> None:
    _expect_oauth_error(jose.helseid(**overrides), 401, "invalid_client")


def test_helseid_needs_the_jwt_bearer_assertion_type(jose: Jose) -> None:
    response = jose.http.post(
        jose.info["helseid"]["token_url"],
        data={
            "grant_type": "client_credentials",
            "client_id": jose.client_id,
            "client_assertion_type": "password",
            "client_assertion": jose.assertion(jose.helseid_claims()),
            "scope": "hdir:kuhr-krav-api/krav",
        },
    )
    _expect_oauth_error(response, 401, "invalid_client")


def _self_signed(key: jwk.JWK) -> str:
    private = serialization.load_pem_private_key(
        key.export_to_pem(private_key=True, password=None), None
    )
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fysio-epj")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(private, hashes.SHA256())
    )
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode("ascii")


def test_assertion_may_name_its_key_by_x5c(other: dict[str, Jose], client_keys: dict) -> None:
    fysio = other["fysio"]
    header = {"alg": "RS256", "x5c": [_self_signed(client_keys["fysio"])]}
    assert (
        fysio.maskinporten(fysio.assertion(fysio.maskinporten_claims(), header=header)).status_code
        == 200
    )
    stranger = jwk.JWK.generate(kty="RSA", size=2048)
    header = {"alg": "RS256", "x5c": [_self_signed(stranger)]}
    response = fysio.maskinporten(
        fysio.assertion(fysio.maskinporten_claims(), header=header, key=stranger)
    )
    _expect_oauth_error(response, 401, "invalid_client")


# ------------------------------------------------------------------ the API's checks

ENDPOINTS = [
    ("GET", "/data/praksis"),
    ("GET", "/data/behandlerkravmelding"),
    ("GET", "/data/behandlerkravmelding/5138fbfe-3c9c-406f-b854-91177b00bb1a"),
    ("GET", "/jwk"),
    ("POST", "/process/sendinnbehandlerkravmelding"),
]


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
@pytest.mark.parametrize("authorization", [None, "Bearer", "Bearer not.a.token", "Basic dXNlcg=="])
def test_missing_or_bad_token_is_401(
    jose: Jose, method: str, path: str, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = jose.http.request(method, "/kuhr/krav/v1" + path, headers=headers, content=b"x")
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_token_not_signed_by_the_sandbox_is_401(jose: Jose) -> None:
    real = _claims(jose.token())
    forger = jwk.JWK.generate(kty="RSA", size=2048, kid="sandbox-issuer")
    forged = jwt.JWT(header={"alg": "RS256", "kid": "sandbox-issuer"}, claims=real)
    forged.make_signed_token(forger)
    response = jose.get("/data/praksis", forged.serialize())
    assert response.status_code == 401
    assert "signature" in response.json()["error_description"]


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_wrong_scope_is_403(other: dict[str, Jose], method: str, path: str) -> None:
    smal = other["smal"]
    response = smal.maskinporten(scope="nav:kuhr/annet")
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    response = smal.http.request(
        method, "/kuhr/krav/v1" + path, headers={"Authorization": f"Bearer {token}"}, content=b"x"
    )
    assert response.status_code == 403
    assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]


def test_expired_token_is_401_and_a_new_one_works(jose: Jose) -> None:
    assert jose.admin("POST", "tokens", {"lifetime_seconds": 1})["lifetime_seconds"] == 1
    response = jose.maskinporten()
    assert response.json()["expires_in"] == 1
    token = response.json()["access_token"]
    assert jose.get("/data/praksis", token).status_code == 200
    time.sleep(2.1)
    response = jose.get("/data/praksis", token)
    assert response.status_code == 401
    assert "expired" in response.json()["error_description"]
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    assert jose.get("/data/praksis", jose.token()).status_code == 200
    assert jose.http.post("/sandbox/admin/tokens", json={"lifetime_seconds": 0}).status_code == 400
    jose.admin("POST", "reset")
    assert jose.admin("GET", "tokens")["lifetime_seconds"] == 120


def test_token_lifetime_setting(keys: KeyMaterial) -> None:
    with serve(keys, settings=SandboxSettings(token_lifetime_seconds=2)) as running:
        client = Jose(running.base_url, running.info)
        body = client.maskinporten().json()
        assert body["expires_in"] == 2
        claims = _claims(body["access_token"])
        assert claims["exp"] - claims["iat"] == 2
        client.close()


# ------------------------------------------------------------------ actors


def test_each_actor_sees_only_its_own_data(jose: Jose, other: dict[str, Jose]) -> None:
    lege_token = jose.token()
    fysio = other["fysio"]
    fysio_token = fysio.token()

    praksiser = fysio.get("/data/praksis", fysio_token).json()["praksiser"]
    assert [p["praksisId"] for p in praksiser] == [FYSIO_PRAKSIS]

    lege_id = jose.submit(claim(), lege_token).json()["behandlerkravmeldingId"]
    fysio_response = fysio.submit(claim(FYSIO_PRAKSIS), fysio_token)
    assert fysio_response.status_code == 200, fysio_response.text
    fysio_id = fysio_response.json()["behandlerkravmeldingId"]

    assert fysio.get(f"/data/behandlerkravmelding/{lege_id}", fysio_token).status_code == 404
    assert jose.get(f"/data/behandlerkravmelding/{fysio_id}", lege_token).status_code == 404
    assert [r["behandlerkravmeldingId"] for r in fysio.overview(fysio_token)] == [fysio_id]
    assert [r["behandlerkravmeldingId"] for r in jose.overview(lege_token)] == [lege_id]

    # Another actor's praksis is as unknown as a made-up one.
    response = fysio.submit(claim("1004326178"), fysio_token)
    assert response.status_code == 400
    assert response.json()["feilmeldinger"][0]["kode"] == "UKJENT_PRAKSISID"


def test_same_actor_through_helseid_and_maskinporten(jose: Jose) -> None:
    melding_id = jose.submit(claim(), jose.token("maskinporten")).json()["behandlerkravmeldingId"]
    assert (
        jose.details(melding_id, jose.token("helseid"))[0]["behandlerkravmeldingId"] == melding_id
    )


def test_helseid_for_a_virksomhet_uses_orgnr_parent(other: dict[str, Jose]) -> None:
    fysio = other["fysio"]
    response = fysio.helseid()
    assert response.status_code == 200, response.text
    claims = _claims(response.json()["access_token"])
    assert "pid" not in claims
    assert claims["helseid://claims/client/claims/orgnr_parent"] == "888888888"
    praksiser = fysio.get("/data/praksis", response.json()["access_token"]).json()["praksiser"]
    assert [p["praksisId"] for p in praksiser] == [FYSIO_PRAKSIS]


def test_maskinporten_delegation(other: dict[str, Jose]) -> None:
    supplier = other["leverandor"]
    own = supplier.maskinporten()
    assert own.status_code == 200
    assert supplier.get("/data/praksis", own.json()["access_token"]).json()["praksiser"] == []

    acting = supplier.maskinporten(consumer_org="999999999")
    assert acting.status_code == 200, acting.text
    claims = _claims(acting.json()["access_token"])
    assert claims["consumer"]["ID"] == "0192:999999999"
    assert claims["supplier"]["ID"] == "0192:777777777"
    praksiser = supplier.get("/data/praksis", acting.json()["access_token"]).json()["praksiser"]
    assert {p["praksisId"] for p in praksiser} == {"1004326178", "1004326468"}

    _expect_oauth_error(supplier.maskinporten(consumer_org="888888888"), 400, "invalid_grant")


def test_a_config_file_cannot_name_an_unknown_actor(keys: KeyMaterial, tmp_path: Path) -> None:
    (tmp_path / "x.jwk").write_text(jwk.JWK.generate(kty="RSA", size=2048).export_public())
    config = tmp_path / "bad.toml"
    config.write_text('[[clients]]\nclient_id = "x"\nactor = "nobody"\npublic_jwk_file = "x.jwk"\n')
    with pytest.raises(ValueError, match="unknown actor 'nobody'"):
        serve(keys, config=config)
    config.write_text("[[clients]\n")
    with pytest.raises(ValueError, match=r"bad\.toml: not valid TOML"):
        serve(keys, config=config)
