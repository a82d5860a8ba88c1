"""The incident page's timeline: the rules' window, the marks read from the store, and
the SVG (escaped, every mark a link)."""

from __future__ import annotations

import re
from datetime import timedelta

from engine.model import Alert, Incident, Severity
from engine.paths import rules_dir
from engine.rulefiles import load_rules
from engine.store import open_store
from engine.store.base import NewContext
from engine.timeutil import utcnow
from engine.web.timeline import BINS, gather, render_svg, rule_window


def _incident(service: str | None, name: str = "HighErrorRate") -> Incident:
    now = utcnow()
    labels = {"alertname": name, **({"service": service} if service else {})}
    alert = Alert("fp", "firing", labels, {}, now)
    return Incident(
        "inc-1", "fp", "open", "t", service, name, "edge", Severity.HIGH, now, now, alert, ()
    )


def test_marks_cover_the_rules_window_of_the_service(tmp_path):
    ruleset = load_rules([rules_dir()])
    assert ruleset is not None
    before, after = rule_window(ruleset)
    assert before == timedelta(minutes=30)  # deploy.recent_correlated reads the longest
    assert after >= timedelta(minutes=1)
    incident = _incident("api")
    at = incident.alert.starts_at
    with open_store(str(tmp_path / "t.db")) as store:  # type: ignore[attr-defined]
        records = [
            NewContext(
                "deploys", "api", at - timedelta(minutes=4), {"commit": "abc", "author": "ann"}
            ),
            NewContext(
                "deploys", "api", at - timedelta(minutes=45), {"commit": "old", "author": "x"}
            ),
            NewContext(
                "deploys", "web", at - timedelta(minutes=4), {"commit": "web", "author": "x"}
            ),
        ]
        records += [
            NewContext(
                "logs", "api", at - timedelta(minutes=2, seconds=i), {"level": lvl, "message": "m"}
            )
            for i, lvl in enumerate(["ERROR"] * 6 + ["INFO"] * 4 + ["FATAL"])
        ]
        records += [
            NewContext(
                "traces",
                "api",
                at - timedelta(minutes=1, seconds=i),
                {"trace_id": f"t{i}", "duration_ms": float(i * 10)},
            )
            for i in range(30)
        ]
        stored = store.add_context(records)
        tl = gather(store, incident, ruleset, lambda rec: f"/r/{rec.kind}/{rec.id}")
    kinds = [m.kind for m in tl.marks]
    assert kinds.count("alert") == 1
    deploys = [m for m in tl.marks if m.kind == "deploy"]
    assert [m.href for m in deploys] == [f"/r/deploys/{stored[0].id}"]  # in window, this service
    errors = [m for m in tl.marks if m.kind == "errors"]
    assert sum(m.value for m in errors) == 7  # ERROR and FATAL, not INFO
    assert all(m.href.startswith("/r/logs/") for m in errors) and len(errors) <= BINS
    traces = sorted(m.value for m in tl.marks if m.kind == "trace")
    assert traces == [270.0, 280.0, 290.0]  # at or above the window's 90th percentile


def test_svg_is_escaped_and_links_every_mark(tmp_path):
    incident = _incident("api", name='<script>alert("x")</script>')
    with open_store(str(tmp_path / "t.db")) as store:  # type: ignore[attr-defined]
        at = incident.alert.starts_at
        store.add_context(
            [
                NewContext(
                    "deploys",
                    "api",
                    at - timedelta(minutes=1),
                    {"commit": "<b>c</b>", "author": "a"},
                )
            ]
        )
        ruleset = load_rules([rules_dir()])
        assert ruleset is not None
        svg = str(
            render_svg(gather(store, incident, ruleset, lambda rec: f"/r/{rec.kind}/{rec.id}"))
        )
    assert "<script>" not in svg and "&lt;script&gt;" in svg and "&lt;b&gt;c&lt;/b&gt;" in svg
    assert len(re.findall(r'<a href="[^"]+" class="mark mark-', svg)) == 2  # alert, deploy


def test_no_service_label_draws_the_alert_only(tmp_path):
    ruleset = load_rules([rules_dir()])
    assert ruleset is not None
    with open_store(str(tmp_path / "t.db")) as store:  # type: ignore[attr-defined]
        tl = gather(store, _incident(None), ruleset, lambda rec: "x")
    assert [m.kind for m in tl.marks] == ["alert"]
