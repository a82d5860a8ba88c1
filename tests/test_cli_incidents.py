"""`incident-pilot incidents ...` and `deliveries ...` against a live server (a real `serve`
process on loopback, with tokens): the table, the report, resolving, the dead letters, and
one-line errors for every way a call can fail."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.cli import main
from engine.testing import ServerProcess, free_port, make_alert, ts

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]
READ = "read-token-for-the-cli-0001"
ADMIN = "admin-token-for-the-cli-0001"
INGEST = "ingest-token-for-the-cli-001"
TOKENS = f"read:{READ},admin:{ADMIN},ingest:{INGEST}"
DEAD_SINK = """
delivery:
  max_attempts: 1
  base_delay: 20ms
  poll_interval: 50ms
sinks:
  out: {type: stdout}
  hook: {type: webhook, url: 'http://127.0.0.1:PORT/in', timeout: 1s, secret_env: HOOK_SECRET}
routes:
  default: [{sink: out}, {sink: hook}]
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The README demo on a live server whose webhook sink is down (a dead letter)."""
    work = tmp_path_factory.mktemp("cli")
    config = work / "delivery.yaml"
    config.write_text(DEAD_SINK.replace("PORT", str(free_port())), encoding="utf-8")
    with ServerProcess(
        work,
        "--config",
        str(config),
        env={"INCIDENT_PILOT_TOKENS": TOKENS, "HOOK_SECRET": "hook-secret-for-the-cli-01"},
    ) as srv:
        ingest = {"Authorization": f"Bearer {INGEST}"}
        with httpx.Client(base_url=srv.url, headers=ingest, timeout=10) as api:
            deploy = {"service": "api-gateway", "commit": "a39bf2c", "author": "alice"}
            api.post("/context/deploys", json={**deploy, "when": ts(minutes=3)})
            logs = [
                {
                    "service": "api-gateway",
                    "level": "ERROR",
                    "message": f"upstream timeout request {i}",
                }
                for i in range(1, 11)
            ]
            api.post("/context/logs", json=logs)
            alert = make_alert(
                service="api-gateway",
                severity="warning",
                team="edge",
                annotations={"summary": "5xx rate above 5% on api-gateway"},
            )
            answer = api.post("/alerts", json=alert)
            assert answer.status_code == 200, answer.text
            srv.demo_id = answer.json()["results"][0]["incident"]  # type: ignore[attr-defined]
            other = api.post("/alerts", json=make_alert(service="search", alertname="SlowQueries"))
            srv.other_id = other.json()["results"][0]["incident"]  # type: ignore[attr-defined]
        srv.wait_for_stdout("(" + srv.demo_id + ", opened)")  # type: ignore[attr-defined]
        yield srv


def cli(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    *argv: str,
    url: str | None = None,
    token: str | None = None,
) -> tuple[int, str, str]:
    """Run the command in this process with INCIDENT_PILOT_URL / _API_TOKEN set."""
    for name in list(os.environ):
        if name.startswith("INCIDENT_PILOT_"):
            monkeypatch.delenv(name)
    if url is not None:
        monkeypatch.setenv("INCIDENT_PILOT_URL", url)
    if token is not None:
        monkeypatch.setenv("INCIDENT_PILOT_API_TOKEN", token)
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def api_get(server: ServerProcess, path: str) -> Any:
    r = httpx.get(server.url + path, headers={"Authorization": f"Bearer {READ}"}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def test_list_shows_the_demo_incident_as_a_table(server, capsys, monkeypatch) -> None:
    code, out, err = cli(capsys, monkeypatch, "incidents", "list", url=server.url, token=READ)
    assert (code, err) == (0, "")
    header, *rows = out.splitlines()
    assert header.split() == [
        "ID",
        "STATUS",
        "SEVERITY",
        "SERVICE",
        "TEAM",
        "AGE",
        "ALERTS",
        "TITLE",
    ]
    by_id = {row.split()[0]: row for row in rows}
    assert list(by_id) == [server.other_id, server.demo_id]  # newest first
    demo = by_id[server.demo_id].split()
    assert demo[1:5] == ["open", "high", "api-gateway", "edge"]
    assert demo[6] == "1"
    assert by_id[server.demo_id].endswith("5xx rate above 5% on api-gateway")
    # Every column starts where its header does.
    for name in ("STATUS", "SEVERITY", "SERVICE", "TITLE"):
        at = header.index(name)
        assert all(row[at - 2 : at] == "  " and row[at] != " " for row in rows), name


def test_list_filters_and_json(server, capsys, monkeypatch) -> None:
    code, out, _ = cli(
        capsys, monkeypatch, "incidents", "list", "--service", "search", "--json",
        url=server.url, token=READ,
    )  # fmt: skip
    assert code == 0
    assert json.loads(out) == api_get(server, "/api/incidents?service=search&limit=50")
    assert [i["id"] for i in json.loads(out)["incidents"]] == [server.other_id]
    _, out, _ = cli(capsys, monkeypatch, "incidents", "list", "--team", "edge", "--limit", "1",
                    "--since", "1h", url=server.url, token=READ)  # fmt: skip
    assert [line.split()[0] for line in out.splitlines()[1:]] == [server.demo_id]
    _, out, _ = cli(capsys, monkeypatch, "incidents", "list", "--since", "2999-01-01T00:00:00Z",
                    url=server.url, token=READ)  # fmt: skip
    assert out == "no incidents\n"


def rows_of(out: str) -> list[str]:
    return [line.split()[0] for line in out.splitlines()[1:] if not line.startswith("more:")]


def test_list_severity_search_and_pages(server, capsys, monkeypatch) -> None:
    def ids(*argv: str) -> tuple[list[str], str]:
        code, out, err = cli(capsys, monkeypatch, "incidents", "list", *argv,
                             url=server.url, token=READ)  # fmt: skip
        assert (code, err) == (0, "")
        return rows_of(out), out

    assert ids("--severity", "high")[0] == [server.demo_id]
    assert ids("--severity", "critical,medium")[0] == []
    assert ids("--search", "api gateway")[0] == [server.demo_id]
    assert ids("--search", "slow")[0] == [server.other_id]
    first, out = ids("--limit", "1")
    assert first == [server.other_id]
    last_line = out.splitlines()[-1]
    assert last_line.startswith("more: --cursor ")
    second, out = ids("--limit", "1", "--cursor", last_line.split()[-1])
    assert second == [server.demo_id] and "more:" not in out
    code, _, err = cli(capsys, monkeypatch, "incidents", "list", "--severity", "urgent",
                       url=server.url, token=READ)  # fmt: skip
    assert code == 1 and err.startswith("incident-pilot: severity must be one or more of ")


def test_show_prints_the_report_stdout_printed(server, capsys, monkeypatch) -> None:
    """The same renderer and layout as the server's stdout: for an incident that has not
    changed since, the very same text, link included."""
    code, out, err = cli(
        capsys, monkeypatch, "incidents", "show", server.demo_id, url=server.url, token=READ
    )
    assert (code, err) == (0, "")
    printed = server.stdout_text()
    start = printed.index(f"({server.demo_id}, opened)")
    start = printed.rindex("\n", 0, start) + 1 if "\n" in printed[:start] else 0
    report = printed[start : printed.index("\n\n", start) + 1]
    assert out == report
    assert f"  page: {server.url}/ui/incidents/{server.demo_id}\n" in out
    # That is the incident's page: without a session, it sends the browser to sign in.
    page = httpx.get(f"{server.url}/ui/incidents/{server.demo_id}", timeout=10)
    assert page.status_code in (302, 303) and "/ui/login" in page.headers["location"]
    assert "deploy.recent_correlated" in out and "evidence: context/deploys/1" in out
    assert "logs.error_spike" in out and "-> " in out
    code, out, _ = cli(capsys, monkeypatch, "incidents", "show", server.demo_id, "--json",
                       url=server.url, token=READ)  # fmt: skip
    assert json.loads(out) == api_get(server, f"/api/incidents/{server.demo_id}")


def test_resolve_needs_admin_and_keeps_the_note(server, capsys, monkeypatch) -> None:
    iid = server.other_id
    code, out, err = cli(capsys, monkeypatch, "incidents", "resolve", iid, "--note", "x",
                         url=server.url, token=READ)  # fmt: skip
    assert (code, out) == (1, "")
    assert err == "incident-pilot: not allowed: this token lacks the 'admin' scope\n"
    code, out, err = cli(capsys, monkeypatch, "incidents", "resolve", iid, "--note",
                         "restarted the search pods", url=server.url, token=ADMIN)  # fmt: skip
    assert (code, err) == (0, "")
    assert out.startswith(f"{iid} resolved at ")
    code, out, _ = cli(
        capsys, monkeypatch, "incidents", "resolve", iid, url=server.url, token=ADMIN
    )
    assert (code, out) == (0, f"{iid} was already resolved at " + out.rsplit(" ", 1)[-1])
    _, out, _ = cli(capsys, monkeypatch, "incidents", "list", "--status", "resolved",
                    url=server.url, token=READ)  # fmt: skip
    assert [line.split()[:2] for line in out.splitlines()[1:]] == [[iid, "resolved"]]
    _, out, _ = cli(capsys, monkeypatch, "incidents", "show", iid, url=server.url, token=READ)
    assert f"({iid}, resolved)" in out and ": restarted the search pods\n" in out


def test_deliveries_list_shows_the_dead_letter(server, capsys, monkeypatch) -> None:
    """Against the dead-letter list (`GET /api/deliveries?status=dead`)."""
    import time

    deadline = time.monotonic() + 15
    while not api_get(server, "/api/deliveries?status=dead")["count"]:
        assert time.monotonic() < deadline, "no dead letter"
        time.sleep(0.1)
    code, out, err = cli(capsys, monkeypatch, "deliveries", "list", "--status", "dead",
                         url=server.url, token=READ)  # fmt: skip
    assert (code, err) == (0, "")
    header, *rows = out.splitlines()
    assert header.split()[:6] == ["ID", "INCIDENT", "SINK", "EVENT", "STATUS", "ATTEMPTS"]
    dead = api_get(server, "/api/deliveries?status=dead")["deliveries"]
    assert [r.split()[:6] for r in rows] == [
        [str(d["id"]), d["incident"], "hook", d["event"], "dead", "1"] for d in dead
    ]
    _, out, _ = cli(capsys, monkeypatch, "deliveries", "list", "--status", "dead", "--json",
                    url=server.url, token=READ)  # fmt: skip
    assert json.loads(out)["deliveries"] == dead


def test_deliveries_list_filters(server, capsys, monkeypatch) -> None:
    everything = api_get(server, "/api/deliveries?status=all&limit=500")["deliveries"]
    assert {d["sink"] for d in everything} == {"out", "hook"}
    code, out, _ = cli(capsys, monkeypatch, "deliveries", "list", "--status", "all", "--sink",
                       "out", "--incident", server.demo_id, url=server.url, token=READ)  # fmt: skip
    rows = [line.split() for line in out.splitlines()[1:]]
    assert code == 0 and rows
    assert all(r[1:3] == [server.demo_id, "out"] and r[4] == "delivered" for r in rows), rows
    newest = max(d["id"] for d in everything)
    _, out, _ = cli(capsys, monkeypatch, "deliveries", "list", "--status", "all", "--before",
                    str(newest), "--json", url=server.url, token=READ)  # fmt: skip
    ids = [d["id"] for d in json.loads(out)["deliveries"]]
    assert ids and newest not in ids and all(i < newest for i in ids)


def test_retry_queues_a_dead_letter_again(server, capsys, monkeypatch) -> None:
    """Against POST /api/deliveries/{id}/retry (admin): a dead letter goes back to the
    queue; one that is not dead is refused (409) with the server's reason."""
    dead = api_get(server, "/api/deliveries?status=dead")["deliveries"][0]
    code, out, err = cli(capsys, monkeypatch, "deliveries", "retry", str(dead["id"]),
                         url=server.url, token=ADMIN)  # fmt: skip
    assert (code, err) == (0, "")
    assert out.startswith(f"delivery {dead['id']} to hook ({dead['incident']}) is ")
    assert out.split()[-1] in ("pending", "sending", "dead")  # queued; the sink is still down
    delivered = api_get(server, "/api/deliveries?status=delivered")["deliveries"][0]
    code, out, err = cli(capsys, monkeypatch, "deliveries", "retry", str(delivered["id"]),
                         url=server.url, token=ADMIN)  # fmt: skip
    assert (code, out) == (1, "")
    assert err == (
        "incident-pilot: the delivery is delivered, not dead: only a dead letter is re-sent\n"
    )


