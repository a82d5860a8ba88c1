"""The benchmark harness keeps working: `python -m bench --smoke` end to end (a real server
process, a few hundred records, ~20 alerts, a few seconds), writing only to a temp dir.
Asserts the result file has every section; nothing about speed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = (
    "mode",
    "command",
    "machine",
    "versions",
    "latency",
    "interpreter",
    "ingest",
    "memory",
    "prune",
    "open_incidents",
    "stats_scale",
    "pages",
    "targets",
)


@pytest.mark.e2e
def test_bench_smoke_writes_every_section(tmp_path: Path) -> None:
    docs = ROOT / "docs" / "PERFORMANCE.md"
    results = ROOT / "bench" / "results" / "latest.json"
    before = {p: p.read_bytes() if p.exists() else None for p in (docs, results)}

    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]

    result = json.loads((tmp_path / "latest.json").read_text())
    for section in SECTIONS:
        assert section in result, section
    assert result["mode"] == "smoke"
    for key in ("cpu", "cores", "ram_gib"):
        assert key in result["machine"]
    for key in ("python", "sqlite", "starlette", "uvicorn"):
        assert key in result["versions"]

    (row,) = result["latency"]["by_size"]
    for key in ("alerts", "repeat", "many_open_incidents", "burst_4_clients", "store"):
        assert key in row
    assert {"p50_ms", "p99_ms"} <= row["alerts"].keys()
    assert row["outcomes"].get("opened") == row["alerts"]["n"]  # every alert ran the rules
    assert row["repeat"]["outcomes"] == {"repeat": row["repeat"]["n"]}

    interp = result["interpreter"]
    assert interp["findings_identical"], interp["first_mismatch"]
    for key in ("with_store", "evaluation_cpu_only", "per_rule"):
        assert key in interp
    assert set(interp["per_rule"]) == {
        "container.oom_killed",
        "dependency.upstream_failing",
        "deploy.recent_correlated",
        "incident.duplicate_open",
        "leader.election_thrash",
        "logs.error_spike",
        "routing.team",
        "traces.tail_latency",
    }

    ingest = result["ingest"]
    for key in ("noop_requests_per_s", "single_requests_per_s", "batched_records_per_s"):
        assert ingest["best"][key] > 0
    assert ingest["best"]["raw_records_per_s"] > 0
    for path in ("batched", "otlp", "loki", "loki_proto"):  # each paired with the raw insert
        assert ingest["paired"][path] > 0 and ingest["paired_cpu"][path] > 0
    assert {"VmHWM", "store_mib_per_million_records"} <= result["memory"].keys()

    # The prune of the smoke store is over before an alert is timed: no ratio, no row.
    assert result["prune"]["prune_seconds"] is not None
    assert result["open_incidents"]["many_open"]["open_incidents_before"] >= 200
    assert result["stats_scale"]["incidents"] == 2_000
    assert {"p50_ms", "p99_ms"} <= result["stats_scale"]["/metrics"].keys()
    assert len(result["targets"]) == 14  # with the snappy Loki path and the two page targets
    for target in result["targets"]:
        assert {"name", "target", "measured", "pass"} <= target.keys()

    # --smoke leaves the real results and the docs page alone.
    after = {p: p.read_bytes() if p.exists() else None for p in (docs, results)}
    assert after == before


@pytest.mark.e2e
def test_bench_ingest_only_pairs_both_servers_with_the_ceiling(tmp_path: Path) -> None:
    """`--ingest-only --baseline DIR`: the /context/* batches and the collector paths on
    this checkout and on the baseline's server, each paired with the raw insert."""
    command = [sys.executable, "-m", "bench", "--smoke", "--ingest-only", "--ingest-rounds", "2"]
    proc = subprocess.run(
        [*command, "--baseline", str(ROOT), "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ingest = json.loads((tmp_path / "ingest.json").read_text())["ingest"]
    assert len(ingest["rounds"]) == 2
    paths = ("batched", "otlp", "loki", "loki_proto")
    for path in (*paths, *(f"before_{p}" for p in paths)):
        assert ingest["paired"][path] > 0, path
        assert ingest["server_cpu_us_per_record"][path] > 0, path
    assert "| 512-span POST /v1/traces (OTLP protobuf) |" in proc.stdout
    refused = subprocess.run(
        [sys.executable, "-m", "bench", "--ingest-only", "--baseline", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2 and "not a checkout" in refused.stderr
