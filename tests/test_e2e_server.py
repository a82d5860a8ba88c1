"""End to end against a real server process: the Go README quick demo, then the bodies a real
Alertmanager sent (tests/fixtures/alertmanager), and what the server printed on stdout."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from engine.testing import ServerProcess
from engine.timeutil import format_ts, utcnow

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_ALERT = ROOT / "examples" / "sample_alert.json"
AM = ROOT / "tests" / "fixtures" / "alertmanager"
CURL = shutil.which("curl")


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[ServerProcess]:
    with ServerProcess(tmp_path_factory.mktemp("e2e")) as srv:
        yield srv


def send(port: int, path: str, data: str, *headers: str) -> dict:
    """POST like the README: `curl -X POST localhost:PORT/path -d '...'` (curl's -d means
    form-urlencoded unless a header says otherwise); httpx with the same body and headers
    when curl is missing."""
    url = f"http://127.0.0.1:{port}{path}"
    if CURL:
        cmd = [CURL, "-sS", "--max-time", "10", "-X", "POST", url, "-d", data]
        for h in headers:
            cmd += ["-H", h]
        cmd += ["-w", "\n%{http_code}"]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=15, check=True).stdout
        body, _, code = out.rpartition("\n")
        assert code == "200", (path, code, body)
        return json.loads(body)
    hdrs = {"content-type": "application/x-www-form-urlencoded"}
    for h in headers:
        name, _, value = h.partition(":")
        hdrs[name.strip().lower()] = value.strip()
    r = httpx.post(url, content=data.encode(), headers=hdrs, timeout=10)
    assert r.status_code == 200, (path, r.status_code, r.text)
    return r.json()


def test_go_readme_quick_demo(server: ServerProcess) -> None:
    port = server.port
    when = format_ts(utcnow() - timedelta(minutes=3))
    # The bodies are the README's, line breaks included.
    deploy = send(
        port,
        "/context/deploys",
        f'{{\n"service": "api-gateway",\n"commit": "a39bf2c",\n"author": "alice",\n"when": "{when}"\n}}',
    )
    assert deploy["accepted"] == 1
    for i in range(1, 11):
        out = send(
            port,
            "/context/logs",
            f'{{\n"service":"api-gateway","level":"ERROR",\n"message":"upstream timeout request {i}"\n}}',
        )
        assert out["accepted"] == 1
    # `curl ... -H 'Content-Type: application/json' -d @examples/sample_alert.json`; curl's
    # -d @file strips newlines, as the README's command does.
    alert = send(
        port,
        "/alerts",
        "@" + str(SAMPLE_ALERT) if CURL else SAMPLE_ALERT.read_text().replace("\n", ""),
        "Content-Type: application/json",
    )
    [result] = alert["results"]
    assert result["outcome"] == "opened"

    with server.client() as api:
        [latest] = api.get("/api/incidents?limit=1").json()["incidents"]  # the README's last step
        assert latest["id"] == result["incident"]
        inc = api.get(f"/api/incidents/{result['incident']}").json()
        assert inc["severity"] == "high"
        by_rule = {f["rule"]: f for f in inc["findings"]}
        deploy_finding = by_rule["deploy.recent_correlated"]
        assert deploy_finding["severity"] == "high"
        assert "commit a39bf2c by alice" in deploy_finding["summary"]
        spike = by_rule["logs.error_spike"]
        assert spike["severity"] == "medium"
        assert "10 ERROR lines from api-gateway" in spike["summary"]
        assert '"upstream timeout request <num>"' in spike["summary"]
        assert [e["path"] for e in deploy_finding["evidence"]] == [
            f"context/deploys/{deploy['ids'][0]}"
        ]
        assert len(spike["evidence"]) == 5

        for finding in inc["findings"]:
            for evidence in finding["evidence"]:
                path = evidence["path"]
                if path.startswith("context/"):
                    r = api.get(f"/api/{path}")
                    assert r.status_code == 200, (path, r.text)
                    record = r.json()
                    assert record["path"] == path
                    assert all(record.get(k) == v for k, v in evidence["snapshot"].items())
                elif path.startswith("alert/"):
                    node = api.get(f"/api/{inc['path']}").json()["alert"]
                    for part in path.split("/")[1:]:
                        node = node[part]
                    assert node == "edge"
                elif path.startswith("incidents/"):
                    assert api.get(f"/api/{path}").status_code == 200
                else:
                    pytest.fail(f"evidence {path} resolves through no API")

    report = server.wait_for_stdout(f"({result['incident']}, opened)")
    assert "[HIGH] 5xx rate above 5% on api-gateway" in report
    assert "HIGH deploy.recent_correlated (confidence high)" in report
    assert "MEDIUM logs.error_spike" in report
    assert "\x1b[" not in report, "no colour when stdout is not a terminal"


def post_fixture(api: httpx.Client, name: str) -> dict:
    r = api.post(
        "/alerts",
        content=(AM / f"{name}.json").read_bytes(),
        headers={"content-type": "application/json", "user-agent": "Alertmanager/0.25.0"},
    )
    assert r.status_code == 200, (name, r.text)
    return r.json()


def test_alertmanager_firing_then_resolved(server: ServerProcess) -> None:
    with server.client() as api:
        [firing] = post_fixture(api, "firing")["results"]
        assert (firing["fingerprint"], firing["outcome"]) == ("d3bb1d1bb9cf6d10", "opened")
        [resolved] = post_fixture(api, "resolved")["results"]
        assert resolved["outcome"] == "resolved"
        assert resolved["incident"] == firing["incident"]
        inc = api.get(f"/api/incidents/{firing['incident']}").json()
        assert inc["status"] == "resolved"
        assert inc["resolved_at"] == "2026-11-27T15:09:50Z"
        assert inc["resolution"]["auto"] is True
        assert inc["severity"] == "critical" and inc["team"] == "payments"
    server.wait_for_stdout(f"({firing['incident']}, resolved)")


def test_alertmanager_grouped_alerts(server: ServerProcess) -> None:
    with server.client() as api:
        opened, attached = post_fixture(api, "grouped-firing")["results"]
        assert opened["outcome"] == "opened" and attached["outcome"] == "attached"
        incident_id = opened["incident"]
        assert attached["incident"] == incident_id
        inc = api.get(f"/api/incidents/{incident_id}").json()
        assert inc["attached_count"] == 1 and inc["alert"]["labels"]["pod"] == "search-7d9f-a"

        post_fixture(api, "grouped-partial-resolve")
        assert api.get(f"/api/incidents/{incident_id}").json()["status"] == "open"

        [last] = post_fixture(api, "grouped-resolved")["results"]
        assert (last["outcome"], last["incident"]) == ("resolved", incident_id)
        inc = api.get(f"/api/incidents/{incident_id}").json()
        assert inc["status"] == "resolved" and inc["resolved_at"] == "2026-11-27T15:12:37Z"
        listed = api.get("/api/incidents?service=search").json()
        assert [i["id"] for i in listed["incidents"]] == [incident_id]
