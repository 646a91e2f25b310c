"""The listening socket of the bridge's HTTP servers (sandbox, health endpoint), waiting for
them to start, and stopping them."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port (port 0: any free one); raises OSError, closed.

    proto must be IPPROTO_TCP (not 0): only then does asyncio set TCP_NODELAY on accepted
    connections, without which every keep-alive response waits ~40 ms for a delayed ACK.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def stop_server(server: Any, thread: threading.Thread, timeout: float = 5.0) -> None:
    """Stop a uvicorn server serving in `thread`: ask it to exit (open connections finish),
    then force it if it has not stopped within `timeout`, and join the thread."""
    server.should_exit = True
    thread.join(timeout)
    if thread.is_alive():
        server.force_exit = True
        thread.join(timeout)


def wait_started(
    server: Any, thread: threading.Thread, sock: socket.socket, timeout: float
) -> bool:
    """Wait until a uvicorn server serving `sock` in `thread` has started. False if the thread
    died or `timeout` passed first; the server is then told to exit and the socket closed."""
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            return False
        time.sleep(0.01)
    return True
