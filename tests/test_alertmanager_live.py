"""A real Prometheus Alertmanager (/usr/bin/prometheus-alertmanager, the Debian package)
posts a group of two alerts, one with a 10,000-character description, to a real server:
both become incidents, the description cut with its marker, under the fingerprints
Alertmanager computed. Before soft limits the whole group got a 400, which Alertmanager
never retries."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from engine.testing import ServerProcess, free_port, ts

ALERTMANAGER = shutil.which("prometheus-alertmanager") or "/usr/bin/prometheus-alertmanager"
pytestmark = pytest.mark.skipif(
    not Path(ALERTMANAGER).exists(),
    reason="no Alertmanager binary (apt-get install -y prometheus-alertmanager; .ci/run "
    "installs it)",
)


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """Alertmanager on a free loopback port, no cluster; its config file (the test writes
    the receiver into it, then reloads)."""
    config = tmp_path / "alertmanager.yml"
    config.write_text("route: {receiver: none}\nreceivers: [{name: none}]\n", encoding="utf-8")
    port = free_port()
    log = (tmp_path / "alertmanager.log").open("wb")
    proc = subprocess.Popen(
        [
            ALERTMANAGER,
            f"--config.file={config}",
            f"--storage.path={tmp_path / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(url + "/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, (tmp_path / "alertmanager.log").read_text()
            assert time.monotonic() < deadline, "Alertmanager did not become ready"
            time.sleep(0.1)
        yield url, config
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()


def test_alertmanager_group_with_an_oversized_annotation(tmp_path, alertmanager) -> None:
    am_url, config = alertmanager
    with ServerProcess(tmp_path / "server", "--quiet") as srv, srv.client() as c:
        config.write_text(
            "route:\n"
            "  receiver: incident-pilot\n"
            "  group_by: [service]\n"
            "  group_wait: 1s\n"
            "  group_interval: 5m\n"
            "receivers:\n"
            "  - name: incident-pilot\n"
            "    webhook_configs:\n"
            f"      - url: {srv.url}/alerts\n"
            "        send_resolved: true\n"
            "        max_alerts: 0\n",
            encoding="utf-8",
        )
        assert httpx.post(am_url + "/-/reload", timeout=10).status_code == 200
        start = ts(minutes=1)
        alerts = [
            {
                "labels": {"alertname": "PodCrashLooping", "service": "search", "pod": "a"},
                "annotations": {"summary": "pod a crashlooping"},
                "startsAt": start,
            },
            {
                "labels": {"alertname": "PodOOMKilled", "service": "search", "pod": "b"},
                "annotations": {"summary": "pod b killed", "description": "D" * 10_000},
                "startsAt": start,
            },
        ]
        assert httpx.post(am_url + "/api/v2/alerts", json=alerts, timeout=10).status_code == 200
        am_alerts = httpx.get(am_url + "/api/v2/alerts", timeout=10).json()
        fingerprints = {a["labels"]["pod"]: a["fingerprint"] for a in am_alerts}

        deadline = time.monotonic() + 30
        while True:
            incidents = c.get("/api/incidents").json()["incidents"]
            if len(incidents) >= 2 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert len(incidents) == 2, (srv.stderr_text()[-2000:], incidents)
        by_name = {i["alertname"]: i for i in incidents}
        assert by_name["PodCrashLooping"]["fingerprint"] == fingerprints["a"]
        oom = c.get(f"/api/incidents/{by_name['PodOOMKilled']['id']}").json()
        assert oom["fingerprint"] == fingerprints["b"]
        description = oom["alert"]["annotations"]["description"]
        assert description == "D" * 8168 + "…[truncated 1,832 chars]"
        log = srv.stderr_text()
        assert "POST /alerts 200" in log and "POST /alerts 400" not in log
        assert f"alert {fingerprints['b']} over the soft limits" in log
