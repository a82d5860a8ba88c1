"""docs/WRITING_RULES.md stays complete: every name the rule schema defines is documented,
and the walk-through's example rule lints clean and passes its tests."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from engine.rules.loader import load_paths  # noqa: E402
from engine.ruletests import run_tests  # noqa: E402

DOC = ROOT / "docs" / "WRITING_RULES.md"
SCHEMA = json.loads((ROOT / "schemas" / "rule.schema.json").read_text())
RULES = ROOT / "rules.d"


def _walk(node: Any) -> Iterator[tuple[str, Any]]:
    """Every (key, value) pair anywhere in the schema."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield key, value
            yield from _walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item)


def schema_names() -> set[str]:
    """Property names defined anywhere (top level, operators, aggregations and their
    options, evidence, window and ladder keys) plus enum and const words."""
    names: set[str] = set()
    for key, value in _walk(SCHEMA):
        if (key == "properties" and isinstance(value, dict)) or (
            key == "required" and isinstance(value, list)
        ):
            names.update(value)
        elif key == "enum":
            names.update(str(v) for v in value)
        elif key == "const":
            names.add(str(value))
    return names


def test_the_schema_scan_finds_every_kind_of_name() -> None:
    names = schema_names()
    assert {"id", "source", "fire_when", "outputs"} <= names  # top level
    assert {"equals", "not_in", "matches", "exists", "all", "any", "not"} <= names  # operators
    assert {"count", "latest", "percentile", "p", "pattern_of", "samples", "top", "by"} <= names
    assert {"order", "desc", "asc"} <= names
    assert {"from", "alert", "param", "limit", "fields", "when"} <= names  # evidence
    assert {"before", "after", "then", "file", "always"} <= names  # window, ladders, templates


def _mentioned(name: str, text: str) -> bool:
    return f"`{name}`" in text or re.search(rf"(?<![\w.-]){re.escape(name)}:", text) is not None


@pytest.mark.parametrize("name", sorted(schema_names()))
def test_every_schema_name_is_documented(name: str) -> None:
    text = DOC.read_text(encoding="utf-8")
    assert _mentioned(name, text), f"docs/WRITING_RULES.md never mentions `{name}`"


@pytest.mark.parametrize(
    "heading",
    [
        "## 1. Files and layout",
        "## 4. Conditions",
        "## 5. Templates",
        "## 6. Evidence and the evidence contract",
        "## 7. Rule tests and `incident-pilot test-rules`",
        "## 8. `lint-rules`",
        "## 9. `incident-pilot replay --explain`",
        "## 10. Walk-through: a rule from scratch",
    ],
)
def test_the_doc_has_its_sections(heading: str) -> None:
    assert heading in DOC.read_text(encoding="utf-8")


def test_the_doc_shows_the_walk_through_rule_as_it_ships() -> None:
    text = DOC.read_text(encoding="utf-8")
    for name in ("container.oom_killed.yaml", "container.oom_killed.test.yaml"):
        body = (RULES / name).read_text(encoding="utf-8").strip()
        assert body in text, f"the copy of rules.d/{name} in the doc is out of date"


def test_the_walk_through_builds_a_capture() -> None:
    text = DOC.read_text(encoding="utf-8")
    walk = text[text.index("## 10. Walk-through") : text.index("## 11. Walk-through")]
    assert "capture:" in walk and "{dominant: captured.process}" in walk


@pytest.fixture(scope="module")
def shipped():
    return load_paths([RULES])


def test_the_walk_through_rule_lints_clean(shipped) -> None:
    assert [str(p) for p in shipped.problems] == []  # no errors and no warnings (--strict)
    assert "container.oom_killed" in [r.id for r in shipped.ruleset.rules]


def test_the_walk_through_rule_tests_pass(shipped) -> None:
    files = [f for f in shipped.ruleset.test_files if "container.oom_killed" in str(f)]
    run = run_tests(shipped.ruleset, files)
    assert run.problems == []
    assert len(run.results) >= 5
    assert all(r.passed for r in run.results), "\n".join(r.diff for r in run.failed)


def _doc_block(marker: str) -> str:
    """The ```yaml block of the doc that contains `marker`."""
    text = DOC.read_text(encoding="utf-8")
    for block in re.findall(r"```yaml\n(.*?)```", text, flags=re.S):
        if marker in block:
            return str(block)
    raise AssertionError(f"no yaml block with {marker!r} in the doc")


def test_the_join_walk_through_lints_clean_and_passes_its_tests(tmp_path: Path) -> None:
    import shutil

    rules = tmp_path / "rules.d"
    shutil.copytree(ROOT / "rules.d", rules)
    rule = _doc_block("id: dependency.dependents_alerting")
    (rules / "dependency.dependents_alerting.yaml").write_text(rule, "utf-8")
    tests = _doc_block("rule: dependency.dependents_alerting")
    (rules / "dependency.dependents_alerting.test.yaml").write_text(tests, "utf-8")
    loaded = load_paths([rules])
    assert [str(p) for p in loaded.problems] == []
    run = run_tests(loaded.ruleset, [rules / "dependency.dependents_alerting.test.yaml"])
    assert run.problems == [] and len(run.results) == 3
    assert all(r.passed for r in run.results), "\n".join(r.diff for r in run.failed)
    # The lint example of step 5: the misspelt table, at the line and column shown.
    broken = rule.replace("table: dependencies,", "table: dependecies,")
    (rules / "dependency.dependents_alerting.yaml").write_text(broken, "utf-8")
    shown = [str(p).replace(f"{rules}/", "") for p in load_paths([rules]).errors]
    assert shown == [
        "dependency.dependents_alerting.yaml:12:17: dependency.dependents_alerting: no table"
        " 'dependecies' (known: dependencies, ownership; tables live in rules.d/tables/)"
        " (at match.service.in.table)"
    ]
