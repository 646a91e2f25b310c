"""The token endpoints and the API's check of the access tokens they issue.

- Maskinporten: the JWT grant (RFC 7523); a Bearer token shaped as Maskinporten's
  (`aud` "unspecified", `client_amr`, `consumer`, `supplier` when delegated).
- HelseID: `private_key_jwt` client assertions and **DPoP** on every token request (the first
  answered `use_dpop_nonce`), for three grants: `client_credentials` (a virksomhet's machine
  token: client and organisation claims only, never `pid` or a security level),
  `authorization_code` after a login on the sandbox's login page (PKCE, PAR), and
  `refresh_token` (one-time use, rotated). Tokens are DPoP-bound (`cnf.jkt`, type DPoP).
- The API accepts a Maskinporten token as `Bearer`, a HelseID token only as `DPoP` with a proof
  for this very request (`htm`, `htu`, `iat`, unused `jti`, `ath`, the bound key).

Token times are real (wall-clock) times: clients sign their assertions with the real clock,
whatever the sandbox clock says. A verified access token is cached until it expires, so the API
pays the RSA signature check once per token, not once per request (the DPoP proof is checked on
every request).
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from jwcrypto import jwk, jws, jwt
from jwcrypto.common import JWException

from bridge.sandbox.dpop import PROOF_ALGS, DpopError, DpopVerifier, access_token_hash
from bridge.sandbox.helseid import (
    AuthorizationRequest,
    LoginError,
    LoginSession,
    LoginStore,
    Organisations,
    organisations,
    redirect_allowed,
)
from bridge.sandbox.registry import Client, Person, Registry
from bridge.sandbox.settings import (
    HELSEID_AUDIENCE,
    SCOPE_HELSEID,
    SCOPE_MASKINPORTEN,
    SandboxSettings,
)

JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
JWT_BEARER_ASSERTION = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_ALGS = ("RS256", "RS384", "RS512")
API_SCOPES = frozenset({SCOPE_MASKINPORTEN, SCOPE_HELSEID})
CLOCK_SKEW_SECONDS = 10
ORGNR_AUTHORITY = "iso6523-actorid-upis"
HELSEID_GRANTS = ("client_credentials", "authorization_code", "refresh_token")
# The scopes a login may ask for besides the API's (OpenID Connect and HelseID's own).
LOGIN_SCOPES = frozenset({
    "openid", "profile", "offline_access",
    "helseid://scopes/identity/pid", "helseid://scopes/identity/security_level",
    "helseid://scopes/identity/assurance_level", "helseid://scopes/hpr/hpr_number",
})  # fmt: skip
REQUIRED_SECURITY_LEVEL = "4"
CLAIM = "helseid://claims/"


class OAuthError(Exception):
    """An RFC 6749 error answer of a token endpoint (with a new DPoP nonce, when asked)."""

    def __init__(self, status: int, error: str, description: str, nonce: str | None = None) -> None:
        super().__init__(description)
        self.status, self.error, self.description, self.nonce = status, error, description, nonce

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}

    def headers(self) -> dict[str, str]:
        headers = {"Cache-Control": "no-store"}
        if self.nonce:
            headers["DPoP-Nonce"] = self.nonce
        return headers


class AuthError(Exception):
    """The API refuses a request's token: 401 (missing, bad, expired) or 403 (wrong scope)."""

    def __init__(
        self,
        status: int,
        error: str,
        description: str,
        scheme: str = "Bearer",
        nonce: str | None = None,
    ) -> None:
        super().__init__(description)
        self.status, self.error, self.description, self.scheme = status, error, description, scheme
        self.nonce = nonce

    def www_authenticate(self) -> str:
        text = f'{self.scheme} realm="kuhr-krav-api", error="{self.error}"'
        if self.scheme == "DPoP":
            text += f', algs="{" ".join(PROOF_ALGS)}"'
        if self.status == 403:
            return text + f', scope="{SCOPE_MASKINPORTEN} {SCOPE_HELSEID}"'
        return text + f', error_description="{self.description}"'


@dataclass(frozen=True, slots=True)
class AccessGrant:
    """Who a verified access token speaks for, and the DPoP key it is bound to (if any)."""

    actor: str
    client_id: str
    scopes: frozenset[str]
    expires: float
    jkt: str | None = None


