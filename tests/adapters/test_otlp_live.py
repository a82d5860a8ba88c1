"""The OpenTelemetry Python SDK exports spans and logs to a real server (`python -m engine
serve`) with its OTLP/HTTP exporters; the rules then find them behind an alert."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.trace import SpanKind

from engine.testing import ServerProcess as Server
from tests.ops.helpers import alert, bearer, ops_server

pytestmark = pytest.mark.e2e
SERVICE = "otlp-shop"


class SpanExporter(OTLPSpanExporter):
    """The SDK's exporter, keeping what each export() returned."""

    results: list[Any]

    def export(self, spans: Sequence[Any]) -> Any:
        result = super().export(spans)
        self.results.append(result)
        return result


class LogExporter(OTLPLogExporter):
    results: list[Any]

    def export(self, batch: Sequence[Any]) -> Any:
        result = super().export(batch)
        self.results.append(result)
        return result


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = ops_server(tmp_path_factory.mktemp("otlp"), "--ingest-min-span-ms", "100").start()
    yield srv
    srv.stop()


def _export(server: Server) -> tuple[list[Any], list[Any], list[str]]:
    resource = Resource.create({"service.name": SERVICE})
    spans = SpanExporter(
        endpoint=f"{server.url}/v1/traces",
        headers=bearer("ingest"),
        compression=Compression.Gzip,
        timeout=10,
    )
    spans.results = []
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(spans))
    tracer = tracer_provider.get_tracer("test")
    trace_ids = []
    now = time.time_ns()
    for i in range(8):
        start = now - (300 - i * 10) * 10**9  # five minutes ago, every ten seconds
        span = tracer.start_span("POST /checkout", kind=SpanKind.SERVER, start_time=start)
        span.set_attribute("http.route", "/checkout")
        span.set_attribute("http.response.status_code", 200)
        span.set_attribute("user.email", "not-kept@example.com")
        trace_ids.append(format(span.get_span_context().trace_id, "032x"))
        child = tracer.start_span(
            "SELECT orders",
            kind=SpanKind.CLIENT,
            start_time=start + 10**6,
            context=trace.set_span_in_context(span),
        )
        child.end(end_time=start + 2_000 * 10**6)
        span.end(end_time=start + 2_500 * 10**6)  # 2.5 s: above the 1 s p99 threshold
    fast = tracer.start_span("GET /health", kind=SpanKind.SERVER)
    fast.end()  # well under --ingest-min-span-ms: filtered
    assert tracer_provider.force_flush(10_000)

    logs = LogExporter(endpoint=f"{server.url}/v1/logs", headers=bearer("ingest"), timeout=10)
    logs.results = []
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(BatchLogRecordProcessor(logs))
    logger = logger_provider.get_logger("test")
    for i in range(6):
        logger.emit(
            timestamp=time.time_ns(),
            severity_number=SeverityNumber.ERROR,
            severity_text="ERROR",
            body=f"payment gateway timeout after {3000 + i} ms",
            attributes={"code.function": "charge"},
        )
    logger.emit(severity_number=SeverityNumber.INFO, body="checkout started")  # filtered
    assert logger_provider.force_flush(10_000)
    tracer_provider.shutdown()
    logger_provider.shutdown()
    return spans.results, logs.results, trace_ids


def test_sdk_exports_arrive_and_the_rules_fire_on_them(server: Server) -> None:
    span_results, log_results, trace_ids = _export(server)
    assert span_results and all(r.name == "SUCCESS" for r in span_results), span_results
    assert log_results and all(r.name == "SUCCESS" for r in log_results), log_results

    r = httpx.post(
        server.url + "/alerts", json=alert("HighLatency", SERVICE), headers=bearer("ingest")
    )
    assert r.status_code == 200, r.text
    incident_id = r.json()["results"][0]["incident"]
    incident = httpx.get(f"{server.url}/api/incidents/{incident_id}", headers=bearer("read")).json()
    findings = {f["rule"]: f for f in incident["findings"]}
    assert {"traces.tail_latency", "logs.error_spike"} <= set(findings), findings
    latency = findings["traces.tail_latency"]
    assert "8 traces" in latency["summary"]  # the entry spans only: no client children
    path = latency["evidence"][0]["path"]
    record = httpx.get(f"{server.url}/api/{path}", headers=bearer("read")).json()
    assert record["service"] == SERVICE and record["trace_id"] in trace_ids
    assert record["duration_ms"] == pytest.approx(2500.0)
    assert (record["kind"], record["name"], record["status"]) == (
        "server",
        "POST /checkout",
        "unset",
    )
    assert record["attributes"] == {"http.route": "/checkout", "http.response.status_code": 200}
    assert "payment gateway timeout" in findings["logs.error_spike"]["summary"]

    metrics = httpx.get(server.url + "/metrics").text
    for line in (
        'incident_pilot_ingest_records_total{outcome="stored",source="otlp_traces"} 8.0',
        'incident_pilot_ingest_records_total{outcome="filtered",source="otlp_traces"} 9.0',
        'incident_pilot_ingest_records_total{outcome="stored",source="otlp_logs"} 6.0',
        'incident_pilot_ingest_records_total{outcome="filtered",source="otlp_logs"} 1.0',
    ):
        assert line in metrics, metrics


def test_without_an_ingest_token_the_exporter_is_refused(server: Server) -> None:
    empty = b""
    for path in ("/v1/traces", "/v1/logs"):
        headers = {"Content-Type": "application/x-protobuf"}
        assert httpx.post(server.url + path, content=empty, headers=headers).status_code == 401
        r = httpx.post(server.url + path, content=empty, headers={**headers, **bearer("read")})
        assert r.status_code == 403
        r = httpx.post(server.url + path, content=empty, headers={**headers, **bearer("ingest")})
        assert r.status_code == 200
    refused = SpanExporter(endpoint=f"{server.url}/v1/traces", timeout=5)
    refused.results = []
    provider = TracerProvider(resource=Resource.create({"service.name": SERVICE}))
    # Each span exported as it ends: a 401 is not retried, and reports FAILURE.
    provider.add_span_processor(SimpleSpanProcessor(refused))
    provider.get_tracer("t").start_span("y").end()
    assert [r.name for r in refused.results] == ["FAILURE"]
    provider.shutdown()


def test_the_documented_sdk_environment_variables_work(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/INGEST.md's recipe: endpoint, headers (URL-encoded) and gzip from the
    environment, nothing in code."""
    token = bearer("ingest")["Authorization"].removeprefix("Bearer ")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", server.url)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"Authorization=Bearer%20{token}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
    exporter = SpanExporter()
    exporter.results = []
    provider = TracerProvider(resource=Resource.create({"service.name": "env-configured"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    provider.get_tracer("t").start_span("GET /", kind=SpanKind.SERVER).end()
    provider.shutdown()
    assert [r.name for r in exporter.results] == ["SUCCESS"]
