"""Prometheus metrics for `GET /metrics`, on a per-app `CollectorRegistry`.

Counters the app already keeps (`Counters`: alerts by status, outcomes, context by kind)
and store-derived gauges (oldest context record, outbox) are read at scrape time by a
custom collector; rule evaluation is observed through an `AppState` listener. The scrape
handler runs in a worker thread, so the collector may call the store.

Other parts report through the methods they are handed: `Metrics.narration` is the
narrator's `on_outcome` (engine.server.state wires it), `Metrics.delivery` counts a delivery.
"""

from __future__ import annotations

import logging
import platform
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from engine import __version__
from engine.server.counters import Counters
from engine.store.base import Store

if TYPE_CHECKING:
    from engine.pipeline import AlertResult

log = logging.getLogger("incident_pilot.metrics")
NS = "incident_pilot"
RULE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
disable_created_metrics()  # no *_created series: they double the output for nothing here


class _StateCollector(Collector):
    """The app's counters, and gauges read from the store, at scrape time."""

    def __init__(self, store: Store, counters: Counters) -> None:
        self.store = store
        self.counters = counters

    def collect(self) -> Iterator[Metric]:
        counters = self.counters.snapshot()
        alerts = CounterMetricFamily(
            f"{NS}_alerts_received", "Alerts received on POST /alerts, by status", labels=["status"]
        )
        outcomes = CounterMetricFamily(
            f"{NS}_incident_outcomes",
            "What alerts did to incidents (opened, attached, repeat, resolved, ignored, "
            "resolved_by_hand)",
            labels=["outcome"],
        )
        context = CounterMetricFamily(
            f"{NS}_context_records_ingested", "Context records stored, by kind", labels=["kind"]
        )
        for status in ("firing", "resolved"):
            alerts.add_metric([status], counters.get(f"alerts_{status}", 0))
        for outcome in ("opened", "attached", "repeat", "resolved", "ignored", "resolved_by_hand"):
            outcomes.add_metric([outcome], counters.get(f"outcome_{outcome}", 0))
        for kind in ("deploys", "logs", "traces"):
            context.add_metric([kind], counters.get(f"context_{kind}", 0))
        yield from (alerts, outcomes, context)
        yield from self._store_gauges()

    def _store_gauges(self) -> Iterator[Metric]:
        age = GaugeMetricFamily(
            f"{NS}_context_oldest_age_seconds",
            "Age of the oldest stored context record (0 when there is none)",
        )
        outbox = GaugeMetricFamily(
            f"{NS}_outbox_deliveries", "Deliveries in the outbox, by status", labels=["status"]
        )
        up = GaugeMetricFamily(f"{NS}_store_up", "1 when the store answered this scrape")
        backlog = GaugeMetricFamily(
            f"{NS}_outbox_oldest_pending_age_seconds",
            "Age of the oldest delivery not yet delivered or dead (0 when there is none)",
        )
        try:
            oldest = self.store.oldest_context_ts()
            stats = self.store.stats()
            pending = self.store.oldest_pending_delivery()
        except Exception:  # a scrape must answer even when the store does not
            log.warning("metrics: the store did not answer", exc_info=True)
            up.add_metric([], 0)
            yield up
            return
        age.add_metric([], max(0.0, time.time() - oldest.timestamp()) if oldest else 0.0)
        by_status = stats.get("outbox") or {}
        for status in sorted({"pending", "sending", "delivered", "dead", *by_status}):
            outbox.add_metric([str(status)], float(by_status.get(status, 0) or 0))
        backlog.add_metric([], max(0.0, time.time() - pending.timestamp()) if pending else 0.0)
        up.add_metric([], 1)
        yield from (age, outbox, backlog, up)


