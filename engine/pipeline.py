"""One alert through the pipeline: evaluate the rules, build the incident, record it."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from engine.model import Alert, Finding, Severity
from engine.rules.evaluate import RULE_ERROR_ID, Evaluation, evaluate_rules
from engine.rules.grouping import cascade_of, duplicate_groups
from engine.rules.ruleset import RuleSet
from engine.store.base import (
    AlertOutcome,
    Cascade,
    IncidentDraft,
    NewDelivery,
    PlanDeliveries,
    Store,
)
from engine.store.firing import hold
from engine.timeutil import utcnow

# Alertmanager `severity` label values -> our ladder, so a critical alert with quiet rules
# is still a critical incident.
ALERT_SEVERITY = {
    "critical": Severity.CRITICAL,
    "page": Severity.CRITICAL,
    "error": Severity.HIGH,
    "high": Severity.HIGH,
    "major": Severity.HIGH,
    "warning": Severity.MEDIUM,
    "warn": Severity.MEDIUM,
    "medium": Severity.MEDIUM,
    "minor": Severity.LOW,
    "low": Severity.LOW,
    "info": Severity.INFO,
    "none": Severity.INFO,
}


@dataclass(frozen=True)
class PipelineSettings:
    renotify_after: timedelta = timedelta(hours=4)
    public_url: str = ""  # rule templates' `public_url` and `incident_url` (--public-url)


@dataclass
class AlertResult:
    alert: Alert
    outcome: AlertOutcome
    evaluation: Evaluation | None = None  # None for resolutions and exact repeats
    ruleset: RuleSet | None = None


def new_incident_id() -> str:
    return "inc-" + secrets.token_hex(6)


def incident_title(alert: Alert) -> str:
    summary = alert.annotations.get("summary")
    if summary:
        return summary[:200]
    name = alert.alertname or "alert"
    return f"{name} on {alert.service}" if alert.service else name


def output(findings: list[Finding], name: str) -> str | None:
    """The first finding that exports `name` decides it (rules run in file order)."""
    for f in findings:
        value = f.outputs.get(name)
        if value not in (None, ""):
            return str(value)
    return None


def incident_severity(alert: Alert, findings: list[Finding]) -> Severity:
    levels = [f.severity for f in findings if f.rule_id != RULE_ERROR_ID]
    label = ALERT_SEVERITY.get(alert.labels.get("severity", "").lower())
    if label is not None:
        levels.append(label)
    return max(levels, default=Severity.INFO)


def build_draft(
    alert: Alert,
    findings: list[Finding],
    incident_id: str | None = None,
    groups: tuple[dict[str, str], ...] = (),
    cascade: Cascade | None = None,
) -> IncidentDraft:
    return IncidentDraft(
        id=incident_id or new_incident_id(),
        alert=alert,
        title=incident_title(alert),
        team=output(findings, "team"),
        severity=incident_severity(alert, findings),
        findings=tuple(findings),
        duplicate_of=output(findings, "duplicate_of"),
        groups=groups,
        symptom_of=output(findings, "symptom_of"),
        cascade=cascade,
    )


def held(plan: PlanDeliveries, seconds: float) -> PlanDeliveries:
    """`plan`, with a new incident's deliveries due `seconds` later: the incident has pull
    rules still to answer (engine.pull), which release them as soon as they are done."""

    def hold(outcome: AlertOutcome) -> list[NewDelivery]:
        out = list(plan(outcome))
        if outcome.kind != "opened":
            return out
        return [replace(d, delay=max(d.delay, seconds)) for d in out]

    return hold


@dataclass
class Pipeline:
    store: Store
    rules: Callable[[], RuleSet]  # the current rule set; read once per alert
    settings: PipelineSettings = field(default_factory=PipelineSettings)
    plan: PlanDeliveries | None = None
    clock: Callable[[], datetime] = utcnow
    # Seconds a new incident's first deliveries wait for its pull rules (0: none to run).
    hold: Callable[[RuleSet], float] | None = None

    def handle(self, alert: Alert) -> AlertResult:
        """Synchronous: call from a worker thread. Returns once the outcome is committed."""
        now = self.clock()
        if alert.status == "resolved":
            return AlertResult(alert, self.store.record_resolved(alert, now=now, plan=self.plan))
        if self.store.find_repeat(alert.fingerprint, alert.starts_at) is not None:
            # A retry of a firing we already hold: count it, skip the rules.
            draft = build_draft(alert, [])
            outcome = self.store.record_firing(
                draft, now=now, renotify_after=self.settings.renotify_after, plan=self.plan
            )
            return AlertResult(alert, outcome)
        ruleset = self.rules()  # evaluations finish on the rule set they started with
        evaluation = evaluate_rules(ruleset, alert, self.store, public_url=self.settings.public_url)
        scope = alert.as_scope()
        draft = build_draft(
            alert,
            evaluation.findings,
            groups=duplicate_groups(ruleset, scope),
            cascade=cascade_of(ruleset, scope, alert.starts_at, now),
        )
        plan, wait = self.plan, self.hold(ruleset) if self.hold is not None else 0.0
        wait = max(wait, hold(draft))  # a dependent waits for its upstream's incident
        if plan is not None and wait > 0:
            plan = held(plan, wait)
        outcome = self.store.record_firing(
            draft, now=now, renotify_after=self.settings.renotify_after, plan=plan
        )
        return AlertResult(alert, outcome, evaluation, ruleset)
