"""Tokens from the sandbox's Maskinporten and HelseID: key sources (PEM, JWK, PKCS#12 with x5c),
delegation, caching, refresh before expiry, one refresh at a time, and clear failures."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import threading
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from jwcrypto import jwk, jws

from bridge.config import AuthMethod, ConfigError, load_settings
from bridge.kuhr.auth import (
    DpopProofs,
    HelseIdTokenProvider,
    MaskinportenTokenProvider,
    SigningKey,
    TokenError,
    load_signing_key,
    make_token_provider,
)
from bridge.kuhr.client import KuhrClient
from bridge.kuhr.target import resolve_target, token_provider_for
from bridge.sandbox.server import RunningSandbox, start_sandbox

SUPPLIER_ORGNR = "888888888"


def _praksis_ids(sandbox: RunningSandbox, tokens: Any) -> list[str]:
    with KuhrClient(sandbox.info["api_url"], tokens) as client:
        return [p.praksisId for p in client.hent_praksiser().praksiser]


def _provider(sandbox: RunningSandbox, method: str, key: SigningKey, **kwargs: Any) -> Any:
    issuer = sandbox.info[method]
    return make_token_provider(
        AuthMethod(method),
        signing_key=key,
        client_id=kwargs.pop("client_id", sandbox.info["client_id"]),
        token_url=issuer["token_url"],
        audience=issuer["audience"],
        scope=kwargs.pop("scope", issuer["scope"]),
        **kwargs,
    )


class _Spy(httpx.HTTPTransport):
    """A real transport that remembers the token requests it carried."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, str]] = []
        self.requests: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.forms.append(dict(parse_qsl(request.content.decode())))
        return super().handle_request(request)


def _client_toml(client_id: str, actor: str, key: jwk.JWK, extra: str = "") -> str:
    public = json.loads(key.export_public())
    inline = ", ".join(f'{k} = "{v}"' for k, v in public.items())
    return (
        f'[[clients]]\nclient_id = "{client_id}"\nactor = "{actor}"\n{extra}\n'
        f"public_jwk = {{ {inline} }}\n"
    )


def _dev_key(sandbox: RunningSandbox) -> SigningKey:
    return SigningKey.from_jwk_dict(sandbox.info["private_jwk"])


def _claims(assertion: str) -> tuple[dict[str, Any], dict[str, Any]]:
    header, payload, _ = assertion.split(".")

    def part(text: str) -> dict[str, Any]:
        return json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))

    return part(header), part(payload)


@pytest.mark.parametrize(
    ("method", "scope", "token_type"),
    [("maskinporten", "nav:kuhr/krav", "Bearer"), ("helseid", "hdir:kuhr-krav-api/krav", "DPoP")],
)
def test_both_token_types_reach_the_api(
    sandbox: RunningSandbox, method: str, scope: str, token_type: str
) -> None:
    tokens = _provider(sandbox, method, _dev_key(sandbox))
    token = tokens.token_sync()
    assert token.token_type == token_type
    assert token.scope == scope
    assert 0 < token.lifetime <= 3600
    assert _praksis_ids(sandbox, tokens) == ["1004326178", "1004326468"]