@pytest.mark.parametrize(
    ("argv", "token", "message"),
    [
        (["incidents", "list"], None, "the server refused the request (authentication required: "
         "send Authorization: Bearer <token>): give a token with --token or INCIDENT_PILOT_API_TOKEN"),
        (["incidents", "list"], "not-a-token-of-this-server", "the server refused the request "
         "(invalid token): give a token with --token or INCIDENT_PILOT_API_TOKEN"),
        (["incidents", "show", "inc-000000000000"], READ, "no incident inc-000000000000"),
        (["incidents", "resolve", "inc-000000000000"], ADMIN, "no incident inc-000000000000"),
        (["incidents", "show", "inc x"], READ, "invalid incident id: letters, digits, '.', '_' "
         "and '-' only, 1-64 long"),
        (["deliveries", "list", "--status", "lost"], READ, "status must be one of pending, "
         "sending, delivered, dead, a comma-separated list, or all"),
        (["deliveries", "retry", "999999"], ADMIN, "no such delivery"),
        (["deliveries", "retry", "1"], READ, "not allowed: this token lacks the 'admin' scope"),
    ],
)  # fmt: skip
def test_refusals_are_one_line(server, capsys, monkeypatch, argv, token, message) -> None:
    code, out, err = cli(capsys, monkeypatch, *argv, url=server.url, token=token)
    assert (code, out, err) == (1, "", f"incident-pilot: {message}\n")


