"""`POST /v1/traces` and `POST /v1/logs`: the OTLP/HTTP receiver (scope ingest).

Every answer follows the OTLP/HTTP spec, in the request's encoding (protobuf or JSON):
200 with an Export*ServiceResponse (`partial_success` names rejected records), 400 / 413 /
415 with a `google.rpc.Status` (not retried by exporters), 503 with Retry-After when the
store cannot write (retried). The body is decoded by engine.adapters.otlp; what it keeps
is written like a `/context/*` batch (one transaction, committed before the answer).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from engine.adapters import otlp
from engine.server.body import ClientError, media_type, read_body
from engine.store.errors import StoreUnavailable
from engine.timeutil import utcnow

if TYPE_CHECKING:
    from engine.server.state import AppState

log = logging.getLogger("incident_pilot.otlp")
RETRY_AFTER_SECONDS = 10  # as engine.server.faults
PATHS = {"traces": "/v1/traces", "logs": "/v1/logs"}


def _answer(status: int, body: bytes, encoding: str, **headers: str) -> Response:
    content_type = otlp.JSON if encoding == "json" else otlp.PROTOBUF
    return Response(body, status_code=status, media_type=content_type, headers=headers)


def _refuse(status: int, message: str, encoding: str, field: str = "", **headers: str) -> Response:
    return _answer(status, otlp.status_body(status, message, encoding, field), encoding, **headers)


async def _export(request: Request, signal: str) -> Response:
    state: AppState = request.app.state.ip
    kind = media_type(request)
    encoding = otlp.ENCODINGS.get(kind)
    if encoding is None:
        return _refuse(
            415,
            f"unsupported Content-Type {kind!r}: send {otlp.PROTOBUF} or {otlp.JSON}",
            "protobuf",
        )
    limit = state.settings.limits.body_limit("context", state.settings.max_body)
    limits = otlp.OtlpLimits(
        max_records=state.context_limits.max_records,
        max_future=state.context_limits.max_future,
    )
    source = f"otlp_{signal}"
    decode = otlp.decode_traces if signal == "traces" else otlp.decode_logs
    try:
        raw = await read_body(request, limit)
        body = otlp.decompress(raw, request.headers.get("content-encoding", ""), limit)
        batch = decode(body, encoding, utcnow(), limits, state.settings.volume)
    except ClientError as exc:  # from read_body: 413, or 400 for a bad Content-Length
        return _refuse(exc.status, exc.message, encoding)
    except otlp.OtlpError as exc:
        return _refuse(exc.status, exc.message, encoding, exc.field)
    if batch.records:
        try:
            await state.run_context_write(state.store.append_context, batch.records)
        except Exception as exc:  # nothing was stored: the exporter retries
            if isinstance(exc, StoreUnavailable):
                state.faults.failed("otlp", exc)
            else:
                log.exception(
                    "OTLP %s: the store could not write %d records", signal, len(batch.records)
                )
            return _refuse(
                503,
                "the store could not write the records; retry later",
                encoding,
                **{"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        state.faults.recheck()
        state.count(f"context_{signal}", len(batch.records))
    for outcome, n in (
        ("stored", len(batch.records)),
        ("filtered", batch.filtered),
        ("rejected", batch.rejected),
    ):
        if n:
            state.metrics.ingest(source, outcome, n)
    return _answer(200, otlp.export_response(signal, batch, encoding), encoding)


async def post_traces(request: Request) -> Response:
    return await _export(request, "traces")


async def post_logs(request: Request) -> Response:
    return await _export(request, "logs")


def otlp_routes() -> list[Route]:
    return [
        Route(PATHS["traces"], post_traces, methods=["POST"]),
        Route(PATHS["logs"], post_logs, methods=["POST"]),
    ]


# --- OpenAPI (engine/server/openapi.py merges these) ------------------------------

_STATUS = {
    "type": "object",
    "description": "google.rpc.Status (protobuf, or its JSON mapping for a JSON request)",
    "properties": {
        "code": {"type": "integer"},
        "message": {"type": "string"},
        "details": {"type": "array", "items": {"type": "object"}},
    },
}
_BINARY = {"type": "string", "format": "binary"}


def _content(schema: dict[str, Any]) -> dict[str, Any]:
    return {otlp.JSON: {"schema": schema}, otlp.PROTOBUF: {"schema": _BINARY}}


def _operation(signal: str, rejected: str) -> dict[str, Any]:
    response = {
        "type": "object",
        "properties": {
            "partialSuccess": {
                "type": "object",
                "properties": {
                    rejected: {"type": ["string", "integer"]},
                    "errorMessage": {"type": "string"},
                },
            }
        },
    }
    auth = {str(c): {"$ref": f"#/components/responses/E{c}"} for c in (401, 403, 408)}
    return {
        "summary": f"OTLP/HTTP {signal} export, protobuf or JSON, gzip or not (scope ingest; "
        "docs/INGEST.md)",
        "requestBody": {"required": True, "content": _content({"type": "object"})},
        "responses": {
            "200": {
                "description": "Committed; partialSuccess counts and names rejected records",
                "content": _content(response),
            },
            **{
                str(code): {"description": text, "content": _content(_STATUS)}
                for code, text in (
                    (400, "The body cannot be decoded (not retried)"),
                    (413, "The body, decompressed, or its record count is over the limit"),
                    (415, "Unsupported Content-Type or Content-Encoding"),
                )
            },
            "503": {
                "description": "The store cannot write (retried after Retry-After), or busy",
                "content": {
                    otlp.JSON: {"schema": {"type": "object"}},
                    otlp.PROTOBUF: {"schema": _BINARY},
                },
            },
            **auth,
        },
    }


def otlp_operations() -> dict[tuple[str, str], dict[str, Any]]:
    return {
        ("post", PATHS["traces"]): _operation("traces", "rejectedSpans"),
        ("post", PATHS["logs"]): _operation("logs", "rejectedLogRecords"),
    }
