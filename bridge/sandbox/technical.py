"""KUHR's technical control of a decrypted melding: JSON format, then the sandbox's own schema
(schemacheck.py). Praksis and duplicate checks need the caller's state and are done by the
caller.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import simplejson

from bridge.sandbox.claim import Krav, read_krav
from bridge.sandbox.schemacheck import schema_feil
from bridge.sandbox.wire import Feilkode, Feilmelding, load

# Registered JWT claims a JOSE library may add to a nested JWT's claims set.
JWT_CLAIMS = frozenset({"iss", "sub", "aud", "exp", "nbf", "iat", "jti"})


@dataclass
class TechnicalResult:
    krav: Krav | None = None
    data: dict[str, Any] | None = None
    feil: list[Feilmelding] = field(default_factory=list)

    @property
    def praksis_id(self) -> str | None:
        value = (self.data or {}).get("praksisId")
        return value if isinstance(value, str) and value else None


def feil(kode: Feilkode, melding: str) -> Feilmelding:
    return Feilmelding(kode=kode.value, melding=melding)


def check_json(payload: bytes, *, nested_jwt: bool = False) -> TechnicalResult:
    """Parse and check a melding; `feil` is empty when it may be stored."""
    try:
        data = load(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        where = ""
        if hasattr(exc, "lineno"):
            where = f" (linje {exc.lineno}, kolonne {exc.colno})"
        return TechnicalResult(
            feil=[feil(Feilkode.UKJENT_FORMAT, f"Behandlerkravmelding har ikke JSON-format{where}")]
        )
    if not isinstance(data, dict):
        return TechnicalResult(
            feil=[feil(Feilkode.UKJENT_FORMAT, "Behandlerkravmelding må være et JSON-objekt")]
        )
    if nested_jwt:
        data = {k: v for k, v in data.items() if k not in JWT_CLAIMS}
    problems = schema_feil(data)
    if problems:
        return TechnicalResult(data=data, feil=problems)
    return TechnicalResult(krav=read_krav(data), data=data)


def content_digest(data: dict[str, Any]) -> bytes:
    """The identity of a melding's content for the duplicate control: canonical JSON (sorted
    keys, numbers exactly as written), hashed. Whitespace, key order and wrapping do not count."""
    canonical = simplejson.dumps(
        data, sort_keys=True, separators=(",", ":"), use_decimal=True, ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode("utf-8")).digest()[:16]
