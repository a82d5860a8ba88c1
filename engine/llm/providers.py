"""Chat completion over HTTP (httpx): Ollama and OpenAI-compatible endpoints.

Every call has one total deadline. The request runs on a worker thread while the caller
waits at most `timeout` seconds for it; the worker itself gives up at the same deadline
(httpx timeouts per operation, plus a check between body chunks), so a slow or silent
server never holds the caller, and never holds a worker for long either.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import httpx

from engine.llm.config import LLMConfig

MAX_BODY = 1 << 20  # an answer larger than 1 MiB is garbage
WORKERS = 4
Message = dict[str, str]


class LLMError(Exception):
    """A failed call. `reason` is short and safe to record: it never holds the API key."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def redact(text: str, secret: str | None) -> str:
    return text.replace(secret, "***") if secret else text


def _content_text(content: Any) -> str | None:
    """A message's content: a string, or a list of `{"type": "text", "text": ...}` parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text") for p in content if isinstance(p, dict)]
        texts = [p for p in parts if isinstance(p, str)]
        if parts and len(texts) == len(parts):
            return "".join(texts)
    return None


class ChatClient:
    """One provider endpoint: `complete(messages)` -> the reply text, or LLMError."""

    def __init__(self, config: LLMConfig, *, transport: httpx.BaseTransport | None = None):
        self.config = config
        self._client = httpx.Client(
            timeout=httpx.Timeout(config.timeout),
            follow_redirects=False,
            transport=transport,
        )
        self._pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="llm-narrate")

    # --- the two wire formats ------------------------------------------------
    def _request(self, messages: list[Message]) -> tuple[str, dict[str, str], dict[str, Any]]:
        cfg = self.config
        if cfg.provider == "ollama":
            body = {
                "model": cfg.model,
                "messages": messages,
                "stream": False,
                "options": {"temperature": 0},
            }
            headers = {"Authorization": f"Bearer {cfg.api_key}"} if cfg.api_key else {}
            return f"{cfg.base_url}/api/chat", headers, body
        base = cfg.base_url if cfg.base_url.endswith("/v1") else f"{cfg.base_url}/v1"
        body = {"model": cfg.model, "messages": messages, "stream": False, "temperature": 0}
        headers = {"Authorization": f"Bearer {cfg.api_key}"} if cfg.api_key else {}
        return f"{base}/chat/completions", headers, body

    def _extract(self, data: Any) -> str:
        if self.config.provider == "ollama":
            where = "message.content"
            msg = data.get("message") if isinstance(data, dict) else None
        else:
            where = "choices[0].message.content"
            choices = data.get("choices") if isinstance(data, dict) else None
            first = choices[0] if isinstance(choices, list) and choices else None
            msg = first.get("message") if isinstance(first, dict) else None
        text = _content_text(msg.get("content")) if isinstance(msg, dict) else None
        if text is None:
            raise LLMError(f"invalid response: no {where}")
        if not text.strip():
            raise LLMError("invalid response: empty content")
        return text

    # --- the call ------------------------------------------------------------
    def _timeout_reason(self) -> str:
        return f"timeout after {self.config.timeout:g}s"

    def _post(self, messages: list[Message], deadline: float) -> str:
        if time.monotonic() >= deadline:  # waited in the queue behind stuck calls
            raise LLMError(self._timeout_reason())
        url, headers, body = self._request(messages)
        chunks: list[bytes] = []
        size = 0
        try:
            with self._client.stream("POST", url, json=body, headers=headers) as response:
                if not 200 <= response.status_code < 300:
                    raise LLMError(f"http status {response.status_code}")
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > MAX_BODY:
                        raise LLMError("invalid response: body over 1 MiB")
                    if time.monotonic() >= deadline:
                        raise LLMError(self._timeout_reason())
                    chunks.append(chunk)
        except httpx.TimeoutException:
            raise LLMError(self._timeout_reason()) from None
        except httpx.HTTPError as exc:  # connection refused, reset, protocol errors
            raise LLMError(f"connection failed ({type(exc).__name__})") from None
        try:
            data = json.loads(b"".join(chunks))
        except (ValueError, UnicodeDecodeError):
            raise LLMError("invalid response: not JSON") from None
        return self._extract(data)

    def complete(self, messages: list[Message]) -> str:
        """The reply text within the configured timeout; raises LLMError otherwise."""
        deadline = time.monotonic() + self.config.timeout
        future = self._pool.submit(self._post, messages, deadline)
        try:
            return future.result(timeout=self.config.timeout)
        except FutureTimeout:
            future.cancel()
            raise LLMError(self._timeout_reason()) from None
        except LLMError as exc:
            raise LLMError(redact(exc.reason, self.config.api_key)) from None

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._client.close()
