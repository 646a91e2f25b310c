"""HelseID for virksomheter and the client's keys, through the CLI against a standalone sandbox:

- `bkm-bridge keys new` makes the key pair (no openssl) and prints the public JWK, which the
  sandbox registers (its admin API plays HelseID selvbetjening / Samarbeidsportalen);
- `assertion_details` for a single-tenant client's underenhet and for a multi-tenant (EPJ
  supplier's) client acting for a customer, each checked by the sandbox;
- key rotation with two keys: the new one is used as soon as it is registered, the current one
  until then; config check says which, and what is left to do;
- expiry: a key within 30 days of its end is warned about, an expired one fails.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from jwcrypto import jwk

from bridge.sandbox import start_sandbox
from bridge.sandbox.keys import KeyMaterial
from bridge.sandbox.server import RunningSandbox

SUPPLIER = "777777777"
FYSIO = "888888888"


def bkm(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge", *map(str, args)],
        capture_output=True, text=True, timeout=180, env=dict(os.environ),
    )  # fmt: skip


def new_key(folder: Path, name: str, *more: str) -> tuple[Path, dict[str, Any]]:
    made = bkm("keys", "new", "--out", folder, "--name", name, "--bits", "2048", *more)
    assert made.returncode == 0, made.stderr
    assert "Register the public key for your client" in made.stderr
    return folder / f"{name}.private.jwk.json", json.loads(made.stdout)


@pytest.fixture(scope="module")
def keys_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("keys")


@pytest.fixture(scope="module")
def supplier_key(keys_dir: Path) -> tuple[Path, dict[str, Any]]:
    return new_key(keys_dir, "leverandor")


@pytest.fixture(scope="module")
def served(
    sandbox_keys: KeyMaterial,
    tmp_path_factory: pytest.TempPathFactory,
    supplier_key: tuple[Path, dict[str, Any]],
) -> Iterator[RunningSandbox]:
    state = tmp_path_factory.mktemp("virksomhet-sandbox")
    public = state / "leverandor.jwk"
    public.write_text(json.dumps(supplier_key[1]), encoding="utf-8")
    config = state / "sandbox.toml"
    config.write_text(
        f"""
[[actors]]
name = "leverandor"
orgnr = "{SUPPLIER}"

[[actors]]
name = "fysio"
orgnr = "{FYSIO}"

[[actors.praksiser]]
praksisId = "2000000001"
navn = "Fjord Fysioterapi"
orgnr = "{FYSIO}"
type = "FYNO"
gyldigePerioder = [{{ fraOgMedDato = "2020-01-01" }}]

