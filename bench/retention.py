"""Alert latency while the pruner works through a backlog (python -m bench, section 4).

A store of N context records spread over the last 24 h is copied, and both copies are
served at once: one with the default 24 h retention (nothing to prune: the baseline),
one with `--retention 1h`, which starts the pruner on ~23/24 of its records. Alerts go
to the two servers alternately, one at a time, until the prune is over (seen on
/metrics: the oldest record's age drops under the retention), so both see the same
machine, noise included.
Target: alert p99 during the prune <= 2 x the baseline p99.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench import datagen
from bench.http import Client
from engine.testing import ServerProcess

RETENTION_S = 3600.0
_OLDEST = re.compile(rb"^incident_pilot_context_oldest_age_seconds (\S+)$", re.M)


def oldest_age(client: Client) -> float | None:
    status, body = client.request("GET", "/metrics")
    m = _OLDEST.search(body) if status == 200 else None
    return float(m.group(1)) if m else None


def prune_section(
    size: int,
    work: Path,
    t0: float,
    *,
    alerting: int,
    summarize: Callable[[Sequence[float]], dict[str, Any]],
    log: Callable[[str], None],
    limit_s: float = 600.0,
) -> dict[str, Any]:
    plan = datagen.Plan(total=size, alerting=alerting, t0=t0)
    db = work / "prune.db"
    log(f"prune: building a store with {size:,} context records (and a copy)")
    info = datagen.build_db(db, plan)
    twin = work / "prune-twin.db"
    shutil.copyfile(db, twin)
    base = ServerProcess(work / "prune-base", "--quiet", db=str(twin), startup_timeout=120)
    run = ServerProcess(
        work / "prune-run", "--quiet", "--retention", "1h", db=str(db), startup_timeout=120
    )
    baseline: list[float] = []
    during: list[float] = []
    pruned_in = None
    with base, run:
        clients = {"base": Client(base.port), "run": Client(run.port)}
        times = {"base": baseline, "run": during}
        alerts = iter(datagen.alerts(plan, 200_000, tag="pp"))
        started = time.monotonic()
        while time.monotonic() - started < limit_s:
            age = oldest_age(clients["run"])
            if age is not None and age < RETENTION_S + 60:
                pruned_in = time.monotonic() - started
                break
            for i in range(20):  # alternate, and swap who goes first: same noise for both
                order = ("base", "run") if i % 2 else ("run", "base")
                for name in order:
                    times[name] += _post(clients[name], [next(alerts)])
        for client in clients.values():
            client.close()
    for path in (db, twin):
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
    without = summarize(baseline) if baseline else None
    while_pruning = summarize(during) if during else None
    ratio = (
        round(while_pruning["p99_ms"] / without["p99_ms"], 2)
        if while_pruning and without and without["p99_ms"]
        else None
    )
    log(
        f"prune: p99 {while_pruning and while_pruning['p99_ms']} ms during the prune vs "
        f"{without and without['p99_ms']} ms without ({ratio}x); took {pruned_in} s"
    )
    return {
        "records": info["records"],
        "pruned_share": "records older than 1 h: ~23/24 of them",
        "prune_seconds": round(pruned_in, 1) if pruned_in is not None else None,
        "baseline": without,
        "during_prune": while_pruning,
        "p99_ratio": ratio,
        "client": "two servers on copies of one store, one pruning (--retention 1h) and one "
        "not; one keep-alive connection each, alerts alternating between them, one per POST",
    }


def _post(client: Client, alerts: list[dict[str, Any]]) -> list[float]:
    times = []
    for a in alerts:
        req = client.encode("POST", "/alerts", datagen.webhook(a), client.port)
        t = time.perf_counter()
        status, body = client.send(req)
        times.append(time.perf_counter() - t)
        if status != 200:
            raise RuntimeError(f"POST /alerts answered {status}: {body[:300]!r}")
    return times
