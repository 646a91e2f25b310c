"""Which KUHR the settings point at, and who the bridge is there: URLs, token service, key
(`resolve_target`), and the token provider and client options that follow from it. For the
sandbox, the addresses come from its `sandbox.json`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bridge.config import PRESETS, SCOPES, AuthMethod, ConfigError, Environment, Settings
from bridge.kuhr.auth import (
    HelseIdTokenProvider,
    MaskinportenTokenProvider,
    SigningKey,
    load_signing_key,
    make_token_provider,
)
from bridge.kuhr.client import RetryPolicy


@dataclass(frozen=True)
class Target:
    """Where the configured KUHR is and who we are there (resolved from settings)."""

    environment: Environment
    label: str  # what the user sees: "SANDBOX (embedded)", "DEV", "PROD"
    api_url: str
    method: AuthMethod
    client_id: str
    token_url: str
    audience: str
    scope: str
    signing_key: SigningKey
    verify: bool | str = True
    admin_url: str | None = None  # sandbox only
    embedded: bool = False

    @property
    def is_sandbox(self) -> bool:
        return self.environment is Environment.SANDBOX


SANDBOX_INFO_FILE = "sandbox.json"


def read_sandbox_info(state_dir: Path) -> dict[str, Any]:
    """The `sandbox.json` a running standalone sandbox writes into its state directory."""
    path = state_dir / SANDBOX_INFO_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"no {SANDBOX_INFO_FILE} in kuhr.sandbox_state_dir {state_dir}: start the sandbox "
            f"with `bkm-bridge sandbox --state-dir {state_dir}` or unset sandbox_state_dir"
        ) from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict) or "api_url" not in data:
        raise ConfigError(f"{path} is not a sandbox description (no api_url)")
    return data


def _sandbox_target(settings: Settings, info: dict[str, Any], embedded: bool) -> Target:
    method = settings.auth.method
    issuer = info.get(method.value) or {}
    if "token_url" not in issuer:
        raise ConfigError(f"the sandbox offers no {method.value} token service")
    where = "embedded" if embedded else f"standalone at {info.get('base_url', info['api_url'])}"
    return Target(
        environment=Environment.SANDBOX,
        label=f"SANDBOX ({where})",
        api_url=info["api_url"],
        method=method,
        client_id=str(info.get("client_id", "bkm-bridge-sandbox")),
        token_url=issuer["token_url"],
        audience=issuer.get("audience", issuer["token_url"]),
        scope=issuer.get("scope", SCOPES[method]),
        signing_key=SigningKey.from_jwk_dict(info["private_jwk"]),
        verify=True,
        admin_url=info.get("admin_url"),
        embedded=embedded,
    )


def resolve_target(
    settings: Settings, sandbox_info: dict[str, Any] | None = None, *, embedded: bool = False
) -> Target:
    """Turn settings (+ a sandbox's info, for the sandbox) into concrete URLs and a key."""
    env = settings.kuhr.environment
    if env is Environment.SANDBOX:
        if sandbox_info is None:
            raise ConfigError("environment sandbox needs a running sandbox")
        return _sandbox_target(settings, sandbox_info, embedded)
    preset = PRESETS[env]
    auth = settings.auth
    if not auth.client_id:
        raise ConfigError(
            f"auth.client_id is not set: use the client id of your {auth.method.value} "
            "client (see docs/going-live.md)"
        )
    if auth.method is AuthMethod.HELSEID:
        token_url = auth.token_url or preset.helseid_token_url
        audience = auth.audience or token_url
    else:
        token_url = auth.token_url or preset.maskinporten_token_url
        audience = auth.audience or preset.maskinporten_issuer
    return Target(
        environment=env,
        label=env.value.upper(),
        api_url=(settings.kuhr.api_url or preset.api_url).rstrip("/"),
        method=auth.method,
        client_id=auth.client_id,
        token_url=token_url,
        audience=audience,
        scope=auth.effective_scope,
        signing_key=load_signing_key(auth),
        verify=str(settings.kuhr.ca_bundle) if settings.kuhr.ca_bundle else True,
    )


def token_provider_for(
    target: Target, settings: Settings, **kwargs: Any
) -> MaskinportenTokenProvider | HelseIdTokenProvider:
    return make_token_provider(
        target.method,
        signing_key=target.signing_key,
        client_id=target.client_id,
        token_url=target.token_url,
        audience=target.audience,
        scope=target.scope,
        consumer_org=settings.auth.consumer_org,
        dpop=settings.auth.dpop,
        verify=target.verify,
        timeout=settings.kuhr.read_timeout,
        refresh_margin=settings.auth.refresh_margin_seconds,
        **kwargs,
    )


def client_options(settings: Settings, target: Target) -> dict[str, Any]:
    """Keyword arguments for `AsyncKuhrClient` / `KuhrClient` from the settings."""
    k = settings.kuhr
    return {
        "jwe_profile": k.jwe_profile,
        "jwe_zip": k.jwe_zip,
        "connect_timeout": k.connect_timeout,
        "read_timeout": k.read_timeout,
        "retry": RetryPolicy(k.max_attempts, k.backoff_base, k.backoff_max, k.max_retry_after),
        "verify": target.verify,
        "max_concurrency": k.max_concurrency,
    }
