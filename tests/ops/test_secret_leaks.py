"""Nothing secret leaves: every secret the service holds is planted, every receiver echoes
back all it was sent (path, query, headers, body) in its error answers, and then the
server's log, every API answer and the SQLite database file are searched for each secret
and for the secret parts of a secret URL, in the forms an echo may use."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from engine.testing import ServerError, ServerProcess, free_port, make_alert, make_webhook

TOKENS = {
    "ingest": "PLANT-ingest-api-token-7f3a9c21",
    "read": "PLANT-read-api-token-0b8e4d55",
    "admin": "PLANT-admin-api-token-c4a1e9f0",
}
SLACK_TOKEN = "PLANTslackTok3nXk9pQ2rT7vW4"
SLACK_PATH = f"/services/T0PLANT01/B0PLANT02/{SLACK_TOKEN}"
SLACK_QUERY = "sig=PLANT-slack-query-5e6f7a"
LLM_PASSWORD = "PLANT-llm-url-password-1f2e3d"
LLM_BASIC = base64.b64encode(f"narrator:{LLM_PASSWORD}".encode()).decode()
SECRETS = {
    "PD_KEY": "PLANTpagerdutyRoutingKey0123456",
    "OG_KEY": "PLANT-opsgenie-api-key-8c9d0e1f",
    "WH_SECRET": "PLANT-webhook-hmac-secret-2a3b4c",
    "INCIDENT_PILOT_GITHUB_WEBHOOK_SECRET": "PLANT-github-webhook-secret-6d7e8f",
    "INCIDENT_PILOT_GITLAB_WEBHOOK_TOKEN": "PLANT-gitlab-webhook-token-9a0b1c",
    "INCIDENT_PILOT_ARGOCD_WEBHOOK_TOKEN": "PLANT-argocd-webhook-token-3d4e5f",
    "INCIDENT_PILOT_LLM_API_KEY": "PLANT-llm-api-key-6a7b8c9d",
}
SINKS = """
delivery:
  max_attempts: 3
  base_delay: 20ms
  max_delay: 50ms
  poll_interval: 50ms
sinks:
  chat: {{type: slack, webhook_url_env: SLACK_URL, timeout: 2s}}
  pd: {{type: pagerduty, url: "{url}", routing_key_env: PD_KEY, timeout: 2s}}
  og: {{type: opsgenie, url: "{url}", api_key_env: OG_KEY, timeout: 2s}}
  hook: {{type: webhook, url: "{url}/incidents", secret_env: WH_SECRET, timeout: 2s}}
routes:
  default:
    - sink: chat
    - sink: pd
    - sink: og
    - sink: hook
"""


class EchoReceiver:
    """Answers every request with an error that quotes everything the request carried:
    path and query (as sent, and percent-encoded), headers and body, each reply putting
    another part first (an error excerpt is short). Two 503s, then a 400: every sink
    retries twice, then dead-letters the delivery."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                # Credentials first, as a receiver refusing them would quote them.
                headers = dict(sorted(self.headers.items(), key=lambda h: h[0] != "Authorization"))
                with outer.lock:
                    n = sum(1 for s in outer.seen if s["sink"] == _sink_of(self.path))
                    outer.seen.append({"sink": _sink_of(self.path), "path": self.path})
                parts = [
                    json.dumps({"error": "bad request", "headers": headers}),
                    f"body: {body.decode('utf-8', 'replace')}",
                    f"{self.command} {self.path} HTTP/1.1 {quote(self.path, safe='')}",
                ]
                parts = parts[min(n, 2) :] + parts[: min(n, 2)]  # the path first at last
                if "/chat/completions" in self.path:  # the LLM: its reply repeats all of it
                    said = f"Run `{self.headers.get('Authorization')}` first.\n" + "\n".join(parts)
                    reply = {"choices": [{"message": {"role": "assistant", "content": said}}]}
                    status, text = 200, json.dumps(reply)
                else:
                    status, text = (503 if n < 2 else 400), " | ".join(parts)
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _sink_of(path: str) -> str:
    for marker, sink in (("/services/", "chat"), ("/v2/enqueue", "pd"), ("/v2/alerts", "og")):
        if marker in path:
            return sink
    return "llm" if "completions" in path else "hook"


@pytest.fixture
def echo() -> Iterator[EchoReceiver]:
    receiver = EchoReceiver()
    yield receiver
    receiver.close()


def needles(slack_url: str) -> dict[str, str]:
    """What must never appear: each secret, and each part of the Slack URL that is one."""
    found = {name: value for name, value in SECRETS.items()}
    found |= {f"api token {scope}": token for scope, token in TOKENS.items()}
    found |= {
        "slack url": slack_url,
        "slack path": SLACK_PATH,
        "slack path, percent-encoded": quote(SLACK_PATH, safe=""),
        "slack token": SLACK_TOKEN,
        "slack query": SLACK_QUERY,
        "slack query value": SLACK_QUERY.partition("=")[2],
        "llm url password": LLM_PASSWORD,
        "llm url credentials, as Basic auth": LLM_BASIC,
    }
    return found


