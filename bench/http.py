"""A lean HTTP/1.1 keep-alive client on a plain socket, and the load-generator worker.

The load generator must cost the machine (2 cores, shared with the server) as little as
possible, or it measures itself: a pre-encoded request and a read up to Content-Length is
several times cheaper per request than a general client. It talks to 127.0.0.1 only.
"""

from __future__ import annotations

import socket
import time
from typing import Any

HOST = "127.0.0.1"


class HttpError(RuntimeError):
    pass


class Client:
    """One keep-alive connection to 127.0.0.1:port (reconnects if the server closes it)."""

    def __init__(self, port: int, timeout: float = 30.0) -> None:
        self.port = port
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self.buf = b""

    def _connect(self) -> socket.socket:
        sock = socket.create_connection((HOST, self.port), timeout=self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock, self.buf = sock, b""
        return sock

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    @staticmethod
    def encode(
        method: str,
        path: str,
        body: bytes = b"",
        port: int = 0,
        content_type: str = "application/json",
    ) -> bytes:
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body

    def send(self, raw: bytes) -> tuple[int, bytes]:
        """Send a pre-encoded request; return (status, body)."""
        for attempt in (0, 1):
            sock = self.sock or self._connect()
            try:
                sock.sendall(raw)
                return self._response(sock)
            except (ConnectionError, HttpError):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        return self.send(self.encode(method, path, body, self.port))

    def _response(self, sock: socket.socket) -> tuple[int, bytes]:
        buf = self.buf
        while True:
            end = buf.find(b"\r\n\r\n")
            if end >= 0:
                break
            chunk = sock.recv(65536)
            if not chunk:
                raise HttpError("connection closed before the response headers")
            buf += chunk
        head = buf[:end].decode("latin-1").split("\r\n")
        status = int(head[0].split(" ", 2)[1])
        length = 0
        for line in head[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
            elif name.strip().lower() == "transfer-encoding":
                raise HttpError("chunked responses are not supported by this client")
        need = end + 4 + length
        while len(buf) < need:
            chunk = sock.recv(max(65536, need - len(buf)))
            if not chunk:
                raise HttpError("connection closed inside the response body")
            buf += chunk
        body, self.buf = buf[end + 4 : need], buf[need:]
        return status, body


def load_worker(
    port: int,
    requests: list[tuple[str, bytes]] | list[tuple[str, bytes, str]],
    max_requests: int,
    start_at: float,
    duration: float,
    method: str = "POST",
) -> dict[str, Any]:
    """Run in its own process: send `requests` (path, body[, content type]) in a loop on
    one keep-alive connection from wall-clock `start_at`, until `max_requests` or
    `duration` seconds. Any 2xx answer counts as done (Loki's push answers 204)."""
    client = Client(port)
    raw = [client.encode(method, req[0], req[1], port, *req[2:]) for req in requests]
    client.request("GET", "/healthz")  # connect before the start line
    delay = start_at - time.time()
    if delay > 0:
        time.sleep(delay)
    began = time.time()
    deadline = began + duration
    done = errors = 0
    first_error = ""
    n = len(raw)
    while done < max_requests:
        status, body = client.send(raw[done % n])
        done += 1
        if not 200 <= status < 300:
            errors += 1
            first_error = first_error or f"{status} {body[:200]!r}"
        if (done & 7) == 0 and time.time() >= deadline:
            break
    ended = time.time()
    client.close()
    return {
        "requests": done,
        "errors": errors,
        "began": began,
        "ended": ended,
        "first_error": first_error,
    }