[[clients]]
client_id = "leverandor-epj"
actor = "leverandor"
tenancy = "multi"
may_act_for = ["999999999"]
public_jwk_file = "leverandor.jwk"
""",
        encoding="utf-8",
    )
    with start_sandbox(keys=sandbox_keys, state_dir=state, config=config) as running:
        yield running


def _config(tmp_path: Path, sandbox: RunningSandbox, auth: str) -> Path:
    assert sandbox.info_path is not None
    config = tmp_path / "bkm-bridge.toml"
    config.write_text(
        f'[kuhr]\nsandbox_state_dir = "{sandbox.info_path.parent}"\n\n[auth]\nmethod = "helseid"\n'
        f"{auth}\n",
        encoding="utf-8",
    )
    return config


def _admin(sandbox: RunningSandbox, method: str, path: str, body: Any = None) -> Any:
    response = httpx.request(method, f"{sandbox.info['admin_url']}/{path}", json=body)
    response.raise_for_status()
    return response.json()


# --------------------------------------------------------------------------- virksomheter


def test_single_tenant_client_names_its_underenhet(tmp_path: Path, served: RunningSandbox) -> None:
    config = _config(tmp_path, served, 'child_orgnr = "999999998"')
    checked = bkm("config", "check", "--config", config)
    assert checked.returncode == 0, checked.stdout
    assert "[ OK ] token: HelseID issued a DPoP token" in checked.stdout
    praksis = bkm("praksis", "--json", "--config", config)
    ids = [p["praksisId"] for p in json.loads(praksis.stdout)["praksiser"]]
    assert ids == ["1004326178", "1004326468"]


def test_an_underenhet_not_registered_for_the_client_is_refused(
    tmp_path: Path, served: RunningSandbox
) -> None:
    config = _config(tmp_path, served, f'child_orgnr = "{FYSIO}"')
    checked = bkm("config", "check", "--config", config)
    assert checked.returncode == 1
    assert f"underenhet {FYSIO} is not registered for client bkm-bridge-sandbox" in checked.stdout
    assert "auth.tenancy, parent_orgnr, child_orgnr" in checked.stdout


def test_multi_tenant_supplier_acts_for_its_customer(
    tmp_path: Path, served: RunningSandbox, supplier_key: tuple[Path, dict[str, Any]]
) -> None:
    key_file, public = supplier_key
    auth = (
        f'client_id = "leverandor-epj"\nkey_file = "{key_file}"\ntenancy = "multi"\n'
        'parent_orgnr = "999999999"\nchild_orgnr = "999999998"'
    )
    config = _config(tmp_path, served, auth)
    praksis = bkm("praksis", "--json", "--config", config)
    assert praksis.returncode == 0, praksis.stderr
    ids = [p["praksisId"] for p in json.loads(praksis.stdout)["praksiser"]]
    assert ids == ["1004326178", "1004326468"]  # the customer's praksiser
    assert _admin(served, "GET", "stats")["client_keys_used"][public["kid"]] >= 1


def test_multi_tenant_supplier_cannot_act_for_an_organisation_without_delegation(
    tmp_path: Path, served: RunningSandbox, supplier_key: tuple[Path, dict[str, Any]]
) -> None:
    key_file, _ = supplier_key
    auth = (
        f'client_id = "leverandor-epj"\nkey_file = "{key_file}"\ntenancy = "multi"\n'
        f'parent_orgnr = "{FYSIO}"'
    )
    refused = bkm("praksis", "--config", _config(tmp_path, served, auth))
    assert refused.returncode == 1
    assert f"organisation {FYSIO} has not delegated access" in refused.stderr


def test_a_multi_tenant_client_must_name_the_customer(tmp_path: Path) -> None:
    config = tmp_path / "bkm-bridge.toml"
    config.write_text('[auth]\nmethod = "helseid"\ntenancy = "multi"\n', encoding="utf-8")
    refused = bkm("praksis", "--config", config)
    assert refused.returncode == 2
    assert "auth.tenancy = multi needs auth.parent_orgnr" in refused.stderr


# --------------------------------------------------------------------------- keys


def test_keys_new_writes_a_private_file_only_its_owner_reads(keys_dir: Path) -> None:
    private, public = new_key(keys_dir, "eier")
    assert (private.stat().st_mode & 0o777) == 0o600
    data = json.loads(private.read_text())
    assert data["kid"] == public["kid"] and "d" in data and data["exp"] > 0
    assert "d" not in public and set(public) == {"kty", "kid", "alg", "use", "n", "e"}
    again = bkm("keys", "new", "--out", keys_dir, "--name", "eier", "--bits", "2048")
    assert again.returncode == 2 and "never replaced" in again.stderr
    shown = bkm("keys", "public", private)
    assert json.loads(shown.stdout) == public


def test_key_rotation_with_two_keys(tmp_path: Path, served: RunningSandbox, keys_dir: Path) -> None:
    """The sandbox's dev client gets a first key of its own, then a second one is rolled in."""
    first, first_public = new_key(keys_dir, "forste")
    _admin(served, "POST", "clients/bkm-bridge-sandbox/keys", first_public)
    second, second_public = new_key(keys_dir, "andre")
    auth = f'key_file = "{first}"\nnext_key_file = "{second}"'
    config = _config(tmp_path, served, auth)

    before = bkm("config", "check", "--config", config)
    assert before.returncode == 0, before.stdout
    assert f"[ OK ] key {first_public['kid']} (in use)" in before.stdout
    assert f"the new key {second_public['kid']} is not accepted yet" in before.stdout

    _admin(served, "POST", "clients/bkm-bridge-sandbox/keys", second_public)
    used = _admin(served, "GET", "stats")["client_keys_used"].get(second_public["kid"], 0)
    after = bkm("config", "check", "--config", config)
    assert after.returncode == 0, after.stdout
    assert f"[ OK ] key {second_public['kid']} (in use)" in after.stdout
    assert "make it auth.key_file, remove auth.next_key_file" in after.stdout
    assert _admin(served, "GET", "stats")["client_keys_used"][second_public["kid"]] > used

    # Rotation finished: the old key removed from the registration, the new one is the key.
    _admin(served, "DELETE", f"clients/bkm-bridge-sandbox/keys/{first_public['kid']}")
    done = _config(tmp_path, served, f'key_file = "{second}"')
    assert bkm("praksis", "--config", done).returncode == 0
    old = bkm("praksis", "--config", _config(tmp_path, served, f'key_file = "{first}"'))
    assert old.returncode == 1 and "unknown kid" in old.stderr


