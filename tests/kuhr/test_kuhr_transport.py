"""The KUHR client's transport (aiohttp behind httpx) against raw sockets on loopback: each
way a request can fail is reported as the httpx error that tells whether it may have landed.
The client resends a POST without asking KUHR only after the "never sent" errors."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

import httpx
import pytest

from bridge.kuhr.transport import kuhr_transport

NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
Behaviour = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return await reader.readexactly(length)


async def _answer_ok(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    body = await _read_request(reader)
    answer = b'{"got": %d}' % len(body)
    writer.write(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(answer), answer)
    )
    await writer.drain()
    writer.close()


async def _drop_after_reading(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await _read_request(reader)  # the claim has arrived: KUHR may have processed it
    writer.close()


async def _never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await _read_request(reader)
    await asyncio.sleep(5)


async def _half_a_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await _read_request(reader)
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
    await writer.drain()
    writer.close()


async def _post(behaviour: Behaviour | None, *, read_timeout: float = 5.0) -> httpx.Response:
    """POST a body through the transport to a server with `behaviour` (None: no server)."""
    server = None
    if behaviour is None:
        with socket.socket() as probe:  # a port nobody listens on
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
    else:
        server = await asyncio.start_server(behaviour, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
    try:
        async with httpx.AsyncClient(
            transport=kuhr_transport(), timeout=httpx.Timeout(read_timeout, connect=2.0)
        ) as client:
            return await client.post(f"http://127.0.0.1:{port}/krav", content=b"x" * 5000)
    finally:
        if server is not None:
            server.close()


def test_an_answer_arrives_whole() -> None:
    response = asyncio.run(_post(_answer_ok))
    assert response.status_code == 200
    assert response.json() == {"got": 5000}


def test_nobody_listening_is_a_request_never_sent() -> None:
    with pytest.raises(httpx.ConnectError):
        asyncio.run(_post(None))


@pytest.mark.parametrize(
    ("behaviour", "reported"),
    [
        (_drop_after_reading, httpx.RemoteProtocolError),
        (_half_a_body, httpx.ReadError),
    ],
    ids=["dropped-after-the-request", "answer-cut-short"],
)
def test_a_connection_lost_after_sending_may_have_landed(
    behaviour: Behaviour, reported: type[httpx.TransportError]
) -> None:
    with pytest.raises(httpx.TransportError) as caught:
        asyncio.run(_post(behaviour))
    assert isinstance(caught.value, reported)
    assert not isinstance(caught.value, NEVER_SENT)


def test_no_answer_in_time_is_a_read_timeout() -> None:
    with pytest.raises(httpx.ReadTimeout):
        asyncio.run(_post(_never_answer, read_timeout=0.3))
