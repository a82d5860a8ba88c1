"""Request limits: body size per endpoint, alerts and records per request, labels, request
time, header size and time, keep-alive, open connections and concurrent requests. Every one a
flag and an INCIDENT_PILOT_* variable.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from typing import Any

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from engine.alerts import AlertLimits
from engine.ingest import ContextLimits
from engine.server.connections import connection_cap, guarded_protocol

ENV_PREFIX = "INCIDENT_PILOT_"
BACKLOG = 4096  # pending connections the kernel queues (capped by net.core.somaxconn)
RETRY_AFTER = 1  # seconds, on a 503 for a request over the concurrency limit


@dataclass(frozen=True)
class Limits:
    max_body_alerts: int = 0  # 0: ServeSettings.max_body (--max-body)
    max_body_context: int = 0
    max_alerts: int = 1000
    max_records: int = 10_000
    max_labels: int = 100
    max_label_name: int = 256
    max_label_value: int = 8192
    request_timeout: float = 30.0
    max_header_bytes: int = 16 * 1024
    keep_alive: float = 5.0
    header_timeout: float = 10.0
    max_connections: int = 10_000
    max_concurrent_requests: int = 1000

    def body_limit(self, endpoint: str, default: int) -> int:
        """The body limit of `endpoint` ("alerts" or "context"), else `default`."""
        value = self.max_body_alerts if endpoint == "alerts" else self.max_body_context
        return value or default

    def alert_limits(self, **kw: Any) -> AlertLimits:
        return AlertLimits(
            max_alerts=self.max_alerts,
            max_labels=self.max_labels,
            max_label_name=self.max_label_name,
            max_label_value=self.max_label_value,
            **kw,
        )

    def context_limits(self, **kw: Any) -> ContextLimits:
        return ContextLimits(max_records=self.max_records, **kw)

    def uvicorn_options(self, fd_limit: int) -> dict[str, Any]:
        """Keyword arguments for uvicorn.run that enforce the connection-level limits, with
        at most as many connections as `fd_limit` open files allow. Concurrent requests are
        limited by ConcurrencyLimitMiddleware: uvicorn's own limit_concurrency would answer
        503 to every request while idle connections alone are over it."""
        return {
            # h11 (h11_max_incomplete_event_size also bounds headers), with a head timeout
            # and a connection cap that sheds idle connections (engine.server.connections)
            "http": guarded_protocol(
                self.header_timeout, connection_cap(self.max_connections, fd_limit)
            ),
            "h11_max_incomplete_event_size": self.max_header_bytes,
            "timeout_keep_alive": self.keep_alive,
            "backlog": BACKLOG,
        }


# flag -> (field, type, default text, help)
_FLAGS: dict[str, tuple[str, str, str, str]] = {
    "--max-body-alerts": ("max_body_alerts", "size", "", "largest POST /alerts body (default: --max-body)"),
    "--max-body-context": ("max_body_context", "size", "", "largest POST /context/* body (default: --max-body)"),
    "--max-alerts": ("max_alerts", "int", "1000", "alerts per request"),
    "--max-records": ("max_records", "int", "10000", "context records per request"),
    "--max-labels": ("max_labels", "int", "100", "labels (and annotations) per alert"),
    "--max-label-name": ("max_label_name", "int", "256", "characters in a label name"),
    "--max-label-value": ("max_label_value", "int", "8192", "characters in a label value"),
    "--request-timeout": ("request_timeout", "float", "30", "seconds a request may take (then 408 while the body is still arriving, else 503; 0 = none)"),
    "--max-header-bytes": ("max_header_bytes", "size", "16k", "request line and headers together (larger: 431, or 400 from the HTTP parser)"),
    "--keep-alive": ("keep_alive", "float", "5", "seconds an idle keep-alive connection stays open"),
    "--header-timeout": ("header_timeout", "float", "10", "seconds a connection has to send a complete request line and headers, then it is closed (within the last tenth; 0 = none)"),
    "--max-connections": ("max_connections", "int", "10000", "open connections; past it the longest-idle one is closed (0 = as many as the open-file limit allows)"),
    "--max-concurrent-requests": ("max_concurrent_requests", "int", "1000", "requests handled at once; further ones get 503 with Retry-After (0 = unlimited)"),
}  # fmt: skip


def add_limit_arguments(p: argparse.ArgumentParser, size: Any) -> None:
    """`size` parses "512k"-style sizes (settings._size)."""
    types = {"size": size, "int": int, "float": float}
    for flag, (dest, kind, default, text) in _FLAGS.items():
        env = ENV_PREFIX + dest.upper()
        raw = os.environ.get(env, default)
        p.add_argument(
            flag,
            dest=dest,
            type=types[kind],
            default=raw or None,  # a string default goes through `type`: bad env = bad flag
            help=f"{text} [env {env}]" + (f" (default {default})" if default else ""),
        )


def limits_from_args(args: argparse.Namespace) -> Limits:
    values = {dest: getattr(args, dest) for dest, *_ in _FLAGS.values()}
    return Limits(**{k: v for k, v in values.items() if v is not None})


async def send_error(
    send: Send,
    status: int,
    message: str,
    extra: tuple[tuple[bytes, bytes], ...] = ((b"connection", b"close"),),
) -> None:
    body = json.dumps({"error": message}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *extra,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class HeaderLimitMiddleware:
    """431 when the request line and headers together pass `max_bytes`. uvicorn's h11 limit
    only bounds a request still arriving; one that arrives whole is caught here."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.max_bytes > 0:
            size = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
            size += sum(len(k) + len(v) + 4 for k, v in scope["headers"])
            if size > self.max_bytes:
                await send_error(
                    send,
                    431,
                    f"request headers are larger than the limit of {self.max_bytes} bytes",
                )
                return
        await self.app(scope, receive, send)


