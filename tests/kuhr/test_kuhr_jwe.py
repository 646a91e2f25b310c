"""The claim encrypted for KUHR: both profiles, compression, and the JWKS cache."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import zlib
from typing import Any

import pytest
from jwcrypto import jwe, jwk
from support import paths

from bridge.core.model import Behandlerkravmelding, load_json
from bridge.kuhr.jwe import JwksCache, JwksError, encrypt_claim

FIXTURES = paths.FIXTURES / "kuhr"


@pytest.fixture(scope="module")
def kuhr_key() -> jwk.JWK:
    return jwk.JWK.generate(kty="RSA", size=2048, kid="kuhr-2026-01", use="enc", alg="RSA-OAEP-256")


@pytest.fixture(scope="module")
def claim_text() -> str:
    return (FIXTURES / "seed-workflow-claim.json").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def melding(claim_text: str) -> Behandlerkravmelding:
    return Behandlerkravmelding.model_validate(load_json(claim_text))


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _decrypt(token: str, key: jwk.JWK) -> tuple[dict[str, Any], bytes]:
    header = json.loads(_b64decode(token.split(".")[0]))
    box = jwe.JWE()
    box.deserialize(token, key=key)
    return header, box.payload


def test_direct_profile(kuhr_key: jwk.JWK, melding: Behandlerkravmelding, claim_text: str) -> None:
    token = encrypt_claim(melding, kuhr_key)
    assert token.count(".") == 4  # compact serialisation: five parts
    header, plaintext = _decrypt(token, kuhr_key)
    assert header == {"alg": "RSA-OAEP-256", "enc": "A256GCM", "kid": "kuhr-2026-01"}
    sent = load_json(plaintext)
    assert Behandlerkravmelding.model_validate(sent) == Behandlerkravmelding.model_validate(
        load_json(claim_text)
    )
    # Amounts travel as exact JSON numbers, not through float.
    assert re.search(rb'"belop": ?74\.00[,}]', plaintext)
    assert re.search(rb'"belop": ?434\.00[,}]', plaintext)


def test_nested_profile_wraps_an_unsigned_jwt(
    kuhr_key: jwk.JWK, melding: Behandlerkravmelding
) -> None:
    token = encrypt_claim(melding, kuhr_key, profile="nested")
    header, plaintext = _decrypt(token, kuhr_key)
    assert header["cty"] == "JWT" and header["typ"] == "JWT"
    assert "zip" not in header
    jwt_header, jwt_payload, signature = plaintext.decode().split(".")
    assert json.loads(_b64decode(jwt_header)) == {"alg": "none", "typ": "JWT"}
    assert signature == ""
    assert load_json(_b64decode(jwt_payload))["praksisId"] == "1004326178"


def _raw_decrypt(token: str, key: jwk.JWK) -> bytes:
    """RSA-OAEP-256 + A256GCM by hand, without any zip handling."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    protected, encrypted_key, iv, ciphertext, tag = token.split(".")
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    cek = key.get_op_key("unwrapKey").decrypt(_b64decode(encrypted_key), oaep)
    return AESGCM(cek).decrypt(
        _b64decode(iv), _b64decode(ciphertext) + _b64decode(tag), protected.encode("ascii")
    )


def test_zip_deflates_before_encrypting(kuhr_key: jwk.JWK, melding: Behandlerkravmelding) -> None:
    zipped = encrypt_claim(melding, kuhr_key, profile="nested", zip=True)
    header, plaintext = _decrypt(zipped, kuhr_key)
    assert header["zip"] == "DEF"
    assert plaintext.count(b".") == 2  # still the nested JWT once inflated
    raw = _raw_decrypt(zipped, kuhr_key)
    assert raw != plaintext
    assert zlib.decompress(raw, -15) == plaintext  # raw DEFLATE (RFC 1951), as JWE requires


def test_direct_profile_by_hand(kuhr_key: jwk.JWK, melding: Behandlerkravmelding) -> None:
    raw = _raw_decrypt(encrypt_claim(melding, kuhr_key), kuhr_key)
    assert load_json(raw)["behandlerkrav"]["antallRegninger"] == 3


