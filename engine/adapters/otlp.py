"""OTLP/HTTP bodies -> context records: spans become `traces`, log records become `logs`.

Pure functions, no I/O: `decode_traces` / `decode_logs` (an `ExportTraceServiceRequest` /
`ExportLogsServiceRequest` in binary protobuf or OTLP/JSON, decoded by otlp_wire with
the official `opentelemetry-proto` classes). The wire format and the answers
(`decompress`, `export_response`, `status_body`) are otlp_wire's, re-exported here.
The route (engine/server/otlp.py) stores what they return. docs/INGEST.md has the mapping.

A body that cannot be decoded raises `OtlpError` (400, or 413 past a limit). A record that
decodes but is unusable (no trace id, a timestamp in the future, a non-finite number, ...)
is *rejected*: counted and named in the answer's `partial_success`, never stored. A record
the volume filter or the span selection leaves out is *filtered*: accepted, not stored.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from engine.adapters.otlp_wire import (
    ENCODINGS,
    JSON,
    PROTOBUF,
    Batch,
    OtlpError,
    OtlpLimits,
    decompress,
    export_response,
    parse,
    status_body,
)
from engine.adapters.volume import VolumeFilter, normalise_level
from engine.store.base import NewContext, new_context

UNKNOWN_SERVICE = "unknown_service"  # the OTel convention for a resource without service.name
MAX_NAME = 256  # service names (as /context/*)
MAX_TEXT = 64 * 1024  # a log message, the encoded attributes of one record (as /context/*)
MAX_DEPTH = 16  # nested AnyValue arrays / kvlists kept in attributes
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)  # before this a timestamp is a bug, not a time
MAX_DURATION_MS = 1e12  # as /context/traces
DEFAULT_LIMITS = OtlpLimits()
T = TypeVar("T")
DEFAULT_VOLUME = VolumeFilter()  # the serve defaults (state.settings.volume in the server)

# Span attributes a trace record keeps (semantic-convention names, old and new HTTP ones).
SPAN_ATTRIBUTES = (
    "http.route",
    "http.request.method",
    "http.method",
    "http.response.status_code",
    "http.status_code",
    "url.path",
    "rpc.system",
    "rpc.service",
    "rpc.method",
    "rpc.grpc.status_code",
    "db.system",
    "db.system.name",
    "db.operation.name",
    "messaging.system",
    "messaging.destination.name",
    "error.type",
    "exception.type",
    "peer.service",
    "server.address",
)
SPAN_KINDS = {
    0: "unspecified",
    1: "internal",
    2: "server",
    3: "client",
    4: "producer",
    5: "consumer",
}
STATUS = {0: "unset", 1: "ok", 2: "error"}
# The kinds of span that start a service's handling of a request ("entry spans"); with root
# spans (no parent), the only spans stored: see docs/INGEST.md "Which spans are stored".
ENTRY_KINDS = frozenset({trace_pb2.Span.SPAN_KIND_SERVER, trace_pb2.Span.SPAN_KIND_CONSUMER})
# OTel SeverityNumber ranges (1-4 TRACE ... 21-24 FATAL) -> the adapters' level words.
_SEVERITY = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")


class _Reject(Exception):
    """One record is unusable; the message is why (summed up in partial_success)."""


# --- shared mapping ------------------------------------------------------------


def _any_value(value: common_pb2.AnyValue, depth: int = 0) -> Any:
    """An AnyValue as a JSON value: bytes as base64, arrays and kvlists nested."""
    if depth > MAX_DEPTH:
        raise _Reject(f"an attribute is nested more than {MAX_DEPTH} levels deep")
    which = value.WhichOneof("value")
    if which == "string_value":
        return _clean(value.string_value)
    if which == "bool_value":
        return value.bool_value
    if which == "int_value":
        return value.int_value
    if which == "double_value":
        if not math.isfinite(value.double_value):
            raise _Reject("a number is not finite (NaN or infinity)")
        return value.double_value
    if which == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    if which == "array_value":
        return [_any_value(v, depth + 1) for v in value.array_value.values]
    if which == "kvlist_value":
        return _attributes(value.kvlist_value.values, depth + 1)
    return None


def _attributes(kvs: Iterable[common_pb2.KeyValue], depth: int = 0) -> dict[str, Any]:
    return {_clean(kv.key): _any_value(kv.value, depth) for kv in kvs}


def _clean(text: str) -> str:
    if "\x00" in text:
        raise _Reject("a string contains a NUL character")
    return text


def _service(resource_attributes: Iterable[common_pb2.KeyValue], batch: Batch) -> str:
    for kv in resource_attributes:
        if kv.key == "service.name" and kv.value.WhichOneof("value") == "string_value":
            name = kv.value.string_value.strip()
            if name:
                if len(name) > MAX_NAME or "\x00" in name:
                    raise _Reject(
                        f"service.name is longer than {MAX_NAME} characters or contains NUL"
                    )
                return name
    batch.warnings[f"no service.name resource attribute: stored as {UNKNOWN_SERVICE!r}"] += 1
    return UNKNOWN_SERVICE


def _time(nanos: int, now: datetime, limits: OtlpLimits, what: str) -> datetime:
    ts = datetime.fromtimestamp((nanos // 1000) / 1e6, UTC)  # microseconds, as stored
    if ts < EARLIEST:
        raise _Reject(f"{what} is before {EARLIEST.year}")
    if ts > now + limits.max_future:
        raise _Reject(f"{what} is more than {limits.max_future} in the future")
    return ts


def _id(raw: bytes, size: int, what: str, required: bool) -> str | None:
    if not raw or raw == bytes(size):
        if required:
            raise _Reject(f"no {what}")
        return None
    if len(raw) != size:
        raise _Reject(f"{what} is not {size} bytes")
    return raw.hex()


# JSON text is at most 6 times the protobuf bytes of the same values (a byte that needs
# `\u00XX` escaping), so attributes whose wire size is below MAX_TEXT / 6 cannot exceed
# MAX_TEXT encoded: the common case skips encoding them just to measure.
_SURELY_SMALL = MAX_TEXT // 6


def _check_size(fields: dict[str, Any], wire_size: int) -> None:
    attributes = fields.get("attributes")
    if attributes and wire_size >= _SURELY_SMALL and len(json.dumps(attributes)) > MAX_TEXT:
        raise _Reject(f"the attributes are larger than {MAX_TEXT} bytes")


def _count(total: int, limits: OtlpLimits, noun: str) -> None:
    if total > limits.max_records:
        raise OtlpError(
            413,
            f"the request has {total} {noun}; the limit is {limits.max_records} per request "
            "(--max-records): send smaller batches",
        )


def _mapped(
    batch: Batch,
    groups: Iterable[tuple[Iterable[common_pb2.KeyValue], list[T]]],
    build: Callable[[T, str], NewContext],
) -> Iterator[tuple[T, NewContext]]:
    """(item, record) for every span / log record of every resource that maps; the ones
    that cannot (their resource's service, or themselves) are rejected in `batch`."""
    for attributes, items in groups:
        try:
            service = _service(attributes, batch)
        except _Reject as exc:
            for _ in items:
                batch.reject(str(exc))
            continue
        for item in items:
            try:
                yield item, build(item, service)
            except _Reject as exc:
                batch.reject(str(exc))


# --- traces --------------------------------------------------------------------


def is_entry_span(record: NewContext, kind: int) -> bool:
    """A root span (its record has no parent_span_id), or the span where a service took
    over a request from another (`kind` server or consumer): one per request a service
    handled."""
    return "parent_span_id" not in record.fields or kind in ENTRY_KINDS


_KEPT_SPAN_ATTRIBUTES = frozenset(SPAN_ATTRIBUTES)
# A character becomes at most 12 in JSON (a non-BMP one as two \uXXXX escapes) and the 19
# kept keys add at most ~600: below this many characters, the kept attributes cannot pass
# MAX_TEXT encoded.
_SURELY_SMALL_CHARS = (MAX_TEXT - 1024) // 12
_ZERO_TRACE_ID, _ZERO_SPAN_ID = bytes(16), bytes(8)
_EARLIEST_US = int(EARLIEST.timestamp()) * 1_000_000
_US = timedelta(microseconds=1)


def _latest_us(now: datetime, limits: OtlpLimits) -> int:
    """The latest record time accepted, in Unix microseconds (as _time compares)."""
    return (now + limits.max_future - EPOCH) // _US


def span_record(
    span: trace_pb2.Span,
    service: str,
    now: datetime,
    limits: OtlpLimits,
    latest_us: int | None = None,
) -> NewContext:
    """One span as a `traces` record (raises _Reject when it is unusable).

    The bench's hot path (512-span batches, docs/PERFORMANCE.md): the usual case is
    decided with plain comparisons, and the helpers that word a rejection (_id, _time,
    _any_value) run only for the unusual one."""
    raw = span.trace_id
    trace_id = (
        raw.hex() if len(raw) == 16 and raw != _ZERO_TRACE_ID else _id(raw, 16, "trace_id", True)
    )
    raw = span.span_id
    span_id = raw.hex() if len(raw) == 8 and raw != _ZERO_SPAN_ID else _id(raw, 8, "span_id", True)
    raw = span.parent_span_id
    parent = (
        raw.hex()
        if len(raw) == 8 and raw != _ZERO_SPAN_ID
        else _id(raw, 8, "parent_span_id", False)
    )
    start = span.start_time_unix_nano
    if not start:
        raise _Reject("no start time")
    start_us = start // 1000
    if latest_us is None:
        latest_us = _latest_us(now, limits)
    if _EARLIEST_US <= start_us <= latest_us:
        ts = datetime.fromtimestamp(start_us / 1e6, UTC)
    else:
        ts = _time(start, now, limits, "the start time")  # raises: it words the reason
    end = span.end_time_unix_nano
    if end < start:
        raise _Reject("the span ends before it starts")
    duration_ms = (end - start) / 1e6
    if duration_ms > MAX_DURATION_MS:
        raise _Reject(f"the duration is more than {MAX_DURATION_MS:g} ms")
    name = span.name
    if "\x00" in name:
        raise _Reject("a string contains a NUL character")
    status = span.status
    fields: dict[str, Any] = {
        "trace_id": trace_id,
        "duration_ms": duration_ms,
        "span_id": span_id,
        "name": name[:MAX_NAME],
        "kind": SPAN_KINDS.get(span.kind, "unspecified"),
        "status": STATUS.get(status.code, "unset"),
    }
    if parent:
        fields["parent_span_id"] = parent
    if status.message:
        fields["status_message"] = _clean(status.message)[:1024]
    kept: dict[str, Any] | None = None
    size = 0  # characters of the kept strings, else the protobuf size of the value
    for kv in span.attributes:
        key = kv.key
        if key in _KEPT_SPAN_ATTRIBUTES:
            if kept is None:
                kept = {}
            value = kv.value
            text = value.string_value  # not empty: the value is a string for sure
            if text and "\x00" not in text:
                kept[key] = text
                size += len(text)
            else:
                kept[key] = _any_value(value)
                size += value.ByteSize()  # JSON is at most 6 times that
    if kept:
        fields["attributes"] = kept
        if size >= _SURELY_SMALL_CHARS:
            _check_size(fields, span.ByteSize())
    return new_context("traces", service, ts, fields)


def decode_traces(
    raw: bytes,
    encoding: str,
    now: datetime,
    limits: OtlpLimits = DEFAULT_LIMITS,
    volume: VolumeFilter = DEFAULT_VOLUME,
) -> Batch:
    """An ExportTraceServiceRequest body -> the `traces` records to store. Only entry
    spans (is_entry_span) that pass the volume filter are kept; the others are filtered."""
    request = trace_service_pb2.ExportTraceServiceRequest()
    parse(raw, encoding, request)
    _count(
        sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans), limits, "spans"
    )
    batch = Batch()
    records, keep_span, latest_us = batch.records, volume.keep_span, _latest_us(now, limits)
    for resource_spans in request.resource_spans:
        try:
            service = _service(resource_spans.resource.attributes, batch)
        except _Reject as exc:
            for scope in resource_spans.scope_spans:
                for _ in scope.spans:
                    batch.reject(str(exc))
            continue
        for scope in resource_spans.scope_spans:
            for span in scope.spans:
                try:
                    record = span_record(span, service, now, limits, latest_us)
                except _Reject as exc:
                    batch.reject(str(exc))
                    continue
                fields = record.fields
                if is_entry_span(record, span.kind) and keep_span(
                    fields["duration_ms"], fields["status"] == "error"
                ):
                    records.append(record)
                else:
                    batch.filtered += 1
    return batch


