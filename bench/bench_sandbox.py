"""How many submissions per second the KUHR sandbox sustains, and what 100,000 claims cost.

Starts a sandbox in this process (uvicorn on loopback, in a background thread, as the bridge
embeds it) and a load client in a separate process: it takes a Maskinporten token and the JWKS
(jwcrypto + httpx), then keeps `--concurrency` keep-alive connections busy for `--seconds`,
each request a fresh three-regning claim encrypted RSA-OAEP-256 + A256GCM. Its hot loop uses
`cryptography` primitives and hand-written HTTP/1.1 so that it takes as little of the shared
CPU as possible. Then, in-process:

- the request path's parts: RSA-OAEP-256 decryption alone, and the whole `Sandbox.submit`
  (decrypt + technical control + control rules + store) without HTTP;
- memory: the store is filled to `--fill` claims through `Sandbox.receive` (the same
  technical control and store, minus decryption and HTTP) and the process's RSS growth is
  reported, per claim.

Prints figures next to their targets; asserts nothing. Usage:

    python bench/bench_sandbox.py [--seconds 10] [--concurrency 8] [--fill 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SEED_CLAIM = {
    "praksisId": "1004326178",
    "behandlerkrav": {
        "navnEPJ": "bench",
        "regninger": [
            {
                "guid": "",
                "regningsnummer": "4",
                "tidspunkt": "2026-01-06T13:03:00+01:00",
                "pasient": {"identifikasjon": {"id": "47908702367", "type": "FNR"}},
                "diagnoser": [{"kodeverk": "2.16.578.1.12.4.1.1.7170", "kode": "L73"}],
                "takster": [{"belop": 74.00, "kode": "1bd", "antall": 1}],
                "belop": 74.00,
            },
            {
                "guid": "",
                "regningsnummer": "5",
                "tidspunkt": "2026-01-06T13:35:00+01:00",
                "pasient": {"identifikasjon": {"id": "47908702367", "type": "FNR"}},
                "diagnoser": [{"kodeverk": "2.16.578.1.12.4.1.1.7170", "kode": "L73"}],
                "takster": [
                    {"belop": 15.00, "kode": "2ad", "antall": 1},
                    {"belop": 255.00, "kode": "2cd", "antall": 1},
                    {"belop": 26.00, "kode": "L1", "antall": 1},
                ],
                "belop": 296.00,
            },
            {
                "guid": "",
                "regningsnummer": "6",
                "tidspunkt": "2026-01-06T15:00:00+01:00",
                "pasient": {"identifikasjon": {"id": "47908500667", "type": "FNR"}},
                "diagnoser": [{"kodeverk": "2.16.578.1.12.4.1.1.7170", "kode": "U71"}],
                "takster": [{"belop": 64.00, "kode": "1i", "antall": 1}],
                "belop": 64.00,
            },
        ],
        "antallRegninger": 3,
        "belop": 434.00,
    },
}


def fresh_claim(number: int) -> bytes:
    claim = copy.deepcopy(SEED_CLAIM)
    for offset, regning in enumerate(claim["behandlerkrav"]["regninger"]):
        regning["guid"] = str(uuid.uuid4())
        regning["regningsnummer"] = str(number * 3 + offset)
    return json.dumps(claim).encode("utf-8")


# ------------------------------------------------------------------ the load client (child)


def run_client(info_path: Path, seconds: float, concurrency: int) -> None:
    """Runs in the child process; prints one JSON line with what it measured."""
    import httpx
    from jwcrypto import jwk, jwt

    info = json.loads(info_path.read_text(encoding="utf-8"))
    key = jwk.JWK(**info["private_jwk"])
    now = int(time.time())
    assertion = jwt.JWT(
        header={"alg": "RS256", "kid": key["kid"]},
        claims={
            "iss": info["client_id"],
            "aud": info["maskinporten"]["audience"],
            "scope": "nav:kuhr/krav",
            "iat": now,
            "exp": now + 60,
            "jti": str(uuid.uuid4()),
        },
    )
    assertion.make_signed_token(key)
    with httpx.Client(verify=False) as http:
        token = http.post(
            info["maskinporten"]["token_url"],
            data={
                "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                "assertion": assertion.serialize(),
            },
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        jwks = http.get(info["jwks_url"], headers=headers).json()
    encrypt = _lean_encrypter(jwk.JWK(**jwks["keys"][0]))
    host, port = info["base_url"].removeprefix("http://").rsplit(":", 1)
    head = (
        "POST /kuhr/krav/v1/process/sendinnbehandlerkravmelding HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
        "Content-Type: application/jose\r\nContent-Length: {length}\r\n\r\n"
    )
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    counter = iter(range(10**9))

    async def connection(stop_at: float) -> None:
        """One keep-alive connection, one request in flight, HTTP/1.1 by hand (the load
        client must cost as little CPU as possible: it shares the machine with the server)."""
        reader, writer = await asyncio.open_connection(host, int(port))
        while time.perf_counter() < stop_at:
            body = encrypt(fresh_claim(next(counter)))
            started = time.perf_counter()
            writer.write(head.replace("{length}", str(len(body))).encode() + body)
            headers = await reader.readuntil(b"\r\n\r\n")
            length = int(headers.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            status = int(headers[9:12])
            statuses[status] = statuses.get(status, 0) + 1
        writer.close()

    async def main() -> None:
        # Warm-up: connections open, code paths hot.
        await asyncio.gather(*(connection(time.perf_counter() + 1.0) for _ in range(concurrency)))
        latencies.clear()
        statuses.clear()
        started = time.perf_counter()
        cpu = time.process_time()
        await asyncio.gather(*(connection(started + seconds) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
        result = {
            "elapsed": elapsed,
            "count": len(latencies),
            "statuses": statuses,
            "p50_ms": statistics.median(latencies) * 1000,
            "p99_ms": statistics.quantiles(latencies, n=100)[98] * 1000,
            "client_cpu": time.process_time() - cpu,
        }
        print(json.dumps(result), flush=True)

    asyncio.run(main())


def _lean_encrypter(public: Any) -> Any:
    """Compact JWE (RSA-OAEP-256 + A256GCM) from the primitives: what jwcrypto does, with
    the header encoded once."""
    import base64

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    def b64(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    key = public.get_op_key("encrypt")
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    header = b64(
        json.dumps({"alg": "RSA-OAEP-256", "enc": "A256GCM", "kid": public["kid"]}).encode()
    )

    def encrypt(plaintext: bytes) -> bytes:
        cek, iv = os.urandom(32), os.urandom(12)
        sealed = AESGCM(cek).encrypt(iv, plaintext, header)
        parts = [header, b64(key.encrypt(cek, oaep)), b64(iv), b64(sealed[:-16]), b64(sealed[-16:])]
        return b".".join(parts)

    return encrypt


# ------------------------------------------------------------------ the sandbox side (parent)


def rss_mb() -> float:
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    except ImportError:  # Linux without psutil
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def row(what: str, figure: str, target: str = "") -> None:
    print(f"  {what:<46} {figure:>18}   {target}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--fill", type=int, default=100_000)
    parser.add_argument("--client", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        run_client(args.client, args.seconds, args.concurrency)
        return

    from bridge.sandbox import SandboxSettings, start_sandbox
    from bridge.sandbox.crypto import _OAEP

    print(f"KUHR sandbox bench ({os.cpu_count()} CPUs, Python {sys.version.split()[0]})")
    settings = SandboxSettings(speed=0.0)  # a still clock: every claim is received at 15:30
    with (
        tempfile.TemporaryDirectory() as tmp,
        start_sandbox(state_dir=Path(tmp), settings=settings) as running,
    ):
        sandbox = running.sandbox
        print(
            f"\nSustained submissions over loopback ({args.concurrency} in flight, "
            f"client in a separate process, {args.seconds:g} s):"
        )
        cpu_before = time.process_time()
        child = subprocess.run(
            [
                sys.executable,
                __file__,
                "--client",
                str(running.info_path),
                "--seconds",
                str(args.seconds),
                "--concurrency",
                str(args.concurrency),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        server_cpu = time.process_time() - cpu_before
        if child.returncode != 0:
            print(child.stderr)
            raise SystemExit("the load client failed")
        result = json.loads(child.stdout.strip().splitlines()[-1])
        rate = result["count"] / result["elapsed"]
        row("submissions/s", f"{rate:,.0f}", "target >= 300/s")
        row("answers", ", ".join(f"{k}: {v}" for k, v in result["statuses"].items()))
        row("latency p50 / p99", f"{result['p50_ms']:.1f} / {result['p99_ms']:.1f} ms")
        row(
            "server CPU per submission (incl. warm-up)",
            f"{server_cpu / max(sandbox.store.stats.received, 1) * 1000:.2f} ms",
        )
        row("client CPU per submission", f"{result['client_cpu'] / result['count'] * 1000:.2f} ms")

        print("\nThe request path's parts, in-process (no HTTP):")
        from jwcrypto import jwe, jwk

        public = jwk.JWK(**sandbox.keyring.current.public_jwk)
        protected = json.dumps(
            {"alg": "RSA-OAEP-256", "enc": "A256GCM", "kid": sandbox.keyring.current.kid}
        )
        bodies = [
            jwe.JWE(fresh_claim(10**6 + i), protected, recipient=public)
            .serialize(compact=True)
            .encode()
            for i in range(500)
        ]
        encrypted_key = bodies[0].split(b".")[1]
        from bridge.sandbox.crypto import b64url_decode

        wrapped = b64url_decode(encrypted_key.decode(), "key")
        started = time.perf_counter()
        for _ in range(500):
            sandbox.keyring.current.private.decrypt(wrapped, _OAEP)
        rsa = (time.perf_counter() - started) / 500
        row("RSA-OAEP-256 key unwrap (2048 bit)", f"{rsa * 1e6:,.0f} µs")
        grant = sandbox.tokens.authenticate("Bearer " + _token(sandbox, running.info))
        started = time.perf_counter()
        for body in bodies:
            status, _ = sandbox.submit(grant, body)
            assert status == 200
        whole = (time.perf_counter() - started) / len(bodies)
        row("Sandbox.submit (decrypt + checks + store)", f"{whole * 1e6:,.0f} µs")
        row("  of which RSA", f"{rsa / whole:.0%}")

        print(f"\nMemory with {args.fill:,} stored claims (3 regninger each):")
        gc.collect()
        stored_before = len(sandbox.store.meldinger)
        before = rss_mb()
        started = time.perf_counter()
        for number in range(args.fill - stored_before):
            sandbox.receive(grant, fresh_claim(2 * 10**6 + number))
        filled = time.perf_counter() - started
        gc.collect()
        after = rss_mb()
        stored = len(sandbox.store.meldinger)
        row("claims stored", f"{stored:,}")
        row("RSS before fill / after", f"{before:,.0f} / {after:,.0f} MB")
        per_claim = (after - before) * 2**20 / max(stored - stored_before, 1)
        row("growth per claim", f"{per_claim:,.0f} bytes", "(own aim: < 2 KB)")
        row("fill rate (receive, no crypto/HTTP)", f"{(stored - stored_before) / filled:,.0f}/s")


def _token(sandbox: Any, info: dict[str, Any]) -> str:
    """A Maskinporten access token for the dev client, through the token service itself."""
    from jwcrypto import jwk, jwt

    key = jwk.JWK(**info["private_jwk"])
    now = int(time.time())
    assertion = jwt.JWT(
        header={"alg": "RS256", "kid": key["kid"]},
        claims={
            "iss": info["client_id"],
            "aud": info["maskinporten"]["audience"],
            "scope": "nav:kuhr/krav",
            "iat": now,
            "exp": now + 60,
            "jti": str(uuid.uuid4()),
        },
    )
    assertion.make_signed_token(key)
    form = {
        "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "assertion": assertion.serialize(),
    }
    return sandbox.tokens.maskinporten(form)["access_token"]


if __name__ == "__main__":
    main()
