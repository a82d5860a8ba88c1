"""Which open incident a new alert's duplicate group is: decided again in the store.

The rules run before the write transaction, so two alerts of one group (same service
and alertname, different fingerprints) racing each other can both find no open
incident. Every `incidents` rule that exports `duplicate_of` names, through its
push-down, the column values an incident of the group has; the store re-checks those
inside the transaction that opens the incident, under a lock on each value set
(engine.store.incidents.record_firing), so concurrent alerts open one incident.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.rules.evaluate import base_scope
from engine.rules.ruleset import RuleSet

GROUP_OUTPUT = "duplicate_of"


def duplicate_groups(
    ruleset: RuleSet, alert_scope: Mapping[str, Any]
) -> tuple[dict[str, str], ...]:
    """The column = value maps an open incident of this alert's group matches (any one
    of them), from the enabled `incidents` rules that export `duplicate_of`. Only the
    pushed-down equalities count: the rest of such a rule's match is not re-checked."""
    groups: list[dict[str, str]] = []
    for rule in ruleset.enabled:
        if rule.source != "incidents" or not any(n == GROUP_OUTPUT for n, _ in rule.outputs):
            continue
        resolved = rule.pushdown.resolve(base_scope(rule, alert_scope))
        if resolved is None:
            continue
        shared = {c: v for c, v in resolved.equals.items() if c != "status"}
        for branch in resolved.any_of or [{}]:
            group = {**shared, **branch}
            if group and group not in groups:
                groups.append(group)
    return tuple(groups)