# --- logs ----------------------------------------------------------------------


def level_of(severity_number: int, severity_text: str) -> str:
    """SeverityNumber ranges first (1-4 TRACE, ..., 21-24 FATAL), else the text as a level
    word, else the text as is (upper-cased), else UNSPECIFIED."""
    if 1 <= severity_number <= 24:
        return _SEVERITY[(severity_number - 1) // 4]
    text = severity_text.strip()
    return normalise_level(text) or text.upper()[:MAX_NAME] or "UNSPECIFIED"


def _message(body: common_pb2.AnyValue) -> str:
    """A string body as is; any other kind rendered as JSON; cut to MAX_TEXT characters."""
    if body.WhichOneof("value") == "string_value":
        text = _clean(body.string_value)
    elif body.WhichOneof("value") is None:
        text = ""
    else:
        text = json.dumps(_any_value(body), ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "\u2026"


def log_record(
    log: logs_pb2.LogRecord, service: str, now: datetime, limits: OtlpLimits
) -> NewContext:
    """One log record as a `logs` record (raises _Reject when it is unusable)."""
    if log.time_unix_nano:
        ts = _time(log.time_unix_nano, now, limits, "the time")
    elif log.observed_time_unix_nano:
        ts = _time(log.observed_time_unix_nano, now, limits, "the observed time")
    else:
        ts = now
    fields: dict[str, Any] = {
        "level": level_of(log.severity_number, _clean(log.severity_text)),
        "message": _message(log.body),
    }
    trace_id = _id(log.trace_id, 16, "trace_id", False)
    span_id = _id(log.span_id, 8, "span_id", False)
    if trace_id:
        fields["trace_id"] = trace_id
    if span_id:
        fields["span_id"] = span_id
    if log.attributes:
        fields["attributes"] = _attributes(log.attributes)
        _check_size(fields, sum(kv.ByteSize() for kv in log.attributes))
    return NewContext("logs", service, ts, fields)


def decode_logs(
    raw: bytes,
    encoding: str,
    now: datetime,
    limits: OtlpLimits = DEFAULT_LIMITS,
    volume: VolumeFilter = DEFAULT_VOLUME,
) -> Batch:
    """An ExportLogsServiceRequest body -> the `logs` records to store (those at or above
    the volume filter's level; the others are filtered)."""
    request = logs_service_pb2.ExportLogsServiceRequest()
    parse(raw, encoding, request)
    _count(
        sum(len(s.log_records) for r in request.resource_logs for s in r.scope_logs),
        limits,
        "log records",
    )
    batch = Batch()
    groups = (
        (r.resource.attributes, [log for scope in r.scope_logs for log in scope.log_records])
        for r in request.resource_logs
    )
    for _, record in _mapped(batch, groups, lambda lr, svc: log_record(lr, svc, now, limits)):
        batch.keep(record, volume.keep_log(record.fields["level"]))
    return batch


__all__ = [
    "ENCODINGS",
    "JSON",
    "PROTOBUF",
    "Batch",
    "OtlpError",
    "OtlpLimits",
    "decode_logs",
    "decode_traces",
    "decompress",
    "export_response",
    "status_body",
]