def _expiring_key(folder: Path, name: str, days: int) -> Path:
    """A key made by `keys new`, its end moved to `days` from now."""
    private, _ = new_key(folder, name)
    data = json.loads(private.read_text())
    data["exp"] = int((datetime.now(UTC) + timedelta(days=days)).timestamp())
    private.write_text(json.dumps(data))
    return private


def test_a_key_near_its_end_is_warned_about_and_an_expired_one_fails(
    tmp_path: Path, served: RunningSandbox, keys_dir: Path
) -> None:
    soon = _expiring_key(keys_dir, "snart", 12)
    _admin(served, "POST", "clients/bkm-bridge-sandbox/keys",
           json.loads(bkm("keys", "public", soon).stdout))  # fmt: skip
    warned = bkm("config", "check", "--config", _config(tmp_path, served, f'key_file = "{soon}"'))
    assert warned.returncode == 0, warned.stdout
    assert "[WARN] key" in warned.stdout
    assert any(f"({days} days)" in warned.stdout for days in (11, 12))
    assert "expires in" in warned.stdout and "bkm-bridge keys new" in warned.stdout

    gone = _expiring_key(keys_dir, "utlopt", -1)
    _admin(served, "POST", "clients/bkm-bridge-sandbox/keys",
           json.loads(bkm("keys", "public", gone).stdout))  # fmt: skip
    failed = bkm("config", "check", "--config", _config(tmp_path, served, f'key_file = "{gone}"'))
    assert failed.returncode == 1, failed.stdout
    assert "[FAIL] key" in failed.stdout and "expired on" in failed.stdout


def _certificate(tmp_path: Path, days: int) -> tuple[Path, dict[str, Any]]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Kurbadet Helsesenter")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=days))
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    path = tmp_path / "virksomhet.p12"
    path.write_bytes(
        pkcs12.serialize_key_and_certificates(
            b"v", key, cert, None, serialization.BestAvailableEncryption(b"hemmelig")
        )
    )
    public_der = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    public = json.loads(jwk.JWK.from_pem(public_der).export_public())
    public["kid"] = "virksomhetssertifikat"
    return path, public


def test_a_certificate_near_its_end_is_warned_about(tmp_path: Path, served: RunningSandbox) -> None:
    p12, public = _certificate(tmp_path, 20)
    _admin(served, "POST", "clients/bkm-bridge-sandbox/keys", public)
    (tmp_path / "pw").write_text("hemmelig")
    config = tmp_path / "cert.toml"
    assert served.info_path is not None
    config.write_text(
        f'[kuhr]\nsandbox_state_dir = "{served.info_path.parent}"\n\n[auth]\n'
        f'method = "maskinporten"\npkcs12_file = "{p12}"\npkcs12_password_file = "pw"\n',
        encoding="utf-8",
    )
    checked = bkm("config", "check", "--config", config)
    assert checked.returncode == 0, checked.stdout
    assert "[WARN] key certificate auth.pkcs12_file" in checked.stdout
    assert "the certificate" in checked.stdout and "expires in 19 day(s)" in checked.stdout


def test_healthz_warns_of_a_key_near_its_end(
    tmp_path: Path, served: RunningSandbox, keys_dir: Path
) -> None:
    soon = _expiring_key(keys_dir, "helse-snart", 20)
    _admin(served, "POST", "clients/bkm-bridge-sandbox/keys",
           json.loads(bkm("keys", "public", soon).stdout))  # fmt: skip
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = _config(
        tmp_path, served,
        f'key_file = "{soon}"\n\n[watch]\nhttp_port = {port}\nstate_dir = "{tmp_path / "s"}"',
    )  # fmt: skip
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    daemon = subprocess.Popen(
        [sys.executable, "-m", "bridge", "watch", str(inbox), "--config", str(config)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        body: dict[str, Any] = {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "warnings" not in body:
            try:
                body = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).json()
            except httpx.HTTPError:
                time.sleep(0.3)
        assert body["status"] == "ok", body  # due soon, not failed: still 200
        [warning] = body["warnings"]
        assert warning.startswith("keys: the key ") and "expires in 19 day(s)" in warning
        assert body["checks"]["keys"]["keys"][0]["days_left"] == 19
    finally:
        daemon.terminate()
        daemon.wait(30)
