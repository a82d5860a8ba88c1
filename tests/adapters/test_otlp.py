"""The OTLP/HTTP receiver: bodies built with the official message classes, in protobuf and
OTLP/JSON, gzip or not, mapped to context records; refusals as google.rpc.Status."""

from __future__ import annotations

import base64
import gzip
import json
import time
from datetime import timedelta
from typing import Any

import pytest
from google.protobuf import json_format
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from engine.adapters import otlp
from engine.adapters.volume import VolumeFilter
from engine.server.auth import required_scope
from engine.timeutil import utcnow

TRACE_ID = bytes.fromhex("5b8efff798038103d269b633813fc60c")
SPAN_ID = bytes.fromhex("eee19b7ec3c1b174")
PARENT_ID = bytes.fromhex("eee19b7ec3c1b173")
PB = {"Content-Type": "application/x-protobuf"}
JS = {"Content-Type": "application/json"}


def _kv(key: str, value: Any) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def _now_ns(ago_s: float = 0.0) -> int:
    return time.time_ns() - int(ago_s * 1e9)


def span(
    name: str = "GET /pay",
    duration_ms: float = 1500.0,
    *,
    kind: int = Span.SPAN_KIND_SERVER,
    parent: bytes = b"",
    status: int = Status.STATUS_CODE_UNSET,
    attributes: dict[str, Any] | None = None,
    **over: Any,
) -> Span:
    start = _now_ns(60)
    values: dict[str, Any] = {
        "trace_id": TRACE_ID,
        "span_id": SPAN_ID,
        "parent_span_id": parent,
        "name": name,
        "kind": kind,
        "start_time_unix_nano": start,
        "end_time_unix_nano": start + int(duration_ms * 1e6),
        "status": Status(code=status),
        "attributes": [_kv(k, v) for k, v in (attributes or {}).items()],
    }
    values.update(over)
    return Span(**values)


def traces(*spans: Span, service: str | None = "checkout-api") -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    if service is not None:
        resource_spans.resource.attributes.append(_kv("service.name", service))
    resource_spans.scope_spans.add().spans.extend(spans)
    return request


def logrec(text: str = "payment failed", severity: int = 17, **over: Any) -> LogRecord:
    values: dict[str, Any] = {
        "time_unix_nano": _now_ns(30),
        "severity_number": severity,
        "severity_text": "",
        "body": AnyValue(string_value=text),
    }
    values.update(over)
    return LogRecord(**values)


def logs(*records: LogRecord, service: str | None = "checkout-api") -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest()
    resource_logs = request.resource_logs.add()
    if service is not None:
        resource_logs.resource.attributes.append(_kv("service.name", service))
    resource_logs.scope_logs.add().log_records.extend(records)
    return request


