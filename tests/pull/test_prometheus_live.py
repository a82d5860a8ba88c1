"""Against a real Prometheus (/usr/bin/prometheus, the Debian package): it scrapes a tiny
exporter of 5xx and total requests for one service, and an alert for that service gets
the prometheus.error_ratio finding through a live server, its evidence resolving through
the API and the finding on the delivered stdout report. A hostile label value in the
same envelope reaches Prometheus as a string literal: it matches no series."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.testing import ServerProcess, free_port, make_alert, make_webhook, ts
from tests.pull.conftest import PULL_RULES

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
pytestmark = pytest.mark.skipif(
    not Path(PROMETHEUS).exists(),
    reason="no prometheus binary (apt-get install -y prometheus; .ci/run installs it)",
)
ROOT = Path(__file__).resolve().parents[2]
SERVICE = "checkout"
NASTY = 'checkout"} or vector(1) #\\'


class _Exporter:
    """http_requests_total for SERVICE: 1 in 5 requests a 500, growing at every scrape."""

    def __init__(self) -> None:
        self.scrapes = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                outer.scrapes += 1
                n = outer.scrapes * 10
                body = (
                    "# TYPE http_requests_total counter\n"
                    f'http_requests_total{{service="{SERVICE}",code="500"}} {n * 2}\n'
                    f'http_requests_total{{service="{SERVICE}",code="200"}} {n * 8}\n'
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[str]:
    exporter = _Exporter()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: app\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{exporter.port}']}}]\n",
        encoding="utf-8",
    )
    port = free_port()
    log = (tmp_path / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    query = f'sum(rate(http_requests_total{{service="{SERVICE}",code="500"}}[1m]))'
    try:
        deadline = time.monotonic() + 60
        while True:  # until the rate over two scrapes is queryable
            if proc.poll() is not None:
                pytest.fail("prometheus exited:\n" + (tmp_path / "prometheus.log").read_text())
            try:
                r = httpx.get(url + "/api/v1/query", params={"query": query}, timeout=2)
                if r.status_code == 200 and r.json()["data"]["result"]:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("the exporter's series never became queryable in prometheus")
            time.sleep(0.25)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()
        exporter.close()


def documented_serve_args(prometheus: str) -> list[str]:
    """The `incident-pilot serve` line of docs/INGEST.md's pull sources section, with the
    live Prometheus put in for the page's and a Loki nobody listens on (its rule then
    gives a LOW rule.error at once)."""
    page = (ROOT / "docs" / "INGEST.md").read_text()
    section = page[page.index("\n## Pull sources (Prometheus, Loki)") :]
    line = re.search(r"\n    (incident-pilot serve .*?)\n\n", section, re.S)
    assert line is not None, "the pull sources section lost its serve command"
    words = shlex.split(line.group(1).replace("\\\n", " "))
    assert words[:2] == ["incident-pilot", "serve"]
    swap = {
        "http://prometheus:9090": prometheus,
        "http://loki:3100": f"http://127.0.0.1:{free_port()}",
        "examples/pull-rules": str(PULL_RULES),
    }
    return [swap.get(w, w) for w in words[2:]]


def test_an_alert_gets_a_finding_from_prometheus(prometheus: str, tmp_path: Path) -> None:
    args = [*documented_serve_args(prometheus), "--format", "json"]
    assert prometheus in args and str(PULL_RULES) in args and "shipped" in args
    with ServerProcess(tmp_path / "srv", *args) as server:
        start = ts()
        body = make_webhook(
            make_alert(service=SERVICE, starts_at=start),
            make_alert(service=NASTY, alertname="Other", starts_at=start),
        )
        with server.client() as api:
            results = api.post("/alerts", json=body).json()["results"]
            incident_id, hostile_id = (r["incident"] for r in results)
            report = server.wait_for_stdout(incident_id, timeout=15)
            assert "prometheus.error_ratio" in report
            inc = api.get(f"/api/incidents/{incident_id}").json()
            (finding,) = [f for f in inc["findings"] if f["rule"] == "prometheus.error_ratio"]
            assert "20.0%" in finding["summary"], finding
            for evidence in finding["evidence"]:
                record = api.get(f"/api/{evidence['path']}").json()
                assert record["labels"] == {"service": SERVICE}
                assert all(record.get(k) == v for k, v in evidence["snapshot"].items())
                pull = api.get(f"/api/{record['pull']['path']}").json()
                assert pull["link"].startswith(prometheus + "/graph?g0.expr=")
            server.wait_for_stdout(hostile_id, timeout=15)
            hostile = api.get(f"/api/incidents/{hostile_id}").json()
            rules = {f["rule"] for f in hostile["findings"]}
            failed = {f["outputs"].get("failed_rule") for f in hostile["findings"]}
            # Parsed as intended (no error): a label equal to the whole hostile text, and
            # no such series.
            assert "prometheus.error_ratio" not in rules
            assert "prometheus.error_ratio" not in failed, hostile["findings"]