def test_assertions_follow_the_grant_rules(sandbox: RunningSandbox) -> None:
    key = _dev_key(sandbox)
    spy = _Spy()
    _provider(sandbox, "maskinporten", key, consumer_org="999999999", transport=spy).token_sync()
    [form] = spy.forms
    assert form["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    header, claims = _claims(form["assertion"])
    assert header == {"alg": "RS256", "kid": "bkm-bridge-sandbox-client"}
    assert claims["iss"] == sandbox.info["client_id"]
    assert claims["aud"] == sandbox.info["maskinporten"]["audience"]
    assert claims["scope"] == "nav:kuhr/krav"
    assert claims["consumer_org"] == "999999999"
    assert claims["exp"] - claims["iat"] <= 120

    spy = _Spy()
    hid = _provider(sandbox, "helseid", key, transport=spy)
    hid.token_sync()
    hid.invalidate()
    hid.token_sync()
    # HelseID answers the first request use_dpop_nonce; the nonce is then known.
    challenged, first, second = spy.forms
    assert challenged["client_assertion"] != first["client_assertion"]
    assert first["grant_type"] == "client_credentials"
    assert first["client_id"] == sandbox.info["client_id"]
    assert first["scope"] == "hdir:kuhr-krav-api/krav"
    assert first["client_assertion_type"] == (
        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    )
    _, claims = _claims(first["client_assertion"])
    assert claims["iss"] == claims["sub"] == sandbox.info["client_id"]
    assert claims["aud"] == sandbox.info["helseid"]["token_url"]
    # Each assertion is single-use: a fresh jti every time.
    assert _claims(second["client_assertion"])[1]["jti"] != claims["jti"]


def _private_pem(key: jwk.JWK) -> bytes:
    return key.export_to_pem(private_key=True, password=None)


def test_pem_and_jwk_key_files(sandbox: RunningSandbox, tmp_path: Path) -> None:
    private = jwk.JWK(**sandbox.info["private_jwk"])
    pem = tmp_path / "maskinporten.pem"
    pem.write_bytes(_private_pem(private))
    jwk_file = tmp_path / "helseid.jwk.json"
    jwk_file.write_text(json.dumps(sandbox.info["private_jwk"]), encoding="utf-8")

    from_pem = load_signing_key(
        load_settings(None, {"auth.key_file": pem, "auth.key_id": "bkm-bridge-sandbox-client"}).auth
    )
    assert from_pem.kid == "bkm-bridge-sandbox-client"
    assert _praksis_ids(sandbox, _provider(sandbox, "maskinporten", from_pem))

    from_jwk = load_signing_key(load_settings(None, {"auth.key_file": jwk_file}).auth)
    assert from_jwk.kid == "bkm-bridge-sandbox-client"
    assert _praksis_ids(sandbox, _provider(sandbox, "helseid", from_jwk))


def _pkcs12(private: jwk.JWK, password: bytes) -> bytes:
    key = private.get_op_key("sign")
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Kurbadet Helsesenter")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return pkcs12.serialize_key_and_certificates(
        b"virksomhetssertifikat",
        key,
        cert,
        None,
        serialization.BestAvailableEncryption(password),
    )


