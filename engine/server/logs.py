"""Structured logs on stderr (key=value text, or one JSON object per line), a request id per
request (`X-Request-Id` in and out) and one access-log line per request.

The access log names method, path (without the query string), status, duration, request id,
and the short id of the token used: never bodies, never the Authorization header.

Every line is scrubbed of the secrets the service knows (`scrub_secrets`, installed by
`serve` once the configuration is read), in every form they may be quoted in, whatever
part of the record holds them: message, arguments, `extra=` fields or a traceback. Access
lines are the exception: their fields are fixed (method, path without query, status,
duration, ids) and hold nothing the service sends anywhere, and scrubbing them would cost
every request about 20 µs.
"""

from __future__ import annotations

import contextvars
import json
import json.encoder
import logging
import math
import re
import secrets
import sys
import time
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
access = logging.getLogger("incident_pilot.access")
_ACCESS_NAME = access.name
_VALID_ID = re.compile(r"^[A-Za-z0-9._:/+=-]{1,128}$")
_BARE = re.compile(r"^[^\s\"=\\]+$")
_bare = _BARE.match
_encode_str = json.encoder.encode_basestring_ascii  # json.dumps(str)
# LogRecord attributes that are not `extra=` fields.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "color_message",  # uvicorn's ANSI copy of msg
}


_ts_cache: tuple[int, str] = (-1, "")


def _timestamp(created: float, msecs: float) -> str:
    """`created` as ISO 8601 UTC with milliseconds; the strftime part is cached per second
    (one access line per request makes this the formatter's largest cost)."""
    global _ts_cache
    second = int(created)
    cached_second, prefix = _ts_cache
    if second != cached_second:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
        _ts_cache = (second, prefix)
    return f"{prefix}.{int(msecs):03d}Z"


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    out: dict[str, Any] = {
        "ts": _timestamp(record.created, record.msecs),
        "level": record.levelname.lower(),
        "logger": record.name,
        "msg": record.getMessage(),
    }
    rid = getattr(record, "request_id", "") or request_id.get()
    if rid:
        out["request_id"] = rid
    for key, value in vars(record).items():
        if key not in _STANDARD and key not in out and not key.startswith("_"):
            out[key] = value
    if record.exc_info:
        out["exc"] = logging.Formatter().formatException(record.exc_info)
    return out


def _quote(value: Any) -> str:
    # Fast paths give exactly what json.dumps gives for these types (it calls the same
    # C string encoder, and float.__repr__ for finite floats).
    kind = type(value)
    if kind is str:
        return value if _bare(value) else _encode_str(value)
    if kind is int:
        return str(value)
    if kind is float and math.isfinite(value):
        return repr(value)
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if _bare(text) else json.dumps(text)


def _no_secrets(line: str) -> str:
    return line


_scrub: Callable[[str], str] = _no_secrets


def scrub_secrets(scrub: Callable[[str], str]) -> None:
    """Pass every formatted line through `scrub` (a Redactor's) before it is written."""
    global _scrub
    _scrub = scrub


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = " ".join(f"{k}={_quote(v)}" for k, v in _fields(record).items())
        return line if record.name == _ACCESS_NAME else _scrub(line)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = json.dumps(_fields(record), default=str)
        return line if record.name == _ACCESS_NAME else _scrub(line)


def configure(level: str, fmt: str = "text") -> None:
    """Root logging to stderr in `fmt` ("text" key=value, or "json"); uvicorn's loggers
    propagate to it (run uvicorn with log_config=None)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else KeyValueFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper()))
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    logging.getLogger("uvicorn.access").disabled = True  # replaced by incident_pilot.access


class RequestLogMiddleware:
    """Request id in and out, and one access-log line per request."""

    def __init__(self, app: ASGIApp, on_done: Any = None) -> None:
        self.app = app
        self.on_done = on_done  # (method, route, status) -> None, e.g. a metrics counter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = ""
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
                break
        rid = incoming if _VALID_ID.match(incoming) else secrets.token_hex(8)
        token = request_id.set(rid)
        scope.setdefault("state", {})["request_id"] = rid
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *[(k, v) for k, v in message.get("headers", []) if k != b"x-request-id"],
                    (b"x-request-id", rid.encode()),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            duration = time.perf_counter() - started
            route = _route(scope)
            if access.isEnabledFor(logging.INFO):
                # Logger.info without findCaller (a stack walk per request): the formatters
                # never print the caller, and the fields are the same.
                access.handle(
                    access.makeRecord(
                        _ACCESS_NAME,
                        logging.INFO,
                        __file__,
                        0,
                        "%s %s %d",
                        (scope["method"], scope["path"], status),
                        None,
                        extra={
                            "method": scope["method"],
                            "path": scope["path"],
                            "status": status,
                            "duration_ms": round(duration * 1000, 1),
                            "auth": scope.get("state", {}).get("auth", "-"),
                        },
                    )
                )
            if self.on_done is not None:
                self.on_done(scope["method"], route, status)
            request_id.reset(token)


def _route(scope: Scope) -> str:
    """The matched route's template (bounded label values for metrics), else "other"."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path else "other"
