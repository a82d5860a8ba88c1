"""A real server: a dependency cascade posted from 11 threads pages the receiver once.

`incident-pilot serve --rules shipped --rules <dir>`, where <dir> fills in the
dependency graph (10 services call payments) and shortens the shipped rule's window
`after` (the dependents' hold-down) to 3s so the test can wait it out. The alerts arrive
together in a shuffled order; a webhook stand-in on loopback counts the pages.
"""

from __future__ import annotations

import json
import random
import threading
import time
from pathlib import Path

import httpx
import pytest

from engine.paths import rules_dir
from engine.testing import ServerProcess, make_webhook

from .conftest import wait_until

pytestmark = pytest.mark.e2e
DEPENDENTS = 10
HOLD = 3.0  # seconds: the rule's window.after in this test


def cascade_rules(root: Path) -> Path:
    rules = root / "cascade-rules"
    (rules / "tables").mkdir(parents=True)
    graph = "".join(f"  dep-{i}: [payments]\n" for i in range(DEPENDENTS))
    (rules / "tables" / "dependencies.yaml").write_text(f"kind: graph\nentries:\n{graph}", "utf-8")
    shipped = (rules_dir() / "dependency.upstream_failing.yaml").read_text("utf-8")
    assert "window: {before: 30m, after: 1m}" in shipped
    (rules / "dependency.upstream_failing.yaml").write_text(
        shipped.replace("after: 1m}", f"after: {int(HOLD)}s}}"), "utf-8"
    )
    return rules


def test_a_cascade_from_threads_pages_once(tmp_path: Path, standin) -> None:
    receiver = standin()
    config = tmp_path / "config.yaml"
    config.write_text(
        "delivery: {base_delay: 100ms, max_delay: 300ms, poll_interval: 100ms}\n"
        "sinks:\n"
        f"  receiver: {{type: webhook, url: '{receiver.url}/hook', timeout: 2s,"
        " secret_env: WH_SECRET}\n"
        "routes:\n"
        "  default: [{sink: receiver}]\n",
        "utf-8",
    )
    rules = cascade_rules(tmp_path)
    srv = ServerProcess(
        tmp_path / "srv",
        "--config",
        str(config),
        "--rules",
        "shipped",
        "--rules",
        str(rules),
        "--quiet",
        env={"WH_SECRET": "cascade-hmac-secret-0001"},
    )
    try:
        srv.start()
        services = ["payments", *(f"dep-{i}" for i in range(DEPENDENTS))]
        random.Random(7).shuffle(services)
        barrier = threading.Barrier(len(services))
        answers: dict[str, dict] = {}

        def send(service: str) -> None:
            name = "PaymentsDown" if service == "payments" else "HighErrorRate"
            body = make_webhook({"labels": {"alertname": name, "service": service}})
            barrier.wait()
            r = httpx.post(srv.url + "/alerts", json=body, timeout=30)
            answers[service] = r.json()["results"][0]

        threads = [threading.Thread(target=send, args=(s,)) for s in services]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert len(answers) == len(services), srv.stderr_text()
        root = answers["payments"]["incident"]
        assert receiver.wait_for(1, timeout=10)
        time.sleep(HOLD + 2)  # past every dependent's hold-down: nothing more may come
        pages = [json.loads(r.body) for r in receiver.requests]
        assert [(p["event"], p["incident"]["id"]) for p in pages] == [("trigger", root)]
        incident = httpx.get(f"{srv.url}/api/incidents/{root}", timeout=5).json()
        assert sorted(s["service"] for s in incident["symptoms"]) == sorted(
            f"dep-{i}" for i in range(DEPENDENTS)
        )
        opened = httpx.get(srv.url + "/api/incidents?status=open", timeout=5).json()
        assert [i["id"] for i in opened["incidents"]] == [root]
        assert wait_until(
            lambda: httpx.get(srv.url + "/api/stats", timeout=5).json()["outbox"]["pending"] == 0
        )
    finally:
        srv.close()
