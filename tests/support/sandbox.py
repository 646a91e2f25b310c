"""Shared by the sandbox tests: a sandbox served over loopback, and `Jose`, a plain JOSE client
written here with jwcrypto + httpx (deliberately not the bridge's own KUHR client).

Not a conftest.py: other test folders import helpers from their own conftest, and a second
module named `conftest` would shadow theirs. Test modules import the fixtures they use (the
`*_fixture` functions, registered under the short names `keys`, `served`, `sandbox`, `jose`)."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from jwcrypto import jwe, jwk, jwt

from bridge.sandbox import RunningSandbox, SandboxSettings, start_sandbox
from bridge.sandbox.keys import KeyMaterial, generate_keys
from support import paths

FIXTURES = paths.FIXTURES / "sandbox"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CLIENT_ASSERTION = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
API = "/kuhr/krav/v1"
SUBMIT = f"{API}/process/sendinnbehandlerkravmelding"


def load_fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def b64url(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def regning(
    regningsnummer: str,
    tidspunkt: str,
    takster: list[tuple[str, str]],
    *,
    fnr: str = "47908702367",
    guid: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One regning of the JSON BKM; amounts are written as JSON numbers."""
    belop = sum(float(b) for _, b in takster)
    return {
        "guid": guid or str(uuid.uuid4()),
        "regningsnummer": regningsnummer,
        "tidspunkt": tidspunkt,
        "pasient": {"identifikasjon": {"id": fnr, "type": "FNR"}},
        "diagnoser": [{"kodeverk": "2.16.578.1.12.4.1.1.7170", "kode": "L73"}],
        "takster": [{"belop": float(b), "kode": k, "antall": 1} for k, b in takster],
        "belop": belop,
        **extra,
    }


def melding(*regninger: dict[str, Any], praksis_id: str = "1004326178") -> dict[str, Any]:
    return {
        "praksisId": praksis_id,
        "behandlerkrav": {
            "navnEPJ": "sandbox-tests",
            "regninger": list(regninger),
            "antallRegninger": len(regninger),
            "belop": sum(r["belop"] for r in regninger),
        },
    }


