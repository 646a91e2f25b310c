"""Access tokens from a personal HelseID login: the stored refresh token is redeemed (with the
client's assertion and a DPoP proof) whenever the access token runs out, and the new refresh
token HelseID hands back replaces it. The daemon does this on its own for as long as the login
lasts; `status()` tells `config check` and `/healthz` when a new login is due.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from bridge.kuhr.auth import AccessToken, HelseIdTokenProvider, SigningKey, TokenError
from bridge.kuhr.login_store import LoginRecord, LoginStore

log = logging.getLogger(__name__)

# Warn this long before the login ends (a working day's notice is more than HelseID gives).
LOGIN_WARNING_SECONDS = 3600.0
LOGIN_HINT = "log in again with `bkm-bridge login`"


class HelseIdLoginTokenProvider(HelseIdTokenProvider):
    """HelseID tokens on behalf of the behandler who ran `bkm-bridge login`."""

    kind = "HelseID (personal login)"

    def __init__(self, *, store: LoginStore, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.store = store
        self._record: LoginRecord | None = None
        self._last_error: TokenError | None = None

    # ---- fetching

    def _fetch(self) -> AccessToken:
        with self.store.locked():  # another process may be refreshing the same login
            record = self.store.load()
            if record is None:
                raise self._remember(
                    TokenError(
                        "nobody is logged in with HelseID for this bridge",
                        hint=LOGIN_HINT,
                        login_due=True,
                    )
                )
            if record.refresh_expires_at and record.refresh_expires_at <= time.time():
                raise self._remember(
                    TokenError("the HelseID login has expired", hint=LOGIN_HINT, login_due=True)
                )
            self._record = record
            try:
                token = super()._fetch()
            except TokenError as exc:
                if exc.error == "invalid_grant":
                    exc = TokenError(
                        f"HelseID no longer accepts the login: {exc}",
                        hint=LOGIN_HINT, error=exc.error, login_due=True,
                    )  # fmt: skip
                raise self._remember(exc) from None
            self._last_error = None
            return token

    def _remember(self, error: TokenError) -> TokenError:
        self._last_error = error
        return error

    def _request_data(self, key: SigningKey) -> dict[str, str]:
        assert self._record is not None
        return {
            "grant_type": "refresh_token",
            "refresh_token": self._record.refresh_token,
            **self.client_assertion(key),
        }

    def _answered(self, body: dict[str, Any]) -> None:
        """Keep the refresh token HelseID rotated in (a used one is refused)."""
        assert self._record is not None
        new = body.get("refresh_token")
        if not new:
            return
        lifetime = body.get("rt_expires_in")
        expires = (
            time.time() + float(lifetime) if lifetime is not None
            else self._record.refresh_expires_at
        )  # fmt: skip
        self._record = self._record.with_refresh(str(new), expires)
        self.store.save(self._record)
        log.info("HelseID login refreshed; it lasts another %.0f min", (expires - time.time()) / 60)

    # ---- what the operator is told

    def status(self) -> dict[str, Any]:
        """The login as `/healthz` and `config check` show it (no token, no fødselsnummer)."""
        record = self.store.load()
        if record is None:
            return {"ok": False, "login_due": True, "error": f"not logged in: {LOGIN_HINT}"}
        out: dict[str, Any] = {"ok": True, "who": describe(record)}
        if record.refresh_expires_at:
            left = record.refresh_expires_at - time.time()
            out["expires_in_seconds"] = round(left)
            out["expires_at"] = time.strftime(
                "%Y-%m-%dT%H:%M:%S%z", time.localtime(record.refresh_expires_at)
            )
            if left <= 0:
                out.update(ok=False, login_due=True, error=f"the login has expired: {LOGIN_HINT}")
            elif left <= LOGIN_WARNING_SECONDS:
                out["warning"] = f"the login ends in {left / 60:.0f} min: {LOGIN_HINT}"
        if self._last_error is not None and self._last_error.login_due:
            out.update(ok=False, login_due=True, error=f"{self._last_error}: {LOGIN_HINT}")
        return out


def describe(record: LoginRecord) -> str:
    parts = [record.name or "(name not given)"]
    if record.hpr_number:
        parts.append(f"HPR {record.hpr_number}")
    return ", ".join(parts)
