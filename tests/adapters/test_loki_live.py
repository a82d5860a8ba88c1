"""Live: a real server, log lines sent by the Loki client from PyPI (python-logging-loki,
which posts Loki's JSON push body), then an Alertmanager alert for that service: the
incident cites the error spike those lines make."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from engine.testing import ServerProcess as Server
from tests.ops.helpers import TOKENS, alert, bearer, ops_server

logging_loki = pytest.importorskip("logging_loki")
pytestmark = pytest.mark.e2e


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    server = ops_server(tmp_path)  # tokens on: the push needs an ingest token
    server.start()
    try:
        yield server
    finally:
        server.stop()


def documented_recipe() -> str:
    """The python-logging-loki block of docs/INGEST.md."""
    page = (Path(__file__).resolve().parents[2] / "docs" / "INGEST.md").read_text()
    section = page[page.index("### From Python: python-logging-loki") :]
    start = section.index("```python\n") + len("```python\n")
    return section[start : section.index("```", start)]


def test_loki_client_logs_make_an_error_spike_finding(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The documented setup, as written, with only the server's address put in.
    recipe = documented_recipe()
    assert "http://incident-pilot:9099/loki/api/v1/push" in recipe
    monkeypatch.setenv("INCIDENT_PILOT_INGEST_TOKEN", TOKENS["ingest"])
    namespace: dict[str, object] = {}
    exec(recipe.replace("http://incident-pilot:9099", server.url), namespace)
    handler = namespace["handler"]
    assert isinstance(handler, logging_loki.LokiHandler)
    failures: list[object] = []
    handler.handleError = lambda record: failures.append(sys.exc_info()[1])  # type: ignore[method-assign]
    logger = logging.getLogger("checkout")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    try:
        for i in range(6):
            logger.error("payment provider timeout after 3000ms, order %d", i)
        logger.info("health check ok")  # below the default volume filter: not stored
    finally:
        logger.removeHandler(handler)
        handler.close()
    assert failures == [], f"the Loki client got an error: {failures}\n{server.log()}"

    stats = httpx.get(f"{server.url}/api/stats", headers=bearer("read")).json()
    assert stats["since_start"]["context_logs"] == 6
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'incident_pilot_ingest_records_total{outcome="filtered",source="loki"} 1.0' in metrics

    r = httpx.post(
        f"{server.url}/alerts",
        json={"version": "4", "status": "firing", "alerts": [alert(service="checkout-api")]},
        headers=bearer("ingest"),
    )
    assert r.status_code == 200, r.text
    incident_id = r.json()["results"][0]["incident"]
    incident = httpx.get(f"{server.url}/api/incidents/{incident_id}", headers=bearer("read")).json()
    spike = [f for f in incident["findings"] if f["rule"] == "logs.error_spike"]
    assert spike, f"no logs.error_spike finding in {incident['findings']}"
    assert "6 ERROR lines from checkout-api" in spike[0]["summary"]
