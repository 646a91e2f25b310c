"""Everything that shapes one sandbox instance, with the defaults a zero-config start uses."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from bridge.sandbox.clock import DEFAULT_START

API_PREFIX = "/kuhr/krav/v1"
ADMIN_PREFIX = "/sandbox/admin"
OPNE_DATA_PREFIX = "/opne-data/v1"  # Helfo's open data API (bridge.sandbox.opendata)
MASKINPORTEN_TOKEN_PATH = "/maskinporten/token"
HELSEID_PREFIX = "/helseid"
HELSEID_TOKEN_PATH = HELSEID_PREFIX + "/connect/token"
HELSEID_PAR_PATH = HELSEID_PREFIX + "/connect/par"
HELSEID_AUTHORIZE_PATH = HELSEID_PREFIX + "/connect/authorize"
HELSEID_LOGIN_PATH = HELSEID_PREFIX + "/login"
HELSEID_REVOCATION_PATH = HELSEID_PREFIX + "/connect/revocation"
HELSEID_DISCOVERY_PATH = HELSEID_PREFIX + "/.well-known/openid-configuration"
TEST_TOKEN_PATH = "/helseid-ttt/v2/create-test-token-with-key"
DEV_CLIENT_ID = "bkm-bridge-sandbox"
SCOPE_MASKINPORTEN = "nav:kuhr/krav"
SCOPE_HELSEID = "hdir:kuhr-krav-api/krav"
HELSEID_AUDIENCE = "hdir:kuhr-krav-api"


@dataclass(frozen=True)
class SandboxSettings:
    """One sandbox's knobs. Times of the claim lifecycle are simulated seconds."""

    base_url: str = "http://testserver"
    clock: datetime = DEFAULT_START
    speed: float = 1.0
    seed: int = 0
    state_dir: Path | None = None
    config: Path | None = None
    # Tokens (real time: clients sign assertions with the real clock).
    token_lifetime_seconds: int = 120
    max_assertion_lifetime_seconds: int = 120
    # A personal HelseID login: how long its refresh tokens live (absolute, from the login).
    refresh_token_lifetime_seconds: int = 10 * 3600
    # The API key of the stand-in for HelseID's test token service (sandbox.json gives it).
    test_token_key: str = "sandbox-ttt-key"
    # The address clients use when the sandbox sits behind a TLS front or a proxy (tests of
    # proxies and TLS); token audiences and DPoP `htu` are checked against it.
    public_url: str | None = None
    # The API, too, asks for a DPoP nonce (RFC 9449 §9: 401 use_dpop_nonce), as a resource
    # server may; off by default (HelseID asks at its token endpoint only).
    api_dpop_nonce: bool = False
    # Claim lifecycle.
    mottatt_seconds: tuple[float, float] = (1.0, 2.0)
    kontroll_seconds: tuple[float, float] = (10.0, 20.0)
    manual_control_share: float = 0.0
    manual_control_seconds: tuple[float, float] = (2 * 3600.0, 6 * 3600.0)
    # Share of meldinger KUHR never sends to control: they stay klar_til_behandling with
    # kontrollstatus ikke_sendt_til_kontroll (a documented status with no documented way on).
    unsent_control_share: float = 0.0
    utbetaling_working_days: tuple[int, int] = (2, 3)
    # Requests.
    max_body_bytes: int = 8 * 1024 * 1024
    max_decompressed_bytes: int = 32 * 1024 * 1024
    jwe_key_bits: int = 2048
    # Initial faults (the admin API changes them at run time), as accepted by POST faults.
    faults: dict[str, Any] = field(default_factory=dict)
    access_log: bool = False

    @property
    def api_url(self) -> str:
        return self.base_url + API_PREFIX

    @property
    def maskinporten_issuer(self) -> str:
        return self.base_url + "/maskinporten/"

    @property
    def maskinporten_token_url(self) -> str:
        return self.base_url + MASKINPORTEN_TOKEN_PATH

    @property
    def helseid_issuer(self) -> str:
        return self.base_url + "/helseid"

    @property
    def helseid_token_url(self) -> str:
        return self.base_url + HELSEID_TOKEN_PATH

    def url(self, path: str) -> str:
        return self.base_url + path
