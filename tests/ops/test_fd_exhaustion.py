"""Out of file descriptors: the server answers what it can (2xx, or 503 when the store
cannot open a file), never 500, and reports the refused accepts on one line a while
instead of a traceback a second; it recovers by itself once descriptors free up."""

from __future__ import annotations

import os
import resource
import socket
import time
from pathlib import Path

import httpx
import pytest

from tests.ops.helpers import alert, bearer, ops_server

pytestmark = pytest.mark.e2e
ING = bearer("ingest")


def _post(url: str, n: int, client: httpx.Client | None = None) -> int | str:
    try:
        if client is None:  # a new connection
            return httpx.post(
                url + "/alerts", json=alert(f"Fd{n}"), headers=ING, timeout=4
            ).status_code
        return client.post("/alerts", json=alert(f"Fd{n}"), headers=ING).status_code
    except httpx.TransportError as exc:  # not accepted yet (waiting in the backlog)
        return type(exc).__name__


def test_out_of_descriptors_never_500_one_log_line_a_while(tmp_path: Path) -> None:
    with ops_server(tmp_path, "--header-timeout", "3") as server:
        assert server.proc is not None
        pid = server.proc.pid
        assert _post(server.url, 0) == 200  # the store's files are open
        # A client connected before the descriptors run out keeps being answered.
        kept = httpx.Client(base_url=server.url, timeout=4)
        assert _post(server.url, 0, kept) == 200
        limits = resource.prlimit(pid, resource.RLIMIT_NOFILE)
        used = len(os.listdir(f"/proc/{pid}/fd"))
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (used + 8, limits[1]))  # soft only
        idle: list[socket.socket] = []
        statuses: list[int | str] = []
        answered: list[int | str] = []
        try:
            started = time.monotonic()
            while time.monotonic() - started < 12:  # more than one report interval
                while len(idle) < 40:  # keep the descriptors used up
                    idle.append(socket.create_connection(("127.0.0.1", server.port), timeout=5))
                # (the kept connection must not idle past --header-timeout: asked first)
                answered.append(_post(server.url, 500 + len(answered), kept))
                statuses.append(_post(server.url, len(statuses) + 1))
                idle = [s for s in idle if not _closed(s)]
                time.sleep(0.2)
        finally:
            for s in idle:
                s.close()
            kept.close()
            resource.prlimit(pid, resource.RLIMIT_NOFILE, limits)
        deadline = time.monotonic() + 15
        while _post(server.url, 999) != 200:  # recovers without a restart
            assert time.monotonic() < deadline, "the server did not recover"
            time.sleep(0.5)
        log = server.stderr_text()
        metrics = httpx.get(server.url + "/metrics", timeout=5).text
    assert 500 not in statuses + answered, (statuses, answered)
    assert 200 in answered or 503 in answered, answered  # answered during the shortage
    assert not [line for line in metrics.splitlines() if 'status="500"' in line]
    reports = log.count("cannot accept new connections")
    assert 1 <= reports <= 3, log[-3000:]  # ~12 s at one report per 10 s, not one a second
    assert "out of system resource" not in log.replace("cannot accept new connections", "")
    assert "Traceback" not in log, log[-3000:]
    assert log.count("WAL checkpoint failed") <= 1, log[-3000:]


def _closed(s: socket.socket) -> bool:
    """True (and closed here) when the server has closed `s`."""
    s.setblocking(False)
    try:
        gone = s.recv(4096) == b""
    except BlockingIOError:
        gone = False
    except OSError:
        gone = True
    s.setblocking(True)
    if gone:
        s.close()
    return gone
