"""The incident-pilot benchmark: `python -m bench [--quick | --smoke]`.

Everything in one run, so ratios compare numbers taken on the same machine minutes apart:
  1. alert-to-incident latency over real HTTP (a `python -m engine serve` process, this
     process as the client) with the store pre-filled to 1k / 100k / 1M context records,
     plus the repeat-alert path and a concurrent burst;
  2. the YAML interpreter against the same five rules hand-written in Python
     (bench/handwritten.py), in-process, interleaved;
  3. context ingest (single-record and 1,000-record POSTs) against two ceilings: a no-op
     Starlette endpoint and a raw `executemany` into the same schema;
  4. server memory (VmHWM) with 1M records and the store's size on disk;
  5. the pages' server-side render time (bench/pages.py): one incident with 60 findings,
     the incidents list at 10,000 incidents.
Writes bench/results/latest.json and the table in docs/PERFORMANCE.md (between markers);
`--smoke` writes only to `--out` (a temporary directory by default).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import json
import multiprocessing
import os
import platform
import shlex
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import collectors, datagen, handwritten, many_open, pages, retention, stats_scale
from bench.http import Client, load_worker
from engine.rules.aggregate import nearest_rank
from engine.testing import ServerProcess

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "latest.json"
DOCS = ROOT / "docs" / "PERFORMANCE.md"
BEGIN, END = "<!-- bench:results:begin -->", "<!-- bench:results:end -->"


@dataclass(frozen=True)
class Mode:
    name: str
    sizes: tuple[int, ...]
    alerts: int  # per store size, each opens an incident
    alerting_services: int
    warmup_alerts: int
    repeat_alerts: int
    burst_alerts: int  # per burst client
    many_open_alerts: int  # measured after the burst left its incidents open
    interp_rounds: int
    ingest_rounds: int
    single_seconds: float
    batch_seconds: float
    single_clients: int
    batch_clients: int


# Open incidents on the "many" server of the open-incidents section (bench/open_incidents.py).
MANY_OPEN = {"full": 10_000, "quick": 2_000, "smoke": 200}

# Incidents in the store of the /api/stats and /metrics section (bench/stats_scale.py).
STATS_INCIDENTS = {"full": 1_000_000, "quick": 100_000, "smoke": 2_000}

# Incidents kept open during the latency run: each alert's resolution follows 50 alerts
# later (a busy on-call). The incident rule reads every open incident (up to 500), so this
# number matters; the "many open incidents" row measures the case after a burst.
OPEN_INCIDENTS = 50

MODES = {
    "full": Mode(
        "full", (1_000, 100_000, 1_000_000), 500, 40, 20, 500, 100, 50, 5, 2, 5.0, 6.0, 4, 2
    ),
    "quick": Mode("quick", (1_000, 100_000), 200, 40, 10, 200, 50, 30, 3, 1, 3.0, 4.0, 4, 2),
    "smoke": Mode("smoke", (300,), 20, 10, 2, 20, 5, 5, 1, 1, 0.5, 0.7, 2, 1),
}


def log(msg: str) -> None:
    sys.stderr.write(f"[bench {time.strftime('%H:%M:%S')}] {msg}\n")
    sys.stderr.flush()


# --- small statistics ------------------------------------------------------------------


def pct(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (the rank computed exactly, as the engine does)."""
    ordered = sorted(values)
    return ordered[nearest_rank(p, len(ordered)) - 1]


def summary_ms(seconds: Sequence[float]) -> dict[str, Any]:
    ms = [s * 1000 for s in seconds]
    return {
        "n": len(ms),
        "p50_ms": round(pct(ms, 50), 3),
        "p90_ms": round(pct(ms, 90), 3),
        "p99_ms": round(pct(ms, 99), 3),
        "max_ms": round(max(ms), 3),
        "mean_ms": round(statistics.fmean(ms), 3),
    }


# --- the machine -----------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ram = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = round(int(line.split()[1]) / 1024**2, 1)
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gib": ram,
        "os": f"{platform.system()} {platform.release()}",
        "loadavg_start": list(os.getloadavg()),
    }


