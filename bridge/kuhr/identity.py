"""What an operator must do about the bridge's identity soon, from its token provider: a
personal login that ends (or has ended), a key or certificate within 30 days of its expiry, a
key rotation half done. One report, shown by `config check` and `/healthz`; no secret in it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bridge.kuhr.keys import expiry


def identity_checks(
    tokens: Any, now: datetime | None = None, *, every_key: bool = False
) -> dict[str, dict[str, Any]]:
    """`{"login": …, "keys": …}`, each with `ok` and, when something is due, `warning` or
    `error` saying what to do; only the parts this provider has. Keys without an end date
    and without a rotation going on are left out unless `every_key` (config check lists
    them all; /healthz only what can become due)."""
    checks: dict[str, dict[str, Any]] = {}
    status = getattr(tokens, "status", None)
    if callable(status):
        checks["login"] = status()
    keys = getattr(tokens, "signing_keys", None)
    rotating = getattr(tokens, "next_key_state", None) is not None
    if keys and (every_key or rotating or any(k.expires_at for k in keys)):
        checks["keys"] = _keys(tokens, keys, now or datetime.now(UTC))
    return checks


def _keys(tokens: Any, keys: list[Any], now: datetime) -> dict[str, Any]:
    reports = [expiry(key, now) for key in keys]
    out: dict[str, Any] = {"ok": True, "keys": [r.as_json(now) for r in reports]}
    in_use = getattr(tokens, "key_in_use", None)
    if in_use is not None:
        out["in_use"] = in_use.label
    current = reports[0]
    rotation = getattr(tokens, "next_key_state", None)
    messages: list[str] = []
    if rotation is not None:
        out["next_key"] = rotation
        nxt = keys[-1]
        if rotation == "accepted":
            messages.append(
                f"the new key {nxt.label} is accepted: make it auth.key_file, remove "
                "auth.next_key_file, and remove the old key from the client's registration"
            )
        elif rotation == "refused":
            messages.append(
                f"the new key {nxt.label} is not accepted yet: register its public JWK "
                "(bkm-bridge keys public FILE) for the client"
            )
    if not current.ok and not (rotation == "accepted" and reports[-1].ok):
        out["ok"] = False
        out["error"] = current.warning
    else:
        messages.extend(r.warning for r in reports if r.warning and r.ok)
        if not current.ok:  # expired, but the new key carries on
            messages.append(current.warning or "")
    if messages and "error" not in out:
        out["warning"] = "; ".join(m for m in messages if m)
    return out
