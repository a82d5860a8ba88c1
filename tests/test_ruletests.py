"""`incident-pilot test-rules`: exit codes, the pass/fail lines, the exp/got diff, --run and
--junit. Runs the CLI as a subprocess from the repository root."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from engine.ruletests import compare  # noqa: E402

FAILING = "tests/rule_cases/failing/deploy.wrong.test.yaml"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def shipped_test_count() -> int:
    return sum(
        len(yaml.safe_load(p.read_text())["tests"]) for p in (ROOT / "rules.d").glob("*.test.yaml")
    )


def test_a_passing_run_exits_0_and_counts() -> None:
    n = shipped_test_count()
    proc = cli("test-rules")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[-1] == f"{n} passed, 0 failed"
    assert sum(1 for line in lines if line.startswith("ok    ")) == n
    assert "ok    deploy.recent_correlated: deploy 3 minutes before the alert is HIGH" in lines


def test_a_failing_test_prints_a_readable_diff_and_exits_1() -> None:
    proc = cli("test-rules", "--rules", "rules.d", FAILING)
    assert proc.returncode == 1
    out = proc.stdout
    assert "ok    deploy.recent_correlated: this one passes" in out
    assert (
        "FAIL  deploy.recent_correlated: this one expects the wrong severity  "
        f"({FAILING}:10)" in out
    )
    assert "    finding 1: severity: exp 'medium', got 'high'" in out
    # the expected and the actual findings, as YAML, under exp: / got:
    exp_at, got_at = out.index("    exp:"), out.index("    got:")
    assert exp_at < got_at
    assert "severity: medium" in out[exp_at:got_at]
    assert "severity: high" in out[got_at:]
    assert "summary: 'api-gateway was deployed 3m before the alert started" in out[got_at:]
    assert out.splitlines()[-1] == "1 passed, 1 failed"


def test_a_test_directory_needs_its_rules() -> None:
    # Without --rules, a directory of tests is tested against the rules in it.
    proc = cli("test-rules", "tests/rule_cases/failing")
    assert proc.returncode == 1
    assert "no rules found" in proc.stderr


@pytest.mark.parametrize(
    ("regex", "count"),
    [
        (r"^deploy\.recent_correlated: ", 9),
        (r"HIGH", 5),
        (r"routing\.team: the alert's team label wins$", 1),
        (r"^(logs|traces)\.", 17),
    ],
)
def test_run_selects_tests_by_regex(regex: str, count: int) -> None:
    proc = cli("test-rules", "--run", regex)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[-1] == f"{count} passed, 0 failed"


def test_run_matching_nothing_exits_1() -> None:
    proc = cli("test-rules", "--run", "no such test name")
    assert proc.returncode == 1
    assert "0 passed, 0 failed" in proc.stdout
    assert "no test matched" in proc.stderr


def test_run_with_a_bad_regex_is_a_usage_error() -> None:
    proc = cli("test-rules", "--run", "(")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr


def test_run_selects_the_failing_test_only() -> None:
    proc = cli("test-rules", "--rules", "rules.d", FAILING, "--run", "passes")
    assert proc.returncode == 0
    assert proc.stdout.splitlines()[-1] == "1 passed, 0 failed"


def test_junit_report_of_a_passing_run(tmp_path: Path) -> None:
    report = tmp_path / "rules.xml"
    proc = cli("test-rules", "--junit", str(report))
    assert proc.returncode == 0
    suite = ET.parse(report).getroot()
    assert suite.tag == "testsuite"
    n = shipped_test_count()
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == (str(n), "0", "0")
    cases = suite.findall("testcase")
    assert len(cases) == n
    assert {c.get("classname") for c in cases} == {
        "container.oom_killed",
        "dependency.upstream_failing",
        "deploy.recent_correlated",
        "incident.duplicate_open",
        "leader.election_thrash",
        "logs.error_spike",
        "routing.team",
        "traces.tail_latency",
    }
    assert all(c.find("failure") is None for c in cases)
    assert all(c.get("file", "").startswith("rules.d/") and int(c.get("line")) > 0 for c in cases)


def test_junit_report_of_a_failing_run(tmp_path: Path) -> None:
    report = tmp_path / "nested" / "rules.xml"
    report.parent.mkdir()
    proc = cli("test-rules", "--rules", "rules.d", FAILING, "--junit", str(report))
    assert proc.returncode == 1
    suite = ET.parse(report).getroot()
    assert (suite.get("tests"), suite.get("failures")) == ("2", "1")
    failed = [c for c in suite.findall("testcase") if c.find("failure") is not None]
    [case] = failed
    assert case.get("name") == "this one expects the wrong severity"
    failure = case.find("failure")
    assert failure.get("message") == "finding 1: severity: exp 'medium', got 'high'"
    assert "got:" in failure.text


def test_an_invalid_test_file_is_reported(tmp_path: Path) -> None:
    bad = tmp_path / "bad.test.yaml"
    bad.write_text("rule: deploy.recent_correlated\ntests:\n  - name: no alert\n    expect: []\n")
    proc = cli("test-rules", "--rules", "rules.d", str(bad))
    assert proc.returncode == 1
    assert "bad.test.yaml" in proc.stdout
    assert "alert" in proc.stdout


def test_compare_lists_every_difference() -> None:
    from engine.model import Confidence, Evidence, Finding, Severity

    got = [
        Finding(
            "r",
            Severity.HIGH,
            Confidence.LOW,
            "summary text",
            "do this",
            (Evidence("context/deploys/1", {}),),
            {"team": "edge"},
        )
    ]
    expected = [
        {
            "severity": "medium",
            "confidence": "low",
            "summary_contains": ["summary", "missing"],
            "suggestion_contains": "that",
            "evidence": ["context/deploys/2"],
            "outputs": {"team": "payments"},
        }
    ]
    assert compare(expected, got) == [
        "finding 1: severity: exp 'medium', got 'high'",
        "finding 1: summary does not contain 'missing'",
        "finding 1: suggestion does not contain 'that'",
        "finding 1: evidence: exp ['context/deploys/2'], got ['context/deploys/1']",
        "finding 1: outputs.team: exp 'payments', got 'edge'",
    ]
    assert compare([], got) == ["expected 0 finding(s), got 1"]
    assert compare([{"severity": "high"}], got) == []
