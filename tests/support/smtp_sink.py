"""A loopback SMTP sink for tests (stdlib only): it speaks enough SMTP for `smtplib` (EHLO,
MAIL, RCPT, DATA, RSET, NOOP, QUIT; no STARTTLS, no AUTH) and keeps every message it got, as
`email.message.EmailMessage`, with its envelope recipients. A context manager."""

from __future__ import annotations

import email
import email.policy
import socketserver
import threading
import time
from email.message import EmailMessage


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def _say(self, line: str) -> None:
        self.wfile.write(line.encode("ascii") + b"\r\n")

    def handle(self) -> None:
        self._say("220 sink.test ESMTP")
        rcpts: list[str] = []
        while True:
            line = self.rfile.readline(4096)
            if not line:
                return
            verb = line[:4].decode("ascii", "replace").upper()
            if verb == "EHLO":
                self._say("250-sink.test")
                self._say("250 8BITMIME")
            elif verb in ("HELO", "MAIL", "RSET", "NOOP"):
                if verb == "RSET":
                    rcpts = []
                self._say("250 OK")
            elif verb == "RCPT":
                rcpts.append(line.decode().split(":", 1)[1].strip().strip("<>"))
                self._say("250 OK")
            elif verb == "DATA":
                self._say("354 end with <CRLF>.<CRLF>")
                body = bytearray()
                while True:
                    data = self.rfile.readline(65536)
                    if not data or data == b".\r\n":
                        break
                    body += data[1:] if data.startswith(b"..") else data
                message = email.message_from_bytes(bytes(body), policy=email.policy.default)
                assert isinstance(message, EmailMessage)
                with self.server.lock:
                    self.server.messages.append((rcpts, message))
                rcpts = []
                self._say("250 OK queued")
            elif verb == "QUIT":
                self._say("221 bye")
                return
            else:
                self._say("502 not implemented")


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.messages: list[tuple[list[str], EmailMessage]] = []


class SmtpSink:
    def __init__(self) -> None:
        self._server = _Server()
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def messages(self) -> list[tuple[list[str], EmailMessage]]:
        with self._server.lock:
            return list(self._server.messages)

    def wait_for(self, count: int, timeout: float = 30.0) -> list[tuple[list[str], EmailMessage]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.messages) >= count:
                return self.messages
            time.sleep(0.05)
        raise AssertionError(f"{len(self.messages)} message(s), expected {count}")

    def __enter__(self) -> SmtpSink:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
