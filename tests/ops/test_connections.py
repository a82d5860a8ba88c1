"""Idle and slow connections never deny service (real server processes, raw sockets):
a connection that sends no complete request head within --header-timeout is closed, idle
connections are shed past --max-connections, and past --max-concurrent-requests only the
excess requests get 503 with Retry-After."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.ops.helpers import ROOT, alert, bearer, ops_server

pytestmark = pytest.mark.e2e
ING = bearer("ingest")


def _connect(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    return s


def _response(s: socket.socket) -> bytes:
    """One whole HTTP response (head and Content-Length body) read from `s`."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(4096) or b"?"  # ? : closed early; the assertion shows what came
    head, _, body = data.partition(b"\r\n\r\n")
    length = [
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    ]
    while length and len(body) < length[0]:
        body += s.recv(4096)
    return head + b"\r\n\r\n" + body


def _closed_after(s: socket.socket, limit: float) -> tuple[float, bytes]:
    """Seconds until the server closes `s` (reading what it sent first), at most `limit`."""
    started = time.monotonic()
    s.settimeout(limit)
    received = b""
    while True:
        try:
            chunk = s.recv(4096)
        except TimeoutError:
            return limit, received
        except ConnectionResetError:
            return time.monotonic() - started, received
        if not chunk:
            return time.monotonic() - started, received
        received += chunk


def _sockets_of(pid: int) -> int:
    return sum(
        1 for fd in os.listdir(f"/proc/{pid}/fd") if "socket:" in _readlink(f"/proc/{pid}/fd/{fd}")
    )