class Jose:
    """Talks to a sandbox the way an EPJ vendor would, from the public documentation only."""

    def __init__(
        self,
        base_url: str,
        info: dict[str, Any],
        key: jwk.JWK | None = None,
        client_id: str | None = None,
    ) -> None:
        self.base_url = base_url
        self.info = info
        self.key = key or jwk.JWK(**info["private_jwk"])
        self.client_id = client_id or info["client_id"]
        # Plain HTTP on loopback: verify=False spares loading a CA bundle per client (~50 ms).
        self.http = httpx.Client(base_url=base_url, timeout=10, verify=False)
        # DPoP (RFC 9449), as HelseID tokens need: one key, the token endpoint's nonce, and the
        # tokens that came back bound to the key.
        self.dpop_key = jwk.JWK.generate(kty="EC", crv="P-256")
        self.nonce: str | None = None
        self.bound: set[str] = set()

    def close(self) -> None:
        self.http.close()

    # -------------------------------------------------------------- tokens

    def assertion(
        self,
        claims: dict[str, Any],
        header: dict[str, Any] | None = None,
        key: jwk.JWK | None = None,
    ) -> str:
        key = key or self.key
        token = jwt.JWT(header=header or {"alg": "RS256", "kid": key["kid"]}, claims=claims)
        token.make_signed_token(key)
        return token.serialize()

    def maskinporten_claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims = {
            "iss": self.client_id,
            "aud": self.info["maskinporten"]["audience"],
            "scope": "nav:kuhr/krav",
            "iat": now,
            "exp": now + 60,
            "jti": str(uuid.uuid4()),
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def maskinporten(self, assertion: str | None = None, **overrides: Any) -> httpx.Response:
        assertion = assertion or self.assertion(self.maskinporten_claims(**overrides))
        return self.http.post(
            self.info["maskinporten"]["token_url"],
            data={"grant_type": JWT_BEARER, "assertion": assertion},
        )

    def helseid_claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": self.info["helseid"]["token_url"],
            "iat": now,
            "exp": now + 60,
            "jti": str(uuid.uuid4()),
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def proof(
        self,
        method: str,
        url: str,
        token: str | None = None,
        *,
        key: jwk.JWK | None = None,
        **overrides: Any,
    ) -> str:
        """A DPoP proof for one request (claims may be overridden or, with None, left out)."""
        key = key or self.dpop_key
        claims: dict[str, Any] = {
            "jti": str(uuid.uuid4()),
            "htm": method,
            "htu": url,
            "iat": int(time.time()),
        }
        if token is not None:
            claims["ath"] = b64url(hashlib.sha256(token.encode()).digest())
        if self.nonce and token is None:
            claims["nonce"] = self.nonce
        claims.update(overrides)
        header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": json.loads(key.export_public())}
        signed = jwt.JWT(header=header, claims={k: v for k, v in claims.items() if v is not None})
        signed.make_signed_token(key)
        return signed.serialize()

    def helseid(
        self,
        scope: str = "hdir:kuhr-krav-api/krav",
        assertion: str | None = None,
        *,
        dpop: bool = True,
        form: dict[str, str] | None = None,
        **overrides: Any,
    ) -> httpx.Response:
        """A HelseID token request (client credentials unless `form` says otherwise), with a
        DPoP proof, repeated once with the nonce HelseID asks for."""
        url = self.info["helseid"]["token_url"]

        def send() -> httpx.Response:
            data = form or {"grant_type": "client_credentials", "scope": scope}
            data = {
                **data,
                "client_id": self.client_id,
                "client_assertion_type": CLIENT_ASSERTION,
                "client_assertion": assertion or self.assertion(self.helseid_claims(**overrides)),
            }
            headers = {"DPoP": self.proof("POST", url)} if dpop else {}
            return self.http.post(url, data=data, headers=headers)

        response = send()
        if response.status_code == 400 and response.json().get("error") == "use_dpop_nonce":
            self.nonce = response.headers["DPoP-Nonce"]
            response = send()
        if response.status_code == 200 and response.json().get("token_type") == "DPoP":
            self.bound.add(response.json()["access_token"])
        return response

    def token(self, via: str = "maskinporten") -> str:
        response = self.maskinporten() if via == "maskinporten" else self.helseid()
        assert response.status_code == 200, response.text
        return response.json()["access_token"]

    def auth(self, token: str | None, method: str, path: str) -> dict[str, str]:
        """Authorization (and, for a DPoP-bound token, a proof) for one API request."""
        if not token:
            return {}
        if token in self.bound:
            return {
                "Authorization": f"DPoP {token}",
                "DPoP": self.proof(method, self.base_url + path, token),
            }
        return {"Authorization": f"Bearer {token}"}

    # -------------------------------------------------------------- API

    def get(self, path: str, token: str | None, **params: str) -> httpx.Response:
        headers = self.auth(token, "GET", API + path)
        return self.http.get(API + path, headers=headers, params=params or None)

    def jwks(self, token: str) -> dict[str, Any]:
        response = self.get("/jwk", token)
        assert response.status_code == 200, response.text
        return response.json()

    def encrypt(
        self,
        claim: dict[str, Any] | bytes,
        token: str,
        *,
        nested: bool = False,
        zip_def: bool = False,
        kid: str | None = None,
        header: dict[str, Any] | None = None,
        key: jwk.JWK | None = None,
    ) -> str:
        """Compact JWE of the claim: the JSON itself, or an unsigned JWT around it."""
        payload = claim if isinstance(claim, bytes) else json.dumps(claim).encode("utf-8")
        if key is None:
            keys = self.jwks(token)["keys"]
            key = jwk.JWK(**keys[0])
        protected = {"alg": "RSA-OAEP-256", "enc": "A256GCM", "kid": kid or key["kid"]}
        if nested:
            head = b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
            payload = f"{head}.{b64url(payload)}.".encode("ascii")
            protected.update({"typ": "JWT", "cty": "JWT"})
        if zip_def:
            protected["zip"] = "DEF"  # jwcrypto DEFLATEs the plaintext before encrypting
        protected.update(header or {})
        return jwe.JWE(payload, json.dumps(protected), recipient=key).serialize(compact=True)

    def submit_raw(
        self, body: str | bytes, token: str | None, content_type: str = "application/jose"
    ) -> httpx.Response:
        headers = {"Content-Type": content_type, **self.auth(token, "POST", SUBMIT)}
        return self.http.post(SUBMIT, content=body, headers=headers)

    def submit(self, claim: dict[str, Any], token: str, **encrypt: Any) -> httpx.Response:
        return self.submit_raw(self.encrypt(claim, token, **encrypt), token)

    def send(self, claim: dict[str, Any], token: str) -> str:
        """Submit a claim that must be received; its behandlerkravmeldingId."""
        response = self.submit(claim, token)
        assert response.status_code == 200, response.text
        return response.json()["behandlerkravmeldingId"]

    def details(self, melding_id: str, token: str) -> list[dict[str, Any]]:
        response = self.get(f"/data/behandlerkravmelding/{melding_id}", token)
        assert response.status_code == 200, response.text
        return response.json()["behandlerkravmeldinger"]

    def overview(self, token: str, **params: str) -> list[dict[str, Any]]:
        response = self.get("/data/behandlerkravmelding", token, **params)
        assert response.status_code == 200, response.text
        return response.json()["behandlerkravmeldinger"]

    # -------------------------------------------------------------- admin

    def admin(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = self.http.request(method, f"/sandbox/admin/{path}", json=body)
        assert response.status_code == 200, response.text
        return response.json()

    def advance(self, seconds: float) -> None:
        self.admin("POST", "clock", {"advance_seconds": seconds})

    def set_clock(self, iso: str) -> None:
        self.admin("POST", "clock", {"set": iso})


@pytest.fixture(scope="session", name="keys")
def keys_fixture() -> KeyMaterial:
    """One set of keys for every sandbox of the session: RSA key generation is not free."""
    return generate_keys()


def serve(keys: KeyMaterial, **kwargs: Any) -> RunningSandbox:
    settings = kwargs.pop("settings", SandboxSettings(seed=7))
    return start_sandbox(settings=settings, keys=keys, **kwargs)


@pytest.fixture(scope="module", name="served")
def served_fixture(keys: KeyMaterial) -> Iterator[RunningSandbox]:
    running = serve(keys)
    yield running
    running.stop()


@pytest.fixture(name="sandbox")
def sandbox_fixture(served: RunningSandbox) -> RunningSandbox:
    """The module's sandbox, reset: no meldinger, no faults, clock at the seed's 15:30."""
    served.sandbox.reset()  # what POST /sandbox/admin/reset does (tested over HTTP elsewhere)
    return served


@pytest.fixture(name="jose")
def jose_fixture(sandbox: RunningSandbox) -> Iterator[Jose]:
    client = Jose(sandbox.base_url, sandbox.info)
    yield client
    client.close()