def versions() -> dict[str, str]:
    out = {
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
    }
    for pkg in ("incident-pilot", "starlette", "uvicorn", "anyio", "h11", "jinja2", "pyyaml"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    if out["incident-pilot"] == "not installed":
        from engine import __version__

        out["incident-pilot"] = f"{__version__} (checkout)"
    for extra in ("uvloop", "httptools"):
        try:
            out[extra] = metadata.version(extra)
        except metadata.PackageNotFoundError:
            out[extra] = "not installed (uvicorn uses asyncio + h11)"
    return out


def proc_status(pid: int) -> dict[str, float]:
    """VmHWM / VmRSS of `pid` in MiB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmHWM", "VmRSS"):
            out[name] = round(int(value.split()[0]) / 1024, 1)
    return out


# --- server processes ------------------------------------------------------------------


class NoopServer(ServerProcess):
    """bench.noop_server (the floor: Starlette answering 200) with the same start, readiness
    poll and stop as the engine's server."""

    def command(self) -> list[str]:
        return [sys.executable, "-m", "bench.noop_server", "--port", str(self.port)]


def engine_server(db: Path, workdir: Path) -> ServerProcess:
    """`python -m engine serve --quiet` on `db` and a free loopback port; its output goes to
    files in `workdir`."""
    return ServerProcess(workdir, "--quiet", db=str(db), startup_timeout=120)


@contextlib.contextmanager
def running(srv: ServerProcess) -> Iterator[tuple[ServerProcess, float]]:
    """Start `srv`, yield it with the seconds it took to answer /healthz, stop it."""
    started = time.monotonic()
    with srv:
        yield srv, time.monotonic() - started


def pid(srv: ServerProcess) -> int:
    assert srv.proc is not None, "the server is not running"
    return srv.proc.pid


def run_workers(
    port: int,
    per_worker: list[list[tuple[str, bytes]]],
    max_requests: int,
    seconds: float,
    method: str = "POST",
) -> dict[str, Any]:
    """Load-generator processes, one keep-alive connection each, all starting together."""
    ctx = multiprocessing.get_context("spawn")
    start_at = time.time() + 1.5  # time for the spawned interpreters to import and connect
    with ctx.Pool(len(per_worker)) as pool:
        results = pool.starmap(
            load_worker,
            [(port, reqs, max_requests, start_at, seconds, method) for reqs in per_worker],
        )
    began = min(r["began"] for r in results)
    ended = max(r["ended"] for r in results)
    total = sum(r["requests"] for r in results)
    errors = sum(r["errors"] for r in results)
    return {
        "clients": len(per_worker),
        "requests": total,
        "errors": errors,
        "first_error": next((r["first_error"] for r in results if r["first_error"]), ""),
        "seconds": round(ended - began, 3),
        "requests_per_s": round(total / (ended - began), 1),
    }


# --- 1. latency ------------------------------------------------------------------------


def post_alerts(
    client: Client, alerts: list[dict[str, Any]], resolve_lag: int | None = None
) -> tuple[list[float], Counter[str], list[float]]:
    """POST each alert on its own (timed). With `resolve_lag` K, after alert i the
    resolution of alert i-K is posted too (timed apart), so about K incidents stay open,
    as with a busy on-call where alerts also clear."""
    times: list[float] = []
    resolve_times: list[float] = []
    outcomes: Counter[str] = Counter()
    raw = [client.encode("POST", "/alerts", datagen.webhook(a), client.port) for a in alerts]

    def send(req: bytes, into: list[float]) -> None:
        t = time.perf_counter()
        status, body = client.send(req)
        into.append(time.perf_counter() - t)
        if status != 200:
            raise RuntimeError(f"POST /alerts answered {status}: {body[:300]!r}")
        for result in json.loads(body)["results"]:
            outcomes[result["outcome"]] += 1

    for i, req in enumerate(raw):
        send(req, times)
        if resolve_lag is not None and i >= resolve_lag:
            done = datagen.resolved(alerts[i - resolve_lag])
            send(
                client.encode("POST", "/alerts", datagen.webhook(done), client.port), resolve_times
            )
    return times, outcomes, resolve_times


def open_incidents(client: Client) -> int | None:
    status, body = client.request("GET", "/api/stats")
    return json.loads(body)["incidents"]["open"] if status == 200 else None


def latency_section(mode: Mode, work: Path, t0: float) -> dict[str, Any]:
    """One server per store size, all running; alert i goes to every server in turn (the
    order rotating), so noise from a shared machine hits every size alike and the p99
    ratio between sizes compares like with like."""
    plans, dbs, infos = {}, {}, {}
    for size in mode.sizes:
        plans[size] = datagen.Plan(total=size, alerting=mode.alerting_services, t0=t0)
        dbs[size] = work / f"store-{size}.db"
        log(f"latency: building a store with {size:,} context records")
        started = time.perf_counter()
        infos[size] = datagen.build_db(dbs[size], plans[size])
        infos[size]["build_seconds"] = round(time.perf_counter() - started, 2)
    measured = {s: datagen.alerts(plans[s], mode.alerts, tag=f"s{s}x") for s in mode.sizes}
    rows: dict[int, dict[str, Any]] = {}
    with contextlib.ExitStack() as stack:
        procs, clients, ready = {}, {}, {}
        for size in mode.sizes:
            procs[size], ready[size] = stack.enter_context(
                running(engine_server(dbs[size], work / f"server-{size}"))
            )
            clients[size] = Client(procs[size].port)
            post_alerts(clients[size], datagen.alerts(plans[size], mode.warmup_alerts, "w"), 0)
        log(f"latency: {len(mode.sizes)} servers up; {mode.alerts} alerts to each, interleaved")
        times: dict[int, list[float]] = {s: [] for s in mode.sizes}
        resolve_times: dict[int, list[float]] = {s: [] for s in mode.sizes}
        outcomes: dict[int, Counter[str]] = {s: Counter() for s in mode.sizes}
        gc.collect()
        for i in range(mode.alerts):
            k = i % len(mode.sizes)
            for size in [*mode.sizes[k:], *mode.sizes[:k]]:
                one = measured[size][i : i + 1]
                lag = measured[size][i - OPEN_INCIDENTS] if i >= OPEN_INCIDENTS else None
                t, o, _ = post_alerts(clients[size], one)
                times[size] += t
                outcomes[size].update(o)
                if lag is not None:
                    rt, _, _ = post_alerts(clients[size], [datagen.resolved(lag)])
                    resolve_times[size] += rt
        for size in mode.sizes:
            client, proc, plan, tag = clients[size], procs[size], plans[size], f"s{size}x"
            log(f"latency: {size:,} records: repeat alerts, burst, many open incidents")
            repeat_times, repeat_outcomes, _ = post_alerts(
                client, measured[size][: mode.repeat_alerts]
            )
            mem = proc_status(pid(proc))
            # A burst: several clients at once, each alert new (throughput, queueing); its
            # incidents stay open, so afterwards the many-open-incidents case is measured.
            burst_plan = datagen.alerts(plan, mode.burst_alerts * 4, tag="b" + tag)
            per_worker = [
                [("/alerts", datagen.webhook(a)) for a in burst_plan[i::4]] for i in range(4)
            ]
            burst = run_workers(client.port, per_worker, mode.burst_alerts, 60.0)
            many = datagen.alerts(plan, mode.many_open_alerts, tag="m" + tag)
            open_now = open_incidents(client)
            many_times, _, _ = post_alerts(client, many)
            client.close()
            rows[size] = {
                "records": infos[size]["records"],
                "store": infos[size],
                "server_start_seconds": round(ready[size], 2),
                "alerts": summary_ms(times[size]),
                "outcomes": dict(outcomes[size]),
                "open_incidents_during_run": f"0 rising to {OPEN_INCIDENTS}, then steady",
                "resolve": summary_ms(resolve_times[size]) if resolve_times[size] else None,
                "repeat": {**summary_ms(repeat_times), "outcomes": dict(repeat_outcomes)},
                "many_open_incidents": {
                    "open_incidents_before": open_now,
                    **summary_ms(many_times),
                },
                "burst_4_clients": {
                    "alerts": burst["requests"],
                    "errors": burst["errors"],
                    "alerts_per_s": burst["requests_per_s"],
                },
                "server_memory_mib": mem,
            }
            a = rows[size]["alerts"]
            log(
                f"latency: {size:,} records: p50 {a['p50_ms']} ms, p99 {a['p99_ms']} ms, "
                f"VmHWM {mem.get('VmHWM')} MiB"
            )
    largest = mode.sizes[-1]
    for size in mode.sizes[:-1]:
        for suffix in ("", "-wal", "-shm"):
            Path(str(dbs[size]) + suffix).unlink(missing_ok=True)
    by_size = [rows[s] for s in mode.sizes]
    big = rows[largest]
    memory = {
        "records": big["records"],
        **big["server_memory_mib"],
        "after": "the interleaved latency run and the repeat run",
        "store_bytes": big["store"]["bytes"],
        "store_mib_per_million_records": round(
            big["store"]["bytes_per_million_records"] / 1024**2, 1
        ),
    }
    return {
        "alerts_per_size": mode.alerts,
        "alerting_services": mode.alerting_services,
        "warmup_alerts": mode.warmup_alerts,
        "client": "one keep-alive connection per server, one alert per POST, sequential "
        "(no queueing); the store sizes interleaved alert by alert",
        "by_size": by_size,
        "_db": str(dbs[largest]),
        "_alerts": measured[largest],
        "_memory": memory,
    }


# --- 2. interpreter vs hand-written ------------------------------------------------------


class MemoStore:
    """The store's answers cached: isolates the evaluation CPU from SQLite."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.cache: dict[Any, Any] = {}

    def query_context(self, kind: str, **kw: Any) -> Any:
        key = ("q", kind, tuple(sorted(kw.items())))
        if key not in self.cache:
            self.cache[key] = self.store.query_context(kind, **kw)
        return self.cache[key]

    def list_incidents(self, **kw: Any) -> Any:
        key = ("i", repr(sorted(kw.items())))  # any_of holds dicts (unhashable)
        if key not in self.cache:
            self.cache[key] = self.store.list_incidents(**kw)
        return self.cache[key]


def _interleaved(
    alerts: list[Any],
    impls: dict[str, Callable[[Any], Any]],
    rounds: int,
) -> dict[str, list[float]]:
    """Per round, each alert through every implementation back to back (the order flips
    every round); returns per implementation the per-round seconds per alert."""
    names = list(impls)
    per_round: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        order = names if r % 2 == 0 else names[::-1]
        totals = dict.fromkeys(names, 0.0)
        gc.collect()
        for alert in alerts:
            for n in order:
                t = time.perf_counter()
                impls[n](alert)
                totals[n] += time.perf_counter() - t
        for n in names:
            per_round[n].append(totals[n] / len(alerts))
    return per_round


def _finding_key(f: Any) -> dict[str, Any]:
    return f.to_dict()


def interpreter_section(mode: Mode, db: Path, alert_dicts: list[dict[str, Any]]) -> dict[str, Any]:
    from engine.alerts import parse_alert
    from engine.paths import rules_dir
    from engine.rules.evaluate import evaluate_rules
    from engine.rules.loader import load_ruleset
    from engine.store.sqlite import SQLiteStore
    from engine.timeutil import utcnow

    ruleset, problems = load_ruleset([rules_dir()])
    errors = [str(p) for p in problems if p.level == "error"]
    if errors:
        raise RuntimeError(f"the shipped rules do not load: {errors}")
    now = utcnow()
    alerts = [parse_alert(a, "alert", now) for a in alert_dicts]
    store = SQLiteStore(str(db))
    try:
        # The steady state of the latency run: the burst left its incidents open; resolve
        # all but the newest OPEN_INCIDENTS, as Alertmanager's resolutions would have.
        for incident in store.list_incidents(status="open", limit=None)[OPEN_INCIDENTS:]:
            store.resolve_incident(incident.id, at=now)
        ownership = ruleset.ownership
        # Equivalence first: the two must agree, or the comparison means nothing.
        mismatches = []
        fired: Counter[str] = Counter()
        for alert in alerts:
            yaml_f = [_finding_key(f) for f in evaluate_rules(ruleset, alert, store).findings]
            hand_f = [_finding_key(f) for f in handwritten.evaluate(alert, store, ownership)]
            fired.update(f["rule"] for f in yaml_f)
            if yaml_f != hand_f:
                mismatches.append({"alert": alert.fingerprint, "yaml": yaml_f, "hand": hand_f})

        def run_yaml(s: Any) -> Callable[[Any], Any]:
            return lambda a: evaluate_rules(ruleset, a, s)

        def run_hand(s: Any) -> Callable[[Any], Any]:
            return lambda a: handwritten.evaluate(a, s, ownership)

        log(f"interpreter: {len(alerts)} alerts x {mode.interp_rounds} rounds, with SQLite")
        _interleaved(alerts[:50], {"yaml": run_yaml(store), "hand": run_hand(store)}, 1)  # warm
        with_store = _interleaved(
            alerts, {"yaml": run_yaml(store), "hand": run_hand(store)}, mode.interp_rounds
        )
        memo = MemoStore(store)
        _interleaved(alerts, {"yaml": run_yaml(memo), "hand": run_hand(memo)}, 1)  # fill
        log("interpreter: the same with the store's answers cached (evaluation CPU only)")
        cpu_only = _interleaved(
            alerts, {"yaml": run_yaml(memo), "hand": run_hand(memo)}, mode.interp_rounds
        )

        # Per-rule cost: the interpreter's own trace timings and the hand-written ones.
        yaml_rule: dict[str, list[float]] = {}
        hand_rule: dict[str, list[float]] = {}
        for alert in alerts:
            for trace in evaluate_rules(ruleset, alert, store).traces:
                yaml_rule.setdefault(trace.rule_id, []).append(trace.seconds)
            handwritten.evaluate(alert, store, ownership, timings=hand_rule)
        per_rule = {
            rule: {
                "yaml_median_ms": round(statistics.median(yaml_rule[rule]) * 1000, 3),
                "yaml_p99_ms": round(pct(yaml_rule[rule], 99) * 1000, 3),
                "hand_median_ms": round(statistics.median(hand_rule.get(rule, [0.0])) * 1000, 3),
                "fired": fired.get(rule, 0),
            }
            for rule in yaml_rule
        }
    finally:
        store.close()

    def block(per_round: dict[str, list[float]]) -> dict[str, Any]:
        y, h = statistics.median(per_round["yaml"]), statistics.median(per_round["hand"])
        return {
            "yaml_ms_per_alert": round(y * 1000, 3),
            "hand_ms_per_alert": round(h * 1000, 3),
            "ratio": round(y / h, 3),
            "rounds_yaml_ms": [round(x * 1000, 3) for x in per_round["yaml"]],
            "rounds_hand_ms": [round(x * 1000, 3) for x in per_round["hand"]],
        }

    return {
        "alerts": len(alerts),
        "rounds": mode.interp_rounds,
        "store_records": None,  # filled by the caller
        "findings_identical": not mismatches,
        "mismatches": len(mismatches),
        "first_mismatch": mismatches[0] if mismatches else None,
        "with_store": block(with_store),
        "evaluation_cpu_only": block(cpu_only),
        "per_rule": per_rule,
    }


# --- 3. ingest ------------------------------------------------------------------------------


def _single_requests(records: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, bytes]]:
    return [(f"/context/{kind}", json.dumps(rec).encode()) for kind, rec in records]


def _batch_requests(
    records: list[tuple[str, dict[str, Any]]], size: int
) -> list[tuple[str, list[dict[str, Any]]]]:
    """Batches of `size` records of one kind each, kinds in proportion."""
    out = []
    for kind, recs in datagen.by_kind(records).items():
        for i in range(0, len(recs) - size + 1, size):
            out.append((kind, recs[i : i + size]))
    out.sort(key=lambda kb: kb[1][0]["service"])  # mix the kinds
    return out


def raw_executemany(
    db: Path, batches: list[tuple[str, list[dict[str, Any]]]], total: int
) -> dict[str, Any]:
    """The same records, straight into the same schema: one transaction per 1,000-record
    batch (as the server commits one per request), same pragmas as the store."""
    from engine.store import codec
    from engine.timeutil import parse_ts

    rows = []
    for kind, recs in batches:
        built = []
        for rec in recs:
            ts = parse_ts(rec.get("ts") or rec.get("when"))
            if kind == "logs":
                built.append((rec["service"], ts.timestamp(), rec["level"], rec["message"]))
            elif kind == "traces":
                built.append((rec["service"], ts.timestamp(), rec["trace_id"], rec["duration_ms"]))
            else:
                built.append((rec["service"], ts.timestamp(), rec["commit"], rec["author"]))
        rows.append((datagen.SQL[kind], built))
    assert codec.TYPED_FIELDS  # the columns written above are the store's typed columns
    conn = sqlite3.connect(str(db), isolation_level=None)
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA busy_timeout = 10000")
    done = 0
    started, cpu = time.perf_counter(), time.process_time()
    i = 0
    while done < total:
        sql, built = rows[i % len(rows)]
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(sql, built)
        conn.execute("COMMIT")
        done += len(built)
        i += 1
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    conn.close()
    return {
        "records": done,
        "seconds": round(seconds, 3),
        "records_per_s": round(done / seconds, 1),
        "cpu_us_per_record": round(cpu * 1e6 / done, 2),
    }


# The collector-facing paths, each against the raw-insert ceiling of its round.
COLLECTOR_PATHS = {
    "otlp": f"{collectors.OTLP_BATCH}-span POST /v1/traces (OTLP protobuf)",
    "loki": f"{collectors.LOKI_BATCH}-line POST /loki/api/v1/push (JSON)",
    "loki_proto": f"{collectors.LOKI_BATCH}-line POST /loki/api/v1/push (snappy protobuf)",
}
COLLECTOR_BATCH = {
    "otlp": collectors.OTLP_BATCH,
    "loki": collectors.LOKI_BATCH,
    "loki_proto": collectors.LOKI_BATCH,
}
PAIRED = ("batched", *COLLECTOR_PATHS)


def baseline_server(checkout: Path, db: Path, workdir: Path) -> ServerProcess:
    """`engine_server`, but running the code of another checkout (`--baseline`): its
    directory goes first on the server's PYTHONPATH."""
    return ServerProcess(
        workdir, "--quiet", db=str(db), startup_timeout=120, env={"PYTHONPATH": str(checkout)}
    )


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _batched_paths(
    srv: ServerProcess, seconds: float, loads: dict[str, list[list[tuple[str, bytes, str]]]]
) -> dict[str, dict[str, Any]]:
    """The 1,000-record /context/* batches and every collector path, in turn, on `srv`;
    with the server's CPU time per record (less sensitive to other work on the machine
    than throughput)."""
    out = {}
    for path, per_client in loads.items():
        cpu = cpu_seconds(pid(srv))
        res = run_workers(srv.port, per_client, 10**9, seconds)
        size = 1000 if path == "batched" else COLLECTOR_BATCH[path]
        res["records"] = res["requests"] * size
        res["records_per_s"] = round(res["requests_per_s"] * size, 1)
        res["server_cpu_us_per_record"] = round(
            (cpu_seconds(pid(srv)) - cpu) * 1e6 / max(res["records"], 1), 2
        )
        out[path] = res
    return out


def ingest_section(
    mode: Mode, work: Path, t0: float, *, baseline: Path | None = None, only: bool = False
) -> dict[str, Any]:
    """Context ingest. `only` (--ingest-only) skips the single-record and no-op parts;
    `baseline` also runs the batched and collector paths on a server of that checkout,
    in the same rounds, against the same ceiling ("before" figures)."""
    from engine.store.sqlite import SQLiteStore

    single_records = datagen.ingest_records(11, 2000 * mode.single_clients, t0)
    per_single = [
        _single_requests(single_records[i :: mode.single_clients])
        for i in range(mode.single_clients)
    ]
    batch_records = datagen.ingest_records(13, 12_000 * mode.batch_clients, t0)
    batches = _batch_requests(batch_records, 1000)
    clients = range(mode.batch_clients)
    loads: dict[str, list[list[tuple[str, bytes, str]]]] = {
        "batched": [
            [
                (f"/context/{kind}", json.dumps(recs).encode(), "application/json")
                for kind, recs in batches[i :: mode.batch_clients]
            ]
            for i in clients
        ],
        "otlp": [
            [
                ("/v1/traces", body, "application/x-protobuf")
                for body in collectors.otlp_trace_bodies(17 + i, 8, t0)
            ]
            for i in clients
        ],
        "loki": [
            [
                ("/loki/api/v1/push", body, "application/json")
                for body in collectors.loki_json_bodies(19 + i, 8, t0)
            ]
            for i in clients
        ],
        "loki_proto": [
            [
                ("/loki/api/v1/push", body, "application/x-protobuf")
                for body in collectors.loki_protobuf_bodies(23 + i, 8, t0)
            ]
            for i in clients
        ],
    }
    rounds: list[dict[str, Any]] = []
    db = work / "ingest.db"
    raw_db = work / "ingest-raw.db"
    with contextlib.ExitStack() as stack:
        noop_port = 0
        if not only:
            noop_port = stack.enter_context(running(NoopServer(work / "noop")))[0].port
        proc = stack.enter_context(running(engine_server(db, work / "server-ingest")))[0]
        before = None
        if baseline is not None:
            before = stack.enter_context(
                running(baseline_server(baseline, work / "before.db", work / "server-before"))
            )[0]
        port = proc.port
        for r in range(mode.ingest_rounds):
            rd: dict[str, Any] = {}
            if not only:
                log(f"ingest round {r + 1}/{mode.ingest_rounds}: no-op endpoint")
                rd["noop"] = run_workers(noop_port, per_single, 10**9, mode.single_seconds)
                log(f"ingest round {r + 1}: GET /healthz through the server's own stack")
                rd["healthz"] = run_workers(
                    port,
                    [[("/healthz", b"")]] * mode.single_clients,
                    10**9,
                    mode.single_seconds / 2,
                    method="GET",
                )
                log(f"ingest round {r + 1}: single-record POSTs")
                rd["single"] = run_workers(port, per_single, 10**9, mode.single_seconds)
            # The two servers take turns, in an order flipped every round.
            servers = [("", proc)] + ([("before_", before)] if before else [])
            for prefix, server in servers if r % 2 == 0 else servers[::-1]:
                log(
                    f"ingest round {r + 1}/{mode.ingest_rounds}: 1,000-record POSTs and the "
                    f"collector paths{' (baseline server)' if prefix else ''}"
                )
                for path, res in _batched_paths(server, mode.batch_seconds, loads).items():
                    rd[prefix + path] = res
            log(f"ingest round {r + 1}: raw executemany of the same records")
            for suffix in ("", "-wal", "-shm"):
                Path(str(raw_db) + suffix).unlink(missing_ok=True)
            SQLiteStore(str(raw_db)).close()
            rd["raw"] = raw_executemany(raw_db, batches, max(rd["batched"]["records"], 10_000))
            rounds.append(rd)
        mem = proc_status(pid(proc))
    for f in rounds[0]:
        for rd in rounds:
            if rd[f].get("errors"):
                raise RuntimeError(
                    f"ingest {f}: {rd[f]['errors']} errors, e.g. {rd[f]['first_error']}"
                )

    def paired(path: str) -> float:
        """Each round's ratio to the raw insert of that round (the ceiling measured minutes
        apart would flatter or sink one side), then the median over rounds."""
        return round(
            statistics.median(
                rd[path]["records_per_s"] / rd["raw"]["records_per_s"] for rd in rounds
            ),
            3,
        )

    def paired_cpu(path: str) -> float:
        """The same pairing on CPU time: the raw insert's CPU per record over the server's."""
        return round(
            statistics.median(
                rd["raw"]["cpu_us_per_record"] / rd[path]["server_cpu_us_per_record"]
                for rd in rounds
            ),
            3,
        )

    measured = [p for p in (*PAIRED, *(f"before_{p}" for p in PAIRED)) if p in rounds[0]]
    result: dict[str, Any] = {
        "single_clients": mode.single_clients,
        "batch_clients": mode.batch_clients,
        "batch_size": 1000,
        "kinds": "~70% logs, 25% traces, 5% deploys (a batch holds one kind)",
        "rounds": rounds,
        "paired": {path: paired(path) for path in measured},
        "paired_cpu": {path: paired_cpu(path) for path in measured},
        "server_cpu_us_per_record": {
            path: statistics.median(rd[path]["server_cpu_us_per_record"] for rd in rounds)
            for path in measured
        },
        "collector_records_per_s": {
            path: statistics.median(rd[path]["records_per_s"] for rd in rounds)
            for path in measured
            if path.removeprefix("before_") in COLLECTOR_PATHS
        },
        "server_memory_mib": mem,
    }
    if baseline is not None:
        result["baseline"] = str(baseline)
    if only:
        return result
    best = {
        "noop_requests_per_s": max(rd["noop"]["requests_per_s"] for rd in rounds),
        "healthz_requests_per_s": max(rd["healthz"]["requests_per_s"] for rd in rounds),
        "single_requests_per_s": max(rd["single"]["requests_per_s"] for rd in rounds),
        "batched_records_per_s": max(rd["batched"]["records_per_s"] for rd in rounds),
        "raw_records_per_s": max(rd["raw"]["records_per_s"] for rd in rounds),
    }
    result["best"] = best
    result["single_vs_noop"] = round(best["single_requests_per_s"] / best["noop_requests_per_s"], 3)
    result["batched_vs_raw"] = round(best["batched_records_per_s"] / best["raw_records_per_s"], 3)
    return result


def ingest_markdown(ing: dict[str, Any]) -> list[str]:
    """The batched and collector rows: records/s and the share of the raw insert, both
    paired per round (median over rounds), by throughput and by CPU time; with the
    baseline server's figures when the run had one."""
    columns = ["records/s", "share of raw (throughput)", "server CPU/record", "share (CPU)"]
    sides = ["", "before_"] if "baseline" in ing else [""]
    head = [f"{'before: ' if side else ''}{c}" for side in sides for c in columns]
    lines = [
        "| path | " + " | ".join(head) + " |",
        "| --- |" + " --- |" * len(head),
    ]
    for path in PAIRED:
        cells = []
        for side in sides:
            key = side + path
            rps = statistics.median(rd[key]["records_per_s"] for rd in ing["rounds"])
            cells += [
                f"{rps:.0f}",
                f"{ing['paired'][key] * 100:.0f}%",
                f"{ing['server_cpu_us_per_record'][key]:.1f} µs",
                f"{ing['paired_cpu'][key] * 100:.0f}%",
            ]
        name = COLLECTOR_PATHS.get(path, "1,000-record POST /context/{kind}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    raw_cpu = statistics.median(rd["raw"]["cpu_us_per_record"] for rd in ing["rounds"])
    raw_rps = statistics.median(rd["raw"]["records_per_s"] for rd in ing["rounds"])
    lines.append(
        f"| raw executemany (the ceiling) | {raw_rps:.0f} | 100% | {raw_cpu:.1f} µs | 100% |"
    )
    if len(sides) > 1:
        lines[-1] = lines[-1][:-1] + " | | | |"
    return lines


# --- targets, results, docs --------------------------------------------------------------


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    lat = result["latency"]["by_size"]
    small, large = lat[0], lat[-1]
    interp = result["interpreter"]["with_store"]
    ingest = result["ingest"]
    mem = result["memory"]
    rows = [
        {
            "name": f"p99 @{large['records']:,} <= 1.5 x p99 @{small['records']:,}",
            "target": 1.5,
            "measured": round(large["alerts"]["p99_ms"] / small["alerts"]["p99_ms"], 3),
            "unit": "x",
            "detail": f"{large['alerts']['p99_ms']} ms vs {small['alerts']['p99_ms']} ms",
        },
        {
            "name": f"p99 @{large['records']:,} records <= 25 ms",
            "target": 25,
            "measured": large["alerts"]["p99_ms"],
            "unit": "ms",
            "detail": f"p50 {large['alerts']['p50_ms']} ms",
        },
        {
            "name": "YAML interpreter <= 1.3 x hand-written Python",
            "target": 1.3,
            "measured": interp["ratio"],
            "unit": "x",
            "detail": f"{interp['yaml_ms_per_alert']} vs {interp['hand_ms_per_alert']} ms/alert",
        },
        {
            "name": "single-record ingest >= 50% of no-op endpoint req/s",
            "target": 0.5,
            "measured": ingest["single_vs_noop"],
            "unit": "share",
            "detail": f"{ingest['best']['single_requests_per_s']:.0f} vs "
            f"{ingest['best']['noop_requests_per_s']:.0f} req/s",
            "at_least": True,
        },
        {
            "name": "batched ingest >= 30% of raw executemany records/s",
            "target": 0.3,
            "measured": ingest["batched_vs_raw"],
            "unit": "share",
            "detail": f"{ingest['best']['batched_records_per_s']:.0f} vs "
            f"{ingest['best']['raw_records_per_s']:.0f} records/s",
            "at_least": True,
        },
        *(
            {
                "name": f"{what} >= the raw-insert share of 1,000-record /context/* batches",
                "target": ingest["paired"]["batched"],
                "measured": ingest["paired"][path],
                "unit": "share",
                "detail": f"{ingest['collector_records_per_s'][path]:.0f} records/s; paired "
                f"medians {ingest['paired'][path]:.2f} vs {ingest['paired']['batched']:.2f}",
                "at_least": True,
            }
            for path, what in (
                ("otlp", f"OTLP {collectors.OTLP_BATCH}-span batches"),
                ("loki", f"Loki {collectors.LOKI_BATCH}-line pushes (JSON)"),
                ("loki_proto", f"Loki {collectors.LOKI_BATCH}-line pushes (snappy protobuf)"),
            )
        ),
        {
            "name": f"server peak RSS <= 250 MB with {mem['records']:,} records",
            "target": 250,
            "measured": round(mem["VmHWM"] * 1024**2 / 1e6, 1),
            "unit": "MB",
            "detail": f"VmHWM {mem['VmHWM']} MiB",
        },
    ]
    rows += pages.pages_targets(result["pages"])
    many = result.get("open_incidents")
    if many and many["p99_ratio"] is not None:
        rows.append(
            {
                "name": f"new-alert p99 with {many['many_open']['open_incidents_before']:,} open "
                f"incidents <= 1.2 x with {many['few_open']['open_incidents_before']}",
                "target": 1.2,
                "measured": many["p99_ratio"],
                "unit": "x",
                "detail": f"{many['many_open']['p99_ms']} vs {many['few_open']['p99_ms']} ms",
            }
        )
    scale = result.get("stats_scale")
    if scale:
        for path in ("/api/stats", "/metrics"):
            rows.append(
                {
                    "name": f"GET {path} p99 <= 5 ms with {scale['incidents']:,} incidents",
                    "target": 5.0,
                    "measured": scale[path]["p99_ms"],
                    "unit": "ms",
                    "detail": f"p50 {scale[path]['p50_ms']} ms",
                }
            )
    prune = result.get("prune")
    if prune and prune["p99_ratio"] is not None:
        rows.append(
            {
                "name": f"alert p99 during a backlog prune of {prune['records']:,} records "
                "<= 2 x without",
                "target": 2.0,
                "measured": prune["p99_ratio"],
                "unit": "x",
                "detail": f"{prune['during_prune']['p99_ms']} vs {prune['baseline']['p99_ms']} ms;"
                f" prune took {prune['prune_seconds']} s",
            }
        )
    for row in rows:
        at_least = row.pop("at_least", False)
        row["pass"] = (
            row["measured"] >= row["target"] if at_least else row["measured"] <= row["target"]
        )
    if result["mode"] != "full":
        for row in rows:
            row["note"] = f"{result['mode']} mode: indicative only (targets are for the full run)"
    return rows


def markdown(result: dict[str, Any]) -> str:
    m, v = result["machine"], result["versions"]
    lines = [
        f"Run: `{result['command']}` ({result['mode']} mode), {result['started']}, "
        f"{result['duration_seconds']:.0f} s.",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM, {m['os']}; load "
        f"average {m['loadavg_start'][0]:.2f} at the start, {m['loadavg_end'][0]:.2f} at the end"
        + (" (shared: other work ran during the run)." if result["shared_machine"] else "."),
        "",
        f"Versions: Python {v['python']}, SQLite {v['sqlite']}, incident-pilot "
        f"{v['incident-pilot']}, Starlette {v['starlette']}, uvicorn {v['uvicorn']}, "
        f"anyio {v['anyio']}, h11 {v['h11']}, Jinja2 {v['jinja2']}, PyYAML {v['pyyaml']}; "
        f"uvloop {v['uvloop']}; httptools {v['httptools']}.",
        "",
        "### Targets",
        "",
        "| target | measured | detail | result |",
        "| --- | --- | --- | --- |",
    ]
    for t in result["targets"]:
        unit = {"x": "x", "share": "", "ms": " ms", "MB": " MB"}[t["unit"]]
        shown = f"{t['measured'] * 100:.0f}%" if t["unit"] == "share" else f"{t['measured']}{unit}"
        lines.append(
            f"| {t['name']} | {shown} | {t['detail']} | {'pass' if t['pass'] else 'MISS'} |"
        )
    lines += [
        "",
        f"### Alert-to-incident latency (HTTP, {result['latency']['alerts_per_size']} new alerts per "
        f"store size, one client, sequential; about {OPEN_INCIDENTS} incidents open)",
        "",
        "| context records | store on disk | p50 | p90 | p99 | max | repeat alert p50 / p99 | "
        "resolution p50 / p99 | new alert with N open incidents, p50 / p99 | burst, 4 clients | "
        "server VmHWM |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in result["latency"]["by_size"]:
        a, rp, rs, mo = row["alerts"], row["repeat"], row["resolve"], row["many_open_incidents"]
        lines.append(
            f"| {row['records']:,} | {row['store']['bytes'] / 1024**2:.1f} MiB | {a['p50_ms']} ms | "
            f"{a['p90_ms']} ms | {a['p99_ms']} ms | {a['max_ms']} ms | {rp['p50_ms']} / "
            f"{rp['p99_ms']} ms | "
            + (f"{rs['p50_ms']} / {rs['p99_ms']} ms" if rs else "-")
            + f" | N={mo['open_incidents_before']}: {mo['p50_ms']} / {mo['p99_ms']} ms | "
            f"{row['burst_4_clients']['alerts_per_s']} alerts/s | "
            f"{row['server_memory_mib'].get('VmHWM')} MiB |"
        )
    it = result["interpreter"]
    w, c = it["with_store"], it["evaluation_cpu_only"]
    lines += [
        "",
        f"### Rule evaluation in-process ({it['alerts']} alerts, {it['store_records']:,} records, "
        f"median of {it['rounds']} interleaved rounds; findings identical: "
        f"{'yes' if it['findings_identical'] else 'NO (' + str(it['mismatches']) + ' alerts differ)'})",
        "",
        "| | YAML interpreter | hand-written Python | ratio |",
        "| --- | --- | --- | --- |",
        f"| with SQLite queries | {w['yaml_ms_per_alert']} ms/alert | {w['hand_ms_per_alert']} "
        f"ms/alert | {w['ratio']}x |",
        f"| store answers cached (evaluation CPU only) | {c['yaml_ms_per_alert']} ms/alert | "
        f"{c['hand_ms_per_alert']} ms/alert | {c['ratio']}x |",
        "",
        "| rule | fired (of alerts) | YAML median | YAML p99 | hand-written median |",
        "| --- | --- | --- | --- | --- |",
    ]
    for rule, r in it["per_rule"].items():
        lines.append(
            f"| {rule} | {r['fired']} | {r['yaml_median_ms']} ms | {r['yaml_p99_ms']} ms | "
            f"{r['hand_median_ms']} ms |"
        )
    ing = result["ingest"]
    b = ing["best"]
    lines += [
        "",
        f"### Context ingest (best of {len(ing['rounds'])} round(s); {ing['single_clients']} "
        f"single-record clients, {ing['batch_clients']} batch clients)",
        "",
        "| path | throughput | ceiling | share of ceiling |",
        "| --- | --- | --- | --- |",
        f"| single-record POST /context/{{kind}} | {b['single_requests_per_s']:.0f} req/s | no-op "
        f"Starlette endpoint {b['noop_requests_per_s']:.0f} req/s | "
        f"{ing['single_vs_noop'] * 100:.0f}% |",
        f"| GET /healthz on the real server (its middleware and routing, no store) | "
        f"{b['healthz_requests_per_s']:.0f} req/s | no-op endpoint | "
        f"{b['healthz_requests_per_s'] / b['noop_requests_per_s'] * 100:.0f}% |",
        f"| 1,000-record POST /context/{{kind}} | {b['batched_records_per_s']:.0f} records/s | "
        f"raw executemany {b['raw_records_per_s']:.0f} records/s | "
        f"{ing['batched_vs_raw'] * 100:.0f}% |",
        "",
        "Collector-facing paths, each against the raw-insert ceiling of its own round (the "
        "median over rounds of the per-round ratio):",
        "",
        *ingest_markdown(ing),
        "",
        f"Memory: server VmHWM {result['memory']['VmHWM']} MiB with "
        f"{result['memory']['records']:,} records ({result['memory']['after']}); the store "
        f"takes {result['memory']['store_mib_per_million_records']} MiB on disk per million "
        "context records (data + indexes).",
        *pages.pages_markdown(result["pages"]),
    ]
    return "\n".join(lines)


DOC_SKELETON = f"""# Performance

How fast incident-pilot is on a small machine, what bounds it, and how to measure it
yourself: `python -m bench` (about 2.5 minutes; `--quick` about 45 s; `--smoke` a few
seconds). The harness lives in `bench/`; it writes `bench/results/latest.json` and the
section between the markers below.

## Latest results

{BEGIN}
{END}
"""


def write_docs(path: Path, table: str) -> None:
    text = path.read_text() if path.exists() else DOC_SKELETON
    if BEGIN not in text or END not in text:
        text = text.rstrip("\n") + "\n\n## Latest results\n\n" + BEGIN + "\n" + END + "\n"
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(f"{head}{BEGIN}\n{table}\n{END}{tail}")
    tmp.replace(path)


def write_json(path: Path, result: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(path)


# --- main ------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__.split("\n\n")[0],
        epilog="`python -m bench quality --help`: the correlation-quality benchmark "
        "(bench/quality/, docs/QUALITY.md).",
    )
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--quick", action="store_true", help="1k and 100k records, fewer alerts (~1 min)"
    )
    g.add_argument(
        "--smoke",
        action="store_true",
        help="a few hundred records and ~20 alerts, seconds; writes only to --out",
    )
    p.add_argument(
        "--out", type=Path, help="results directory (default bench/results; --smoke: a temp dir)"
    )
    p.add_argument(
        "--docs", type=Path, help=f"the page to update (default {DOCS.relative_to(ROOT)})"
    )
    p.add_argument("--no-docs", action="store_true", help="do not touch the docs page")
    p.add_argument("--workdir", type=Path, help="where the store files go (default: a temp dir)")
    p.add_argument(
        "--ingest-only",
        action="store_true",
        help="only the 1,000-record /context/* batches, the collector paths and the raw "
        "insert; writes ingest.json in --out and prints the collector table",
    )
    p.add_argument(
        "--ingest-rounds", type=int, help="ingest rounds (default: the mode's; full mode 2)"
    )
    p.add_argument(
        "--baseline",
        type=Path,
        help="with --ingest-only: a checkout of earlier code, run as a second server in the "
        "same rounds (before/after figures against the same ceiling)",
    )
    p.add_argument(
        "--pages-only",
        action="store_true",
        help="only the pages' render times (bench/pages.py); prints their table, writes nothing",
    )
    args = p.parse_args(argv)
    if args.baseline is not None and not args.ingest_only:
        p.error("--baseline needs --ingest-only")
    if args.baseline is not None and not (args.baseline / "engine" / "__main__.py").is_file():
        p.error(f"--baseline {args.baseline}: not a checkout of incident-pilot")
    if args.ingest_rounds is not None and args.ingest_rounds < 1:
        p.error("--ingest-rounds must be at least 1")
    return args


def ingest_only(mode: Mode, args: argparse.Namespace, out: Path) -> int:
    """`--ingest-only`: the batched and collector paths against the raw insert, no docs."""
    work = Path(tempfile.mkdtemp(prefix="bench-work-", dir=args.workdir))
    started, at_start = time.time(), machine()
    try:
        ingest = ingest_section(
            mode,
            work,
            round(started),
            baseline=args.baseline and args.baseline.resolve(),
            only=True,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {
        "schema": 1,
        "mode": f"{mode.name}, ingest only",
        "started": datetime.fromtimestamp(started, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": at_start | {"loadavg_end": list(os.getloadavg())},
        "duration_seconds": round(time.time() - started, 1),
        "ingest": ingest,
    }
    write_json(out / "ingest.json", result)
    log(f"results: {out / 'ingest.json'}")
    m = result["machine"]
    sys.stdout.write(
        f"{len(ingest['rounds'])} rounds, {mode.batch_seconds:g} s per path, "
        f"{ingest['batch_clients']} clients; load average {m['loadavg_start'][0]:.2f} at the "
        f"start, {m['loadavg_end'][0]:.2f} at the end\n\n"
        + "\n".join(ingest_markdown(ingest))
        + "\n"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    mode = MODES["smoke" if args.smoke else "quick" if args.quick else "full"]
    if args.ingest_rounds is not None:
        mode = dataclasses.replace(mode, ingest_rounds=args.ingest_rounds)
    if args.smoke:
        out = args.out or Path(tempfile.mkdtemp(prefix="bench-smoke-"))
        docs = args.docs  # only when asked for explicitly
    else:
        out = args.out or RESULTS.parent
        docs = None if args.no_docs else (args.docs or DOCS)
    if args.ingest_only:
        return ingest_only(mode, args, out)
    shown = ["python", "-m", "bench", *(argv if argv is not None else sys.argv[1:])]
    work = Path(tempfile.mkdtemp(prefix="bench-work-", dir=args.workdir))
    if args.pages_only:
        try:
            section = pages.pages_section(mode.name, work, log)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
        sys.stdout.write(
            "\n".join([*pages.pages_markdown(section), "", f"Load average: {load}."]) + "\n"
        )
        return 0
    started = time.time()
    t0 = round(started)  # the data's "now": alerts start here
    result: dict[str, Any] = {
        "schema": 1,
        "mode": mode.name,
        "command": shlex.join(shown),
        "started": datetime.fromtimestamp(started, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine(),
        "versions": versions(),
    }
    log(f"{mode.name} run; work files in {work}")
    try:
        latency = latency_section(mode, work, t0)
        db, alert_dicts, memory = latency.pop("_db"), latency.pop("_alerts"), latency.pop("_memory")
        result["latency"] = latency
        result["memory"] = memory
        result["interpreter"] = interpreter_section(mode, Path(db), alert_dicts)
        result["interpreter"]["store_records"] = latency["by_size"][-1]["records"]
        for suffix in ("", "-wal", "-shm"):
            Path(db + suffix).unlink(missing_ok=True)
        result["ingest"] = ingest_section(mode, work, t0)
        result["pages"] = pages.pages_section(mode.name, work, log)
        result["prune"] = retention.prune_section(
            mode.sizes[-1],
            work,
            t0,
            alerting=mode.alerting_services,
            summarize=summary_ms,
            log=log,
        )
        result["open_incidents"] = many_open.open_incidents_section(
            MANY_OPEN[mode.name],
            mode.alerts,
            work,
            t0,
            summarize=summary_ms,
            post=lambda client, alerts: post_alerts(client, alerts)[0],
            log=log,
        )
        result["stats_scale"] = stats_scale.stats_section(
            STATS_INCIDENTS[mode.name], work, t0, summarize=summary_ms, log=log
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["machine"]["loadavg_end"] = list(os.getloadavg())
    # Our own load is ~1-2 runnable processes; more than the cores says someone else ran.
    result["shared_machine"] = (
        max(result["machine"]["loadavg_start"][0], result["machine"]["loadavg_end"][0])
        > (os.cpu_count() or 2) + 0.5
    )
    result["duration_seconds"] = round(time.time() - started, 1)
    result["targets"] = targets(result)
    write_json(out / "latest.json", result)
    log(f"results: {out / 'latest.json'}")
    table = markdown(result)
    if docs is not None:
        write_docs(docs, table)
        log(f"table: {docs}")
    sys.stdout.write(table + "\n")
    return 0
