"""Which KUHR the settings point at, and who the bridge is there: URLs, token service, key
(`resolve_target`), and the token provider and client options that follow from it. For the
sandbox, the addresses come from its `sandbox.json`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bridge.config import PRESETS, SCOPES, AuthMethod, ConfigError, Environment, Settings
from bridge.kuhr.auth import (
    HelseIdTokenProvider,
    SigningKey,
    TokenProvider,
    load_next_signing_key,
    load_signing_key,
    make_token_provider,
)
from bridge.kuhr.client import RetryPolicy
from bridge.kuhr.login_store import LoginStore
from bridge.kuhr.login_tokens import HelseIdLoginTokenProvider
from bridge.kuhr.proxy import sync_transport
from bridge.kuhr.testtoken import TestTokenProvider
from bridge.paths import state_dir


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
    signing_key: SigningKey | None  # None only for HelseID's test token service
    verify: bool | str = True
    admin_url: str | None = None  # sandbox only
    embedded: bool = False
    grant: str = "client_credentials"
    next_signing_key: SigningKey | None = None
    helseid_authority: str | None = None  # where the personal login's discovery document is
    test_token_url: str | None = None
    test_token_key: str | None = field(default=None, repr=False)
    proxy: str | None = None  # kuhr.proxy (bridge.kuhr.proxy: with the environment's rules)

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
    auth = settings.auth
    own_key = auth.key_file is not None or auth.pkcs12_file is not None
    test_token = info.get("test_token") or {}
    return Target(
        environment=Environment.SANDBOX,
        label=f"SANDBOX ({where})",
        api_url=info["api_url"],
        method=method,
        client_id=auth.client_id or str(info.get("client_id", "bkm-bridge-sandbox")),
        token_url=issuer["token_url"],
        audience=issuer.get("audience", issuer["token_url"]),
        scope=issuer.get("scope", SCOPES[method]),
        # A key of one's own (registered with the sandbox's admin API or config) rehearses
        # what DEV needs; without one, the sandbox's dev client key.
        signing_key=(
            load_signing_key(auth)
            if own_key
            else SigningKey.from_jwk_dict(info["private_jwk"], source="sandbox.json")
        ),
        next_signing_key=load_next_signing_key(auth),
        verify=True,
        admin_url=info.get("admin_url"),
        embedded=embedded,
        grant=auth.grant,
        helseid_authority=issuer.get("authority"),
        test_token_url=test_token.get("url"),
        test_token_key=auth.test_token.key_value() or test_token.get("key"),
        proxy=settings.kuhr.proxy,
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
    authority = None
    if auth.method is AuthMethod.HELSEID:
        authority = (auth.authority or preset.helseid_authority).rstrip("/")
        token_url = auth.token_url or authority + "/connect/token"
        audience = auth.audience or token_url
    else:
        token_url = auth.token_url or preset.maskinporten_token_url
        audience = auth.audience or preset.maskinporten_issuer
    test_token = auth.grant == "test_token"
    if test_token and env is Environment.PROD:
        raise ConfigError(
            "auth.grant = test_token is for Helfo's DEV environment only: HelseID's test "
            "tokens are not valid in PROD (use authorization_code or client_credentials)"
        )
    test_key = auth.test_token.key_value() if test_token else None
    if test_token and not test_key:
        raise ConfigError(
            "auth.grant = test_token needs the test token service's API key: "
            "auth.test_token.key_file, or BKM_BRIDGE_AUTH__TEST_TOKEN__KEY"
        )
    return Target(
        environment=env,
        label=env.value.upper(),
        api_url=(settings.kuhr.api_url or preset.api_url).rstrip("/"),
        method=auth.method,
        client_id=auth.client_id,
        token_url=token_url,
        audience=audience,
        scope=auth.effective_scope,
        signing_key=None if test_token else load_signing_key(auth),
        next_signing_key=None if test_token else load_next_signing_key(auth),
        verify=str(settings.kuhr.ca_bundle) if settings.kuhr.ca_bundle else True,
        grant=auth.grant,
        helseid_authority=authority,
        test_token_url=auth.test_token.url if test_token else None,
        test_token_key=test_key,
        proxy=settings.kuhr.proxy,
    )


def login_file(settings: Settings) -> Path:
    """Where the personal HelseID login of this environment is kept."""
    configured = settings.auth.login_file
    if configured is not None:
        return configured
    folder = state_dir(settings.watch.state_dir)
    return folder / f"helseid-login-{settings.kuhr.environment.value}.json"


def token_provider_for(target: Target, settings: Settings, **kwargs: Any) -> TokenProvider:
    """The token source the settings ask for: Maskinporten, HelseID client credentials, the
    personal HelseID login, or HelseID's test token service."""
    auth = settings.auth
    kwargs.setdefault("transport", sync_transport(target.proxy, target.verify))
    if target.grant == "test_token":
        assert target.test_token_url is not None and target.test_token_key is not None
        return TestTokenProvider(
            url=target.test_token_url,
            api_key=target.test_token_key,
            client_id=target.client_id,
            scope=target.scope,
            pid=auth.test_token.pid,
            hpr_number=auth.test_token.hpr_number,
            orgnr_parent=auth.test_token.orgnr_parent,
            api_url=target.api_url,
            verify=target.verify,
            timeout=settings.kuhr.read_timeout,
            transport=kwargs.get("transport"),
        )
    if target.signing_key is None:
        raise ConfigError("no signing key configured: set auth.key_file or auth.pkcs12_file")
    common: dict[str, Any] = dict(
        signing_key=target.signing_key,
        next_signing_key=target.next_signing_key,
        client_id=target.client_id,
        token_url=target.token_url,
        audience=target.audience,
        scope=target.scope,
        verify=target.verify,
        timeout=settings.kuhr.read_timeout,
        refresh_margin=auth.refresh_margin_seconds,
        **kwargs,
    )
    helseid = dict(
        dpop=auth.dpop_enabled,
        tenancy=auth.tenancy,
        parent_orgnr=auth.parent_orgnr,
        child_orgnr=auth.child_orgnr,
    )
    if target.method is AuthMethod.HELSEID and target.grant == "authorization_code":
        store = LoginStore(login_file(settings))
        return HelseIdLoginTokenProvider(store=store, **helseid, **common)
    return make_token_provider(target.method, consumer_org=auth.consumer_org, **helseid, **common)


def helseid_client(target: Target, settings: Settings, **kwargs: Any) -> HelseIdTokenProvider:
    """A HelseID client-credentials provider for the target (the login's PAR and code steps
    sign with its assertion and DPoP key)."""
    provider = token_provider_for(target, settings, **kwargs)
    if not isinstance(provider, HelseIdTokenProvider):
        raise ConfigError("a HelseID login needs auth.method = helseid")
    return provider


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
        "proxy": k.proxy,
    }
