"""The one settings model: `bkm-bridge.toml`, then `BKM_BRIDGE_*` environment variables, then
command-line flags (each overrides the one before).

The file is found by `--config`, else `BKM_BRIDGE_CONFIG`, else `./bkm-bridge.toml` if present.
Sections are nested models (`[kuhr]`, `[auth]`, `[[praksis.rules]]`); a later feature adds its
own section by adding a field to `Settings`. Nested environment variables use `__`:
`BKM_BRIDGE_AUTH__KEY_FILE=/etc/bkm-bridge/key.pem`.

Secrets are never held as plain strings: key material stays in files (paths here), passwords
are `SecretStr`. `Settings.origin(path)` says where a value came from, for `config check`.
"""

from __future__ import annotations

import os
import tomllib
from contextvars import ContextVar
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from bridge.environment import Environment
from bridge.errors import UsageError

ENV_PREFIX = "BKM_BRIDGE_"
CONFIG_ENV_VAR = "BKM_BRIDGE_CONFIG"
DEFAULT_CONFIG_NAME = "bkm-bridge.toml"
API_PATH = "/kuhr/krav/v1"


class ConfigError(UsageError):
    """The configuration cannot be read or is invalid; the message says what to fix."""


class AuthMethod(StrEnum):
    MASKINPORTEN = "maskinporten"
    HELSEID = "helseid"


SCOPES: dict[AuthMethod, str] = {
    AuthMethod.MASKINPORTEN: "nav:kuhr/krav",
    AuthMethod.HELSEID: "hdir:kuhr-krav-api/krav",
}


@dataclass(frozen=True, slots=True)
class Preset:
    """The documented addresses of one KUHR environment and its token issuers."""

    api_host: str
    maskinporten_issuer: str
    helseid_authority: str

    @property
    def api_url(self) -> str:
        return self.api_host + API_PATH

    @property
    def maskinporten_token_url(self) -> str:
        return self.maskinporten_issuer + "token"

    @property
    def helseid_token_url(self) -> str:
        return self.helseid_authority + "/connect/token"


PRESETS: dict[Environment, Preset] = {
    Environment.DEV: Preset(
        api_host="https://api-preprod.helserefusjon.no",
        maskinporten_issuer="https://test.maskinporten.no/",
        helseid_authority="https://helseid-sts.test.nhn.no",
    ),
    Environment.PROD: Preset(
        api_host="https://api.helserefusjon.no",
        maskinporten_issuer="https://maskinporten.no/",
        helseid_authority="https://helseid-sts.nhn.no",
    ),
}