def _b64json(part: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def _unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError("not a JWS compact serialization")
    header, claims = _b64json(parts[0]), _b64json(parts[1])
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise ValueError("header and claims must be JSON objects")
    return header, claims


def _scopes_of(claims: Mapping[str, Any]) -> frozenset[str]:
    scope = claims.get("scope", "")
    if isinstance(scope, list):  # HelseID writes scopes as a JSON array
        return frozenset(str(s) for s in scope)
    return frozenset(str(scope).split())


class TokenService:
    def __init__(self, settings: SandboxSettings, registry: Registry, issuer_key: jwk.JWK) -> None:
        self._settings = settings
        self._registry = registry
        self._issuer_key = issuer_key
        self._issuer_kid = issuer_key["kid"]
        self._seen_jti: dict[tuple[str, str], float] = {}
        self._verified: dict[str, AccessGrant] = {}
        self.dpop = DpopVerifier()
        self.logins = LoginStore(refresh_lifetime=settings.refresh_token_lifetime_seconds)
        self.lifetime = settings.token_lifetime_seconds
        self.issued = 0
        self.issued_by_grant: dict[str, int] = {}
        self.keys_used: dict[str, int] = {}  # client key ids that signed an accepted assertion
        self.dpop_requests: dict[str, int] = {}  # API requests with a checked proof, by route
        self.api_nonce_challenges = 0

    # ------------------------------------------------------------------ Maskinporten

    def maskinporten(self, form: Mapping[str, str]) -> dict[str, Any]:
        if form.get("grant_type") != JWT_BEARER_GRANT:
            raise OAuthError(
                400, "unsupported_grant_type", f"grant_type must be {JWT_BEARER_GRANT}"
            )
        assertion = form.get("assertion")
        if not assertion:
            raise OAuthError(400, "invalid_request", "assertion is missing")
        # The issuer identifier, with or without its trailing slash.
        audiences = (self._settings.maskinporten_issuer, self._settings.maskinporten_issuer[:-1])
        client, claims, header = self._check_assertion(assertion, audiences, error="invalid_grant")
        scopes = self._granted_scopes(client, claims.get("scope"))
        supplier = self._registry.actors[client.actor].orgnr
        consumer = supplier
        if claims.get("consumer_org"):
            wanted = str(claims["consumer_org"])
            if wanted != supplier and wanted not in client.may_act_for:
                raise OAuthError(
                    400, "invalid_grant", f"client may not act for consumer_org {wanted}"
                )
            consumer = wanted
        if not consumer:
            raise OAuthError(401, "invalid_client", "client has no organisation number")
        access: dict[str, Any] = {
            "aud": "unspecified",
            "scope": " ".join(sorted(scopes)),
            "iss": self._settings.maskinporten_issuer,
            "client_amr": "virksomhetssertifikat" if header.get("x5c") else "private_key_jwt",
            "token_type": "Bearer",
            "client_id": client.client_id,
            "consumer": {"authority": ORGNR_AUTHORITY, "ID": f"0192:{consumer}"},
        }
        if consumer != supplier and supplier:
            access["supplier"] = {"authority": ORGNR_AUTHORITY, "ID": f"0192:{supplier}"}
        return self._issue(access, scopes, grant="maskinporten", header={})

    # ------------------------------------------------------------------ HelseID

    def helseid(self, form: Mapping[str, str], dpop_proof: str | None) -> dict[str, Any]:
        """The token endpoint: client assertion and DPoP proof first, then the grant."""
        grant_type = form.get("grant_type")
        if grant_type not in HELSEID_GRANTS:
            grants = ", ".join(HELSEID_GRANTS)
            raise OAuthError(400, "unsupported_grant_type", f"grant_type must be one of {grants}")
        client, assertion = self._helseid_client(form)
        try:
            orgs = organisations(self._registry, client, assertion)
        except LoginError as exc:
            raise OAuthError(400, exc.error, exc.description) from None
        jkt = self._token_dpop(dpop_proof)
        if grant_type == "client_credentials":
            scopes = self._granted_scopes(client, form.get("scope"))
            return self._helseid_issue(client, scopes, orgs, jkt, grant=grant_type)
        try:
            if grant_type == "authorization_code":
                session = self.logins.redeem_code(
                    form.get("code", ""), client.client_id,
                    form.get("redirect_uri", ""), form.get("code_verifier"),
                )  # fmt: skip
            else:
                session = self.logins.redeem_refresh(
                    form.get("refresh_token", ""), client.client_id
                )
        except LoginError as exc:
            raise OAuthError(exc.status, exc.error, exc.description) from None
        return self._login_issue(client, session, orgs, jkt, grant=grant_type)

    def _helseid_client(self, form: Mapping[str, str]) -> tuple[Client, dict[str, Any]]:
        if form.get("client_assertion_type") != JWT_BEARER_ASSERTION:
            raise OAuthError(
                401, "invalid_client", f"client_assertion_type must be {JWT_BEARER_ASSERTION}"
            )
        assertion = form.get("client_assertion")
        if not assertion:
            raise OAuthError(401, "invalid_client", "client_assertion is missing")
        # The token endpoint, as HelseID asks; its issuer is accepted too.
        audiences = (self._settings.helseid_token_url, self._settings.helseid_issuer)
        client, claims, _ = self._check_assertion(assertion, audiences, error="invalid_client")
        if claims.get("sub") != client.client_id:
            raise OAuthError(401, "invalid_client", "client assertion sub must equal iss")
        if form.get("client_id") and form["client_id"] != client.client_id:
            raise OAuthError(401, "invalid_client", "client_id does not match the assertion")
        return client, claims

    def _token_dpop(self, proof: str | None) -> str:
        """The thumbprint of the key the tokens will be bound to (HelseID requires DPoP)."""
        if not proof:
            raise OAuthError(
                400, "invalid_dpop_proof",
                "this HelseID client requires DPoP: send a DPoP proof header with the request",
            )  # fmt: skip
        try:
            checked = self.dpop.verify(
                proof, method="POST", url=self._settings.helseid_token_url, require_nonce=True
            )
        except DpopError as exc:
            nonce = self.dpop.new_nonce() if exc.error == "use_dpop_nonce" else None
            raise OAuthError(400, exc.error, exc.description, nonce=nonce) from None
        return checked.jkt

    def _helseid_issue(
        self,
        client: Client,
        scopes: frozenset[str],
        orgs: Organisations,
        jkt: str,
        *,
        grant: str,
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        now = int(time.time())
        access: dict[str, Any] = {
            "iss": self._settings.helseid_issuer,
            "nbf": now,
            "aud": HELSEID_AUDIENCE,
            "scope": sorted(scopes),
            "client_id": client.client_id,
            CLAIM + "client/client_name": client.name,
            CLAIM + "client/amr": "rsa_private_key",
            **orgs.claims(),
            "cnf": {"jkt": jkt},
            **(extra or {}),
        }
        return self._issue(access, scopes, grant=grant, token_type="DPoP")

    # ------------------------------------------------------------------ HelseID login

    def push_authorization(self, form: Mapping[str, str]) -> dict[str, Any]:
        """PAR: the login's parameters, pushed with the client's assertion."""
        client, _ = self._helseid_client(form)
        if form.get("response_type") != "code":
            raise OAuthError(400, "unsupported_response_type", "response_type must be code")
        redirect_uri = form.get("redirect_uri", "")
        if not redirect_allowed(client, redirect_uri):
            raise OAuthError(
                400, "invalid_request", f"redirect_uri {redirect_uri!r} is not registered"
            )
        if form.get("code_challenge_method") != "S256" or not form.get("code_challenge"):
            raise OAuthError(
                400, "invalid_request", "PKCE with code_challenge_method S256 is required"
            )
        scopes = frozenset(form.get("scope", "").split())
        if "openid" not in scopes:
            raise OAuthError(400, "invalid_scope", "a login needs the openid scope")
        unknown = sorted(scopes - LOGIN_SCOPES - client.scopes)
        if unknown:
            raise OAuthError(400, "invalid_scope", f"client may not have scope {' '.join(unknown)}")
        request = AuthorizationRequest(
            client_id=client.client_id,
            redirect_uri=redirect_uri,
            scopes=scopes,
            state=form.get("state"),
            nonce=form.get("nonce"),
            code_challenge=form["code_challenge"],
            expires_at=time.time() + 60,
        )
        return {"request_uri": self.logins.push(request), "expires_in": 60}

    def revoke(self, form: Mapping[str, str]) -> None:
        """RFC 7009 revocation of a refresh token by the client it was issued to."""
        client, _ = self._helseid_client(form)
        if form.get("token_type_hint") not in (None, "", "refresh_token"):
            raise OAuthError(400, "unsupported_token_type", "only refresh tokens are revoked")
        self.logins.revoke(form.get("token", ""), client.client_id)

    def person(self, pid: str) -> Person | None:
        return self._registry.persons.get(pid)

    def _login_issue(
        self, client: Client, session: LoginSession, orgs: Organisations, jkt: str, *, grant: str
    ) -> dict[str, Any]:
        person = self._registry.persons.get(session.pid)
        if person is None:
            raise OAuthError(400, "invalid_grant", "the logged-in person is no longer known")
        api_scopes = frozenset(s for s in session.scopes if s in client.scopes)
        user = {
            "sub": _pairwise(client.client_id, person.pid),
            "idp": person.idp,
            "auth_time": session.auth_time,
            "amr": ["pwd"],
            "sid": session.sid,
            CLAIM + "identity/pid": person.pid,
            "pid": person.pid,
            CLAIM + "identity/security_level": person.security_level,
            CLAIM + "identity/assurance_level": (
                "high" if person.security_level == "4" else "substantial"
            ),
        }
        if person.hpr_number:
            user[CLAIM + "hpr/hpr_number"] = person.hpr_number
        answer = self._helseid_issue(client, api_scopes, orgs, jkt, grant=grant, extra=user)
        if "offline_access" in session.scopes:
            token, left = self.logins.issue_refresh(session)
            answer["refresh_token"] = token
            answer["rt_expires_in"] = left
        if grant == "authorization_code" and "openid" in session.scopes:
            answer["id_token"] = self._id_token(client, person, session)
        answer["scope"] = " ".join(sorted(session.scopes))
        return answer

    def _id_token(self, client: Client, person: Person, session: LoginSession) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self._settings.helseid_issuer,
            "aud": client.client_id,
            "sub": _pairwise(client.client_id, person.pid),
            "iat": now,
            "nbf": now,
            "exp": now + 300,
            "auth_time": session.auth_time,
            "sid": session.sid,
            "idp": person.idp,
            "name": person.name,
            CLAIM + "identity/security_level": person.security_level,
        }
        if person.hpr_number:
            claims[CLAIM + "hpr/hpr_number"] = person.hpr_number
        if session.nonce:
            claims["nonce"] = session.nonce
        header = {"alg": "RS256", "kid": self._issuer_kid, "typ": "JWT"}
        token = jwt.JWT(header=header, claims=claims)
        token.make_signed_token(self._issuer_key)
        return token.serialize()

    # ------------------------------------------------------------------ HelseID's test tokens

    def test_token(self, body: Mapping[str, Any], auth_key: str | None) -> dict[str, Any]:
        """A stand-in for HelseID's test token service (TTT): a DPoP-bound user token and a
        proof for one request, for an API key from selvbetjening."""
        if auth_key != self._settings.test_token_key:
            raise OAuthError(401, "unauthorized", "the X-Auth-Key header is missing or wrong")
        if body.get("audience") != HELSEID_AUDIENCE:
            raise OAuthError(400, "invalid_request", f"audience must be {HELSEID_AUDIENCE}")
        user = body.get("userClaimsParameters") or {}
        client_claims = body.get("clientClaimsParameters") or {}
        if not isinstance(user, dict) or not isinstance(client_claims, dict):
            raise OAuthError(400, "invalid_request", "claims parameters must be JSON objects")
        scopes = frozenset(str(s) for s in client_claims.get("scope") or [])
        key = jwk.JWK.generate(kty="EC", crv="P-256")
        claims: dict[str, Any] = {
            "iss": self._settings.helseid_issuer,
            "nbf": int(time.time()),
            "aud": HELSEID_AUDIENCE,
            "scope": sorted(scopes),
            "client_id": str(client_claims.get("clientId") or "ttt-client"),
            "cnf": {"jkt": key.thumbprint()},
        }
        if user.get("pid"):
            claims["pid"] = str(user["pid"])
            claims[CLAIM + "identity/pid"] = str(user["pid"])
        if user.get("securityLevel"):
            claims[CLAIM + "identity/security_level"] = str(user["securityLevel"])
        if user.get("hprNumber"):
            claims[CLAIM + "hpr/hpr_number"] = str(user["hprNumber"])
        for name, claim in (("orgnrParent", "orgnr_parent"), ("orgnrChild", "orgnr_child")):
            if client_claims.get(name):
                claims[CLAIM + "client/claims/" + claim] = str(client_claims[name])
        answer = self._issue(claims, scopes, grant="test_token", token_type="DPoP")
        response: dict[str, Any] = {"accessTokenJwt": answer["access_token"]}
        if body.get("createDPoPTokenWithDPoPProof"):
            params = body.get("dPoPProofParameters") or {}
            response["dPoPProof"] = _proof(
                key, str(params.get("htmClaimValue", "")), str(params.get("htuClaimValue", "")),
                answer["access_token"],
            )  # fmt: skip
        return {"successResponse": response}

    # ------------------------------------------------------------------ assertions

    def _check_assertion(
        self, assertion: str, audiences: tuple[str, ...], *, error: str
    ) -> tuple[Client, dict[str, Any], dict[str, Any]]:
        """The client, claims and header of a valid, unused assertion; OAuthError otherwise."""
        status = 401 if error == "invalid_client" else 400
        try:
            header, claims = _unverified(assertion)
        except (ValueError, UnicodeDecodeError):
            raise OAuthError(status, error, "assertion is not a signed JWT") from None
        alg = header.get("alg")
        if alg not in ASSERTION_ALGS:
            raise OAuthError(status, error, f"assertion alg {alg!r} not allowed (use RS256)")
        client = self._registry.clients.get(str(claims.get("iss")))
        if client is None:
            raise OAuthError(401, "invalid_client", f"unknown client {claims.get('iss')!r}")
        key = self._client_key(client, header)
        try:
            signed = jws.JWS()
            signed.deserialize(assertion)
            signed.verify(key, alg=alg)
        except (JWException, ValueError):
            raise OAuthError(status, error, "assertion signature does not verify") from None
        now = time.time()
        aud = claims.get("aud")
        aud_values = aud if isinstance(aud, list) else [aud]
        if not set(audiences).intersection(a for a in aud_values if isinstance(a, str)):
            raise OAuthError(status, error, f"assertion aud must be {audiences[0]}")
        exp, iat = claims.get("exp"), claims.get("iat")
        if not isinstance(exp, int | float) or not isinstance(iat, int | float):
            raise OAuthError(status, error, "assertion needs numeric exp and iat")
        if exp < now - CLOCK_SKEW_SECONDS:
            raise OAuthError(status, error, "assertion has expired")
        if iat > now + CLOCK_SKEW_SECONDS:
            raise OAuthError(status, error, "assertion iat is in the future")
        if exp - iat > self._settings.max_assertion_lifetime_seconds:
            raise OAuthError(
                status,
                error,
                f"assertion lifetime exceeds {self._settings.max_assertion_lifetime_seconds} s",
            )
        jti = claims.get("jti")
        if not jti or not isinstance(jti, str):
            raise OAuthError(status, error, "assertion needs a jti")
        if (client.client_id, jti) in self._seen_jti:
            raise OAuthError(status, error, "assertion jti has been used before")
        self._remember_jti(client.client_id, jti, float(exp))
        kid = str(key.get("kid") or "(x5c)")
        self.keys_used[kid] = self.keys_used.get(kid, 0) + 1
        return client, claims, header

    def _client_key(self, client: Client, header: Mapping[str, Any]) -> jwk.JWK:
        if header.get("kid"):
            key = client.key_for(str(header["kid"]))
            if key is None:
                raise OAuthError(401, "invalid_client", f"unknown kid {header['kid']!r} for client")
            return key
        if header.get("x5c"):
            try:
                der = base64.b64decode(header["x5c"][0])
                cert_key = jwk.JWK.from_pyca(x509.load_der_x509_certificate(der).public_key())
            except (ValueError, TypeError, IndexError):
                raise OAuthError(401, "invalid_client", "x5c is not a DER certificate") from None
            thumb = cert_key.thumbprint()
            for key in client.public_keys:
                if key.thumbprint() == thumb:
                    return key
            raise OAuthError(401, "invalid_client", "x5c certificate is not registered for client")
        if len(client.public_keys) == 1:
            return client.public_keys[0]
        raise OAuthError(401, "invalid_client", "assertion header needs kid or x5c")

    def _granted_scopes(self, client: Client, requested: Any) -> frozenset[str]:
        if not isinstance(requested, str) or not requested.strip():
            raise OAuthError(400, "invalid_scope", "scope is required")
        scopes = frozenset(requested.split())
        refused = sorted(scopes - client.scopes)
        if refused:
            raise OAuthError(400, "invalid_scope", f"client may not have scope {' '.join(refused)}")
        return scopes

    def _remember_jti(self, client_id: str, jti: str, exp: float) -> None:
        if len(self._seen_jti) > 10_000:
            cutoff = time.time() - CLOCK_SKEW_SECONDS
            self._seen_jti = {k: v for k, v in self._seen_jti.items() if v >= cutoff}
        self._seen_jti[(client_id, jti)] = exp

    def _issue(
        self,
        claims: dict[str, Any],
        scopes: frozenset[str],
        *,
        grant: str,
        token_type: str = "Bearer",
        header: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        now = int(time.time())
        claims.update({"iat": now, "exp": now + self.lifetime, "jti": str(uuid.uuid4())})
        typ = {"typ": "at+jwt"} if header is None else header
        head = {"alg": "RS256", "kid": self._issuer_kid, **typ}
        token = jwt.JWT(header=head, claims=claims)
        token.make_signed_token(self._issuer_key)
        self.issued += 1
        self.issued_by_grant[grant] = self.issued_by_grant.get(grant, 0) + 1
        return {
            "access_token": token.serialize(),
            "token_type": token_type,
            "expires_in": self.lifetime,
            "scope": " ".join(sorted(scopes)),
        }

    # ------------------------------------------------------------------ the API's check

    def authenticate(
        self,
        authorization: str | None,
        *,
        dpop: str | None = None,
        method: str = "GET",
        url: str = "",
    ) -> AccessGrant:
        """The grant behind an `Authorization` header (`Bearer …`, or `DPoP …` with the
        request's proof), or AuthError (401/403)."""
        if not authorization:
            raise AuthError(
                401, "invalid_token", "Authorization: Bearer <token> or DPoP <token> is required"
            )
        scheme, _, token = authorization.partition(" ")
        token, scheme = token.strip(), scheme.lower()
        if scheme not in ("bearer", "dpop") or not token:
            raise AuthError(401, "invalid_token", "expected Authorization: Bearer|DPoP <token>")
        grant = self._verified.get(token)
        if grant is None:
            grant = self._verify(token)
        if grant.expires <= time.time():
            self._verified.pop(token, None)
            raise AuthError(401, "invalid_token", "the access token has expired")
        if grant.jkt is not None:
            self._check_bound(grant, scheme, token, dpop, method, url)
        elif scheme == "dpop":
            raise AuthError(401, "invalid_token", "this token is not DPoP-bound: send it as Bearer")
        if not grant.scopes & API_SCOPES:
            raise AuthError(
                403,
                "insufficient_scope",
                f"the token needs scope {SCOPE_MASKINPORTEN} or {SCOPE_HELSEID}",
            )
        return grant

    def _check_bound(
        self, grant: AccessGrant, scheme: str, token: str, proof: str | None, method: str, url: str
    ) -> None:
        if scheme != "dpop":
            raise AuthError(
                401, "invalid_token",
                "a DPoP-bound token must be sent as Authorization: DPoP with a DPoP proof",
                scheme="DPoP",
            )  # fmt: skip
        try:
            checked = self.dpop.verify(
                proof, method=method, url=url, access_token=token,
                require_nonce=self._settings.api_dpop_nonce,
            )  # fmt: skip
        except DpopError as exc:
            nonce = None
            if exc.error == "use_dpop_nonce":
                nonce = self.dpop.new_nonce()
                self.api_nonce_challenges += 1
            raise AuthError(401, exc.error, exc.description, scheme="DPoP", nonce=nonce) from None
        if checked.jkt != grant.jkt:
            raise AuthError(
                401, "invalid_dpop_proof", "the DPoP proof is signed by another key than the "
                "token is bound to", scheme="DPoP",
            )  # fmt: skip
        route = f"{method} {_route(url)}"
        self.dpop_requests[route] = self.dpop_requests.get(route, 0) + 1

    def _verify(self, token: str) -> AccessGrant:
        try:
            header, claims = _unverified(token)
        except (ValueError, UnicodeDecodeError):
            raise AuthError(401, "invalid_token", "the access token is not a JWT") from None
        if header.get("kid") != self._issuer_kid or header.get("alg") != "RS256":
            raise AuthError(401, "invalid_token", "the access token is not issued by this sandbox")
        try:
            signed = jws.JWS()
            signed.deserialize(token)
            signed.verify(self._issuer_key, alg="RS256")
        except (JWException, ValueError):
            raise AuthError(401, "invalid_token", "the access token signature is invalid") from None
        cnf = claims.get("cnf")
        grant = AccessGrant(
            actor=self._actor_of(claims),
            client_id=str(claims.get("client_id")),
            scopes=_scopes_of(claims),
            expires=float(claims.get("exp", 0)),
            jkt=str(cnf["jkt"]) if isinstance(cnf, dict) and cnf.get("jkt") else None,
        )
        if len(self._verified) > 10_000:
            now = time.time()
            self._verified = {k: g for k, g in self._verified.items() if g.expires > now}
        self._verified[token] = grant
        return grant

    def _actor_of(self, claims: Mapping[str, Any]) -> str:
        """The actor key: a registered actor's name, else `pid:…` / `org:…` (no praksiser)."""
        iss = claims.get("iss")
        if iss == self._settings.helseid_issuer:
            aud = claims.get("aud")
            if aud != HELSEID_AUDIENCE and not (isinstance(aud, list) and HELSEID_AUDIENCE in aud):
                raise AuthError(
                    401, "invalid_token", f"the token audience must be {HELSEID_AUDIENCE}"
                )
            if "cnf" not in claims:
                raise AuthError(401, "invalid_token", "KUHR accepts only DPoP-bound HelseID tokens")
            pid = claims.get("pid")
            orgnr = claims.get(CLAIM + "client/claims/orgnr_parent")
            if pid:
                level = claims.get(CLAIM + "identity/security_level")
                if level != REQUIRED_SECURITY_LEVEL:
                    raise AuthError(
                        403, "insufficient_user_authentication",
                        f"the user logged in on security level {level}; KUHR requires level 4",
                    )  # fmt: skip
                actor = self._registry.actor_by_pid(str(pid))
                return actor.name if actor else f"pid:{pid}"
            if orgnr:
                actor = self._registry.actor_by_orgnr(str(orgnr))
                return actor.name if actor else f"org:{orgnr}"
            raise AuthError(401, "invalid_token", "the token names neither pid nor orgnr_parent")
        if iss == self._settings.maskinporten_issuer:
            consumer = claims.get("consumer") or {}
            orgnr = str(consumer.get("ID", "")).rpartition(":")[2]
            if not orgnr:
                raise AuthError(401, "invalid_token", "the token has no consumer")
            actor = self._registry.actor_by_orgnr(orgnr)
            return actor.name if actor else f"org:{orgnr}"
        raise AuthError(401, "invalid_token", "the token issuer is unknown")


def _route(url: str) -> str:
    """The API route of a URL (an id in the path becomes {id})."""
    path = url.split("/kuhr/krav/v1", 1)[-1].split("?", 1)[0]
    head, _, tail = path.partition("/data/behandlerkravmelding/")
    return f"{head}/data/behandlerkravmelding/{{id}}" if tail else path


def _pairwise(client_id: str, pid: str) -> str:
    """HelseID's `sub`: a per-client pseudonym of the person, never the fødselsnummer."""
    digest = hashlib.sha256(f"{client_id}:{pid}:bkm-bridge-sandbox".encode()).digest()
    return base64.b64encode(digest).decode("ascii")


def _proof(key: jwk.JWK, method: str, url: str, access_token: str) -> str:
    claims = {
        "jti": str(uuid.uuid4()),
        "htm": method.upper(),
        "htu": url,
        "iat": int(time.time()),
        "ath": access_token_hash(access_token),
    }
    header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": json.loads(key.export_public())}
    token = jwt.JWT(header=header, claims=claims)
    token.make_signed_token(key)
    return token.serialize()