def otlp_json(message: Any) -> bytes:
    """OTLP/JSON as exporters write it: camelCase keys, enum ints, hex trace/span ids."""
    document = json_format.MessageToDict(message, use_integers_for_enums=True)

    def hexify(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("traceId", "spanId", "parentSpanId"):
                    node[key] = base64.b64decode(value).hex()
                else:
                    hexify(value)
        elif isinstance(node, list):
            for value in node:
                hexify(value)

    hexify(document)
    return json.dumps(document).encode()


def stored(state: Any, kind: str) -> list[Any]:
    now = utcnow()
    return state.store.query_context(kind, start=now - timedelta(days=1), end=now)


# --- the adapter (pure functions) ---------------------------------------------------


def test_a_server_span_becomes_a_trace_record() -> None:
    body = traces(
        span(
            attributes={
                "http.route": "/pay",
                "http.response.status_code": 503,
                "user.id": "u-1",
            },
            status=Status.STATUS_CODE_ERROR,
            parent=PARENT_ID,
        )
    ).SerializeToString()
    batch = otlp.decode_traces(body, "protobuf", utcnow())
    assert (batch.filtered, batch.rejected) == (0, 0)
    [record] = batch.records
    assert record.kind == "traces" and record.service == "checkout-api"
    assert record.fields == {
        "trace_id": TRACE_ID.hex(),
        "duration_ms": 1500.0,
        "span_id": SPAN_ID.hex(),
        "name": "GET /pay",
        "kind": "server",
        "status": "error",
        "parent_span_id": PARENT_ID.hex(),
        "attributes": {"http.route": "/pay", "http.response.status_code": 503},
    }
    assert abs((utcnow() - record.ts).total_seconds() - 60) < 5


def test_json_and_protobuf_decode_to_the_same_records() -> None:
    request = traces(span(), span("child", 3.0, kind=Span.SPAN_KIND_CLIENT, parent=SPAN_ID))
    now = utcnow()
    from_pb = otlp.decode_traces(request.SerializeToString(), "protobuf", now)
    from_json = otlp.decode_traces(otlp_json(request), "json", now)
    assert from_pb.records == from_json.records
    assert from_json.records[0].fields["trace_id"] == TRACE_ID.hex()
    assert from_json.filtered == 1  # the client child span


def test_only_root_and_entry_spans_are_stored_and_the_volume_filter_applies() -> None:
    request = traces(
        span("root", 900.0, kind=Span.SPAN_KIND_INTERNAL),
        span("zero-parent", 900.0, kind=Span.SPAN_KIND_CLIENT, parent=bytes(8)),
        span("server", 10.0, parent=PARENT_ID),
        span("consumer", 900.0, kind=Span.SPAN_KIND_CONSUMER, parent=PARENT_ID),
        span("db", 2000.0, kind=Span.SPAN_KIND_CLIENT, parent=SPAN_ID),
        span("inner", 2000.0, kind=Span.SPAN_KIND_INTERNAL, parent=SPAN_ID),
        span("fast-error", 1.0, parent=PARENT_ID, status=Status.STATUS_CODE_ERROR),
    )
    batch = otlp.decode_traces(
        request.SerializeToString(), "protobuf", utcnow(), volume=VolumeFilter(min_span_ms=100)
    )
    assert [r.fields["name"] for r in batch.records] == [
        "root",
        "zero-parent",
        "consumer",
        "fast-error",
    ]
    assert (batch.filtered, batch.rejected) == (3, 0)


def test_invalid_spans_are_rejected_and_named() -> None:
    start = _now_ns(10)
    request = traces(
        span("ok"),
        span("no trace id", trace_id=b""),
        span("short id", span_id=b"\x01\x02"),
        span("backwards", start_time_unix_nano=start, end_time_unix_nano=start - 1),
        span("future", start_time_unix_nano=_now_ns(-3600), end_time_unix_nano=_now_ns(-3601)),
        span("ancient", start_time_unix_nano=5, end_time_unix_nano=10),
        span("nan", attributes={"http.route": "x", "error.type": float("nan")}),
    )
    batch = otlp.decode_traces(request.SerializeToString(), "protobuf", utcnow())
    assert [r.fields["name"] for r in batch.records] == ["ok"]
    assert batch.rejected == 6
    message = batch.message("spans")
    for words in ("no trace_id", "span_id is not 8 bytes", "ends before it starts", "future"):
        assert words in message
    assert "before 2000" in message and "not finite" in message


def test_a_resource_without_service_name_is_unknown_service_with_a_warning() -> None:
    batch = otlp.decode_traces(
        traces(span(), service=None).SerializeToString(), "protobuf", utcnow()
    )
    assert batch.records[0].service == "unknown_service"
    assert batch.rejected == 0 and "unknown_service" in batch.message("spans")


@pytest.mark.parametrize(
    ("number", "text", "level"),
    [
        (1, "", "TRACE"),
        (8, "", "DEBUG"),
        (9, "", "INFO"),
        (13, "", "WARN"),
        (17, "whatever", "ERROR"),
        (20, "", "ERROR"),
        (21, "", "FATAL"),
        (24, "", "FATAL"),
        (0, "warning", "WARN"),
        (0, "Critical", "FATAL"),
        (0, "odd", "ODD"),
        (0, "", "UNSPECIFIED"),
    ],
)
def test_severity_maps_to_a_level(number: int, text: str, level: str) -> None:
    assert otlp.level_of(number, text) == level


def test_a_log_record_becomes_a_log_record() -> None:
    kv = AnyValue()
    kv.kvlist_value.values.append(_kv("order", 42))
    request = logs(
        logrec(
            "payment failed: card declined",
            attributes=[_kv("exception.type", "CardError"), _kv("retry", True)],
            trace_id=TRACE_ID,
            span_id=SPAN_ID,
        ),
        logrec(body=kv, severity=21, time_unix_nano=0, observed_time_unix_nano=_now_ns(5)),
        logrec("fine", severity=9),
    )
    now = utcnow()
    batch = otlp.decode_logs(request.SerializeToString(), "protobuf", now)
    first, second = batch.records
    assert first.fields == {
        "level": "ERROR",
        "message": "payment failed: card declined",
        "trace_id": TRACE_ID.hex(),
        "span_id": SPAN_ID.hex(),
        "attributes": {"exception.type": "CardError", "retry": True},
    }
    assert second.fields == {"level": "FATAL", "message": '{"order":42}'}
    assert abs((now - second.ts).total_seconds() - 5) < 3  # observed time
    assert batch.filtered == 1  # INFO is below the default WARN
    assert otlp.decode_logs(otlp_json(request), "json", now).records == batch.records


def test_a_log_without_any_time_is_received_now() -> None:
    now = utcnow()
    batch = otlp.decode_logs(logs(logrec(time_unix_nano=0)).SerializeToString(), "protobuf", now)
    assert batch.records[0].ts == now


def test_decompress_stops_past_the_cap() -> None:
    bomb = gzip.compress(b"\0" * (50 * 1024 * 1024))
    assert len(bomb) < 100 * 1024
    with pytest.raises(otlp.OtlpError) as exc:
        otlp.decompress(bomb, "gzip", 1024 * 1024)
    assert exc.value.status == 413
    assert otlp.decompress(gzip.compress(b"abc"), "gzip", 3) == b"abc"
    with pytest.raises(otlp.OtlpError) as exc:
        otlp.decompress(gzip.compress(b"abc")[:-4], "gzip", 100)
    assert exc.value.status == 400
    with pytest.raises(otlp.OtlpError) as exc:
        otlp.decompress(b"abc", "br", 100)
    assert exc.value.status == 415


def test_the_ingest_scope_guards_the_otlp_paths() -> None:
    assert required_scope("POST", "/v1/traces", False) == "ingest"
    assert required_scope("POST", "/v1/logs", False) == "ingest"


# --- the routes (in-process app) -----------------------------------------------------


def _status(response: Any) -> status_pb2.Status:
    status = status_pb2.Status()
    if response.headers["content-type"].startswith("application/json"):
        json_format.Parse(response.text, status)
    else:
        status.ParseFromString(response.content)
    return status


@pytest.mark.parametrize("encoding", ["protobuf", "json"])
@pytest.mark.parametrize("gzipped", [False, True])
def test_traces_are_stored_and_answered_in_the_request_encoding(
    make_app, encoding: str, gzipped: bool
) -> None:
    state, client = make_app()
    request = traces(span(), span("bad", trace_id=b""))
    body = request.SerializeToString() if encoding == "protobuf" else otlp_json(request)
    headers = dict(PB if encoding == "protobuf" else JS)
    if gzipped:
        body, headers["Content-Encoding"] = gzip.compress(body), "gzip"
    r = client.post("/v1/traces", content=body, headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == headers["Content-Type"]
    answer = ExportTraceServiceResponse()
    if encoding == "protobuf":
        answer.ParseFromString(r.content)
    else:
        json_format.Parse(r.text, answer)
    assert answer.partial_success.rejected_spans == 1
    assert "no trace_id" in answer.partial_success.error_message
    [record] = stored(state, "traces")
    assert record.service == "checkout-api" and record.fields["trace_id"] == TRACE_ID.hex()
    metrics = client.get("/metrics").text
    assert (
        'incident_pilot_ingest_records_total{outcome="stored",source="otlp_traces"} 1.0' in metrics
    )
    assert (
        'incident_pilot_ingest_records_total{outcome="rejected",source="otlp_traces"} 1.0'
        in metrics
    )


def test_logs_full_success_leaves_partial_success_unset(make_app) -> None:
    state, client = make_app()
    r = client.post(
        "/v1/logs", content=logs(logrec(), logrec("x", severity=5)).SerializeToString(), headers=PB
    )
    assert r.status_code == 200
    answer = ExportLogsServiceResponse()
    answer.ParseFromString(r.content)
    assert not answer.HasField("partial_success")
    assert [rec.fields["level"] for rec in stored(state, "logs")] == ["ERROR"]
    metrics = client.get("/metrics").text
    assert (
        'incident_pilot_ingest_records_total{outcome="filtered",source="otlp_logs"} 1.0' in metrics
    )
    assert 'incident_pilot_context_records_ingested_total{kind="logs"} 1.0' in metrics


def test_a_compression_bomb_gets_413_and_nothing_is_stored(make_app) -> None:
    state, client = make_app(max_body=64 * 1024)
    payload = logs(*(logrec("x" * 1000) for _ in range(200))).SerializeToString()
    assert len(payload) > 64 * 1024
    bomb = gzip.compress(payload)
    assert len(bomb) < 64 * 1024
    r = client.post("/v1/logs", content=bomb, headers={**PB, "Content-Encoding": "gzip"})
    assert r.status_code == 413
    assert "decompressed" in _status(r).message
    assert stored(state, "logs") == []


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        (b"\xff\xff\xff garbage", PB),
        (b"{not json", JS),
        (b"[1, 2]", JS),
        (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}', JS),
        (b'{"resourceSpans": 7}', JS),
        (b"not gzip", {**PB, "Content-Encoding": "gzip"}),
    ],
)
def test_a_bad_body_gets_400_with_a_status(make_app, body: bytes, headers: dict) -> None:
    state, client = make_app()
    r = client.post("/v1/traces", content=body, headers=headers)
    assert r.status_code == 400, r.text
    assert r.headers["content-type"] == headers["Content-Type"]
    status = _status(r)
    assert status.code == 3 and status.message
    bad = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad)
    assert stored(state, "traces") == []


