"""`incident-pilot replay ALERT.json --context CONTEXT.yaml`: text, --json and --explain,
over the example files in examples/. Runs the CLI as a subprocess from the repository root."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ALERT = "examples/sample_alert.json"
CONTEXT = "examples/context.yaml"
NOW = "2026-01-01T12:00:00Z"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def replay_json(*args: str) -> dict[str, Any]:
    proc = cli("replay", ALERT, "--context", CONTEXT, "--json", *args)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_replay_prints_the_incident() -> None:
    proc = cli("replay", ALERT, "--context", CONTEXT, "--now", NOW)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    first = out.splitlines()[0]
    assert first.startswith("[HIGH] 5xx rate above 5% on api-gateway  (inc-")
    assert first.endswith(", opened)")
    assert "team: edge" in out
    assert f"since {NOW}" in out
    assert "HIGH deploy.recent_correlated (confidence high)" in out
    assert "api-gateway was deployed 3m before the alert started: commit a39bf2c by alice." in out
    assert "MEDIUM logs.error_spike (confidence high)" in out
    assert 'match "upstream timeout request <num>"' in out
    assert "evidence: context/deploys/1" in out
    assert "evidence: alert/labels/team" in out
    assert "traces.tail_latency" not in out  # 2 traces: too few to fire
    assert "explain" not in out


def test_replay_json_is_parseable_and_has_the_findings() -> None:
    data = replay_json("--now", NOW)
    assert data["outcome"] == "opened"
    incident = data["incident"]
    assert incident["severity"] == "high"
    assert incident["team"] == "edge"
    assert incident["alert"]["startsAt"] == NOW
    findings = {f["rule"]: f for f in incident["findings"]}
    assert list(findings) == ["deploy.recent_correlated", "logs.error_spike", "routing.team"]
    deploy = findings["deploy.recent_correlated"]
    assert (deploy["severity"], deploy["confidence"]) == ("high", "high")
    assert deploy["evidence"] == [
        {
            "path": "context/deploys/1",
            "snapshot": {
                "service": "api-gateway",
                "commit": "a39bf2c",
                "author": "alice",
                "ts": "2026-01-01T11:57:00Z",
            },
        }
    ]
    spike = findings["logs.error_spike"]
    assert spike["severity"] == "medium"
    assert spike["summary"].startswith("10 ERROR lines from api-gateway")
    assert [e["path"] for e in spike["evidence"]] == [f"context/logs/{i}" for i in range(1, 6)]
    assert findings["routing.team"]["outputs"] == {"team": "edge"}
    assert "explain" not in data


def test_relative_times_resolve_against_the_alert_start_without_now() -> None:
    data = replay_json()
    incident = data["incident"]
    starts = incident["alert"]["startsAt"]
    findings = {f["rule"]: f for f in incident["findings"]}
    # whatever the start, the deploy is 3m before it
    assert "deployed 3m before" in findings["deploy.recent_correlated"]["summary"]
    assert findings["deploy.recent_correlated"]["evidence"][0]["snapshot"]["ts"] < starts


def test_replay_explain_shows_each_rule() -> None:
    proc = cli("replay", ALERT, "--context", CONTEXT, "--now", NOW, "--explain")
    assert proc.returncode == 0, proc.stderr
    explain = [line.strip() for line in proc.stdout.splitlines() if "explain " in line]
    assert explain == [
        # the demo's log lines are neither OOM kills nor leader elections
        "explain container.oom_killed: no; 0/11 records matched; fire_when: count (0) at_least 1",
        "explain dependency.upstream_failing: no; 0/0 records matched; no records matched",
        "explain deploy.recent_correlated: fired; 1/1 records matched",
        "explain incident.duplicate_open: no; 0/0 records matched; no records matched",
        "explain leader.election_thrash: no; 0/11 records matched; "
        "fire_when: count (0) at_least $params.min_transitions = 3",
        "explain logs.error_spike: fired; 10/11 records matched",
        "explain routing.team: fired; 1/3 records matched",
        "explain traces.tail_latency: no; 2/2 records matched; "
        "fire_when: count (2) at_least $params.min_samples = 5",
    ]


def test_replay_explain_json() -> None:
    data = replay_json("--now", NOW, "--explain")
    rules = {e["rule"]: e for e in data["explain"]}
    assert set(rules) == {
        "container.oom_killed",
        "dependency.upstream_failing",
        "deploy.recent_correlated",
        "incident.duplicate_open",
        "leader.election_thrash",
        "logs.error_spike",
        "routing.team",
        "traces.tail_latency",
    }
    assert rules["logs.error_spike"] == {
        "rule": "logs.error_spike",
        "fired": True,
        "fetched": 11,
        "matched": 10,
        "reason": None,
        "error": None,
    }
    traces = rules["traces.tail_latency"]
    assert (traces["fired"], traces["matched"]) == (False, 2)
    assert "min_samples" in traces["reason"]


def test_replay_with_an_open_incident_attaches(tmp_path: Path) -> None:
    context = tmp_path / "context.yaml"
    context.write_text(
        "incidents:\n"
        "  - {id: inc-open1, labels: {alertname: HighErrorRate, service: api-gateway}, opened: -1h}\n"
    )
    proc = cli("replay", ALERT, "--context", str(context), "--now", NOW, "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["outcome"] == "attached"
    assert data["incident"]["id"] == "inc-open1"


def test_replay_errors() -> None:
    proc = cli("replay", "examples/no-such-alert.json")
    assert proc.returncode == 2
    assert "cannot read" in proc.stderr
    proc = cli("replay", ALERT, "--context", CONTEXT, "--now", "yesterday")
    assert proc.returncode == 1
    assert "invalid input" in proc.stderr
