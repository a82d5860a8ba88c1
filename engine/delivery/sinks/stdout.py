"""The stdout sink: the incident report on the server's standard output (text or JSON)."""

from __future__ import annotations

import json
import sys
import threading
from typing import TextIO

from engine.delivery.config import SinkSpec
from engine.delivery.sinks.base import EVENT_WORDS, SendContext, SendResult, narration_text
from engine.store.base import Delivery

_LOCK = threading.Lock()  # reports from several worker threads must not interleave


class StdoutSink:
    type = "stdout"
    idempotent = False
    supports_resolve = True

    def __init__(self, spec: SinkSpec, stream: TextIO | None = None) -> None:
        self.name = spec.name
        self.format = spec.options.get("format", "text")
        self.stream = stream

    def render(self, delivery: Delivery, ctx: SendContext) -> str:
        payload = delivery.payload
        link = str(payload.get("link") or "")
        if self.format == "json":
            word = EVENT_WORDS.get(delivery.event, delivery.event)
            doc = {"event": word, "incident": payload["incident"], "link": link}
            return json.dumps(doc, sort_keys=True)
        text = narration_text(payload, ctx.narration)
        if link and link not in text:  # an LLM narration: the page still gets its line
            text = f"{text.rstrip()}\n  page: {link}"
        return text

    def send(self, delivery: Delivery, ctx: SendContext) -> SendResult:
        text = self.render(delivery, ctx).rstrip("\n") + "\n"
        stream = self.stream or sys.stdout
        with _LOCK:
            stream.write(text + ("\n" if self.format == "text" else ""))
            stream.flush()
        return SendResult("ok")