class Metrics:
    """Every metric of one app, on its own registry."""

    def __init__(self, store: Store, counters: Counters, rules_loaded: int) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.findings = Counter(
            f"{NS}_findings", "Findings emitted, by rule and severity", ["rule", "severity"],
            registry=r,
        )  # fmt: skip
        self.rule_seconds = Histogram(
            f"{NS}_rule_evaluation_seconds", "Time to evaluate one rule for one alert", ["rule"],
            buckets=RULE_BUCKETS, registry=r,
        )  # fmt: skip
        self.rule_errors = Counter(
            f"{NS}_rule_errors", "Rule evaluations that failed, by rule", ["rule"], registry=r
        )
        self.rule_budget_overruns = Counter(
            f"{NS}_rule_budget_overruns", "Pull rules whose source did not answer within the "
            "pull budget, by rule", ["rule"], registry=r,
        )  # fmt: skip
        self.deliveries = Counter(
            f"{NS}_deliveries", "Delivery attempts, by sink and outcome", ["sink", "outcome"],
            registry=r,
        )  # fmt: skip
        self.ingest_records = Counter(
            f"{NS}_ingest_records", "Records pushed by collectors (OTLP, Loki), by source and "
            "outcome (stored, filtered by the volume filter, rejected as invalid)",
            ["source", "outcome"], registry=r,
        )  # fmt: skip
        self.pull_queries = Counter(
            f"{NS}_pull_queries", "Queries of pull rules, by source (prometheus, loki) and "
            "outcome (ok, error, timeout; cached: answered by the same request's earlier one)",
            ["source", "outcome"], registry=r,
        )  # fmt: skip
        self.narrations = Counter(
            f"{NS}_narrations", "LLM narration attempts, by outcome", ["outcome"], registry=r
        )
        self.rules_loaded = Gauge(f"{NS}_rules_loaded", "Enabled rules in use", registry=r)
        self.reload_success = Gauge(
            f"{NS}_rules_last_reload_success", "1 if the last rule reload succeeded", registry=r
        )
        self.reload_time = Gauge(
            f"{NS}_rules_last_reload_timestamp_seconds",
            "When the rules were last (re)loaded or a reload was attempted",
            registry=r,
        )
        self.reloads = Counter(
            f"{NS}_rule_reloads", "Rule reloads, by result", ["result"], registry=r
        )
        self.requests = Counter(
            f"{NS}_http_requests", "HTTP requests, by method, route and status",
            ["method", "route", "status"], registry=r,
        )  # fmt: skip
        self._request_children: dict[tuple[str, str, int], Any] = {}
        r.register(_StateCollector(store, counters))
        _register_runtime(r)
        self.rules_loaded.set(rules_loaded)
        self.reload_success.set(1)
        self.reload_time.set(time.time())

    def observe(self, result: AlertResult) -> None:
        """An AppState listener: rule timings, errors and findings of one alert."""
        evaluation = result.evaluation
        if evaluation is None:
            return
        for trace in evaluation.traces:
            self.rule_seconds.labels(trace.rule_id).observe(trace.seconds)
            if trace.error:
                self.rule_errors.labels(trace.rule_id).inc()
        for finding in evaluation.findings:
            self.findings.labels(finding.rule_id, finding.severity.word).inc()

    def pull_rule(self, rule: str, outcome: str) -> None:
        """A pull rule that did not make it (engine.pull's `on_rule`): outcome `overrun`
        (no answer within the budget) or `error` (refused, failed, broken)."""
        if outcome == "overrun":
            self.rule_budget_overruns.labels(rule).inc()
        else:
            self.rule_errors.labels(rule).inc()

    def reloaded(self, ok: bool, rules: int | None = None) -> None:
        self.reload_success.set(1 if ok else 0)
        self.reload_time.set(time.time())
        self.reloads.labels("success" if ok else "failure").inc()
        if ok and rules is not None:
            self.rules_loaded.set(rules)

    def delivery(self, sink: str, outcome: str) -> None:
        """One delivery attempt: outcome is e.g. delivered, retry, dead."""
        self.deliveries.labels(sink, outcome).inc()

    def ingest(self, source: str, outcome: str, n: int = 1) -> None:
        """Count `n` pushed records of `source` (otlp_traces, otlp_logs, loki) by outcome:
        stored, filtered or rejected."""
        self.ingest_records.labels(source, outcome).inc(n)

    def pull_query(self, source: str, outcome: str) -> None:
        """One query a pull rule needed (engine.pull.runner): ok, error, timeout, cached."""
        self.pull_queries.labels(source, outcome).inc()

    def narration(self, outcome: str) -> None:
        """One narration attempt: outcome is e.g. ok, error, timeout, skipped."""
        self.narrations.labels(outcome).inc()

    def request(self, method: str, route: str, status: int) -> None:
        # Once per HTTP request: the labelled child is looked up once per (method, route,
        # status) and kept (labels() takes a lock and builds its key every time).
        key = (method, route, status)
        child = self._request_children.get(key)
        if child is None:
            child = self._request_children[key] = self.requests.labels(method, route, str(status))
        child.inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _register_runtime(registry: CollectorRegistry) -> None:
    """The process (CPU, memory, file descriptors: Linux /proc), the Python platform, and
    which build runs: `incident_pilot_build_info{version, python} 1`."""
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    info = Gauge(
        f"{NS}_build_info",
        "Always 1: the version of incident-pilot and of Python that run",
        ["version", "python"],
        registry=registry,
    )
    info.labels(__version__, platform.python_version()).set(1)


async def metrics_endpoint(request: Request) -> Response:
    metrics: Metrics = request.app.state.ip.metrics
    body = await run_in_threadpool(metrics.render)
    return Response(body, headers={"Content-Type": CONTENT_TYPE_LATEST})
