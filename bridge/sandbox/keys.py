"""The sandbox's own keys: the JWE key clients encrypt to, the token issuer's signing key, and
the dev client's key (whose private half is handed out in sandbox.json).

With a state directory the keys are kept in `sandbox-keys.json` (mode 0600) and reused on the
next start, so a client configured once keeps working; without one they live in memory only.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jwcrypto import jwk

from bridge.sandbox.crypto import generate_jwk

KEYS_FILE = "sandbox-keys.json"


@dataclass(frozen=True)
class KeyMaterial:
    jwe: jwk.JWK
    issuer: jwk.JWK
    dev_client: jwk.JWK


def generate_keys(bits: int = 2048) -> KeyMaterial:
    return KeyMaterial(
        jwe=generate_jwk("kuhr-sandbox-jwe", bits),
        issuer=generate_jwk("sandbox-issuer", 2048),
        dev_client=generate_jwk("bkm-bridge-sandbox-client", 2048),
    )


def load_or_create_keys(state_dir: Path | None, bits: int = 2048) -> KeyMaterial:
    if state_dir is None:
        return generate_keys(bits)
    path = state_dir / KEYS_FILE
    if path.exists():
        data = json.loads(path.read_text("utf-8"))
        return KeyMaterial(
            jwe=jwk.JWK(**data["jwe"]),
            issuer=jwk.JWK(**data["issuer"]),
            dev_client=jwk.JWK(**data["dev_client"]),
        )
    keys = generate_keys(bits)
    write_private_json(
        path,
        {
            "jwe": json.loads(keys.jwe.export_private()),
            "issuer": json.loads(keys.issuer.export_private()),
            "dev_client": json.loads(keys.dev_client.export_private()),
        },
    )
    return keys


def write_private_json(path: Path, data: dict[str, Any]) -> None:
    """Write JSON readable by the owner only, atomically (temp file in the same folder + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