_DURATION_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """A duration in seconds from "24h", "30m", "90s", "2d", "1.5h" or seconds; "off" is 0."""
    value = text.strip().lower()
    if value in ("off", "never", "no", "false"):
        return 0.0
    unit = _DURATION_UNITS.get(value[-1:]) if value else None
    number = value[:-1] if unit is not None else value
    try:
        seconds = float(number) * (unit or 1.0)
    except ValueError:
        raise ValueError(f'not a duration: {text!r} (e.g. "24h", "30m", "90s", "off")') from None
    if not 0 <= seconds < float("inf"):
        raise ValueError(f"not a duration: {text!r} (it must be 0 or more, and finite)")
    return seconds


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KuhrSettings(_Section):
    """Where KUHR is and how patiently to talk to it."""

    environment: Environment = Environment.SANDBOX
    # Full API root including /kuhr/krav/v1; overrides the environment's preset.
    api_url: str | None = None
    # Directory of a running standalone sandbox (its sandbox.json); else one is embedded.
    sandbox_state_dir: Path | None = None
    # Clock speed of an embedded sandbox (how fast claims move through their statuses).
    sandbox_speed: float = Field(1.0, gt=0)
    connect_timeout: float = Field(5.0, gt=0)
    read_timeout: float = Field(30.0, gt=0)
    max_attempts: int = Field(5, ge=1, le=20)
    backoff_base: float = Field(0.5, ge=0)
    backoff_max: float = Field(30.0, ge=0)
    max_retry_after: float = Field(120.0, ge=0)
    max_concurrency: int = Field(4, ge=1, le=64)
    jwe_profile: Literal["direct", "nested"] = "direct"
    jwe_zip: bool = False
    # Extra CA bundle (e.g. a corporate TLS proxy). Verification itself is never switched off.
    ca_bundle: Path | None = None
    # The HTTP proxy for every connection to Helfo, HelseID and Maskinporten (also the status
    # check and the open data); unset: HTTPS_PROXY / HTTP_PROXY / NO_PROXY from the
    # environment; "direct": none, whatever the environment says. Loopback is never proxied.
    proxy: str | None = None
    # How often KUHR's overview is swept for claims already final (a rebehandling, a later
    # vedtak or payment): "24h", "30m", "90s", "2d" or seconds; "0" or "off": never (then only
    # `bkm-bridge sweep`). Held as seconds.
    sweep_interval: float = Field(86400.0, ge=0)

    @field_validator("sweep_interval", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return parse_duration(value) if isinstance(value, str) else value

    @field_validator("proxy")
    @classmethod
    def _proxy_url(cls, value: str | None) -> str | None:
        if value is None or value.strip().lower() in ("direct", "none", ""):
            return None if value is None else "direct"
        if not value.startswith(("http://", "https://")):
            raise ValueError('kuhr.proxy must be an http:// or https:// URL, or "direct"')
        return value


class TestTokenSettings(_Section):
    """HelseID's test token service (DEV only): the token's claims are asked for directly,
    with an API key from HelseID selvbetjening, instead of a real login."""

    url: str = "https://helseid-ttt.test.nhn.no/v2/create-test-token-with-key"
    key: SecretStr | None = None  # the X-Auth-Key; better from a file or the environment
    key_file: Path | None = None
    pid: str | None = None  # the test behandler's fødselsnummer (SyntPop), praksis registered
    hpr_number: str | None = None
    orgnr_parent: str | None = None  # the virksomhet the praksis is registered for

    def key_value(self) -> str | None:
        if self.key is not None:
            return self.key.get_secret_value()
        if self.key_file is not None:
            try:
                return self.key_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(
                    f"cannot read auth.test_token.key_file {self.key_file}: {exc.strerror}"
                ) from None
        return None


_ORGNR = r"^\d{9}$"


class AuthSettings(_Section):
    """Who the bridge is towards KUHR: a Maskinporten or HelseID client and its key."""

    method: AuthMethod = AuthMethod.MASKINPORTEN
    # HelseID: client_credentials (a virksomhet, machine to machine), authorization_code (a
    # behandler logs in personally: `bkm-bridge login`), or test_token (HelseID's test token
    # service, DEV only).
    grant: Literal["client_credentials", "authorization_code", "test_token"] = "client_credentials"
    client_id: str | None = None
    scope: str | None = None
    # HelseID's address (default: the environment's); its endpoints are read from discovery.
    authority: str | None = None
    token_url: str | None = None
    audience: str | None = None
    # PEM private key or JWK (JSON) file; key_id is the kid registered with the issuer.
    key_file: Path | None = None
    key_id: str | None = None
    # Key rotation: the new key (registered beside the old one) is tried first; the current
    # key stays in use until the issuer accepts the new one. `bkm-bridge keys new` makes one.
    next_key_file: Path | None = None
    next_key_id: str | None = None
    # Or a PKCS#12 virksomhetssertifikat (sent as x5c); password from env/TOML or a file.
    pkcs12_file: Path | None = None
    pkcs12_password: SecretStr | None = None
    pkcs12_password_file: Path | None = None
    # Maskinporten delegation: the clinic's orgnr when a supplier acts on its behalf.
    consumer_org: str | None = None
    # HelseID only: sender-constrained tokens (DPoP proofs on every call). Unset: on (KUHR
    # takes HelseID tokens only DPoP-bound).
    dpop: bool | None = None
    # HelseID for virksomheter: the organisation numbers sent in `assertion_details`. A
    # single-tenant client (the virksomhet's own) may name one of its underenheter; a
    # multi-tenant client (an EPJ supplier's) names the customer and optionally its underenhet.
    tenancy: Literal["single", "multi"] = "single"
    parent_orgnr: str | None = Field(None, pattern=_ORGNR)
    child_orgnr: str | None = Field(None, pattern=_ORGNR)
    # Personal login: the loopback redirect registered for the client (RFC 8252); without a
    # port, a free one is chosen per login.
    redirect_uri: str = "http://127.0.0.1/callback"
    # Where the login's refresh token is kept (default: the state folder); protected by DPAPI
    # on Windows, a file only the owner may read elsewhere.
    login_file: Path | None = None
    test_token: TestTokenSettings = TestTokenSettings()
    refresh_margin_seconds: float = Field(30.0, ge=0)

    @model_validator(mode="after")
    def _one_key_source(self) -> AuthSettings:
        if self.key_file and self.pkcs12_file:
            raise ValueError("give either auth.key_file or auth.pkcs12_file, not both")
        if self.pkcs12_password is not None and self.pkcs12_password_file is not None:
            raise ValueError("give either auth.pkcs12_password or auth.pkcs12_password_file")
        if self.tenancy == "multi" and not self.parent_orgnr:
            raise ValueError("auth.tenancy = multi needs auth.parent_orgnr (the customer's orgnr)")
        if self.tenancy == "single" and self.parent_orgnr:
            raise ValueError(
                "auth.parent_orgnr is for multi-tenant clients (auth.tenancy = multi); a "
                "single-tenant client's parent organisation is the one it is registered for"
            )
        if self.grant != "client_credentials" and self.method is not AuthMethod.HELSEID:
            raise ValueError(f"auth.grant = {self.grant} needs auth.method = helseid")
        return self

    @property
    def dpop_enabled(self) -> bool:
        return self.method is AuthMethod.HELSEID and self.dpop is not False

    @property
    def effective_scope(self) -> str:
        return self.scope or SCOPES[self.method]

    def pkcs12_password_value(self) -> bytes | None:
        """The PKCS#12 password, read when needed (never kept in a plain attribute)."""
        if self.pkcs12_password is not None:
            return self.pkcs12_password.get_secret_value().encode()
        if self.pkcs12_password_file is not None:
            try:
                return self.pkcs12_password_file.read_text(encoding="utf-8").strip().encode()
            except OSError as exc:
                raise ConfigError(
                    f"cannot read auth.pkcs12_password_file {self.pkcs12_password_file}: "
                    f"{exc.strerror}"
                ) from None
        return None


class PraksisRule(_Section):
    """Claims matching every given criterion go to `praksis_id`. First matching rule wins."""

    praksis_id: str
    folder: Path | None = None
    sender_orgnr: str | None = None
    sender_hpr: str | None = None

    @model_validator(mode="after")
    def _has_criterion(self) -> PraksisRule:
        if self.folder is None and self.sender_orgnr is None and self.sender_hpr is None:
            raise ValueError(
                f"praksis rule for {self.praksis_id} needs folder, sender_orgnr or sender_hpr"
            )
        return self


class PraksisSettings(_Section):
    rules: list[PraksisRule] = []


class XmlSettings(_Section):
    """Reading legacy files: extra schema folders (an official XSD dropped in wins over the
    built-in one for its namespace) and the largest file accepted."""

    xsd_dirs: list[Path] = []
    max_file_bytes: int = Field(32 * 1024 * 1024, ge=1024)


class WatchSettings(_Section):
    """The daemon: which folders, when a file is complete, where state and receipts go."""

    folders: list[Path] = []
    # The journal lives here (one database per environment, so a sandbox run never marks a
    # file as done for PROD). Default: the platform's per-user state folder.
    state_dir: Path | None = None
    recursive: bool = False
    include: list[str] = ["*.xml"]
    exclude: list[str] = []
    quiet_seconds: float = Field(2.0, ge=0)
    # auto: on a local disk a file is taken when its writer closes it (Linux) or as soon as it
    # can be opened exclusively (Windows); network shares and polling keep quiet_seconds.
    # quiet: always wait quiet_seconds (an EPJ that closes and reopens a file while writing it).
    completion: Literal["auto", "quiet"] = "auto"
    rescan_seconds: float = Field(30.0, gt=0)
    polling: bool = False  # polling observer (some network shares deliver no events)
    done_files: bool = False  # take NAME.xml only once NAME.xml.done exists
    exclusive_open: bool = True
    lock_folders: bool = True
    receipts_dir: Path | None = None  # default: beside the originals
    archive_dir: Path | None = None  # move originals here after a final, accepted outcome
    error_dir: Path | None = None  # move rejected originals here
    follow: Literal["control", "payment"] = "control"
    praksis_id: str | None = None  # one praksis for every claim in these folders
    allow_mismatch: bool = False
    concurrency: int = Field(8, ge=1, le=64)
    # Health, metrics and status page (loopback by default); 0 = off.
    http_port: int = Field(0, ge=0, le=65535)
    http_host: str = "127.0.0.1"


class LoggingSettings(_Section):
    """Where log lines go (patient data, tokens and keys are redacted whatever is chosen)."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"  # json: one JSON object per line
    log_file: Path | None = None  # also write to this file, rotated by size
    max_bytes: int = Field(10 * 1024 * 1024, ge=64 * 1024)
    backups: int = Field(5, ge=0, le=100)


class PrecheckSettings(_Section):
    """The pre-control against Helfo's open data (docs/precheck.md)."""

    # warn: findings go into receipts and onto stderr; block: a claim with findings is not
    # sent (rejected locally, PRECHECK_BLOCKED); off: no pre-control.
    mode: Literal["warn", "block", "off"] = "warn"
    # Where `takster sync` keeps the tables. Default: <watch.state_dir or the platform's
    # per-user state folder>/opendata.
    cache_dir: Path | None = None
    # The open data API. Default: Helfo's (https://opne-data-api.helserefusjon.no/v1); for
    # environment sandbox, the sandbox's own copy.
    opne_data_url: str | None = None
    # The fagområde (LE, TH …) when the praksis's type is not known (praksisId given by flag
    # or rule); otherwise a takst code of any fagområde is accepted.
    fagomraade: str | None = None
    # The daemon syncs the takst tables itself when its copy is older than this (0: never;
    # `bkm-bridge takster sync` by hand or by a scheduled task instead).
    refresh_hours: float = Field(24.0, ge=0)


class NotifySettings(_Section):
    """Optional messages to the operator (e-mail over SMTP, a webhook) when a claim is
    rejected or the bridge turns unhealthy: file names, codes and counts, never patient data.
    Off until `smtp_host` + `mail_to` or `webhook_url` is set."""

    events: list[Literal["rejected", "unhealthy"]] = ["rejected", "unhealthy"]
    check_seconds: float = Field(30.0, gt=0)  # how often the journal and the health are read
    smtp_host: str | None = None
    smtp_port: int = Field(25, ge=1, le=65535)
    smtp_security: Literal["none", "starttls", "tls"] = "starttls"
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None  # better from the environment
    mail_from: str = "bkm-bridge@localhost"
    mail_to: list[str] = []
    webhook_url: str | None = None  # gets a JSON POST; goes through the one proxy rule
    timeout_seconds: float = Field(10.0, gt=0)

    @property
    def enabled(self) -> bool:
        return bool((self.smtp_host and self.mail_to) or self.webhook_url)


# The TOML file of the load in progress; a context variable keeps concurrent loads apart.
_toml_file: ContextVar[Path | None] = ContextVar("bkm_bridge_toml_file", default=None)

_PATH_KEYS = ("_file", "_dir", "folder", "ca_bundle")


def _resolve_relative_paths(data: Any, base: Path) -> Any:
    """Paths in the TOML file are relative to the file, not to the working directory."""
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            if isinstance(value, str) and key.endswith(_PATH_KEYS):
                out[key] = _relative_to(value, base)
            elif isinstance(value, list) and key.endswith(("folders", "_dirs")):
                out[key] = [_relative_to(v, base) if isinstance(v, str) else v for v in value]
            else:
                out[key] = _resolve_relative_paths(value, base)
        return out
    if isinstance(data, list):
        return [_resolve_relative_paths(item, base) for item in data]
    return data


def _relative_to(value: str, base: Path) -> str:
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else base / path)


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    return _resolve_relative_paths(data, path.parent)