def test_flags_win_over_the_variables(server, capsys, monkeypatch) -> None:
    code, out, _ = cli(capsys, monkeypatch, "incidents", "list", "--url", server.url,
                       "--token", READ, url="http://127.0.0.1:1", token="wrong")  # fmt: skip
    assert code == 0 and server.demo_id in out


def run_console(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("INCIDENT_PILOT_")}
    return subprocess.run(
        [sys.executable, "-m", "engine", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean, "PYTHONPATH": str(ROOT), **env},
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://127.0.0.1:FREE", "cannot reach the server at http://127.0.0.1:FREE: Connection refused"),
        ("127.0.0.1:9099", "invalid server URL '127.0.0.1:9099': give http(s)://HOST[:PORT] "
         "(--url or INCIDENT_PILOT_URL)"),
        ("http://127.0.0.1:99999", "invalid server URL 'http://127.0.0.1:99999': Port out of range 0-65535"),
    ],
)  # fmt: skip
def test_no_server_or_a_bad_url_is_one_line_not_a_traceback(url: str, message: str) -> None:
    port = str(free_port())  # nothing listens there
    url, message = url.replace("FREE", port), message.replace("FREE", port)
    proc = run_console("incidents", "list", env={"INCIDENT_PILOT_URL": url})
    assert (proc.returncode, proc.stdout) == (1, "")
    assert proc.stderr == f"incident-pilot: {message}\n"