def leaks(text: str, slack_url: str) -> list[str]:
    low = text.lower()
    return [name for name, value in needles(slack_url).items() if value.lower() in low]


PG_DSN = os.environ.get("INCIDENT_PILOT_TEST_POSTGRES_DSN", "")
STORES = [
    "sqlite",
    pytest.param(
        "postgres",
        marks=pytest.mark.skipif(
            not PG_DSN, reason="INCIDENT_PILOT_TEST_POSTGRES_DSN is not set (no PostgreSQL)"
        ),
    ),
]


def stored_text(store: str, db: str, schema: str) -> list[tuple[str, str]]:
    """(where, text) of everything the store holds: the SQLite files (WAL included), or
    every row of every table of the PostgreSQL schema."""
    if store == "sqlite":
        path = Path(db)
        files = [p for p in path.parent.iterdir() if p.name.startswith(path.name)]
        assert files
        return [(p.name, p.read_bytes().decode("latin-1")) for p in files]
    import psycopg

    out = []
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        tables = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
            (schema,),
        ).fetchall()
        assert tables
        for (table,) in tables:
            rows = conn.execute(f'SELECT t::text FROM "{schema}"."{table}" t').fetchall()
            out.append((table, "\n".join(r[0] for r in rows)))
    return out


@pytest.fixture
def schema() -> Iterator[str]:
    """A PostgreSQL schema of the test's own, dropped after it (when PostgreSQL is used)."""
    name = f"leaks_{os.getpid()}_{time.monotonic_ns() % 10**9}"
    yield name
    if PG_DSN:
        import psycopg

        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.mark.parametrize("store", STORES)
def test_no_secret_reaches_logs_api_or_database(
    tmp_path: Path, echo: EchoReceiver, store: str, schema: str
) -> None:
    slack_url = f"{echo.url}{SLACK_PATH}?{SLACK_QUERY}"
    db = None
    if store == "postgres":
        db = f"{PG_DSN}{'&' if '?' in PG_DSN else '?'}schema={schema}"
    config = tmp_path / "delivery.yaml"
    config.write_text(SINKS.format(url=echo.url))
    env = {
        **SECRETS,
        "SLACK_URL": slack_url,
        "INCIDENT_PILOT_TOKENS": ",".join(f"{s}:{t}" for s, t in TOKENS.items()),
        "INCIDENT_PILOT_LLM_PROVIDER": "openai-compatible",
        "INCIDENT_PILOT_LLM_BASE_URL": echo.url.replace("//", f"//narrator:{LLM_PASSWORD}@")
        + "/v1",
        "INCIDENT_PILOT_LLM_MODEL": "stand-in",
        "INCIDENT_PILOT_LOG_LEVEL": "debug",
    }
    server = ServerProcess(tmp_path / "srv", "--config", str(config), db=db, env=env)
    answers: list[str] = []
    with server, server.client() as client:
        admin = {"Authorization": f"Bearer {TOKENS['admin']}"}
        ingest = {"Authorization": f"Bearer {TOKENS['ingest']}"}
        alert = make_alert(service="checkout-api", severity="critical")
        sent = client.post("/alerts", json=make_webhook(alert), headers=ingest)
        assert sent.status_code == 200, sent.text
        # A wrong token and the deploy webhooks, right and wrong: nothing of theirs is logged.
        assert (
            client.get("/api/incidents", headers={"Authorization": "Bearer nope"}).status_code
            == 401
        )
        body = json.dumps({"deployment": {}}).encode()
        github = SECRETS["INCIDENT_PILOT_GITHUB_WEBHOOK_SECRET"].encode()
        signature = "sha256=" + hmac.new(github, body, hashlib.sha256).hexdigest()
        client.post("/hooks/github", content=body, headers={"X-Hub-Signature-256": signature})
        client.post(
            "/hooks/gitlab",
            json={},
            headers={"X-Gitlab-Token": SECRETS["INCIDENT_PILOT_GITLAB_WEBHOOK_TOKEN"]},
        )
        client.post(
            "/hooks/argocd",
            json={},
            headers={"Authorization": f"Bearer {SECRETS['INCIDENT_PILOT_ARGOCD_WEBHOOK_TOKEN']}"},
        )

        deadline = time.monotonic() + 30
        dead: dict[str, Any] = {}
        while time.monotonic() < deadline:
            dead = client.get("/api/deliveries?status=dead", headers=admin).json()
            if dead.get("count") == 4:
                break
            time.sleep(0.1)
        assert dead.get("count") == 4, dead
        # The receivers did echo the secrets back: this test would see a leak.
        seen = {s["sink"] for s in echo.seen}
        assert {"chat", "pd", "og", "hook", "llm"} <= seen
        chat = next(d for d in dead["deliveries"] if d["sink"] == "chat")
        assert "HTTP 400: POST *** HTTP/1.1 ***" in chat["last_error"], chat  # masked

        incidents = client.get("/api/incidents", headers=admin).json()
        ids = [i["id"] for i in incidents["incidents"]]
        paths = ["/api/deliveries?status=all", "/api/stats", "/api/config", "/api/incidents"]
        paths += [f"/api/incidents/{i}" for i in ids] + ["/metrics", "/healthz"]
        for path in paths:
            answer = client.get(path, headers=admin)
            assert answer.status_code == 200, (path, answer.text)
            answers.append(f"{path}: {answer.text}")
        for d in dead["deliveries"]:  # the admin re-send answers with the delivery
            answer = client.post(f"/api/deliveries/{d['id']}/retry", headers=admin)
            assert answer.status_code in (200, 409), answer.text
            answers.append(f"retry {d['id']}: {answer.text}")
        narration = client.get(f"/api/incidents/{ids[0]}", headers=admin).json()["narration"]
        assert narration["source"] == "template" and narration["llm_rejected"]

    log = server.stderr_text() + server.stdout_text()
    assert "dead letter:" in log  # the errors were logged
    for sink in ("chat", "pd", "og"):  # each echoed its secret: masked in the log
        lines = [line for line in log.splitlines() if f" to {sink} " in line]
        assert any("***" in line for line in lines), (sink, lines)
    assert not leaks(log, slack_url), leaks(log, slack_url)
    for answer in answers:
        assert not leaks(answer, slack_url), (leaks(answer, slack_url), answer[:300])
    held = stored_text(store, server.db, schema)
    assert any("***" in text for _, text in held)  # the masked errors are stored
    for where, text in held:
        assert not leaks(text, slack_url), (where, leaks(text, slack_url))


