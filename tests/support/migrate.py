"""Helpers the migrate tests share: claim files made with the legacy writer, zip archives,
receipts read back, and the CLI run as a subprocess. (No tests here.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
import zipfile
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from bridge.config import load_settings
from bridge.core.legacy.writer import write_bkm_xml
from bridge.core.model import Behandlerkrav, Regning
from bridge.core.timezone import OSLO

SEED_CLOCK = datetime.fromisoformat("2026-01-06T15:30:00+01:00")
PRAKSIS_ID = "1004326178"  # the sandbox's praksis for the writer's sender orgnr 999999999
PATIENT_IDS = ("47908702367", "47908500667")


def stats(sandbox) -> dict:
    """The sandbox's counts (submissions received and accepted, per regning guid)."""
    return httpx.get(f"{sandbox.info['admin_url']}/stats", timeout=10).json()


def settings_for(tmp_path: Path):
    """Settings for a run against the standalone sandbox of `tmp_path / "sandbox"`."""
    return load_settings(
        None,
        {"kuhr.sandbox_state_dir": tmp_path / "sandbox", "watch.state_dir": tmp_path / "state"},
    )


def claim_guid(n: int) -> str:
    return str(uuid.UUID(int=0xB0C4 << 64 | n, version=4))


def claim_xml(n: int) -> bytes:
    """A single-regning claim; `n` makes its guid, number, patient and takster differ."""
    takster = [{"belop": Decimal("155.00"), "kode": "2ad", "antall": 1}]
    if n % 2:
        takster.append({"belop": Decimal("84.00"), "kode": "2cd", "antall": 1})
    belop = sum((t["belop"] for t in takster), Decimal("0.00"))
    regning = Regning.model_validate(
        {
            "guid": claim_guid(n),
            "betaltEgenandel": False,
            "korrigeringBetaltEgenandel": False,
            "kreditering": False,
            "regningsnummer": str(500000 + n),
            "tidspunkt": datetime(2026, 1, 5, 8, 0, tzinfo=OSLO) + timedelta(minutes=3 * n),
            "pasient": {
                "etternavn": "Hansen",
                "fornavn": "Åse",
                "kjonn": "2",
                "identifikasjon": {"id": f"{47908700000 + n:011d}", "type": "FNR"},
            },
            "diagnoser": [{"kodeverk": "2.16.578.1.12.4.1.1.7170", "kode": "L73"}],
            "utforendeBehandler": {"id": "9144900", "type": "HPR"},
            "takster": takster,
            "belop": belop,
        }
    )
    krav = Behandlerkrav(navnEPJ="TestEPJ", regninger=[regning], antallRegninger=1, belop=belop)
    return write_bkm_xml(krav, msg_id=str(uuid.UUID(int=n)), gen_date=SEED_CLOCK)


def write_claims(folder: Path, numbers: range, name: str = "krav-{:04d}.xml") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for n in numbers:
        path = folder / name.format(n)
        path.write_bytes(claim_xml(n))
        paths.append(path)
    return paths


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zipped:
        for name, data in members.items():
            zipped.writestr(name, data)
    return path


def receipts_under(folder: Path) -> dict[Path, dict[str, Any]]:
    """Every JSON receipt below `folder`, by path relative to it."""
    return {
        path.relative_to(folder): json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(folder.rglob("*.kvittering.json"))
    }


def read_csv(path: Path) -> list[dict[str, str]]:
    import csv

    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def cli_env(state: Path, sandbox_state: Path | None = None) -> dict[str, str]:
    env = {
        **os.environ,
        "BKM_BRIDGE_WATCH__STATE_DIR": str(state),
    }
    if sandbox_state is not None:
        env["BKM_BRIDGE_KUHR__SANDBOX_STATE_DIR"] = str(sandbox_state)
    env.pop("BKM_BRIDGE_CONFIG", None)
    return env


def state_parent(env: dict[str, str]) -> Path:
    """The test's own folder (the one holding the state folder): commands run there."""
    return Path(env["BKM_BRIDGE_WATCH__STATE_DIR"]).parent


def start_migrate(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    """In its own process group, so a test can send Ctrl-C to it as a terminal does."""
    return subprocess.Popen(
        [sys.executable, "-m", "bridge", "migrate", *args],
        cwd=state_parent(env),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def run_migrate(args: list[str], env: dict[str, str], timeout: float = 120) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "bridge", "migrate", *args],
        cwd=state_parent(env),
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