def _readlink(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""


def test_a_connection_without_a_complete_head_is_closed(tmp_path: Path) -> None:
    with ops_server(tmp_path, "--header-timeout", "1") as server:
        idle = _connect(server.port)
        slow = _connect(server.port)
        slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        answered = _connect(server.port)
        answered.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _response(answered).startswith(b"HTTP/1.1 200")
        # after its answer, a keep-alive connection gets the same time for its next head
        answered.sendall(b"GET /heal")

        # a connection that trickles a header byte every 0.3 s is closed all the same
        stop = threading.Event()

        def trickle() -> None:
            while not stop.wait(0.3):
                try:
                    slow.sendall(b"a")
                except OSError:
                    return

        slow.sendall(b"X-Slow: ")
        threading.Thread(target=trickle, daemon=True).start()
        try:
            waited, sent = _closed_after(idle, 15)
            assert 0.5 <= waited < 10, waited
            assert sent == b""  # nothing was asked, nothing is answered
            waited, sent = _closed_after(slow, 15)
            assert waited < 10, waited
            assert sent.startswith(b"HTTP/1.1 408 "), sent
            waited, sent = _closed_after(answered, 15)
            assert waited < 10 and sent.startswith(b"HTTP/1.1 408 "), (waited, sent)
        finally:
            stop.set()
            for s in (idle, slow, answered):
                s.close()
        assert httpx.get(server.url + "/healthz", timeout=5).status_code == 200


def test_idle_connections_are_shed_past_max_connections(tmp_path: Path) -> None:
    with ops_server(tmp_path, "--max-connections", "20", "--header-timeout", "60") as server:
        idle = [_connect(server.port) for _ in range(30)]
        try:
            time.sleep(0.5)
            r = httpx.post(server.url + "/alerts", json=alert(), headers=ING, timeout=5)
            assert r.status_code == 200, r.text
            assert httpx.get(server.url + "/healthz", timeout=5).status_code == 200
            # the longest-waiting ones made room; the newest are still open
            oldest = [_closed_after(s, 5)[0] < 5 for s in idle[:10]]
            assert all(oldest), oldest
            newest = idle[-5:]
            for s in newest:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                assert _response(s).startswith(b"HTTP/1.1 200")
        finally:
            for s in idle:
                s.close()


@pytest.mark.slow
def test_idle_and_slowloris_connections_do_not_deny_service(tmp_path: Path) -> None:
    """2,000 connections that send nothing plus 500 that send one header byte every 2 s,
    reopened as soon as the server closes them, with the default limits: a new client's
    /healthz and POST /alerts answer 2xx within 1 s throughout."""
    seconds = 30.0
    with ops_server(tmp_path) as server:
        attack = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.ops.slow_clients",
                "--port",
                str(server.port),
                "--idle",
                "2000",
                "--slow",
                "500",
                "--interval",
                "2",
                "--seconds",
                str(seconds),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.proc is not None
            deadline = time.monotonic() + 20
            while _sockets_of(server.proc.pid) < 2400:  # the attack is in place
                assert time.monotonic() < deadline, _sockets_of(server.proc.pid)
                time.sleep(0.2)
            started, slowest, n, most, late = time.monotonic(), 0.0, 0, 0, 0
            while time.monotonic() - started < seconds - 8:  # past --header-timeout (10 s)
                most = max(most, _sockets_of(server.proc.pid))
                with httpx.Client(base_url=server.url, timeout=5) as client:  # a new client
                    t0 = time.monotonic()
                    health = client.get("/healthz")
                    t1 = time.monotonic()
                    stored = client.post("/alerts", json=alert(f"Storm{n}"), headers=ING)
                    t2 = time.monotonic()
                assert health.status_code == 200 and stored.status_code == 200, (
                    health.text,
                    stored.text,
                )
                # each answered within 1 s (the healthz on a connection opened for it).
                # The attacker, the server and this client share 2 cores: one probe in
                # the run may lose the CPU for a moment, never for 2 s.
                took = max(t1 - t0, t2 - t1)
                late += took >= 1.0
                assert took < 2.0 and late <= 1, f"healthz {t1 - t0:.2f}s, alert {t2 - t1:.2f}s"
                slowest, n = max(slowest, took), n + 1
                time.sleep(0.2)
        finally:
            out, _ = attack.communicate(timeout=seconds + 30)
        stats = json.loads(out)
        assert stats["most_open"] == 2500 and most >= 2400, (stats, most)
        # idle and trickling connections were closed by the server, and reopened
        assert stats["idle_closed_by_server"] >= 2000 and stats["slow_closed_by_server"] >= 500
        assert stats["answers"].get("HTTP/1.1 408 Request Timeout", 0) >= 500, stats
        assert n >= 10
        listed = httpx.get(server.url + "/api/incidents?limit=1000", headers=bearer("read"))
        assert listed.json()["count"] >= n
        print(f"{n} rounds, slowest answer {slowest * 1000:.0f} ms; {stats}")


def test_a_client_that_breaks_off_its_body_is_the_clients_error(tmp_path: Path) -> None:
    """A malformed chunked body and a body cut short are logged and counted as the
    client's (400 from the HTTP parser, 499 when the client left), never as a 500."""
    with ops_server(tmp_path) as server:
        token = ING["Authorization"].encode()
        head = b"POST /context/logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        head += b"Authorization: " + token + b"\r\n"
        with _connect(server.port) as s:  # a chunk size that is not hexadecimal
            s.sendall(head + b'Transfer-Encoding: chunked\r\n\r\n5\r\n{"ser\r\nzz\r\n')
            assert _response(s).startswith(b"HTTP/1.1 400 ")
        with _connect(server.port) as s:  # the client leaves before its body is complete
            s.sendall(head + b"Content-Length: 1000\r\n\r\n" + b'{"service": "s"')
            time.sleep(0.3)
        with _connect(server.port) as s:  # a chunked body that stops halfway
            s.sendall(head + b'Transfer-Encoding: chunked\r\n\r\n10\r\n{"service": ')
            time.sleep(0.3)
        ok = httpx.post(
            server.url + "/context/logs", json={"service": "s", "message": "m"}, headers=ING
        )
        assert ok.status_code == 200
        deadline = time.monotonic() + 10
        while (
            "status=499" not in server.stderr_text() or server.stderr_text().count("status=499") < 2
        ):
            assert time.monotonic() < deadline, server.stderr_text()[-3000:]
            time.sleep(0.1)
        metrics = httpx.get(server.url + "/metrics", headers=bearer("read")).text
        requests = [
            line
            for line in metrics.splitlines()
            if line.startswith("incident_pilot_http_requests_total{")
        ]
        assert any('status="499"' in line and "/context/{kind}" in line for line in requests), (
            requests
        )
        assert not any('status="5' in line for line in requests), requests
        log = server.stderr_text()
        assert (
            "status=500" not in log and "unexpected error" not in log and "Traceback" not in log
        ), log[-3000:]
        assert "client closed the connection" in log


def test_past_the_concurrency_limit_only_the_excess_gets_503(tmp_path: Path) -> None:
    with ops_server(tmp_path, "--max-concurrent-requests", "4") as server:
        token = ING["Authorization"].encode()
        bodies = [json.dumps(alert(f"Held{i}")).encode() for i in range(4)]
        held = []
        for body in bodies:  # four requests in progress: their bodies arrive slowly
            s = _connect(server.port)
            s.sendall(
                b"POST /alerts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + b"Authorization: "
                + token
                + f"\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                + body[:10]
            )
            held.append(s)
        try:
            deadline = time.monotonic() + 10
            while True:  # until the server has taken all four
                r = httpx.post(server.url + "/alerts", json=alert("Probe"), headers=ING)
                if r.status_code == 503:
                    break
                assert r.status_code == 200 and time.monotonic() < deadline, r.text
                time.sleep(0.1)
            excess = [
                httpx.post(server.url + "/alerts", json=alert(f"Excess{i}"), headers=ING)
                for i in range(10)
            ]
            for r in excess:
                assert r.status_code == 503, r.text
                assert r.headers["retry-after"] == "1"
                assert "retry" in r.json()["error"]
            assert httpx.get(server.url + "/healthz").status_code == 200  # always answered
            assert httpx.get(server.url + "/metrics", headers=bearer("read")).status_code == 200
            for s, body in zip(held, bodies, strict=True):  # the four within the limit are served
                s.sendall(body[10:])
                assert _response(s).startswith(b"HTTP/1.1 200 "), body
        finally:
            for s in held:
                s.close()
        r = httpx.post(server.url + "/alerts", json=alert("After"), headers=ING)
        assert r.status_code == 200


def test_a_burst_past_the_limit_is_stored_once_clients_retry(tmp_path: Path) -> None:
    """100 clients at once, a limit of 5: answers are 200 or 503 with Retry-After, nothing
    else, and every alert is stored once the clients retry on 503 (as Alertmanager does)."""
    statuses: list[int] = []
    lock = threading.Lock()

    def client(url: str, i: int) -> None:
        deadline = time.monotonic() + 60
        with httpx.Client(timeout=30) as c:
            while time.monotonic() < deadline:
                r = c.post(url + "/alerts", json=alert(f"Burst{i}"), headers=ING)
                with lock:
                    statuses.append(r.status_code)
                if r.status_code != 503:
                    return
                assert r.headers["retry-after"] == "1"
                time.sleep(0.2 + (i % 10) / 20)

    with ops_server(tmp_path, "--max-concurrent-requests", "5") as server:
        threads = [threading.Thread(target=client, args=(server.url, i)) for i in range(100)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(90)
        assert set(statuses) <= {200, 503}, sorted(set(statuses))
        assert statuses.count(200) == 100
        listed = httpx.get(server.url + "/api/incidents?limit=1000", headers=bearer("read"))
        titles = {i["title"] for i in listed.json()["incidents"]}
        assert {f"Burst{i} on checkout-api" for i in range(100)} <= titles