class _TomlSource(PydanticBaseSettingsSource):
    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = _toml_file.get()
        return read_toml(path) if path is not None else {}


class Settings(BaseSettings):
    """Everything bkm-bridge can be told. Build with `load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        case_sensitive=False,
    )

    kuhr: KuhrSettings = KuhrSettings()
    auth: AuthSettings = AuthSettings()
    praksis: PraksisSettings = PraksisSettings()
    watch: WatchSettings = WatchSettings()
    precheck: PrecheckSettings = PrecheckSettings()
    xml: XmlSettings = XmlSettings()
    logging: LoggingSettings = LoggingSettings()
    notify: NotifySettings = NotifySettings()

    _origins: dict[str, str] = PrivateAttr(default_factory=dict)
    _config_file: Path | None = PrivateAttr(default=None)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # First wins: flags, then environment, then the TOML file.
        return (init_settings, env_settings, _TomlSource(settings_cls))

    @property
    def config_file(self) -> Path | None:
        return self._config_file

    def origin(self, dotted: str) -> str:
        """Where a setting came from: 'flag', 'env NAME', 'file PATH' or 'default'."""
        return self._origins.get(dotted.lower(), "default")


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}".lower()
        if isinstance(value, dict):
            out.update(_flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def find_config_file(explicit: Path | None) -> Path | None:
    """`--config`, else `BKM_BRIDGE_CONFIG`, else `./bkm-bridge.toml` when it exists."""
    if explicit is not None:
        return explicit
    from_env = os.environ.get(CONFIG_ENV_VAR)
    if from_env:
        return Path(from_env)
    local = Path.cwd() / DEFAULT_CONFIG_NAME
    return local if local.is_file() else None


def _nest(overrides: dict[str, Any]) -> dict[str, Any]:
    """{'kuhr.environment': 'dev'} → {'kuhr': {'environment': 'dev'}}; None means 'not given'."""
    nested: dict[str, Any] = {}
    for dotted, value in overrides.items():
        if value is None:
            continue
        *parents, leaf = dotted.split(".")
        target = nested
        for part in parents:
            target = target.setdefault(part, {})
        target[leaf] = value
    return nested


def load_settings(
    config_file: Path | None = None, overrides: dict[str, Any] | None = None
) -> Settings:
    """Read file, environment and flag overrides (dotted keys, None = not given)."""
    path = find_config_file(config_file)
    flags = _nest(overrides or {})
    token = _toml_file.set(path)
    try:
        settings = Settings(**flags)
    except ConfigError:
        raise
    except ValueError as exc:  # pydantic's ValidationError
        where = f" (config file {path})" if path else ""
        raise ConfigError(f"invalid settings{where}:\n{exc}") from None
    finally:
        _toml_file.reset(token)

    origins: dict[str, str] = {}
    if path is not None:
        for key in _flatten(read_toml(path)):
            origins[key] = f"file {path}"
    for name in os.environ:
        if name.upper().startswith(ENV_PREFIX) and name.upper() != CONFIG_ENV_VAR:
            dotted = name[len(ENV_PREFIX) :].lower().replace("__", ".")
            origins[dotted] = f"env {name}"
    for key in _flatten(flags):
        origins[key] = "flag"
    settings._origins = origins
    settings._config_file = path
    return settings
