"""OTLP/HTTP on the wire: the body's encoding and compression, and the answers.

`decompress` (gzip, capped on the decompressed size) and `parse` (binary protobuf or
OTLP/JSON into the official `opentelemetry-proto` message, through
`google.protobuf.json_format`); `export_response` (an Export*ServiceResponse with its
`partial_success`) and `status_body` (a `google.rpc.Status` for a refused request).
The mapping of the decoded messages to records is engine.adapters.otlp.
"""

from __future__ import annotations

import base64
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from engine import finitejson
from engine.adapters.compression import DecompressionError, gunzip
from engine.store.base import NewContext

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
ENCODINGS = {PROTOBUF: "protobuf", JSON: "json"}
# Fields holding trace / span ids, hex in OTLP/JSON and base64 in protobuf's JSON mapping.
_ID_KEYS = ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id")


class OtlpError(Exception):
    """A request refused as a whole: HTTP status, and a message for `google.rpc.Status`."""

    def __init__(self, status: int, message: str, field: str = "") -> None:
        self.status, self.message, self.field = status, message, field
        super().__init__(message)


@dataclass(frozen=True)
class OtlpLimits:
    max_records: int = 10_000  # spans or log records per request (--max-records)
    max_future: timedelta = timedelta(minutes=5)


@dataclass
class Batch:
    """What one request's records came to: the ones to store, and the others counted."""

    records: list[NewContext] = field(default_factory=list)
    filtered: int = 0
    rejected: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    warnings: Counter[str] = field(default_factory=Counter)

    def keep(self, record: NewContext, wanted: bool) -> None:
        """Store `record`, or count it as filtered (accepted, not worth storing)."""
        if wanted:
            self.records.append(record)
        else:
            self.filtered += 1

    def reject(self, reason: str) -> None:
        self.rejected += 1
        self.reasons[reason] += 1

    def message(self, noun: str) -> str:
        """The partial_success error_message: why records were rejected, then warnings."""
        parts = []
        if self.rejected:
            why = "; ".join(f"{reason} ({n})" for reason, n in self.reasons.most_common())
            parts.append(f"rejected {self.rejected} {noun}: {why}")
        parts += [f"{warning} ({n})" for warning, n in self.warnings.most_common()]
        return ". ".join(parts)


# --- transport ---------------------------------------------------------------


def decompress(raw: bytes, content_encoding: str, limit: int) -> bytes:
    """The body after `Content-Encoding` (identity or gzip), refused (413) as soon as the
    decompressed size passes `limit`: a compression bomb never grows past it in memory."""
    encoding = content_encoding.strip().lower()
    if encoding in ("", "identity"):
        return raw
    if encoding not in ("gzip", "x-gzip"):
        raise OtlpError(
            415, f"unsupported Content-Encoding {content_encoding!r}: send gzip or none"
        )
    try:
        return gunzip(raw, limit)
    except DecompressionError as exc:
        raise OtlpError(exc.status, exc.message) from None


def _hex_ids_to_base64(node: Any) -> None:
    """OTLP/JSON writes trace and span ids as hex; protobuf's JSON mapping reads bytes as
    base64. Rewrite them in place wherever they occur, before json_format parses."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                if key in _ID_KEYS and isinstance(value, str):
                    try:
                        item[key] = base64.b64encode(bytes.fromhex(value)).decode()
                    except ValueError:
                        raise OtlpError(
                            400, f"{key} {value[:64]!r} is not a hex string", key
                        ) from None
                elif isinstance(value, dict | list):
                    stack.append(value)
        elif isinstance(item, list):
            stack.extend(v for v in item if isinstance(v, dict | list))


def parse(raw: bytes, encoding: str, message: Message) -> None:
    if encoding == "protobuf":
        try:
            message.ParseFromString(raw)
        except (DecodeError, RecursionError, ValueError) as exc:
            raise OtlpError(400, f"the body is not a valid protobuf message: {exc}") from None
        return
    try:
        document = finitejson.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise OtlpError(
            400, f"the body is not valid UTF-8 (bad byte at offset {exc.start})"
        ) from None
    except RecursionError:
        raise OtlpError(400, "the JSON body is nested too deeply") from None
    except ValueError as exc:
        raise OtlpError(400, f"the body is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise OtlpError(400, "the JSON body must be an object")
    _hex_ids_to_base64(document)
    try:
        json_format.ParseDict(document, message, ignore_unknown_fields=True)
    except RecursionError:
        raise OtlpError(400, "the JSON body is nested too deeply") from None
    except (json_format.ParseError, TypeError, ValueError, AttributeError) as exc:
        raise OtlpError(400, f"the body is not a valid OTLP/JSON message: {exc}") from None


# --- answers ---------------------------------------------------------------------


def _encode(message: Message, encoding: str) -> bytes:
    if encoding == "json":
        return json_format.MessageToJson(message, indent=None).encode()
    return message.SerializeToString()


def export_response(signal: str, batch: Batch, encoding: str) -> bytes:
    """ExportTraceServiceResponse / ExportLogsServiceResponse; `partial_success` set only
    when records were rejected or there is a warning (as the OTLP spec asks)."""
    message_text = batch.message("spans" if signal == "traces" else "log records")
    response: Message
    if signal == "traces":
        response = trace_service_pb2.ExportTraceServiceResponse()
        if message_text:
            response.partial_success.rejected_spans = batch.rejected
            response.partial_success.error_message = message_text
    else:
        response = logs_service_pb2.ExportLogsServiceResponse()
        if message_text:
            response.partial_success.rejected_log_records = batch.rejected
            response.partial_success.error_message = message_text
    return _encode(response, encoding)


_RPC_CODE = {
    400: code_pb2.INVALID_ARGUMENT,
    413: code_pb2.RESOURCE_EXHAUSTED,
    415: code_pb2.INVALID_ARGUMENT,
    503: code_pb2.UNAVAILABLE,
}


def status_body(http_status: int, message: str, encoding: str, field_name: str = "") -> bytes:
    """A `google.rpc.Status` for a refused request; a 400 carries a `BadRequest` detail."""
    status = status_pb2.Status(code=_RPC_CODE.get(http_status, code_pb2.UNKNOWN), message=message)
    if http_status == 400:
        bad = error_details_pb2.BadRequest()
        bad.field_violations.add(field=field_name, description=message)
        status.details.add().Pack(bad)
    return _encode(status, encoding)
