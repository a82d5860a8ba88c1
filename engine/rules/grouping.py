"""Which open incident a new alert's duplicate group is, and where it sits in a dependency
cascade: decided again in the store.

The rules run before the write transaction, so two alerts of one group (same service
and alertname, different fingerprints) racing each other can both find no open
incident. Every `incidents` rule that exports `duplicate_of` names, through its
push-down, the column values an incident of the group has; the store re-checks those
inside the transaction that opens the incident, under a lock on each value set
(engine.store.firing.record_firing), so concurrent alerts open one incident. The rule
that exports `symptom_of` does the same for a cascade (`cascade_of`; engine.store.cascade).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from engine.rules.evaluate import base_scope
from engine.rules.ruleset import RuleSet
from engine.store import codec
from engine.store.base import Cascade

GROUP_OUTPUT = "duplicate_of"
SYMPTOM_OUTPUT = "symptom_of"


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
        resolved = rule.pushdown.resolve(base_scope(rule, alert_scope, ruleset.tables))
        if resolved is None:
            continue
        shared = {c: v for c, v in resolved.equals.items() if c != "status"}
        for branch in resolved.branches() or [{}]:
            group = {**shared, **branch}
            if group and group not in groups:
                groups.append(group)
    return tuple(groups)


def cascade_of(
    ruleset: RuleSet, alert_scope: Mapping[str, Any], starts_at: datetime, now: datetime
) -> Cascade | None:
    """Where the alert sits in a dependency cascade, from the first enabled `incidents`
    rule that exports `symptom_of` and joins `service` to a table (the shipped
    dependency.upstream_failing): the upstream services its match looks for (each
    equality of the push-down besides status kept), the dependents the reverse of that
    join gives, and the rule's window. None when no such rule or the alert has neither.
    """
    for rule in ruleset.enabled:
        if rule.source != "incidents" or not any(n == SYMPTOM_OUTPUT for n, _ in rule.outputs):
            continue
        join = next((j for path, j in rule.joins if path == ("service",)), None)
        if join is None:
            continue
        scope = base_scope(rule, alert_scope, ruleset.tables)
        resolved = rule.pushdown.resolve(scope)
        up = join.chains(scope) if resolved is not None else {}
        down = replace(join, reverse=not join.reverse).chains(scope)
        if not up and not down:
            return None
        shared = {c: v for c, v in (resolved.equals if resolved else {}).items()}
        shared.pop("status", None)
        shared.pop("service", None)
        before = rule.window.before if rule.window else timedelta(0)
        after = rule.window.after if rule.window else timedelta(0)
        own = join.key.get(scope)
        locks = {_key(u) for u in up}
        if down and isinstance(own, str):
            locks.add(_key(own))
        return Cascade(
            rule=rule.id,
            upstream=tuple({**shared, "service": str(u)} for u in up),
            since=starts_at - before if rule.window else None,
            until=starts_at + after if rule.window else None,
            downstream=tuple({"service": str(d)} for d in down),
            merge_since=now - after,
            hold=after.total_seconds(),
            via={str(s): tuple(e.path for e in chain) for s, chain in {**down, **up}.items()},
            locks=tuple(sorted(locks)),
        )
    return None


def _key(service: Any) -> str:
    return codec.dumps({"service": str(service)}) or ""
