"""`incident-pilot serve`: flags, INCIDENT_PILOT_* variables, --help, stdout formats, and
start-up refusals."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from engine.cli import build_parser
from engine.paths import rules_dir
from engine.rulefiles import rule_dirs
from engine.server.settings import settings_from_args
from engine.testing import ServerProcess, make_alert, ts

ROOT = Path(__file__).resolve().parent.parent
SERVE_FLAGS = [
    ("--host", "INCIDENT_PILOT_HOST"),
    ("--port", "INCIDENT_PILOT_PORT"),
    ("--rules", "INCIDENT_PILOT_RULES"),
    ("--db", "INCIDENT_PILOT_DB"),
    ("--retention", "INCIDENT_PILOT_RETENTION"),
    ("--format", "INCIDENT_PILOT_FORMAT"),
    ("--quiet", "INCIDENT_PILOT_QUIET"),
    ("--log-level", "INCIDENT_PILOT_LOG_LEVEL"),
    ("--renotify-after", "INCIDENT_PILOT_RENOTIFY_AFTER"),
    ("--max-body", "INCIDENT_PILOT_MAX_BODY"),
]


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 30):
    clean = {k: v for k, v in os.environ.items() if not k.startswith("INCIDENT_PILOT_")}
    clean["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "engine", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**clean, **(env or {})},
        stdin=subprocess.DEVNULL,
    )


def settings(argv: list[str], monkeypatch: pytest.MonkeyPatch, **env: str):
    for name in list(os.environ):
        if name.startswith("INCIDENT_PILOT_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(f"INCIDENT_PILOT_{name}", value)
    args = build_parser().parse_args(["serve", *argv])  # env defaults are read here
    return settings_from_args(args, rule_dirs(args.rules))


def test_help_explains_every_setting() -> None:
    out = run_cli("serve", "--help")
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())  # undo argparse's wrapping
    for flag, env in SERVE_FLAGS:
        assert flag in text and env in text, (flag, env)
    for default in ("127.0.0.1", "9099", "24h", "5 MiB", "4h", "':memory:'"):
        assert default in text, default


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    s = settings([], monkeypatch)
    assert (s.host, s.port, s.db) == ("127.0.0.1", 9099, "incident-pilot.db")
    assert s.rules == (rules_dir(),)
    assert s.retention == timedelta(hours=24)
    assert (s.format, s.quiet, s.log_level) == ("text", False, "info")
    assert s.max_body == 5 * 1024 * 1024
    assert s.renotify_after == timedelta(hours=4)


def test_flags(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    s = settings(
        [
            "--host", "0.0.0.0", "--port", "8080", "--db", ":memory:", "--retention", "90m",
            "--format", "json", "--quiet", "--log-level", "debug", "--renotify-after", "30m",
            "--max-body", "512k", "--rules", "shipped", "--rules", str(tmp_path),
        ],
        monkeypatch,
    )  # fmt: skip
    assert (s.host, s.port, s.db) == ("0.0.0.0", 8080, ":memory:")
    assert s.retention == timedelta(minutes=90)
    assert (s.format, s.quiet, s.log_level) == ("json", True, "debug")
    assert s.renotify_after == timedelta(minutes=30)
    assert s.max_body == 512 * 1024
    assert s.rules == (rules_dir(), tmp_path)


def test_environment_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    s = settings(
        [],
        monkeypatch,
        HOST="::1",
        PORT="9100",
        DB=str(tmp_path / "x.db"),
        RETENTION="2h",
        FORMAT="json",
        QUIET="1",
        LOG_LEVEL="warning",
        RENOTIFY_AFTER="1h",
        MAX_BODY="1m",
        RULES=f"shipped,{tmp_path}",
    )
    assert (s.host, s.port, s.db) == ("::1", 9100, str(tmp_path / "x.db"))
    assert (s.retention, s.renotify_after) == (timedelta(hours=2), timedelta(hours=1))
    assert (s.format, s.quiet, s.log_level, s.max_body) == ("json", True, "warning", 1024**2)
    assert s.rules == (rules_dir(), tmp_path)


def test_flags_override_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    s = settings(["--port", "9200", "--format", "text"], monkeypatch, PORT="9100", FORMAT="json")
    assert (s.port, s.format) == (9200, "text")


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--retention", "forever"], "not a duration"),
        (["--format", "xml"], "invalid choice"),
        (["--max-body", "lots"], "not a size"),
        (["--port", "http"], "invalid port"),
    ],
)
def test_bad_flags_are_usage_errors(argv: list[str], words: str, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["serve", *argv])
    assert exc.value.code == 2
    assert words in capsys.readouterr().err


def test_refuses_to_start_without_its_rules(tmp_path: Path) -> None:
    out = run_cli("serve", "--rules", str(tmp_path / "missing"), "--db", ":memory:")
    assert out.returncode == 1
    assert "does not exist" in out.stderr


def test_refuses_to_start_on_an_unusable_store(tmp_path: Path) -> None:
    out = run_cli("serve", "--db", "mysql://x/y")
    assert out.returncode == 1
    assert "cannot open the store" in out.stderr


@pytest.mark.e2e
def test_configured_by_environment_json_stdout_in_memory(tmp_path: Path) -> None:
    env = {"INCIDENT_PILOT_FORMAT": "json", "INCIDENT_PILOT_RULES": "shipped"}
    with ServerProcess(tmp_path, db=":memory:", env=env, via_env=True) as srv:
        with srv.client() as api:
            alert = make_alert(
                service="checkout-api", annotations={"summary": "boom"}, starts_at=ts(minutes=1)
            )
            opened = api.post("/alerts", json=alert).json()["results"][0]
            api.post("/alerts", json=alert)  # a repeat: not printed
            note = api.post(f"/api/incidents/{opened['incident']}/resolve", json={"note": "fixed"})
            assert note.status_code == 200
        text = srv.wait_for_stdout('"event": "resolved"')
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert [x["event"] for x in lines] == ["opened", "resolved"]
    assert lines[0]["incident"]["id"] == opened["incident"]
    assert lines[0]["incident"]["title"] == "boom"
    assert lines[1]["incident"]["resolution"]["note"] == "fixed"


@pytest.mark.e2e
def test_quiet_prints_nothing_on_stdout(tmp_path: Path) -> None:
    with ServerProcess(tmp_path, "--quiet", "--log-level", "warning") as srv:
        with srv.client() as api:
            assert api.post("/alerts", json=make_alert(service="q")).status_code == 200
            assert api.get("/api/stats").json()["incidents"]["total"] == 1
        srv.stop()
        assert srv.stdout_text() == ""
        assert "Uvicorn running" not in srv.stderr_text()  # info lines hidden at warning
