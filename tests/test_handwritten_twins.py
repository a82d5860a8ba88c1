"""bench/handwritten.py mirrors the shipped rules: on every scenario of a rule's own tests
(firing and quiet), its hand-written twin gives the same findings, field for field, as the
interpreter gives from the YAML. The bench checks the same on its generated data, which has
no OOM kill or leader election; these scenarios do."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import handwritten  # noqa: E402
from engine.rules.evaluate import evaluate_rules  # noqa: E402
from engine.rules.loader import load_paths  # noqa: E402
from engine.scenario import Scenario  # noqa: E402
from engine.store import open_store  # noqa: E402

RULES = ROOT / "rules.d"
TWINS = {
    "container.oom_killed": handwritten.container_oom_killed,
    "leader.election_thrash": handwritten.leader_election_thrash,
}


@pytest.fixture(scope="module")
def ruleset():
    return load_paths([RULES]).ruleset


def _cases(rule_id: str) -> list[dict]:
    doc = yaml.safe_load((RULES / f"{rule_id}.test.yaml").read_text(encoding="utf-8"))
    return list(doc["tests"])


@pytest.mark.parametrize("rule_id", sorted(TWINS))
def test_the_twin_gives_the_interpreters_findings(ruleset, rule_id: str) -> None:
    rule = ruleset.by_id(rule_id)
    assert rule is not None and rule.enabled
    fired = 0
    for case in _cases(rule_id):
        store = open_store(":memory:")
        try:
            scenario = Scenario.from_dict(case)
            scenario.load_into(store)
            one = replace(scenario.ruleset(ruleset), rules=(rule,))
            yaml_findings = [
                f.to_dict() for f in evaluate_rules(one, scenario.alert, store).findings
            ]
            anchor = scenario.alert.starts_at.timestamp()
            twin = TWINS[rule_id](scenario.alert, store, anchor)
            hand_findings = [twin.to_dict()] if twin is not None else []
        finally:
            store.close()
        assert hand_findings == yaml_findings, case["name"]
        fired += bool(yaml_findings)
    assert fired >= 1  # and the firing cases were among them
