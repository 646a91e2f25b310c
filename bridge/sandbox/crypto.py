"""KUHR's side of the end-to-end encryption: the JWE key ring, its JWKS, and decryption of
compact JWE (RSA-OAEP-256 + A256GCM, optional `zip: DEF`).

Decryption is done with `cryptography` primitives on key objects loaded once, not through a
JOSE library per request: the RSA private-key operation is the main cost of a submission and
nothing else should be added to it. Every failure says, in words, what is wrong.
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from jwcrypto import jwk

SUPPORTED_ALG = "RSA-OAEP-256"
SUPPORTED_ENC = "A256GCM"
_OAEP = padding.OAEP(
    mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None
)


class JweError(ValueError):
    """The body is not a JWE this server can decrypt; the message says why."""


def b64url_decode(part: str, what: str) -> bytes:
    try:
        return base64.b64decode(part + "=" * (-len(part) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise JweError(f"{what} er ikke gyldig base64url") from None


@dataclass(frozen=True)
class JweKey:
    kid: str
    private: rsa.RSAPrivateKey
    public_jwk: dict[str, Any]
    private_jwk: dict[str, Any]


def generate_jwk(kid: str, bits: int = 2048) -> jwk.JWK:
    return jwk.JWK.generate(kty="RSA", size=bits, kid=kid)


def jwe_key_from_jwk(key: jwk.JWK) -> JweKey:
    public = json.loads(key.export_public())
    public.update({"use": "enc", "alg": SUPPORTED_ALG})
    private = key.get_op_key("decrypt")
    if not isinstance(private, rsa.RSAPrivateKey):
        raise ValueError("a JWE key must be an RSA private key")
    return JweKey(key["kid"], private, public, json.loads(key.export_private()))


class KeyRing:
    """The current JWE key plus any kept old ones. The JWKS bytes are built on rotation only."""

    def __init__(self, first: JweKey, *, bits: int = 2048) -> None:
        self._bits = bits
        self._keys: dict[str, JweKey] = {first.kid: first}
        self._current = first
        self._generation = 1
        self._jwks = self._build_jwks()

    @property
    def current(self) -> JweKey:
        return self._current

    @property
    def jwks_bytes(self) -> bytes:
        return self._jwks

    def kids(self) -> list[str]:
        return list(self._keys)

    def rotate(self, *, keep_old: bool = False) -> JweKey:
        self._generation += 1
        kid = f"{self._current.kid.rsplit('-r', 1)[0]}-r{self._generation}"
        new = jwe_key_from_jwk(generate_jwk(kid, self._bits))
        self._keys = {**self._keys, kid: new} if keep_old else {kid: new}
        self._current = new
        self._jwks = self._build_jwks()
        return new

    def _build_jwks(self) -> bytes:
        # Newest first: a client that takes the first key gets the current one.
        keys = [self._current.public_jwk] + [
            k.public_jwk for k in self._keys.values() if k is not self._current
        ]
        return json.dumps({"keys": keys}, separators=(",", ":")).encode("ascii")

    def decrypt(self, token: bytes, *, max_plaintext: int) -> bytes:
        """The plaintext of a compact JWE, or JweError saying what is wrong."""
        text = token.strip()
        if text[:1] in (b"{", b"["):
            raise JweError(
                "Meldingen er ukryptert JSON. KUHR tar bare imot BKM kryptert som kompakt JWE "
                f"({SUPPORTED_ALG} + {SUPPORTED_ENC}) med Content-Type application/jose"
            )
        try:
            compact = text.decode("ascii")
        except UnicodeDecodeError:
            raise JweError(
                "Meldingen er ikke en kompakt JWE (inneholder tegn utenfor ASCII)"
            ) from None
        parts = compact.split(".")
        if len(parts) != 5:
            raise JweError(
                f"Meldingen er ikke en kompakt JWE: fant {len(parts)} del(er) adskilt med '.', "
                "forventet 5 (header.nøkkel.iv.chiffertekst.tag)"
            )
        header = self._header(parts[0])
        key = self._key_for(header)
        encrypted_key = b64url_decode(parts[1], "Kryptert nøkkel (del 2)")
        iv = b64url_decode(parts[2], "Initialiseringsvektor (del 3)")
        ciphertext = b64url_decode(parts[3], "Chiffertekst (del 4)")
        tag = b64url_decode(parts[4], "Autentiseringstag (del 5)")
        if len(iv) != 12 or len(tag) != 16:
            raise JweError("A256GCM krever 96 bits initialiseringsvektor og 128 bits tag")
        try:
            cek = key.private.decrypt(encrypted_key, _OAEP)
        except ValueError:
            raise JweError(
                f"Innholdsnøkkelen kunne ikke dekrypteres med nøkkel kid={key.kid}: "
                f"er den kryptert med {SUPPORTED_ALG} og den publiserte nøkkelen?"
            ) from None
        if len(cek) != 32:
            raise JweError(f"{SUPPORTED_ENC} krever en 256 bits innholdsnøkkel")
        try:
            plaintext = AESGCM(cek).decrypt(iv, ciphertext + tag, parts[0].encode("ascii"))
        except InvalidTag:
            raise JweError(
                "Autentiseringstaggen stemmer ikke: meldingen er endret eller skadet"
            ) from None
        if header.get("zip") == "DEF":
            plaintext = _inflate(plaintext, max_plaintext)
        return plaintext

    def _header(self, part: str) -> dict[str, Any]:
        raw = b64url_decode(part, "JWE-headeren")
        try:
            header = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise JweError("JWE-headeren er ikke JSON") from None
        if not isinstance(header, dict):
            raise JweError("JWE-headeren er ikke et JSON-objekt")
        if header.get("alg") != SUPPORTED_ALG:
            raise JweError(f"JWE alg {header.get('alg')!r} støttes ikke, bruk {SUPPORTED_ALG}")
        if header.get("enc") != SUPPORTED_ENC:
            raise JweError(f"JWE enc {header.get('enc')!r} støttes ikke, bruk {SUPPORTED_ENC}")
        if "zip" in header and header["zip"] != "DEF":
            raise JweError(f"JWE zip {header['zip']!r} støttes ikke, bare DEF")
        if "crit" in header:
            raise JweError(f"JWE crit {header['crit']!r} støttes ikke")
        return header

    def _key_for(self, header: dict[str, Any]) -> JweKey:
        kid = header.get("kid")
        if not kid:
            raise JweError("JWE-headeren mangler kid: hent nøkkelen fra /kuhr/krav/v1/jwk")
        key = self._keys.get(kid)
        if key is None:
            raise JweError(
                f"Ukjent kid {kid!r}: nøkkelen er byttet ut. Hent gjeldende nøkkel fra "
                f"/kuhr/krav/v1/jwk (nå: {self._current.kid})"
            )
        return key


def _inflate(data: bytes, limit: int) -> bytes:
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, limit)
    except zlib.error:
        raise JweError("zip DEF: innholdet er ikke gyldig DEFLATE") from None
    if inflater.unconsumed_tail:
        raise JweError(f"zip DEF: utpakket innhold er større enn {limit} bytes")
    return out


def unwrap_nested_jwt(payload: bytes) -> tuple[bytes, bool]:
    """(BKM JSON, whether it came in a JWT) from a JWE payload that is the JSON itself or an
    unsigned JWT (`cty: JWT`). The content decides, not the header: JSON is taken as JSON
    whatever `cty` says."""
    stripped = payload.strip()
    if stripped[:1] == b"{":
        return payload, False
    parts = stripped.split(b".")
    if len(parts) != 3:
        raise JweError("Innholdet i JWE er verken JSON eller en JWT (header.payload.signatur)")
    try:
        jwt_header = json.loads(b64url_decode(parts[0].decode("ascii"), "JWT-headeren"))
    except UnicodeDecodeError:
        raise JweError("Den nøstede JWT-en er ikke ASCII") from None
    except json.JSONDecodeError:
        raise JweError("JWT-headeren i JWE er ikke JSON") from None
    if not isinstance(jwt_header, dict) or jwt_header.get("alg") != "none" or parts[2]:
        raise JweError(
            "Den nøstede JWT-en skal være usignert (alg none): KUHR bruker ikke signering"
        )
    return b64url_decode(parts[1].decode("ascii"), "JWT-innholdet"), True
