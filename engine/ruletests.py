"""Rule unit tests, as `promtool test rules` has them: `incident-pilot test-rules`.

A `*.test.yaml` file names a rule and gives scenarios: a frozen `now`, an input alert,
context at relative times, and the findings the rule must give (none: must not fire).
Each scenario runs through the server's own path: an in-memory SQLite store, the ingest
parser, and the pipeline's rule evaluation.
"""

from __future__ import annotations

import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from engine.alerts import PayloadError
from engine.model import Finding
from engine.rules.evaluate import RULE_ERROR_ID, evaluate_rules
from engine.rules.problems import Problem
from engine.rules.ruleset import RuleSet
from engine.rules.yamlsrc import load_yaml
from engine.scenario import Scenario
from engine.store import open_store
from engine.timeutil import TimeFormatError


@dataclass
class CaseResult:
    file: str
    line: int
    rule_id: str
    name: str
    passed: bool
    diff: str = ""
    seconds: float = 0.0

    @property
    def title(self) -> str:
        return f"{self.rule_id}: {self.name}"


@dataclass
class TestRun:
    results: list[CaseResult] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def failed(self) -> list[CaseResult]:
        return [r for r in self.results if not r.passed]

    @property
    def ok(self) -> bool:
        return not self.failed and not any(p.level == "error" for p in self.problems)


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _finding_view(f: Finding) -> dict[str, Any]:
    return {
        "severity": f.severity.word,
        "confidence": f.confidence.word,
        "summary": f.summary,
        "suggestion": f.suggestion,
        "evidence": [e.path for e in f.evidence],
        "outputs": f.outputs,
    }


def compare(expected: list[dict[str, Any]], got: list[Finding]) -> list[str]:
    """The differences between expected findings and the rule's findings, as lines."""
    lines = []
    if len(expected) != len(got):
        lines.append(f"expected {len(expected)} finding(s), got {len(got)}")
    for i, (exp, f) in enumerate(zip(expected, got, strict=False)):
        view = _finding_view(f)
        for key in ("severity", "confidence"):
            if key in exp and exp[key] != view[key]:
                lines.append(f"finding {i + 1}: {key}: exp {exp[key]!r}, got {view[key]!r}")
        for key, text_key in (
            ("summary_contains", "summary"),
            ("suggestion_contains", "suggestion"),
        ):
            for needle in _as_list(exp.get(key)):
                if needle not in view[text_key]:
                    lines.append(f"finding {i + 1}: {text_key} does not contain {needle!r}")
        if "evidence" in exp and list(exp["evidence"]) != view["evidence"]:
            lines.append(
                f"finding {i + 1}: evidence: exp {exp['evidence']}, got {view['evidence']}"
            )
        for key, value in (exp.get("outputs") or {}).items():
            if view["outputs"].get(key) != value:
                lines.append(
                    f"finding {i + 1}: outputs.{key}: exp {value!r}, got {view['outputs'].get(key)!r}"
                )
    return lines


def _dump(value: Any) -> str:
    text = yaml.safe_dump(value, sort_keys=False, default_flow_style=False, width=100).rstrip()
    return "\n".join("      " + line for line in text.splitlines())


def run_case(
    ruleset: RuleSet, rule_id: str, case: dict[str, Any], file: str, line: int
) -> CaseResult:
    started = time.perf_counter()
    result = CaseResult(file, line, rule_id, str(case.get("name", "?")), passed=False)
    rule = ruleset.by_id(rule_id)
    if rule is None:
        result.diff = f"no rule {rule_id!r} in the loaded rules"
        return result
    store = open_store(":memory:")
    try:
        scenario = Scenario.from_dict(case, file=file)
        scenario.load_into(store)
        # The rule under test runs even when disabled: the test is about what it would say.
        one = replace(scenario.ruleset(ruleset, file), rules=(replace(rule, enabled=True),))
        evaluation = evaluate_rules(one, scenario.alert, store)
    except (PayloadError, TimeFormatError, KeyError, ValueError) as exc:
        result.diff = f"the scenario is invalid: {exc}"
        return result
    finally:
        store.close()
    errors = [f for f in evaluation.findings if f.rule_id == RULE_ERROR_ID]
    got = [f for f in evaluation.findings if f.rule_id == rule_id]
    expected = list(case.get("expect") or [])
    diff = [f"the rule failed: {e.summary}" for e in errors] + compare(expected, got)
    result.seconds = time.perf_counter() - started
    if diff:
        result.diff = "\n".join(
            ["    " + d for d in diff]
            + ["    exp:", _dump(expected) if expected else "      [] (must not fire)"]
            + [
                "    got:",
                _dump([_finding_view(f) for f in got]) if got else "      [] (did not fire)",
            ]
        )
    else:
        result.passed = True
    return result


def load_test_file(path: Path) -> tuple[dict[str, Any] | None, Any, list[Problem]]:
    """Returns (document, YamlDoc for line lookup, problems)."""
    from engine.rules.schema_check import validate_document

    doc, problems = load_yaml(path, display=_display(path))
    if doc is None:
        return None, None, problems
    problems = validate_document(doc, "rule-test.schema.json")
    if problems:
        return None, doc, problems
    return doc.data, doc, []


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def run_tests(ruleset: RuleSet, files: Sequence[Path], select: str | None = None) -> TestRun:
    run = TestRun()
    pattern = re.compile(select) if select else None
    for path in files:
        data, doc, problems = load_test_file(path)
        run.problems.extend(problems)
        if data is None:
            continue
        for i, case in enumerate(data["tests"]):
            title = f"{data['rule']}: {case['name']}"
            if pattern and not pattern.search(title):
                continue
            line = doc.position(("tests", i))[0]
            run.results.append(run_case(ruleset, data["rule"], case, doc.path, line))
    return run


def junit_xml(run: TestRun) -> str:
    suite = ET.Element(
        "testsuite",
        name="incident-pilot rules",
        tests=str(len(run.results)),
        failures=str(len(run.failed)),
        errors=str(sum(1 for p in run.problems if p.level == "error")),
    )
    for r in run.results:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=r.rule_id,
            name=r.name,
            file=r.file,
            line=str(r.line),
            time=f"{r.seconds:.4f}",
        )
        if not r.passed:
            ET.SubElement(
                case, "failure", message=r.diff.splitlines()[0].strip() if r.diff else ""
            ).text = r.diff
    for p in run.problems:
        if p.level == "error":
            case = ET.SubElement(suite, "testcase", classname="load", name=str(p.location))
            ET.SubElement(case, "error", message=p.message).text = str(p)
    return ET.tostring(suite, encoding="unicode", xml_declaration=True)
