"""Settings: TOML file < environment < flags; presets; secrets never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.config import (
    AuthMethod,
    ConfigError,
    Environment,
    load_settings,
)
from bridge.kuhr.target import resolve_target

TOML = """
[kuhr]
environment = "dev"
read_timeout = 12
max_attempts = 3

[auth]
method = "maskinporten"
client_id = "from-file"
key_file = "keys/maskinporten.pem"
pkcs12_password = "file-secret-do-not-print"

[[praksis.rules]]
sender_orgnr = "999999999"
praksis_id = "1004326178"

[[praksis.rules]]
folder = "inbox/legevakt"
praksis_id = "1004326468"
"""


@pytest.fixture
def toml_file(tmp_path: Path) -> Path:
    path = tmp_path / "bkm-bridge.toml"
    path.write_text(TOML, encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    for name in list(os.environ):
        if name.upper().startswith("BKM_BRIDGE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_file_then_env_then_flags(toml_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BKM_BRIDGE_KUHR__READ_TIMEOUT", "7")
    monkeypatch.setenv("BKM_BRIDGE_AUTH__CLIENT_ID", "from-env")
    settings = load_settings(toml_file, {"auth.client_id": "from-flag", "kuhr.environment": None})

    assert settings.kuhr.environment is Environment.DEV  # file (flag given as None = unset)
    assert settings.kuhr.max_attempts == 3  # file
    assert settings.kuhr.read_timeout == 7  # env beats file
    assert settings.auth.client_id == "from-flag"  # flag beats env
    assert settings.origin("kuhr.read_timeout") == "env BKM_BRIDGE_KUHR__READ_TIMEOUT"
    assert settings.origin("auth.client_id") == "flag"
    assert settings.origin("kuhr.max_attempts") == f"file {toml_file}"
    assert settings.origin("kuhr.connect_timeout") == "default"


def test_paths_in_file_are_relative_to_the_file(toml_file: Path) -> None:
    settings = load_settings(toml_file)
    assert settings.auth.key_file == toml_file.parent / "keys" / "maskinporten.pem"
    assert settings.praksis.rules[1].folder == toml_file.parent / "inbox" / "legevakt"
    assert [r.praksis_id for r in settings.praksis.rules] == ["1004326178", "1004326468"]


def test_config_path_from_env_var(toml_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BKM_BRIDGE_CONFIG", str(toml_file))
    assert load_settings().auth.client_id == "from-file"


def test_local_file_is_found_in_working_directory(toml_file: Path) -> None:
    # _clean_env chdir'ed into the folder holding bkm-bridge.toml
    assert load_settings().config_file == toml_file


def test_defaults_without_any_file() -> None:
    settings = load_settings()
    assert settings.config_file is None
    assert settings.kuhr.environment is Environment.SANDBOX
    assert settings.auth.method is AuthMethod.MASKINPORTEN
    assert settings.auth.effective_scope == "nav:kuhr/krav"


def test_secret_is_hidden_in_repr(toml_file: Path) -> None:
    settings = load_settings(toml_file)
    assert "file-secret-do-not-print" not in repr(settings)
    assert "file-secret-do-not-print" not in str(settings.model_dump())
    assert settings.auth.pkcs12_password_value() == b"file-secret-do-not-print"


def test_invalid_values_are_config_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[kuhr]\nenvironment = "staging"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="environment"):
        load_settings(bad)
    broken = tmp_path / "broken.toml"
    broken.write_text("[kuhr\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(broken)
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "missing.toml")
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("[auth]\nclientid = 'typo'\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="clientid"):
        load_settings(unknown)


def test_rule_needs_a_criterion(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text('[[praksis.rules]]\npraksis_id = "1"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="needs folder, sender_orgnr or sender_hpr"):
        load_settings(path)


@pytest.mark.parametrize(
    ("environment", "method", "api", "token_url", "audience", "scope"),
    [
        (
            "dev", "maskinporten", "https://api-preprod.helserefusjon.no/kuhr/krav/v1",
            "https://test.maskinporten.no/token", "https://test.maskinporten.no/",
            "nav:kuhr/krav",
        ),
        (
            "prod", "maskinporten", "https://api.helserefusjon.no/kuhr/krav/v1",
            "https://maskinporten.no/token", "https://maskinporten.no/", "nav:kuhr/krav",
        ),
        (
            "dev", "helseid", "https://api-preprod.helserefusjon.no/kuhr/krav/v1",
            "https://helseid-sts.test.nhn.no/connect/token",
            "https://helseid-sts.test.nhn.no/connect/token", "hdir:kuhr-krav-api/krav",
        ),
        (
            "prod", "helseid", "https://api.helserefusjon.no/kuhr/krav/v1",
            "https://helseid-sts.nhn.no/connect/token",
            "https://helseid-sts.nhn.no/connect/token", "hdir:kuhr-krav-api/krav",
        ),
    ],
)  # fmt: skip
def test_presets(
    tmp_path: Path,
    environment: str,
    method: str,
    api: str,
    token_url: str,
    audience: str,
    scope: str,
) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = tmp_path / "key.pem"
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    settings = load_settings(
        None,
        {
            "kuhr.environment": environment,
            "auth.method": method,
            "auth.client_id": "my-client",
            "auth.key_file": pem,
        },
    )
    target = resolve_target(settings)
    assert (target.api_url, target.token_url, target.audience, target.scope) == (
        api,
        token_url,
        audience,
        scope,
    )
    assert target.verify is True
    assert target.label == environment.upper()


def test_dev_without_client_id_says_what_to_set() -> None:
    settings = load_settings(None, {"kuhr.environment": "dev"})
    with pytest.raises(ConfigError, match=r"auth\.client_id"):
        resolve_target(settings)
