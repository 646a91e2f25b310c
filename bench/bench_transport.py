"""The KUHR client's transport: CPU per request of httpx's own transport (httpcore) against the
one the client uses (aiohttp behind httpx, `bridge.kuhr.transport`, routed by the proxy rule),
and against aiohttp's without the proxy rule's routing, measured in one run.

    .venv/bin/python bench/bench_transport.py [--requests 5000] [--concurrency 4] [--rounds 2]

Both POST a 4 KB body, as a claim's JWE is, to a trivial ASGI app served by uvicorn in another
process on loopback, with `--concurrency` requests in flight (a sending process's default).
The client's CPU is read with `time.process_time`, so the server's work does not count. The
rounds alternate the two transports, because this machine's speed drifts.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import socket
import statistics
import time

import httpx
from httpx_aiohttp import AiohttpTransport

from bridge.kuhr.transport import kuhr_transport

ANSWER = b'{"behandlerkravmeldingId":"00000000-0000-0000-0000-000000000000","status":"MOTTATT"}'


async def _app(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": ANSWER})


def _serve(sock: socket.socket) -> None:
    import uvicorn

    config = uvicorn.Config(_app, log_level="warning", access_log=False, lifespan="off")
    uvicorn.Server(config).run(sockets=[sock])


async def _cpu_per_request(
    transport: httpx.AsyncBaseTransport | None, url: str, requests: int, concurrency: int
) -> float:
    """Microseconds of this process's CPU per request (after a warm-up)."""
    body = b"x" * 4096
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(transport=transport, timeout=10.0) as client:

        async def one() -> None:
            async with gate:
                answer = await client.post(url, content=body)
                answer.raise_for_status()
                answer.json()

        await asyncio.gather(*(one() for _ in range(200)))
        began = time.process_time()
        await asyncio.gather(*(one() for _ in range(requests)))
        return (time.process_time() - began) / requests * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/krav"
    server = multiprocessing.get_context("spawn").Process(target=_serve, args=(sock,), daemon=True)
    server.start()
    try:
        variants = (
            ("httpx (httpcore)", lambda: None),
            ("aiohttp (the client's)", kuhr_transport),
            ("aiohttp, no proxy rule", AiohttpTransport),
        )
        results: dict[str, list[float]] = {name: [] for name, _ in variants}
        for _ in range(args.rounds):
            for name, make in variants:
                cpu = asyncio.run(_cpu_per_request(make(), url, args.requests, args.concurrency))
                results[name].append(cpu)
        print(f"{args.requests} POSTs of 4 KB per round, {args.concurrency} in flight,")
        print(f"{args.rounds} rounds alternating; client CPU per request (median of rounds):")
        medians = {name: statistics.median(values) for name, values in results.items()}
        for name, values in results.items():
            rounds = ", ".join(f"{v:.0f}" for v in values)
            print(f"  {name:24s} {medians[name]:6.0f} µs   (rounds: {rounds})")
        ratio = medians["httpx (httpcore)"] / medians["aiohttp (the client's)"]
        print(f"  httpx's own transport costs {ratio:.1f}× the client's")
        routing = medians["aiohttp (the client's)"] / medians["aiohttp, no proxy rule"]
        print(f"  the client's transport with the proxy rule: {routing:.2f}× aiohttp's bare one")
    finally:
        server.terminate()
        server.join()
        sock.close()


if __name__ == "__main__":
    main()