class TimeoutMiddleware:
    """Answers 408 when the body has not fully arrived after `seconds`, 503 when the handler
    is still busy; a response already started is cut short (the client sees it incomplete).
    Work handed to a thread keeps running to completion: acknowledged means committed, but a
    timed-out request may still have been stored (clients retry; alert repeats are deduped)."""

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app, self.seconds = app, seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.seconds <= 0:
            await self.app(scope, receive, send)
            return
        state = {"body_done": scope["method"] in ("GET", "HEAD"), "started": False}

        async def receive_wrapper() -> Message:
            message = await receive()
            if message["type"] == "http.request" and not message.get("more_body", False):
                state["body_done"] = True
            return message

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        with anyio.move_on_after(self.seconds) as cancel:
            await self.app(scope, receive_wrapper, send_wrapper)
        if cancel.cancelled_caught and not state["started"]:
            status = 503 if state["body_done"] else 408
            message = (
                f"the request took longer than {self.seconds:g}s; try again"
                if status == 503
                else f"the request body did not arrive within {self.seconds:g}s"
            )
            # A busy handler is the server's state, not the client's mistake: say when to
            # come back, as every other 503 does (Alertmanager and collectors retry).
            retry = ((b"retry-after", b"1"),) if status == 503 else ()
            await send_error(send, status, message, ((b"connection", b"close"), *retry))


class ConcurrencyLimitMiddleware:
    """Past `limit` requests in progress, a further request is answered 503 with
    Retry-After at once; the requests within the limit go on. Probes and scrapes
    (`exempt`: one request per interval each) are always answered, so a storm never reads
    as the service being down. Connections without a request do not count."""

    def __init__(
        self,
        app: ASGIApp,
        limit: int,
        exempt: frozenset[str] = frozenset({"/healthz", "/readyz", "/metrics"}),
    ) -> None:
        self.app, self.limit, self.exempt = app, limit, exempt
        self.active = 0  # one event loop: no lock needed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.limit <= 0 or scope["path"] in self.exempt:
            await self.app(scope, receive, send)
            return
        if self.active >= self.limit:
            await send_error(
                send,
                503,
                f"the server is handling {self.limit} requests; retry after {RETRY_AFTER}s",
                ((b"retry-after", str(RETRY_AFTER).encode()),),
            )
            return
        self.active += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.active -= 1
