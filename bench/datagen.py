"""Synthetic context data and alerts for the benchmark (deterministic for a given seed).

The context store is filled straight through SQLite with `executemany` in big batches into
the schema the store's own migrations create, so a million records take seconds, not the
minutes single HTTP posts would. Records are spread over 1,000 services and the last 24 h
(~70% logs, 25% traces, 5% deploys). The services that alert get realistic matches planted
on top: a deploy in the 30 minutes before the alert, ERROR log lines in the 10 minutes
before it and traces (mostly slow ones) in the 15 minutes before it. The planted set is
the same whatever the store size, so the store size is the only thing that changes between
the 1k, 100k and 1M runs.
"""

from __future__ import annotations

import json
import random
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.store.sqlite import SQLiteStore
from engine.timeutil import format_ts, from_epoch

SERVICES = 1000
DAY = 24 * 3600.0
SPREAD = DAY - 600.0  # keep clear of the server's 24 h retention cut-off during a run
SHARES = {"logs": 0.70, "traces": 0.25, "deploys": 0.05}
ALERTNAMES = (
    "HighErrorRate",
    "HighLatency",
    "PodCrashLooping",
    "SLOBurnRateFast",
    "SLOBurnRateSlow",
    "Saturation",
    "QueueBacklog",
    "DiskFillingUp",
    "CertExpiring",
    "5xxSpike",
    "KafkaLag",
    "TargetDown",
    "MemoryPressure",
)
TEAMS = ("edge", "payments", "discovery", "sre-core", "data")
AUTHORS = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi")
_LOG_TEXTS = (
    ("INFO", "GET /api/v1/items/{n} 200 in {ms}ms"),
    ("INFO", "request {n} completed for user {u}"),
    ("INFO", "cache hit for key {n}"),
    ("WARN", "retrying call to inventory-svc attempt {a}"),
    ("WARN", "slow query took {ms}ms"),
    ("ERROR", "upstream timeout request {n}"),
    ("ERROR", "db connection reset by peer {n}"),
)
_LOG_WEIGHTS = (40, 25, 15, 8, 5, 4, 3)

SQL = {
    "deploys": 'INSERT INTO deploys (service, ts, "commit", author, attributes) VALUES (?,?,?,?,NULL)',
    "logs": "INSERT INTO logs (service, ts, level, message, attributes) VALUES (?,?,?,?,NULL)",
    "traces": "INSERT INTO traces (service, ts, trace_id, duration_ms, attributes) VALUES (?,?,?,?,NULL)",
}


def service_name(i: int) -> str:
    return f"svc-{i:04d}"


@dataclass(frozen=True)
class Plan:
    """What to generate: `total` context records, `alerting` services with planted matches."""

    total: int
    alerting: int
    t0: float  # the reference "now" (epoch seconds): alerts start at t0
    seed: int = 7


