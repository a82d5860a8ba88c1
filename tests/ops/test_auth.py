"""Bearer tokens and scopes; the loopback-only rule without tokens."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from engine.server.auth import (
    AuthConfigError,
    AuthSettings,
    bind_problem,
    load_tokens,
    required_scope,
)
from tests.ops.helpers import ROOT, TOKENS, alert, bearer

READ_ROUTES = ["/api/incidents", "/api/stats", "/api/rules"]


def test_missing_or_unknown_token_is_401_with_a_bearer_challenge(make_app) -> None:
    c = make_app().client
    for headers in ({}, {"Authorization": "Basic dXNlcjpwYXNz"}, {"Authorization": "Bearer nope"}):
        r = c.post("/alerts", json=alert(), headers=headers)
        assert r.status_code == 401
        assert r.headers["www-authenticate"] == 'Bearer realm="incident-pilot"'
        assert r.json()["error"]


def test_scopes(make_app) -> None:
    c = make_app().client
    r = c.post("/alerts", json=alert(), headers=bearer("ingest"))
    assert r.status_code == 200
    incident = r.json()["results"][0]["incident"]
    assert (
        c.post(
            "/context/deploys", json={"service": "a", "commit": "b"}, headers=bearer("ingest")
        ).status_code
        == 200
    )
    for path in READ_ROUTES:
        assert c.get(path, headers=bearer("ingest")).status_code == 403
        assert c.get(path, headers=bearer("read")).status_code == 200
        assert c.get(path, headers=bearer("admin")).status_code == 200  # admin implies all
    assert c.post("/alerts", json=alert(), headers=bearer("read")).status_code == 403
    resolve = f"/api/incidents/{incident}/resolve"
    for scope in ("ingest", "read"):
        r = c.post(resolve, headers=bearer(scope))
        assert r.status_code == 403 and "admin" in r.json()["error"]
        assert c.post("/-/reload", headers=bearer(scope)).status_code == 403
    assert c.post(resolve, headers=bearer("admin")).json()["resolved"] is True
    assert c.post("/-/reload", headers=bearer("admin")).status_code == 200
    assert c.post("/alerts", json=alert("X"), headers=bearer("admin")).status_code == 200


def test_open_routes(make_app) -> None:
    c = make_app().client
    assert c.get("/healthz").status_code == 200
    assert c.get("/readyz").status_code == 200
    assert c.get("/metrics").status_code == 200
    assert c.get("/openapi.json").status_code == 200


def test_without_tokens_everything_is_open(make_app) -> None:
    c = make_app(tokens=False).client
    assert c.post("/alerts", json=alert()).status_code == 200
    assert c.get("/api/incidents").status_code == 200


def test_token_sources(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text(f"# ops team\nread {TOKENS['read']}\n\nadmin {TOKENS['admin']}\n")
    env = {"INCIDENT_PILOT_TOKENS": f"ingest:{TOKENS['ingest']}"}
    tokens = load_tokens(AuthSettings(tokens_file=str(path)), env)
    assert tokens.scopes_for(TOKENS["ingest"]) == {"ingest"}
    assert tokens.scopes_for(TOKENS["admin"]) == {"admin"}
    assert tokens.scopes_for("x" * 30) == set()
    for bad_env, message in [
        ({"INCIDENT_PILOT_TOKENS": "ingest:short"}, "at least 16"),
        ({"INCIDENT_PILOT_TOKENS": "root:" + "x" * 20}, "unknown scope"),
        ({"INCIDENT_PILOT_TOKENS": "x" * 20}, "scope:token"),
    ]:
        with pytest.raises(AuthConfigError, match=message):
            load_tokens(AuthSettings(), bad_env)
    path.write_text("read\n")
    with pytest.raises(AuthConfigError, match=r"tokens:1: expected"):
        load_tokens(AuthSettings(tokens_file=str(path)), {})
    with pytest.raises(AuthConfigError, match="cannot read"):
        load_tokens(AuthSettings(tokens_file=str(tmp_path / "missing")), {})


def test_required_scopes() -> None:
    assert required_scope("GET", "/healthz", True) is None
    assert required_scope("GET", "/metrics", False) is None
    assert required_scope("GET", "/metrics", True) == "read"
    assert required_scope("POST", "/context/logs", False) == "ingest"
    assert required_scope("POST", "/api/incidents/x/resolve", False) == "admin"
    assert required_scope("POST", "/-/reload", False) == "admin"
    assert required_scope("GET", "/api/incidents", False) == "read"
    assert required_scope("GET", "/anything-else", False) == "read"


def test_bind_rules() -> None:
    empty = load_tokens(AuthSettings(), {})
    some = load_tokens(AuthSettings(), {"INCIDENT_PILOT_TOKENS": f"read:{TOKENS['read']}"})
    for host in ("127.0.0.1", "::1", "localhost", "127.0.0.2"):
        assert bind_problem(host, empty, False) is None
    assert "--insecure" in (bind_problem("0.0.0.0", empty, False) or "")
    assert bind_problem("0.0.0.0", empty, True) is None
    assert bind_problem("0.0.0.0", some, False) is None


def test_serve_refuses_a_public_address_without_tokens(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    cmd = [
        sys.executable,
        "-m",
        "engine",
        "serve",
        "--host",
        "0.0.0.0",
        "--db",
        str(tmp_path / "x.db"),
    ]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "refusing to listen on 0.0.0.0 without authentication" in done.stderr
    assert "--insecure" in done.stderr
    bad = subprocess.run(
        [*cmd[:-4], "--db", str(tmp_path / "x.db")],
        cwd=ROOT, env={**env, "INCIDENT_PILOT_TOKENS": "read:short"},
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert bad.returncode == 2 and "invalid token configuration" in bad.stderr


def test_no_tokens_logs_a_warning(server_factory) -> None:
    server = server_factory(tokens=False)
    assert "authentication is OFF" in server.stderr_text()
    assert "loopback only" in server.stderr_text()
