"""New-alert latency with many open incidents (python -m bench, section 5).

Two servers on stores of the same small context, one holding FEW open incidents and one
MANY (each opened by an alert of its own service and alertname, posted in envelopes of
500 before the measurement). New alerts, each opening an incident on both, then go to
the two alternately, one at a time, so both see the same machine. The duplicate check
is a query pushed into the store (indexed), so the target is a flat cost:
p99 with MANY open <= 1.2 x p99 with FEW open.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench import datagen
from bench.http import Client
from engine.testing import ServerProcess

FEW = 10
ENVELOPE = 500


def open_incidents_section(
    many: int,
    n_alerts: int,
    work: Path,
    t0: float,
    *,
    summarize: Callable[[Sequence[float]], dict[str, Any]],
    post: Callable[[Client, list[dict[str, Any]]], list[float]],
    log: Callable[[str], None],
) -> dict[str, Any]:
    plan = datagen.Plan(total=1_000, alerting=40, t0=t0)
    # Every alert of this list has its own (service, alertname): none is a duplicate.
    every = datagen.alerts(plan, many + n_alerts, tag="oi")
    opening, measured = every[:many], every[many:]
    servers = {}
    for name, count in (("few", FEW), ("many", many)):
        db = work / f"open-{name}.db"
        datagen.build_db(db, plan)
        servers[name] = (ServerProcess(work / f"open-{name}", "--quiet", db=str(db)), count)
    times: dict[str, list[float]] = {"few": [], "many": []}
    open_before: dict[str, int] = {}
    with servers["few"][0] as few_srv, servers["many"][0] as many_srv:
        clients = {"few": Client(few_srv.port), "many": Client(many_srv.port)}
        for name, (_, count) in servers.items():
            log(f"open incidents: opening {count:,} on the '{name}' server")
            for i in range(0, count, ENVELOPE):
                _envelope(clients[name], opening[i : min(i + ENVELOPE, count)])
            open_before[name] = _open_count(clients[name])
        for i, alert in enumerate(measured):
            order = ("few", "many") if i % 2 else ("many", "few")
            for name in order:
                times[name] += post(clients[name], [alert])
        for client in clients.values():
            client.close()
    few, lots = summarize(times["few"]), summarize(times["many"])
    ratio = round(lots["p99_ms"] / few["p99_ms"], 2) if few["p99_ms"] else None
    log(
        f"open incidents: p99 {lots['p99_ms']} ms with {many:,} open vs {few['p99_ms']} ms ({ratio}x)"
    )
    return {
        "few_open": {"open_incidents_before": open_before["few"], **few},
        "many_open": {"open_incidents_before": open_before["many"], **lots},
        "p99_ratio": ratio,
        "client": "two servers, one keep-alive connection each, new alerts alternating "
        "between them, one per POST; each opens an incident",
    }


def _envelope(client: Client, alerts: list[dict[str, Any]]) -> None:
    body = json.loads(datagen.webhook(alerts[0]))
    body["alerts"] = alerts
    status, answer = client.request("POST", "/alerts", json.dumps(body).encode())
    if status != 200:
        raise RuntimeError(f"POST /alerts answered {status}: {answer[:300]!r}")


def _open_count(client: Client) -> int:
    status, body = client.request("GET", "/api/stats")
    return int(json.loads(body)["incidents"]["open"]) if status == 200 else -1
