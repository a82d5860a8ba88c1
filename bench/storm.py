"""A connection storm: `python -m bench.storm [--connections 2000] [--port P]`.

N connections open at once, each posting one new alert (its own alertname, so each opens
an incident), and each retrying on 503 the way Alertmanager does: its RetryStage uses
cenkalti/backoff's ExponentialBackOff with the library's defaults (first retry after
0.5 s, x1.5 each time, ±50% jitter, at most 60 s apart; `notify/notify.go`). A connection
the server closes is opened again for the retry. Reports how many alerts were stored,
when the last one was, every status seen, and whether anything but 503 was a 5xx.

Without `--port` it starts `incident-pilot serve` (default settings, a fresh SQLite file)
and checks the count of stored incidents at the end. Talks to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import statistics
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from engine.testing import ServerProcess

HOST = "127.0.0.1"
INITIAL, MULTIPLIER, JITTER, MAX_INTERVAL = 0.5, 1.5, 0.5, 60.0  # cenkalti/backoff defaults


def _request(port: int, name: str) -> bytes:
    body = json.dumps(
        {
            "receiver": "storm",
            "status": "firing",
            "alerts": [
                {
                    "status": "firing",
                    "labels": {"alertname": name, "service": "storm", "severity": "page"},
                    "annotations": {"summary": f"{name} in a connection storm"},
                }
            ],
        }
    ).encode()
    head = (
        f"POST /alerts HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _exchange(
    conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None, port: int, raw: bytes
) -> tuple[int, tuple[asyncio.StreamReader, asyncio.StreamWriter] | None]:
    """One request; (status, the connection if it may be reused). Status 0: no answer."""
    if conn is None:
        conn = await asyncio.open_connection(HOST, port)
    reader, writer = conn
    writer.write(raw)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    close = False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            length = int(value)
        elif name.lower() == b"connection" and value.strip().lower() == b"close":
            close = True
    await reader.readexactly(length)
    if close:
        writer.close()
        return status, None
    return status, conn


async def _client(
    port: int, name: str, statuses: Counter[int], start: asyncio.Event, deadline: float
) -> tuple[float | None, int]:
    """Post one alert until it is acknowledged; (seconds to its 200, attempts)."""
    raw = _request(port, name)
    await start.wait()
    t0 = time.monotonic()
    conn = None
    interval, attempts = INITIAL, 0
    while time.monotonic() < deadline:
        attempts += 1
        try:
            status, conn = await _exchange(conn, port, raw)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            status, conn = 0, None  # refused, reset or closed: retried like a 5xx
        statuses[status] += 1
        if 200 <= status < 300:
            if conn is not None:
                conn[1].close()
            return time.monotonic() - t0, attempts
        if 400 <= status < 500:
            break  # Alertmanager gives up on a 4xx
        await asyncio.sleep(interval * random.uniform(1 - JITTER, 1 + JITTER))
        interval = min(interval * MULTIPLIER, MAX_INTERVAL)
    if conn is not None:
        conn[1].close()
    return None, attempts


async def _probe(port: int, stop: asyncio.Event) -> tuple[Counter[int], float]:
    """GET /healthz on a new connection every 0.1 s until `stop`: statuses, slowest."""
    raw = f"GET /healthz HTTP/1.1\r\nHost: {HOST}:{port}\r\nConnection: close\r\n\r\n".encode()
    seen: Counter[int] = Counter()
    slowest = 0.0
    while not stop.is_set():
        t0 = time.monotonic()
        try:
            status, conn = await asyncio.wait_for(_exchange(None, port, raw), 10)
            if conn is not None:
                conn[1].close()
        except (OSError, asyncio.IncompleteReadError, ValueError, TimeoutError):
            status = 0
        seen[status] += 1
        slowest = max(slowest, time.monotonic() - t0)
        await asyncio.sleep(0.1)
    return seen, slowest


async def storm(port: int, connections: int, limit: float) -> dict[str, Any]:
    statuses: Counter[int] = Counter()
    start = asyncio.Event()
    prefix = uuid.uuid4().hex[:8]
    deadline = time.monotonic() + limit
    tasks = [
        asyncio.create_task(_client(port, f"Storm{prefix}n{i}", statuses, start, deadline))
        for i in range(connections)
    ]
    await asyncio.sleep(0.2)
    t0 = time.monotonic()
    start.set()
    stop = asyncio.Event()
    probe = asyncio.create_task(_probe(port, stop))
    results = await asyncio.gather(*tasks)
    stop.set()
    health, health_slowest = await probe
    done = sorted(t for t, _ in results if t is not None)
    return {
        "connections": connections,
        "acknowledged": len(done),
        "seconds_to_last": round(done[-1], 2) if done else None,
        "p50_seconds": round(statistics.median(done), 2) if done else None,
        "wall_seconds": round(time.monotonic() - t0, 2),
        "max_attempts": max(a for _, a in results),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "other_5xx": sum(v for k, v in statuses.items() if k >= 500 and k != 503),
        "no_answer": statuses.get(0, 0),
        "healthz_during": {str(k): v for k, v in sorted(health.items())},
        "healthz_slowest_seconds": round(health_slowest, 3),
        "prefix": prefix,
    }


def run(connections: int, limit: float, port: int | None) -> dict[str, Any]:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if port is not None:
        return asyncio.run(storm(port, connections, limit))
    with ServerProcess(None, "--quiet") as server:
        result = asyncio.run(storm(server.port, connections, limit))
        stats = httpx.get(server.url + "/api/stats", timeout=30).json()
        result["incidents_stored"] = stats.get("incidents", stats.get("incidents_total"))
        result["server_log_500s"] = server.stderr_text().count("status=500")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=60.0, help="give up after this long")
    parser.add_argument("--port", type=int, help="a server already running on 127.0.0.1")
    parser.add_argument("--out", type=Path, help="also write the result here (JSON)")
    args = parser.parse_args(argv)
    result = run(args.connections, args.seconds, args.port)
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    sys.stdout.write(text + "\n")
    return 0 if result["acknowledged"] == args.connections and not result["other_5xx"] else 1


if __name__ == "__main__":
    sys.exit(main())
