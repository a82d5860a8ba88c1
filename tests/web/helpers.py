"""What the page tests share: tokens, the README demo, reading forms out of pages."""

from __future__ import annotations

import re
from typing import Any

from engine.testing import make_alert, ts

TOKENS = {
    "ingest": "ingest-token-0123456789abcdef",
    "read": "read-token-0123456789abcdef00",
    "admin": "admin-token-0123456789abcdef0",
}
TOKENS_ENV = ",".join(f"{scope}:{token}" for scope, token in TOKENS.items())
SESSION_KEY = "k" * 16 + "session-key-for-tests-0123456789"
HOSTILE = '<script>alert("label")</script><img src=x onerror="alert(2)">'


def bearer(scope: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[scope]}"}


def demo_context() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The README demo's deploy (3 minutes ago) and its 10 ERROR lines."""
    deploy = {
        "service": "api-gateway",
        "commit": "a39bf2c",
        "author": "alice",
        "when": ts(minutes=3),
    }
    logs = [
        {"service": "api-gateway", "level": "ERROR", "message": f"upstream timeout request {i}"}
        for i in range(1, 11)
    ]
    return deploy, logs


def hostile_alert() -> dict[str, Any]:
    return make_alert(
        service="hostile-svc",
        alertname="HostileAlert",
        team="edge",
        evil=HOSTILE,
        annotations={"summary": f"hostile {HOSTILE}", "description": HOSTILE},
        generator_url="javascript:alert(3)",
    )


def form_value(html: str, name: str) -> str:
    """The value of the first hidden input `name` in a page."""
    m = re.search(rf'<input type="hidden" name="{name}" value="([^"]*)"', html)
    assert m, f"no {name} field in the page"
    return m.group(1)
