"""`python -m bench quality` end to end at smoke size (30 services, one live fault per
kind, live times shrunk 50x): a real server, the scenario played over HTTP, the scores read
back through the API. Asserts the shape of quality.json, the ground truth and the docs
section; nothing about the figures themselves (docs/QUALITY.md reports those)."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bench.quality.fleet import build_fleet
from bench.quality.scenario import KINDS, generate

ROOT = Path(__file__).resolve().parents[1]
KEYS = (
    ("deploy_attribution", "precision"),
    ("deploy_attribution", "recall"),
    ("grouping", "pages_per_root_cause"),
    ("grouping", "membership_precision"),
    ("noise", "compression"),
    ("past_incidents", "recall_at_3"),
    ("past_incidents", "false_citation_rate"),
    ("time_to_finding_ms", "p99"),
)


def test_the_scenario_is_a_function_of_the_seed() -> None:
    def truth(seed: int) -> dict:
        return generate(build_fleet(120, random.Random(seed)), seed, 2, 1.0).truth()

    assert truth(7) == truth(7)
    assert truth(7) != truth(8)
    t = truth(7)
    kinds = {f["kind"] for f in t["faults"]}
    assert set(KINDS) <= kinds
    assert any(f["recurrence_of"] for f in t["faults"])
    for f in t["faults"]:
        assert f["alerts"], f["id"]
        if f["kind"] == "bad_deploy":
            assert f["culprit"]["role"] == "culprit"
            assert len(f["distractors"]) >= 1
        else:
            assert f["culprit"] is None
        if f["kind"] == "upstream_outage" and not f["recurrence_of"]:
            assert 3 <= len(f["services"]) <= 11  # the root and 2 to 10 dependents


@pytest.mark.e2e
def test_bench_quality_smoke(tmp_path: Path) -> None:
    docs = tmp_path / "QUALITY.md"
    docs.write_text(
        "# Quality\n\nprose\n<!-- quality:results:begin -->\nold\n<!-- quality:results:end -->\nafter\n"
    )
    real_docs = (ROOT / "docs" / "QUALITY.md").read_bytes()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "quality",
            "--seed",
            "3",
            "--services",
            "30",
            "--faults",
            "1",
            "--time-scale",
            "0.02",
            "--out",
            str(tmp_path),
            "--docs",
            str(docs),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (ROOT / "docs" / "QUALITY.md").read_bytes() == real_docs

    result = json.loads((tmp_path / "quality.json").read_text())
    for section, key in KEYS:
        assert key in result[section], (section, key)
    assert result["seed"] == 3 and result["services"] == 30
    assert result["past_incidents"]["recall_at_3"] is None  # no retrieval yet: not invented
    for section, key in KEYS[:5]:
        value = result[section][key]
        assert value is not None and value >= 0, (section, key)
    assert 0 <= result["deploy_attribution"]["precision"] <= 1
    assert result["time_to_finding_ms"]["n"] == result["noise"]["alerts_in"] > 0
    assert set(result["by_kind"]) >= {*KINDS, "recurrence", "noise"}

    truth = json.loads((tmp_path / "quality-scenario.json").read_text())
    assert truth["seed"] == 3
    bad = [f for f in truth["faults"] if f["culprit"]]
    assert result["deploy_attribution"]["faults_with_culprit"] == len(bad) >= 1
    assert all(f["culprit"]["id"] for f in bad)  # stored by the server: it answered its id
    fired = {s["key"] for s in truth["sent"]}
    assert fired >= {a["key"] for f in truth["faults"] for a in f["alerts"]}
    assert all(s["incident"] for s in truth["sent"])

    table = yaml.safe_load((tmp_path / "quality-dependencies.yaml").read_text())
    assert table["kind"] == "graph" and table["entries"] == truth["dependencies"]

    text = docs.read_text()
    assert (
        "old" not in text and text.startswith("# Quality\n\nprose\n") and text.endswith("after\n")
    )
    assert "deploy attribution precision" in text and "Seed 3, 30 services" in text
    assert "deploy attribution precision" in proc.stdout
