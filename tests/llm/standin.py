"""Stand-in LLM servers: a threaded `http.server` on a free loopback port that plays
Ollama (`POST /api/chat`) or an OpenAI-compatible endpoint (`POST /v1/chat/completions`).

Each test sets `server.reply` to a function of the recorded request that returns
(status, body bytes, delay seconds). Delays wait on an event that `stop()` sets, so a
slow reply never holds the test run after the test ends.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Reply = tuple[int, bytes, float]


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: Any  # parsed JSON, or the raw text when it is not JSON

    @property
    def prompt(self) -> str:
        """Every message's content, joined (what the LLM would read)."""
        return "\n".join(m.get("content", "") for m in self.body.get("messages", []))


def ollama_body(text: Any) -> bytes:
    return json.dumps(
        {"model": "stand-in", "message": {"role": "assistant", "content": text}, "done": True}
    ).encode()


def openai_body(text: Any) -> bytes:
    choice = {
        "index": 0,
        "message": {"role": "assistant", "content": text},
        "finish_reason": "stop",
    }
    return json.dumps({"id": "cmpl-1", "object": "chat.completion", "choices": [choice]}).encode()


class StandIn:
    def __init__(self, flavour: str):
        self.flavour = flavour  # "ollama" | "openai-compatible"
        self.requests: list[Recorded] = []
        self.reply: Callable[[Recorded], Reply] = lambda _req: (500, b"{}", 0.0)
        self.released = threading.Event()
        self.trickle = 0.0  # seconds between 64-byte pieces of the body (0: all at once)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def answer(self, text: Any, status: int = 200, delay: float = 0.0) -> None:
        """Reply to every request with `text` as the assistant's message."""
        encode = ollama_body if self.flavour == "ollama" else openai_body
        self.reply = lambda _req: (status, encode(text), delay)

    def raw(self, body: bytes, status: int = 200, delay: float = 0.0) -> None:
        self.reply = lambda _req: (status, body, delay)

    def start(self) -> StandIn:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.released.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:  # keep test output quiet
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode("utf-8", "replace")
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = raw
                req = Recorded(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                standin.requests.append(req)
                status, payload, delay = standin.reply(req)
                if delay:
                    standin.released.wait(delay)
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    step = 64 if standin.trickle else len(payload) or 1
                    for i in range(0, len(payload), step):
                        self.wfile.write(payload[i : i + step])
                        self.wfile.flush()
                        if standin.trickle and standin.released.wait(standin.trickle):
                            return
                except OSError:  # the client gave up (timeout test)
                    pass

        return Handler
