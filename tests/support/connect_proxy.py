"""A real HTTP CONNECT proxy on loopback that counts what goes through it, and a TLS front
that serves the sandbox under a public name (the host exists only for the proxy: nothing on
this machine resolves it, so a request that bypasses the proxy cannot arrive).

Both run on one asyncio loop in a thread; `stop()` ends them."""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections import Counter
from pathlib import Path


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


class ConnectProxy:
    """CONNECT host:port → `routes[host]` (a loopback port); anything else is refused 403.
    `tunnels` counts CONNECTs per host; `plain` counts requests that were not CONNECT."""

    def __init__(self, routes: dict[str, int], tls_front: tuple[Path, Path, int] | None = None):
        self.routes = routes
        self.tunnels: Counter[str] = Counter()
        self.plain = 0
        self._front = tls_front
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="connect-proxy", daemon=True)
        self.port = 0
        self.front_port = 0
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the test proxy did not start")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start())
        self._ready.set()
        self._loop.run_forever()

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._proxy, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        if self._front is not None:
            cert, key, backend = self._front
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(cert, key)

            async def front(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", backend)
                await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

            self._front_server = await asyncio.start_server(front, "127.0.0.1", 0, ssl=context)
            self.front_port = self._front_server.sockets[0].getsockname()[1]

    async def _proxy(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            return
        method, target, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
        if method != "CONNECT":
            self.plain += 1
            writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            writer.close()
            return
        host = target.rpartition(":")[0]
        self.tunnels[host] += 1
        backend = self.routes.get(host)
        if backend is None:
            writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", backend)
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    def stop(self) -> None:
        async def close() -> None:
            self._server.close()
            if self._front is not None:
                self._front_server.close()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
