"""The domain model every stage speaks: alerts, context records, findings, incidents."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum
from typing import Any


class Severity(IntEnum):
    INFO = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @property
    def word(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, word: str) -> Severity:
        return cls[word.upper()]


class Confidence(IntEnum):
    LOW = 0
    MEDIUM = 1
    HIGH = 2

    @property
    def word(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, word: str) -> Confidence:
        return cls[word.upper()]


CONTEXT_KINDS = ("deploys", "logs", "traces")


@dataclass(frozen=True)
class Alert:
    """One alert, as Alertmanager describes it (times normalised to UTC)."""

    fingerprint: str
    status: str  # "firing" | "resolved"
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: datetime
    ends_at: datetime | None = None
    generator_url: str = ""

    @property
    def service(self) -> str | None:
        return self.labels.get("service")

    @property
    def alertname(self) -> str | None:
        return self.labels.get("alertname")

    def as_scope(self) -> dict[str, Any]:
        """The alert as rules and templates see it (`alert.labels.service`, ...)."""
        from engine.timeutil import format_ts

        return {
            "fingerprint": self.fingerprint,
            "status": self.status,
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "startsAt": format_ts(self.starts_at),
            "endsAt": format_ts(self.ends_at) if self.ends_at else None,
            "generatorURL": self.generator_url,
        }


@dataclass(frozen=True)
class ContextRecord:
    """A deploy, log line or trace. `fields` holds the kind's own fields."""

    kind: str  # one of CONTEXT_KINDS
    id: str
    service: str
    ts: datetime
    fields: dict[str, Any]

    @property
    def path(self) -> str:
        return f"context/{self.kind}/{self.id}"


@dataclass(frozen=True)
class Evidence:
    """What a finding stands on: the path of the cited record and a snapshot of it."""

    path: str
    snapshot: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "snapshot": self.snapshot}


@dataclass(frozen=True)
class Finding:
    rule_id: str
    severity: Severity
    confidence: Confidence
    summary: str
    suggestion: str
    evidence: tuple[Evidence, ...]
    outputs: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule_id,
            "severity": self.severity.word,
            "confidence": self.confidence.word,
            "summary": self.summary,
            "suggestion": self.suggestion,
            "evidence": [e.to_dict() for e in self.evidence],
            "outputs": self.outputs,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Finding:
        return cls(
            rule_id=d["rule"],
            severity=Severity.parse(d["severity"]),
            confidence=Confidence.parse(d["confidence"]),
            summary=d["summary"],
            suggestion=d["suggestion"],
            evidence=tuple(Evidence(e["path"], e["snapshot"]) for e in d["evidence"]),
            outputs=d.get("outputs") or {},
        )


@dataclass(frozen=True)
class Incident:
    id: str
    fingerprint: str
    status: str  # "open" | "resolved"
    title: str
    service: str | None
    alertname: str | None
    team: str | None
    severity: Severity
    opened_at: datetime
    last_seen: datetime
    alert: Alert
    findings: tuple[Finding, ...]
    repeat_count: int = 0
    attached_count: int = 0
    resolved_at: datetime | None = None
    resolution: dict[str, Any] | None = None
    narration: dict[str, Any] | None = None
    last_notified_at: datetime | None = None
    # Alerts attached as symptoms of this incident (a dependency cascade), oldest first:
    # {fingerprint, service, alertname, startsAt, at, via, rule, merged_from}.
    symptoms: tuple[dict[str, Any], ...] = ()

    @property
    def path(self) -> str:
        return f"incidents/{self.id}"