def test_a_store_url_password_is_never_printed(tmp_path: Path) -> None:
    """Every form of a PostgreSQL password, in a store the server cannot reach."""
    port = free_port()  # nothing listens there
    url = (
        f"postgresql://app:PLANT-userinfo-pw-1a2b@127.0.0.1:{port}/ip"
        "?password=PLANT-query-pw-3c4d&sslpassword=PLANT-sslpassword-5e6f&connect_timeout=2"
    )
    server = ServerProcess(tmp_path, db=url, env={"INCIDENT_PILOT_LOG_LEVEL": "debug"})
    with pytest.raises(ServerError):
        server.start()
    server.close()
    text = server.stderr_text() + server.stdout_text()
    assert "cannot open the store" in text
    assert "PLANT-" not in text, text


@pytest.mark.skipif(
    not os.environ.get("INCIDENT_PILOT_TEST_POSTGRES_DSN"),
    reason="INCIDENT_PILOT_TEST_POSTGRES_DSN is not set (no PostgreSQL server to start on)",
)
def test_a_running_postgres_store_logs_its_url_without_passwords(tmp_path: Path) -> None:
    base = os.environ["INCIDENT_PILOT_TEST_POSTGRES_DSN"]
    schema = f"leak_{os.getpid()}_{int(time.time() * 1000) % 10**8}"
    sep = "&" if "?" in base else "?"
    # The test server trusts local connections: the planted passwords are carried, unused.
    url = f"{base}{sep}schema={schema}&password=PLANT-query-pw-7a8b&sslpassword=PLANT-ssl-9c0d"
    server = ServerProcess(tmp_path, db=url, env={"INCIDENT_PILOT_LOG_LEVEL": "info"})
    try:
        with server, server.client() as client:
            for path in ("/api/stats", "/api/config", "/healthz", "/metrics"):
                assert "PLANT-" not in client.get(path).text
        text = server.stderr_text()
        assert "listening on" in text and "password=***" in text
        assert "PLANT-" not in text, text
    finally:
        import psycopg

        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def test_every_log_line_is_scrubbed_whatever_field_holds_the_secret() -> None:
    import logging

    from engine.delivery.secrets import Redactor
    from engine.server import logs

    secret = "PLANT-log-secret-0a1b2c3d"
    redactor = Redactor()
    redactor.add_value(secret)
    try:
        raise RuntimeError(f"driver said: auth {secret} refused")
    except RuntimeError:
        import sys

        exc_info = sys.exc_info()
    record = logging.LogRecord(
        "incident_pilot.delivery",
        logging.ERROR,
        __file__,
        1,
        "sending %s failed",
        (secret,),
        exc_info,
    )
    record.detail = {"url": f"https://x/{quote(secret, safe='')}"}
    logs.scrub_secrets(redactor.scrub)
    try:
        for formatter in (logs.KeyValueFormatter(), logs.JsonFormatter()):
            line = formatter.format(record)
            assert "***" in line and "driver said" in line
            assert secret not in line and quote(secret, safe="") not in line
    finally:
        logs.scrub_secrets(lambda line: line)