def test_unknown_fields_in_json_are_ignored(make_app) -> None:
    state, client = make_app()
    document = json.loads(otlp_json(traces(span())))
    document["futureField"] = {"x": 1}
    document["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["newThing"] = 3
    r = client.post("/v1/traces", content=json.dumps(document), headers=JS)
    assert r.status_code == 200, r.text
    assert len(stored(state, "traces")) == 1


def test_an_unknown_content_type_gets_415(make_app) -> None:
    _, client = make_app()
    r = client.post("/v1/logs", content=b"x", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415
    assert "application/x-protobuf" in _status(r).message


def test_too_many_records_gets_413_and_nothing_is_stored(make_app) -> None:
    state, client = make_app()
    state.context_limits = type(state.context_limits)(max_records=2)
    r = client.post(
        "/v1/traces", content=traces(span(), span(), span()).SerializeToString(), headers=PB
    )
    assert r.status_code == 413 and "--max-records" in _status(r).message
    assert stored(state, "traces") == []


def test_a_store_that_cannot_write_gets_503_with_retry_after(make_app) -> None:
    state, client = make_app()

    def broken(records: Any) -> Any:
        raise OSError("disk full")

    state.store.append_context = broken  # type: ignore[method-assign]
    r = client.post("/v1/traces", content=traces(span()).SerializeToString(), headers=PB)
    assert r.status_code == 503
    assert int(r.headers["retry-after"]) > 0
    assert _status(r).code == 14  # UNAVAILABLE


def test_an_empty_request_is_a_success(make_app) -> None:
    _, client = make_app()
    for path in ("/v1/traces", "/v1/logs"):
        r = client.post(path, content=b"", headers=PB)
        assert r.status_code == 200 and r.content == b""
        r = client.post(path, content=b"{}", headers=JS)
        assert r.status_code == 200 and r.json() == {}


def test_attributes_over_the_size_limit_are_rejected_just_under_it_kept() -> None:
    """The size check is skipped only when the wire size proves the JSON small: a value
    that escapes to 6 bytes a character must still be caught."""
    escaped = "\x01" * (otlp.MAX_TEXT // 6 + 100)  # small on the wire, 6x as JSON
    near = "a" * (otlp.MAX_TEXT - 100)
    request = logs(
        logrec(attributes=[_kv("blob", escaped)]),
        logrec(attributes=[_kv("blob", near)]),
        logrec(attributes=[_kv("blob", near + "a" * 200)]),
    )
    batch = otlp.decode_logs(request.SerializeToString(), "protobuf", utcnow())
    assert [r.fields["attributes"]["blob"] for r in batch.records] == [near]
    assert batch.rejected == 2 and "attributes are larger" in batch.message("log records")
    spans = traces(
        span(attributes={"http.route": escaped}), span(attributes={"http.route": "/pay"})
    )
    batch = otlp.decode_traces(spans.SerializeToString(), "protobuf", utcnow())
    assert batch.rejected == 1 and len(batch.records) == 1
