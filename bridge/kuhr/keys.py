"""The client's signing keys: making a key pair (`bkm-bridge keys new`, no openssl needed), the
public JWK to register in Samarbeidsportalen (Maskinporten) or HelseID selvbetjening, and when
a key or certificate expires (warned about 30 days ahead).

A private key is written as a JWK with `kid`, `alg`, `use` and `exp` (when it is to be
replaced), readable by its owner only; the public JWK carries the registered members only.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from jwcrypto import jwk

from bridge.kuhr.auth import SigningKey

EXPIRY_WARNING_DAYS = 30
PUBLIC_MEMBERS = ("kty", "kid", "alg", "use", "n", "e", "crv", "x", "y")


@dataclass(frozen=True)
class NewKey:
    private_file: Path
    public_file: Path
    kid: str
    public: dict[str, Any]
    expires_at: datetime | None


def new_kid(prefix: str = "bkm-bridge") -> str:
    return f"{prefix}-{date.today().isoformat()}-{secrets.token_hex(3)}"


def public_jwk(key: jwk.JWK, kid: str | None = None) -> dict[str, Any]:
    """The public half to register: key type, kid, alg, use and the key's numbers."""
    data = json.loads(key.export_public())
    data.setdefault("alg", "RS256" if data.get("kty") == "RSA" else "ES256")
    data.setdefault("use", "sig")
    if kid:
        data["kid"] = kid
    return {name: data[name] for name in PUBLIC_MEMBERS if name in data}


def make_key(
    folder: Path,
    name: str,
    *,
    kid: str | None = None,
    valid_days: int | None = 365,
    bits: int = 3072,
) -> NewKey:
    """A new RSA key pair in `folder`: NAME.private.jwk.json (owner only) and
    NAME.public.jwk.json. Refuses to overwrite either."""
    kid = kid or new_kid()
    private_file = folder / f"{name}.private.jwk.json"
    public_file = folder / f"{name}.public.jwk.json"
    for path in (private_file, public_file):
        if path.exists():
            raise FileExistsError(f"{path} exists: choose another --name (keys are never replaced)")
    key = jwk.JWK.generate(kty="RSA", size=bits, kid=kid, alg="RS256", use="sig")
    private = json.loads(key.export_private())
    expires = None
    if valid_days:
        expires = datetime.now(UTC).replace(microsecond=0) + timedelta(days=valid_days)
        private["exp"] = int(expires.timestamp())
    public = public_jwk(key, kid)
    folder.mkdir(parents=True, exist_ok=True)
    _write(private_file, private, private_key=True)
    _write(public_file, public, private_key=False)
    return NewKey(private_file, public_file, kid, public, expires)


def _write(path: Path, data: dict[str, Any], *, private_key: bool) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if private_key and sys.platform != "win32":
            os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2)
            handle.write("\n")
        os.link(tmp, path)  # fails if the file appeared meanwhile: never overwrite a key
    finally:
        Path(tmp).unlink(missing_ok=True)


# --------------------------------------------------------------------------- expiry


@dataclass(frozen=True)
class KeyExpiry:
    """One key's expiry as `config check` and `/healthz` show it."""

    label: str
    expires_at: datetime | None
    ok: bool
    warning: str | None = None

    def as_json(self, now: datetime | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"key": self.label, "ok": self.ok}
        if self.expires_at is not None:
            now = now or datetime.now(UTC)
            out["expires_at"] = self.expires_at.isoformat()
            out["days_left"] = (self.expires_at - now).days
        if self.warning:
            out["warning" if self.ok else "error"] = self.warning
        return out


def expiry(key: SigningKey, now: datetime | None = None) -> KeyExpiry:
    """Whether `key` is still valid, and a warning within EXPIRY_WARNING_DAYS of its end."""
    now = now or datetime.now(UTC)
    what = "certificate" if key.x5c else "key"
    if key.expires_at is None:
        return KeyExpiry(key.label, None, True)
    left = key.expires_at - now
    if left <= timedelta(0):
        return KeyExpiry(
            key.label, key.expires_at, False,
            f"the {what} {key.label} expired on {key.expires_at.date()}: make a new one "
            "(bkm-bridge keys new) and register it",
        )  # fmt: skip
    if left <= timedelta(days=EXPIRY_WARNING_DAYS):
        return KeyExpiry(
            key.label, key.expires_at, True,
            f"the {what} {key.label} expires in {left.days} day(s), on {key.expires_at.date()}: "
            "make the next one now (bkm-bridge keys new, then auth.next_key_file)",
        )  # fmt: skip
    return KeyExpiry(key.label, key.expires_at, True)
