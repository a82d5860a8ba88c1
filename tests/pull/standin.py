"""Stand-ins for Prometheus and Loki on loopback: they check query parameters as the real
servers do, record every request, and answer what the test sets (optionally late)."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

Answer = Callable[[str, dict[str, str]], dict[str, Any]]  # (path, params) -> data


def _vector(path: str, params: dict[str, str]) -> dict[str, Any]:
    return {"resultType": "vector", "result": []}


class StandIn:
    """`with StandIn() as s:` s.url, s.requests (path, params), s.answer, s.delay."""

    def __init__(self, answer: Answer = _vector, delay: float = 0.0) -> None:
        self.answer, self.delay = answer, delay
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                params = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                with outer.lock:
                    outer.requests.append((parts.path, params))
                status, body = outer.handle(parts.path, params, dict(self.headers))
                if outer.delay:
                    time.sleep(outer.delay)
                raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                with contextlib.suppress(OSError):  # the client gave up (budget)
                    self.wfile.write(raw)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def handle(self, path: str, params: dict[str, str], headers: dict[str, str]) -> tuple[int, Any]:
        problem = check(path, params)
        if problem:
            return problem
        return 200, {"status": "success", "data": self.answer(path, params)}

    def __enter__(self) -> StandIn:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _bad(message: str) -> tuple[int, Any]:
    return 400, {"status": "error", "errorType": "bad_data", "error": message}


def _number(params: dict[str, str], name: str) -> float | None:
    try:
        return float(params[name])
    except (KeyError, ValueError):
        return None


def check(path: str, params: dict[str, str]) -> tuple[int, Any] | None:
    """What Prometheus / Loki refuse: a missing query, times that do not parse, a step that
    is not positive, start after end, too many points; a Loki query not starting with a
    stream selector, a bad limit or direction."""
    if not params.get("query"):
        return _bad('invalid parameter "query": unknown position: parse error: no expression')
    if path == "/api/v1/query":
        if "time" in params and _number(params, "time") is None:
            return _bad('invalid parameter "time": cannot parse')
        return None
    if path == "/api/v1/query_range":
        start, end, step = (_number(params, k) for k in ("start", "end", "step"))
        if start is None or end is None or step is None:
            return _bad('invalid parameter "start"/"end"/"step": cannot parse')
        if end < start:
            return _bad("end timestamp must not be before start time")
        if step <= 0:
            return _bad("zero or negative query resolution step widths are not accepted")
        if (end - start) / step > 11000:
            return _bad("exceeded maximum resolution of 11,000 points per timeseries")
        return None
    if path == "/loki/api/v1/query_range":
        q = params["query"].strip()
        if not q.startswith("{"):
            return 400, "parse error : syntax error: unexpected IDENTIFIER"
        for name in ("start", "end"):
            if not params.get(name, "").isdigit():
                return 400, f"invalid {name}: expected nanoseconds since the epoch"
        if int(params["end"]) < int(params["start"]):
            return 400, "end timestamp must not be before or equal to start time"
        if not params.get("limit", "100").isdigit():
            return 400, "invalid limit"
        if params.get("direction", "backward") not in ("forward", "backward"):
            return 400, "invalid direction"
        return None
    return 404, "404 page not found"
