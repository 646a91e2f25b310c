"""What daemon tests wait for and read: a free port, a claim's JSON receipt (polled while the
sandbox clock moves), and the samples of a /metrics page."""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def receipt_of(claim: Path) -> dict[str, Any] | None:
    try:
        return json.loads(Path(f"{claim}.kvittering.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def wait_for_receipt(
    claim: Path,
    predicate: Callable[[dict[str, Any]], bool],
    admin: str | None = None,
    *,
    timeout: float = 60.0,
    step: float = 30.0,
) -> dict[str, Any]:
    """Poll the claim's JSON receipt until `predicate` holds; with `admin` (the sandbox's admin
    URL), move the sandbox clock `step` seconds per poll."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = receipt_of(claim)
        if last is not None and predicate(last):
            return last
        if admin:
            httpx.post(f"{admin}/clock", json={"advance_seconds": step}, timeout=10)
            time.sleep(0.2)
        else:
            time.sleep(0.05)
    raise AssertionError(f"receipt never matched; last: {json.dumps(last, indent=1)[:3000]}")


def parse_metrics(text: str) -> dict[str, float]:
    """`name{labels}` → value, checking every sample belongs to a declared family."""
    families: dict[str, str] = {}
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            families[name] = kind
            continue
        if line.startswith("#") or not line:
            continue
        key, value = line.rsplit(" ", 1)
        name = key.split("{", 1)[0]
        family = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in families or family in families, f"sample without TYPE: {line}"
        assert key not in samples, f"duplicate sample {key}"
        samples[key] = float(value)
    return samples