def test_virksomhetssertifikat_sends_x5c(
    sandbox: RunningSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p12 = tmp_path / "virksomhet.p12"
    p12.write_bytes(_pkcs12(jwk.JWK(**sandbox.info["private_jwk"]), b"s3cret-p12"))
    monkeypatch.setenv("BKM_BRIDGE_AUTH__PKCS12_PASSWORD", "s3cret-p12")
    key = load_signing_key(load_settings(None, {"auth.pkcs12_file": p12}).auth)
    assert key.x5c and len(key.x5c) == 1
    spy = _Spy()
    tokens = _provider(sandbox, "maskinporten", key, transport=spy)
    assert _praksis_ids(sandbox, tokens)  # the sandbox found the key through the certificate
    header, _ = _claims(spy.forms[0]["assertion"])
    assert "kid" not in header and header["x5c"] == list(key.x5c)

    password_file = tmp_path / "p12.password"
    password_file.write_text("s3cret-p12\n", encoding="utf-8")
    monkeypatch.delenv("BKM_BRIDGE_AUTH__PKCS12_PASSWORD")
    settings = load_settings(
        None, {"auth.pkcs12_file": p12, "auth.pkcs12_password_file": password_file}
    )
    assert load_signing_key(settings.auth).x5c == key.x5c
    wrong = load_settings(None, {"auth.pkcs12_file": p12, "auth.pkcs12_password": "nope"})
    with pytest.raises(ConfigError, match="wrong password"):
        load_signing_key(wrong.auth)


def test_bad_key_files_say_what_is_wrong(tmp_path: Path) -> None:
    missing = load_settings(None, {"auth.key_file": tmp_path / "missing.pem"}).auth
    with pytest.raises(ConfigError, match=r"cannot read auth\.key_file"):
        load_signing_key(missing)
    junk = tmp_path / "junk.pem"
    junk.write_text("hello", encoding="utf-8")
    with pytest.raises(ConfigError, match="neither a PEM private key nor a JWK"):
        load_signing_key(load_settings(None, {"auth.key_file": junk}).auth)
    public = tmp_path / "public.pem"
    public.write_bytes(jwk.JWK.generate(kty="RSA", size=2048).export_to_pem())
    with pytest.raises(ConfigError, match="public key"):
        load_signing_key(load_settings(None, {"auth.key_file": public}).auth)
    with pytest.raises(ConfigError, match="no signing key configured"):
        load_signing_key(load_settings(None, {}).auth)


def test_refused_token_request_says_what_to_fix(sandbox: RunningSandbox) -> None:
    stranger = SigningKey(key=jwk.JWK.generate(kty="RSA", size=2048), kid="unregistered")
    with pytest.raises(TokenError) as caught:
        _provider(sandbox, "maskinporten", stranger).token_sync()
    assert "invalid_client" in str(caught.value)
    assert "registered for this client" in caught.value.hint
    with pytest.raises(TokenError, match="invalid_scope"):
        _provider(sandbox, "maskinporten", _dev_key(sandbox), scope="nav:other").token_sync()
    unreachable = make_token_provider(
        AuthMethod.MASKINPORTEN, signing_key=_dev_key(sandbox), client_id="x",
        token_url="http://127.0.0.1:9/token", audience="x", scope="x", attempts=1,
    )  # fmt: skip
    with pytest.raises(TokenError, match=r"cannot reach http://127\.0\.0\.1:9/token"):
        unreachable.token_sync()


def test_token_is_cached_and_refreshed_before_expiry(sandbox: RunningSandbox) -> None:
    now = [1_000_000.0]
    tokens = _provider(sandbox, "maskinporten", _dev_key(sandbox), clock=lambda: now[0])
    first = tokens.token_sync()
    assert tokens.token_sync() is first
    lifetime = first.lifetime
    margin = min(30.0, lifetime * 0.1)
    now[0] += lifetime - margin - 1  # still comfortably valid
    assert tokens.token_sync() is first
    now[0] += 2  # inside the refresh margin, before the real expiry
    second = tokens.token_sync()
    assert second is not first and second.value != first.value
    assert tokens.fetch_count == 2


def test_invalidate_only_drops_the_failing_token(sandbox: RunningSandbox) -> None:
    tokens = _provider(sandbox, "helseid", _dev_key(sandbox))
    first = tokens.token_sync()
    tokens.invalidate("some-older-token")
    assert tokens.token_sync() is first
    tokens.invalidate(first.value)
    assert tokens.token_sync() is not first


def test_one_refresh_at_a_time(sandbox: RunningSandbox) -> None:
    """Threads and coroutines asking at once for a cold provider cause one token request."""
    tokens = _provider(sandbox, "maskinporten", _dev_key(sandbox))

    async def many() -> set[str]:
        headers = await asyncio.gather(*(tokens.auth_headers("GET", "u") for _ in range(20)))
        return {h["Authorization"] for h in headers}

    seen: list[set[str]] = []
    workers = [threading.Thread(target=lambda: seen.append(asyncio.run(many()))) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert len(set().union(*seen)) == 1
    assert tokens.fetch_count == 1


def test_maskinporten_delegation_with_consumer_org(sandbox_keys: Any, tmp_path: Path) -> None:
    """A supplier's client fetches a token for a clinic that delegated to it (Altinn)."""
    supplier_key = jwk.JWK.generate(kty="RSA", size=2048, kid="supplier-1")
    config = tmp_path / "sandbox.toml"
    actor = f'[[actors]]\nname = "leverandor"\norgnr = "{SUPPLIER_ORGNR}"\n\n'
    clients = _client_toml(
        "epj-leverandor", "leverandor", supplier_key, 'may_act_for = ["999999999"]'
    )
    config.write_text(actor + clients, encoding="utf-8")
    key = SigningKey(key=supplier_key, kid="supplier-1")
    with start_sandbox(keys=sandbox_keys, config=config) as running:
        own = _provider(running, "maskinporten", key, client_id="epj-leverandor")
        assert _praksis_ids(running, own) == []  # the supplier itself has no praksis
        for_clinic = _provider(
            running, "maskinporten", key, client_id="epj-leverandor", consumer_org="999999999"
        )
        assert _praksis_ids(running, for_clinic) == ["1004326178", "1004326468"]
        stranger = _provider(
            running, "maskinporten", key, client_id="epj-leverandor", consumer_org="777777777"
        )
        with pytest.raises(TokenError, match="invalid_grant"):
            stranger.token_sync()


def test_403_when_the_token_lacks_the_api_scope(sandbox_keys: Any, tmp_path: Path) -> None:
    from bridge.kuhr.client import KuhrAuthError

    other_key = jwk.JWK.generate(kty="RSA", size=2048, kid="other-1")
    config = tmp_path / "sandbox.toml"
    config.write_text(
        _client_toml("uten-scope", "lege", other_key, 'scopes = ["nav:annet"]'), encoding="utf-8"
    )
    with start_sandbox(keys=sandbox_keys, config=config) as running:
        tokens = _provider(
            running, "maskinporten", SigningKey(key=other_key, kid="other-1"),
            client_id="uten-scope", scope="nav:annet",
        )  # fmt: skip
        with (
            KuhrClient(running.info["api_url"], tokens) as client,
            pytest.raises(KuhrAuthError, match="403"),
        ):
            client.hent_praksiser()


def test_target_from_sandbox_info(sandbox: RunningSandbox) -> None:
    for method in ("maskinporten", "helseid"):
        settings = load_settings(None, {"auth.method": method})
        target = resolve_target(settings, sandbox.info, embedded=True)
        provider = token_provider_for(target, settings)
        expected = MaskinportenTokenProvider if method == "maskinporten" else HelseIdTokenProvider
        assert isinstance(provider, expected)
        assert target.label == "SANDBOX (embedded)"
        assert target.token_url == sandbox.info[method]["token_url"]


def test_dpop_proof_binds_method_url_and_token() -> None:
    proofs = DpopProofs()
    proof = proofs.proof("post", "https://kuhr.example/kuhr/krav/v1/jwk?x=1", "the-token")
    header, claims = _claims(proof)
    assert header["typ"] == "dpop+jwt" and header["alg"] == "ES256"
    assert "d" not in header["jwk"]  # only the public key travels
    signed = jws.JWS()
    signed.deserialize(proof)
    signed.verify(jwk.JWK(**header["jwk"]), alg="ES256")  # raises if the signature is wrong
    assert claims["htm"] == "POST"
    assert claims["htu"] == "https://kuhr.example/kuhr/krav/v1/jwk"
    import hashlib

    digest = hashlib.sha256(b"the-token").digest()
    assert claims["ath"] == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def test_helseid_dpop_sends_proofs(sandbox: RunningSandbox) -> None:
    """The token request carries a proof, the second one HelseID's nonce; the token is bound
    to the proof's key, and every API call gets a proof of its own with `ath`."""
    spy = _Spy()
    tokens = _provider(sandbox, "helseid", _dev_key(sandbox), transport=spy)
    token = tokens.token_sync()
    assert token.token_type == "DPoP"
    first, second = (_claims(r.headers["DPoP"])[1] for r in spy.requests)
    assert (second["htm"], second["htu"]) == ("POST", sandbox.info["helseid"]["token_url"])
    assert "nonce" not in first and second["nonce"]
    header, _ = _claims(spy.requests[1].headers["DPoP"])
    access = _claims(token.value)[1]
    assert access["cnf"]["jkt"] == jwk.JWK(**header["jwk"]).thumbprint()
    url = sandbox.info["api_url"] + "/data/praksis"
    headers = asyncio.run(tokens.auth_headers("GET", url))
    assert headers["Authorization"] == f"DPoP {token.value}"
    _, proof = _claims(headers["DPoP"])
    assert (proof["htm"], proof["htu"]) == ("GET", url) and proof["ath"]
    assert "nonce" not in proof  # HelseID's nonce is for HelseID only
    again = asyncio.run(tokens.auth_headers("GET", url))
    assert _claims(again["DPoP"])[1]["jti"] != proof["jti"]
