"""Stand-in sink servers on 127.0.0.1 and an in-process app with delivery wired in.

`standin()` starts a threaded HTTP server that records every request and answers from a
script (`push(status, headers, body, delay)`), then the default answer. Every server and
every worker is stopped at teardown; waits are bounded.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from engine.delivery.service import DeliveryService
from engine.paths import rules_dir
from engine.server.settings import ServeSettings
from engine.server.state import AppState
from engine.testing import AppClient, open_app

PUBLIC_URL = "http://incidents.example"
FAST = """
delivery:
  max_attempts: {attempts}
  base_delay: 20ms
  max_delay: 100ms
  lease: 15s
  poll_interval: 50ms
  workers: 4
"""


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    status: int = 202
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b'{"status":"success"}'
    delay: float = 0.0


class StandIn:
    """A scripted HTTP server playing Slack, PagerDuty, Opsgenie or a webhook receiver."""

    def __init__(
        self,
        port: int = 0,
        default: Reply | None = None,
        check: Callable[[Seen], Reply | None] | None = None,
    ) -> None:
        """`check(request)`: the service's own answer when the request breaks one of its
        limits (tests/delivery/services.py), else None; scripted replies come after it."""
        self.requests: list[Seen] = []
        self.refused: list[tuple[Seen, Reply]] = []  # requests `check` refused
        self.script: deque[Reply] = deque()
        self.default = default or Reply()
        self.closing = threading.Event()
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                seen = Seen("POST", self.path, dict(self.headers), body, time.monotonic())
                refusal = check(seen) if check is not None else None
                with outer.lock:
                    outer.requests.append(seen)
                    if refusal is not None:
                        outer.refused.append((seen, refusal))
                        reply = refusal
                    else:
                        reply = outer.script.popleft() if outer.script else outer.default
                if reply.delay:
                    outer.closing.wait(reply.delay)  # a hanging sink, cut short at teardown
                try:
                    self.send_response(reply.status)
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                except OSError:
                    pass  # the client gave up (timeout)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def push(
        self,
        status: int,
        headers: dict[str, str] | None = None,
        *,
        delay: float = 0.0,
        body: bytes = b"{}",
    ) -> None:
        self.script.append(Reply(status, headers or {}, body, delay))

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Seen]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(self.requests) < count:
            time.sleep(0.02)
        return list(self.requests)

    def stop(self) -> None:
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()


def wait_until(pred: Callable[[], Any], timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.03)
    return pred()


@pytest.fixture
def standin() -> Iterator[Callable[..., StandIn]]:
    made: list[StandIn] = []

    def make(**kwargs: Any) -> StandIn:
        server = StandIn(**kwargs)
        made.append(server)
        return server

    yield make
    for server in made:
        server.stop()


@pytest.fixture
def delivery_app(
    tmp_path: Path, shipped_rules: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., tuple[AppState, AppClient, DeliveryService]]]:
    """delivery_app(config_yaml, env={...}, quiet=True) -> (state, client, service), with
    the outbox worker running."""
    made: list[tuple[AppState, AppClient]] = []

    def make(config: str, env: dict[str, str] | None = None, quiet: bool = True, **kw: Any):
        for k, v in (env or {}).items():
            monkeypatch.setenv(k, v)
        path = tmp_path / f"config{len(made)}.yaml"
        path.write_text(config, encoding="utf-8")
        settings = ServeSettings(
            rules=(rules_dir(),),
            db=str(tmp_path / f"app{len(made)}.db"),
            config=str(path),
            public_url=kw.pop("public_url", PUBLIC_URL),
            quiet=quiet,
            **kw,
        )
        state, app = open_app(settings, ruleset=shipped_rules)  # the outbox worker runs
        client = AppClient(app)
        made.append((state, client))
        return state, client, state.delivery

    yield make
    for state, client in made:
        client.close()
        state.close()