def test_every_encryption_is_fresh(kuhr_key: jwk.JWK, melding: Behandlerkravmelding) -> None:
    assert encrypt_claim(melding, kuhr_key) != encrypt_claim(melding, kuhr_key)


def test_unknown_profile_is_refused(kuhr_key: jwk.JWK, melding: Behandlerkravmelding) -> None:
    with pytest.raises(ValueError, match="profile"):
        encrypt_claim(melding, kuhr_key, profile="signed")  # type: ignore[arg-type]


class _FakeJwks:
    """Serves a sequence of key sets, counting fetches."""

    def __init__(self, *sets: list[jwk.JWK]) -> None:
        self.sets = [{"keys": [k.export_public(as_dict=True) for k in keys]} for keys in sets]
        self.calls = 0

    async def __call__(self) -> dict[str, Any]:
        index = min(self.calls, len(self.sets) - 1)
        self.calls += 1
        return self.sets[index]


def _rsa(kid: str) -> jwk.JWK:
    return jwk.JWK.generate(kty="RSA", size=2048, kid=kid, use="enc", alg="RSA-OAEP-256")


def test_jwks_is_fetched_once_and_cached() -> None:
    fetch = _FakeJwks([_rsa("a")])
    cache = JwksCache(fetch)

    async def run() -> list[str]:
        return [(await cache.key()).get("kid") for _ in range(3)]

    assert asyncio.run(run()) == ["a", "a", "a"]
    assert fetch.calls == 1


def test_unknown_kid_refetches_once() -> None:
    fetch = _FakeJwks([_rsa("old")], [_rsa("new")])
    cache = JwksCache(fetch)

    async def run() -> str:
        await cache.key()
        return (await cache.key("new")).get("kid")

    assert asyncio.run(run()) == "new"
    assert fetch.calls == 2

    async def missing() -> None:
        await cache.key("never")

    with pytest.raises(JwksError, match="never"):
        asyncio.run(missing())
    assert fetch.calls == 3  # one refetch, not a loop


def test_refresh_if_stale_reports_a_rotation() -> None:
    fetch = _FakeJwks([_rsa("old")], [_rsa("new")], [_rsa("new")])
    cache = JwksCache(fetch)

    async def run() -> tuple[bool, bool]:
        await cache.key()
        rotated = await cache.refresh_if_stale("old")
        unchanged = await cache.refresh_if_stale("new")
        return rotated, unchanged

    assert asyncio.run(run()) == (True, False)


def test_expired_cache_refetches() -> None:
    now = [0.0]
    fetch = _FakeJwks([_rsa("a")])
    cache = JwksCache(fetch, max_age=60, clock=lambda: now[0])

    async def run() -> None:
        await cache.key()
        now[0] = 61.0
        await cache.key()

    asyncio.run(run())
    assert fetch.calls == 2


def test_jwks_without_encryption_key_is_an_error() -> None:
    signing = jwk.JWK.generate(kty="EC", crv="P-256", kid="sig")

    async def only_signing() -> dict[str, Any]:
        return {"keys": [signing.export_public(as_dict=True)]}

    with pytest.raises(JwksError, match="no RSA encryption key"):
        asyncio.run(JwksCache(only_signing).key())


def test_a_refetched_key_set_replaces_the_keys_built_from_the_old_one() -> None:
    """Keys are built once per fetch, not per claim; a new set (even under the same kid) wins."""
    first, second = _rsa("a"), _rsa("a")
    fetch = _FakeJwks([first], [second])
    cache = JwksCache(fetch)

    async def run() -> list[str]:
        before = [(await cache.key()).thumbprint() for _ in range(2)]
        await cache.refresh_if_stale("a")
        return [*before, (await cache.key()).thumbprint()]

    assert asyncio.run(run()) == [first.thumbprint(), first.thumbprint(), second.thumbprint()]
