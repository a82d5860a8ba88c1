"""Server-side render time of the pages (engine/web), in process through the real app
(open_app: the same middleware and routes as `serve`; no network, no browser).

- the incident page of an incident with 60 findings (3 evidence items each) whose
  service has deploys, a few thousand log lines and a thousand traces in the timeline's
  window: target p99 < 100 ms;
- the incidents list over N incidents (10,000 in the full run): the first page, a text
  search, a severity filter, and a page deep in the cursor chain.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from engine.model import Alert, Confidence, Evidence, Finding, Severity
from engine.paths import rules_dir
from engine.server.settings import ServeSettings
from engine.store.base import IncidentDraft, NewContext
from engine.testing import AppClient, open_app
from engine.timeutil import utcnow

FINDINGS = 60
PAGE_TARGET_MS = 100.0
SIZES = {"full": (10_000, 300), "quick": (10_000, 100), "smoke": (300, 20)}  # incidents, renders


def _pct(ms: Sequence[float], p: float) -> float:
    return round(ms[max(1, math.ceil(p / 100 * len(ms))) - 1], 2)


def _ms(seconds: Sequence[float], cpu: Sequence[float]) -> dict[str, float]:
    """Wall time, and the process's CPU time (every thread: the request's worker thread
    too) per render, which a machine shared with other work inflates far less."""
    ms = sorted(s * 1000 for s in seconds)
    cpu_ms = sorted(s * 1000 for s in cpu)
    return {
        "n": len(ms),
        "p50_ms": _pct(ms, 50),
        "p99_ms": _pct(ms, 99),
        "max_ms": round(ms[-1], 2),
        "cpu_p50_ms": _pct(cpu_ms, 50),
        "cpu_p99_ms": _pct(cpu_ms, 99),
    }


def _finding(n: int) -> Finding:
    return Finding(
        rule_id=f"bench.rule_{n:02d}",
        severity=Severity(n % 5),
        confidence=Confidence(n % 3),
        summary=f"finding {n}: api-gateway did something noteworthy <{n}> before the alert",
        suggestion=f"Check it with `kubectl -n edge logs deploy/api-gateway --since=15m | grep {n}`.",
        evidence=tuple(
            Evidence(
                f"context/logs/{n * 3 + k + 1}", {"message": f"line {n}/{k}", "level": "ERROR"}
            )
            for k in range(3)
        ),
    )


def _alert(i: int, now: Any) -> Alert:
    service = "api-gateway" if i == 0 else f"svc-{i % 50}"
    return Alert(
        fingerprint=f"bench-{i:06d}",
        status="firing",
        labels={"alertname": f"Alert{i % 20}", "service": service, "team": f"team-{i % 7}"},
        annotations={"summary": f"alert {i} on {service}"},
        starts_at=now - timedelta(seconds=i),
        generator_url="http://prometheus.example:9090/graph?g0.expr=up",
    )


def _timed(client: AppClient, path: str, n: int) -> dict[str, float]:
    times, cpu = [], []
    for _ in range(n):
        t, c = time.perf_counter(), time.process_time()
        r = client.get(path)
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
        if r.status_code != 200:
            raise RuntimeError(f"GET {path}: {r.status_code} {r.text[:200]}")
    return _ms(times, cpu)


def pages_section(mode_name: str, work: Path, log: Callable[[str], None]) -> dict[str, Any]:
    incidents, renders = SIZES[mode_name]
    db = work / "pages.db"
    settings = ServeSettings(db=str(db), rules=(rules_dir(),), quiet=True)
    state, app = open_app(settings, stdout=io.StringIO())
    client = AppClient(app)
    try:
        now = utcnow()
        store = state.store
        log(f"pages: {incidents:,} incidents, one with {FINDINGS} findings")
        context = [
            NewContext(
                "deploys",
                "api-gateway",
                now - timedelta(minutes=m),
                {"commit": f"c{m}", "author": "a"},
            )
            for m in (3, 12, 25)
        ]
        context += [
            NewContext(
                "logs",
                "api-gateway",
                now - timedelta(seconds=i % 1800),
                {"level": "ERROR" if i % 3 else "INFO", "message": f"upstream timeout {i}"},
            )
            for i in range(3000)
        ]
        context += [
            NewContext(
                "traces",
                "api-gateway",
                now - timedelta(seconds=i),
                {"trace_id": f"t{i}", "duration_ms": float(i % 997)},
            )
            for i in range(1000)
        ]
        store.add_context(context)
        big = None
        for i in range(incidents):
            findings = (
                tuple(_finding(n) for n in range(FINDINGS)) if i == 0 else (_finding(i % 60),)
            )
            draft = IncidentDraft(
                id=f"inc-bench-{i:06d}",
                alert=_alert(i, now),
                title=f"alert {i} on {'api-gateway' if i == 0 else f'svc-{i % 50}'}",
                team=f"team-{i % 7}",
                severity=Severity(i % 5),
                findings=findings,
            )
            out = store.record_firing(
                draft, now=now - timedelta(seconds=incidents - i), renotify_after=timedelta(hours=4)
            )
            if i == 0:
                big = out.incident
        assert big is not None and len(big.findings) == FINDINGS
        page = f"/ui/incidents/{big.id}"
        _timed(client, page, 5)  # warm: templates compiled, caches filled
        result: dict[str, Any] = {
            "incidents": incidents,
            "findings": FINDINGS,
            "timeline_records": {"deploys": 3, "logs": 3000, "traces": 1000},
            "incident_page": _timed(client, page, renders),
        }
        first = client.get("/ui/incidents?limit=50")
        deep = "/ui/incidents"
        # Follow the cursor 20 pages down (1,000 incidents deep in the full run).
        for _ in range(20):
            text = client.get(deep).text if deep != "/ui/incidents" else first.text
            marker = text.find('rel="next"')
            if marker < 0:
                break
            start = text.rfind('href="', 0, marker) + len('href="')
            deep = text[start : text.find('"', start)].replace("&amp;", "&")
        result["list"] = {
            "first_page": _timed(client, "/ui/incidents", renders),
            "search": _timed(client, "/ui/incidents?q=svc-7", renders),
            "severity": _timed(client, "/ui/incidents?severity=critical", renders),
            "deep_page": _timed(client, deep, renders),
        }
        log(
            f"pages: incident page p99 {result['incident_page']['p99_ms']} ms; list p99 "
            f"{result['list']['first_page']['p99_ms']} ms"
        )
        return result
    finally:
        client.close()
        state.close()


def pages_targets(section: dict[str, Any]) -> list[dict[str, Any]]:
    page = section["incident_page"]
    worst = max(section["list"].values(), key=lambda s: s["p99_ms"])
    return [
        {
            "name": f"incident page with {section['findings']} findings, server-side p99 < {PAGE_TARGET_MS:g} ms",
            "target": PAGE_TARGET_MS,
            "measured": page["p99_ms"],
            "unit": "ms",
            "detail": f"p50 {page['p50_ms']} ms; CPU p50 / p99 {page['cpu_p50_ms']} / "
            f"{page['cpu_p99_ms']} ms over {page['n']} renders",
        },
        {
            "name": f"incidents list page at {section['incidents']:,} incidents, p99 < {PAGE_TARGET_MS:g} ms",
            "target": PAGE_TARGET_MS,
            "measured": worst["p99_ms"],
            "unit": "ms",
            "detail": f"slowest of first page, search, severity filter, 20 pages deep; its CPU "
            f"p99 {worst['cpu_p99_ms']} ms",
        },
    ]


def pages_markdown(section: dict[str, Any]) -> list[str]:
    lines = [
        "",
        f"### Pages, server-side (in process; {section['incidents']:,} incidents; the incident "
        f"page has {section['findings']} findings and a timeline over "
        f"{section['timeline_records']['logs']:,} log lines and "
        f"{section['timeline_records']['traces']:,} traces)",
        "",
        "| page | p50 | p99 | max | CPU p50 | CPU p99 |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    rows = [("one incident (60 findings)", section["incident_page"])]
    rows += [(f"incidents list: {k.replace('_', ' ')}", v) for k, v in section["list"].items()]
    for name, s in rows:
        lines.append(
            f"| {name} | {s['p50_ms']} ms | {s['p99_ms']} ms | {s['max_ms']} ms | "
            f"{s['cpu_p50_ms']} ms | {s['cpu_p99_ms']} ms |"
        )
    return lines
