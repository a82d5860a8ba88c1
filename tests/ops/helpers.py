"""Shared helpers for the operability tests (tokens, payloads, a server subprocess)."""

from __future__ import annotations

from pathlib import Path

from engine.testing import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
TOKENS = {
    "ingest": "ingest-0123456789abcdef-tok",
    "read": "read-0123456789abcdef-token",
    "admin": "admin-0123456789abcdef-tok",
}
TOKENS_ENV = ",".join(f"{scope}:{token}" for scope, token in TOKENS.items())
FIXTURES = ROOT / "tests" / "fixtures" / "alertmanager"


def bearer(scope: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[scope]}"}


def alert(name: str = "HighErrorRate", service: str = "checkout-api", **labels: str) -> dict:
    return {
        "status": "firing",
        "labels": {"alertname": name, "service": service, **labels},
        "annotations": {"summary": f"{name} on {service}"},
    }


def ops_server(
    workdir: Path, *args: str, tokens: bool = True, db: Path | None = None
) -> ServerProcess:
    """`incident-pilot serve --quiet` (engine.testing.ServerProcess), with the test tokens
    unless `tokens=False`; not started. Its log is `stderr_text()`."""
    env = {"INCIDENT_PILOT_TOKENS": TOKENS_ENV} if tokens else {}
    return ServerProcess(workdir, "--quiet", *args, db=str(db) if db else None, env=env)