def alerting_services(n: int) -> list[str]:
    # Spread over the id space (every 1000/n-th service), deterministic.
    step = max(1, SERVICES // max(n, 1))
    return [service_name(i * step) for i in range(n)]


def _hex(rng: random.Random, n: int) -> str:
    return f"{rng.getrandbits(4 * n):0{n}x}"


def planted(plan: Plan) -> dict[str, list[tuple[Any, ...]]]:
    """The alerting services' matches: per service 1 deploy (30 min), 8 ERROR logs (10 min),
    6 traces (15 min). 15 records each."""
    rng = random.Random(plan.seed + 1)
    out: dict[str, list[tuple[Any, ...]]] = {"deploys": [], "logs": [], "traces": []}
    for k, svc in enumerate(alerting_services(plan.alerting)):
        t0 = plan.t0
        # Half deployed within 10 min (HIGH), half 10-28 min before.
        age = rng.uniform(60, 590) if k % 2 == 0 else rng.uniform(610, 1680)
        out["deploys"].append((svc, t0 - age, _hex(rng, 7), rng.choice(AUTHORS)))
        for j in range(8):
            text = (
                f"upstream timeout request {rng.randint(1000, 99999)}"
                if j < 6 - k % 3
                else f"db connection reset by peer {rng.randint(1000, 99999)}"
            )
            out["logs"].append((svc, t0 - rng.uniform(5, 590), "ERROR", text))
        for j in range(6):
            slow = k % 4 != 3 and j < 2  # three services in four have a latency problem
            ms = rng.uniform(1200, 7000) if slow else rng.uniform(20, 400)
            out["traces"].append((svc, t0 - rng.uniform(5, 890), _hex(rng, 16), round(ms, 1)))
    return out


def background(plan: Plan, kind: str, count: int) -> Iterator[tuple[Any, ...]]:
    """`count` records of `kind`, random services, spread over the last 24 h (time order)."""
    rng = random.Random(f"{plan.seed}-{kind}")
    start = plan.t0 - SPREAD
    step = SPREAD / max(count, 1)
    names = [service_name(i) for i in range(SERVICES)]
    pick = rng.randrange
    rand = rng.random
    if kind == "logs":
        choices = rng.choices(range(len(_LOG_TEXTS)), weights=_LOG_WEIGHTS, k=count)
        for i in range(count):
            level, text = _LOG_TEXTS[choices[i]]
            n = pick(100000)
            msg = text.format(n=n, ms=n % 900 + 5, u=n % 5000, a=n % 5 + 1)
            yield (names[pick(SERVICES)], start + (i + rand()) * step, level, msg)
    elif kind == "traces":
        for i in range(count):
            ms = round(rng.lognormvariate(4.6, 0.8), 1)  # median ~100 ms, a long tail
            yield (names[pick(SERVICES)], start + (i + rand()) * step, _hex(rng, 16), ms)
    else:
        for i in range(count):
            svc = names[pick(SERVICES)]
            yield (svc, start + (i + rand()) * step, _hex(rng, 7), AUTHORS[pick(len(AUTHORS))])


def counts(plan: Plan) -> dict[str, dict[str, int]]:
    """How many background records of each kind make the totals come out ~70/25/5."""
    plant = planted(plan)
    out = {}
    for kind, share in SHARES.items():
        want = round(plan.total * share)
        out[kind] = {"planted": len(plant[kind]), "background": max(0, want - len(plant[kind]))}
    return out


def build_db(path: Path, plan: Plan, batch: int = 50_000) -> dict[str, Any]:
    """Create a store file at `path` (schema from the store's migrations) filled per `plan`."""
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    SQLiteStore(str(path)).close()  # creates the file, WAL mode and the schema
    conn = sqlite3.connect(str(path), isolation_level=None)
    conn.execute("PRAGMA synchronous = NORMAL")
    plant = planted(plan)
    how_many = counts(plan)
    written = {}
    for kind in ("deploys", "logs", "traces"):
        rows = background(plan, kind, how_many[kind]["background"])
        n = 0
        conn.execute("BEGIN")
        chunk: list[tuple[Any, ...]] = []
        for row in rows:
            chunk.append(row)
            if len(chunk) >= batch:
                conn.executemany(SQL[kind], chunk)
                n += len(chunk)
                chunk = []
        chunk.extend(plant[kind])
        conn.executemany(SQL[kind], chunk)
        n += len(chunk)
        # The store keeps its counts (engine.store.tallies); rows inserted behind its back
        # are added to them here.
        conn.execute("UPDATE tallies SET n = n + ? WHERE name = ?", (n, f"context.{kind}"))
        conn.execute("COMMIT")
        written[kind] = n
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("ANALYZE")
    conn.close()
    total = sum(written.values())
    size = sum(
        Path(str(path) + s).stat().st_size for s in ("", "-wal") if Path(str(path) + s).exists()
    )
    return {
        "records": total,
        "by_kind": written,
        "planted": {k: len(v) for k, v in plant.items()},
        "bytes": size,
        "bytes_per_million_records": round(size / total * 1e6) if total else None,
    }


# --- alerts ------------------------------------------------------------------------


def alerts(plan: Plan, n: int, tag: str) -> list[dict[str, Any]]:
    """`n` firing alerts (Alertmanager alert objects) on the alerting services, each with its
    own fingerprint and its own (service, alertname), so every one runs the rules and opens
    an incident. About a third carry a `team` label."""
    rng = random.Random(f"{plan.seed}-alerts-{tag}")
    services = alerting_services(plan.alerting)
    starts = format_ts(from_epoch(plan.t0))
    out = []
    for i in range(n):
        svc = services[i % len(services)]
        name = ALERTNAMES[(i // len(services)) % len(ALERTNAMES)]
        if i >= len(services) * len(ALERTNAMES):
            name = f"{name}{i // (len(services) * len(ALERTNAMES))}"
        labels = {
            "alertname": name,
            "service": svc,
            "severity": rng.choice(("warning", "critical")),
        }
        if i % 3 == 0:
            labels["team"] = TEAMS[i % len(TEAMS)]
        out.append(
            {
                "status": "firing",
                "labels": labels,
                "annotations": {"summary": f"{name} on {svc}"},
                "startsAt": starts,
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": f"http://prometheus.local/graph?g0.expr={name}",
                "fingerprint": f"{tag}{i:08x}",
            }
        )
    return out


def webhook(alert: dict[str, Any]) -> bytes:
    """An Alertmanager webhook (v4) body carrying one alert."""
    body = {
        "version": "4",
        "groupKey": '{}:{alertname="' + alert["labels"]["alertname"] + '"}',
        "status": "firing",
        "receiver": "incident-pilot",
        "groupLabels": {"alertname": alert["labels"]["alertname"]},
        "commonLabels": alert["labels"],
        "commonAnnotations": alert["annotations"],
        "externalURL": "http://alertmanager.local",
        "alerts": [alert],
    }
    return json.dumps(body).encode()


# --- ingest payloads ---------------------------------------------------------------


def ingest_records(seed: int, n: int, t0: float) -> list[tuple[str, dict[str, Any]]]:
    """`n` (kind, JSON record) pairs as a client would POST them, ~70/25/5, last 5 min."""
    rng = random.Random(f"{seed}-ingest")
    out = []
    for i in range(n):
        r = rng.random()
        svc = service_name(rng.randrange(SERVICES))
        ts = format_ts(from_epoch(round(t0 - rng.uniform(0, 300), 3)))
        if r < SHARES["logs"]:
            level, text = _LOG_TEXTS[i % len(_LOG_TEXTS)]
            msg = text.format(n=i, ms=i % 900, u=i % 5000, a=i % 5 + 1)
            out.append(("logs", {"service": svc, "level": level, "message": msg, "ts": ts}))
        elif r < SHARES["logs"] + SHARES["traces"]:
            ms = round(rng.lognormvariate(4.6, 0.8), 1)
            rec = {"service": svc, "trace_id": _hex(rng, 16), "duration_ms": ms, "ts": ts}
            out.append(("traces", rec))
        else:
            rec = {"service": svc, "commit": _hex(rng, 7), "author": rng.choice(AUTHORS)}
            out.append(("deploys", {**rec, "when": ts}))
    return out


def by_kind(records: list[tuple[str, dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {"deploys": [], "logs": [], "traces": []}
    for kind, rec in records:
        out[kind].append(rec)
    return out


def resolved(alert: dict[str, Any]) -> dict[str, Any]:
    """The Alertmanager resolution of a firing alert (same fingerprint and startsAt)."""
    return {**alert, "status": "resolved", "endsAt": format_ts(from_epoch(time.time()))}