def test_a_server_that_is_not_incident_pilot(capsys, monkeypatch, tmp_path: Path) -> None:
    """Something else answers on the port (here a plain file server): one line."""
    import http.server
    import threading

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any) -> None:
            super().__init__(*args, directory=str(tmp_path))

        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}"
        code, out, err = cli(capsys, monkeypatch, "incidents", "list", url=url)
        assert (code, out) == (1, "")
        assert err == (
            f"incident-pilot: the server at {url} has no GET /api/incidents "
            "(not incident-pilot, or an older version)\n"
        )
        (tmp_path / "api" / "incidents").mkdir(parents=True)  # a directory: a redirect
        code, out, err = cli(capsys, monkeypatch, "incidents", "list", url=url)
        assert (code, out) == (1, "")
        assert err.startswith("incident-pilot: the server redirected to /api/incidents/")
        assert err.endswith(": give that address as --url\n") and err.count("\n") == 1
        (tmp_path / "api" / "incidents").rmdir()
        (tmp_path / "api" / "incidents").write_text("<html>hello</html>")
        code, out, err = cli(capsys, monkeypatch, "incidents", "list", url=url)
        assert (code, out) == (1, "")
        assert (
            err
            == f"incident-pilot: the server at {url} did not answer with incident-pilot's JSON\n"
        )
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["incidents"], "the following arguments are required: ACTION"),
        (["incidents", "list", "--limit", "0"], "argument --limit: '0' is not a whole number above 0"),
        (["incidents", "list", "--since", "yesterday"], "argument --since: 'yesterday' is not an RFC 3339"),
        (["incidents", "list", "--status", "closed"], "argument --status: invalid choice: 'closed'"),
        (["incidents", "show"], "the following arguments are required: ID"),
        (["deliveries", "list", "--timeout", "nan"], "argument --timeout: 'nan' is not a number of seconds"),
    ],
)  # fmt: skip
def test_usage_errors_exit_2(argv: list[str], words: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert words in err.splitlines()[-1] and "Traceback" not in err
