"""INCIDENT_PILOT_* variables: a bad value is the same usage error as the bad flag (never a
traceback), and a variable nothing reads is warned about at start, with a did-you-mean."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.cli import build_parser
from engine.server.variables import known_variables, unknown_variable_warnings
from engine.testing import ServerProcess

ROOT = Path(__file__).resolve().parent.parent

# (variable, bad value, its flag)
BAD_VALUES = [
    ("PORT", "abc", "--port"),
    ("PORT", "70000", "--port"),
    ("RETENTION", "a day", "--retention"),
    ("RENOTIFY_AFTER", "4x", "--renotify-after"),
    ("MAX_BODY", "lots", "--max-body"),
    ("MAX_BODY", "1e999k", "--max-body"),
    ("LOG_LEVEL", "loud", "--log-level"),
    ("FORMAT", "yaml", "--format"),
    ("LOG_FORMAT", "xml", "--log-format"),
    ("MAX_ALERTS", "many", "--max-alerts"),
    ("REQUEST_TIMEOUT", "soon", "--request-timeout"),
    ("PULL_BUDGET", "2 seconds", "--pull-budget"),
]


def _usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(argv)
    assert exit_.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith("INCIDENT_PILOT_"):
            monkeypatch.delenv(name)
    return monkeypatch


@pytest.mark.parametrize(("name", "value", "flag"), BAD_VALUES)
def test_a_bad_variable_is_the_bad_flags_usage_error(
    name: str, value: str, flag: str, clean_env: pytest.MonkeyPatch, capsys
) -> None:
    by_flag = _usage_error(["serve", f"{flag}={value}"], capsys)
    assert by_flag.startswith(f"incident-pilot serve: error: argument {flag}: ")
    assert repr(value) in by_flag
    clean_env.setenv(f"INCIDENT_PILOT_{name}", value)
    assert _usage_error(["serve"], capsys) == by_flag


def test_a_bad_variable_exits_without_a_traceback() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INCIDENT_PILOT_")}
    env.update(PYTHONPATH=str(ROOT), INCIDENT_PILOT_PORT="abc", INCIDENT_PILOT_FORMAT="yaml")
    proc = subprocess.run(
        [sys.executable, "-m", "engine", "serve"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        "incident-pilot serve: error: argument --port: invalid port: 'abc'"
    )


def test_good_variables_still_apply(clean_env: pytest.MonkeyPatch) -> None:
    for name, value in {"PORT": "9100", "FORMAT": "json", "LOG_LEVEL": "debug"}.items():
        clean_env.setenv(f"INCIDENT_PILOT_{name}", value)
    args = build_parser().parse_args(["serve"])
    assert (args.port, args.format, args.log_level) == (9100, "json", "debug")


def test_unknown_variables_get_a_did_you_mean() -> None:
    environ = {
        "INCIDENT_PILOT_TOKEN": "read:x",  # one letter short of TOKENS
        "INCIDENT_PILOT_RETENTON": "1h",
        "INCIDENT_PILOT_LLM_MODLE": "m",
        "INCIDENT_PILOT_WHATEVER": "1",
        "PATH": "/usr/bin",
    }
    assert unknown_variable_warnings(environ) == [
        "unknown variable INCIDENT_PILOT_LLM_MODLE is ignored; did you mean INCIDENT_PILOT_LLM_MODEL?",
        "unknown variable INCIDENT_PILOT_RETENTON is ignored; did you mean INCIDENT_PILOT_RETENTION?",
        "unknown variable INCIDENT_PILOT_TOKEN is ignored; did you mean INCIDENT_PILOT_TOKENS?",
        "unknown variable INCIDENT_PILOT_WHATEVER is ignored",
    ]


def test_every_variable_something_reads_is_known() -> None:
    known = known_variables()
    for name in (
        "INCIDENT_PILOT_PORT",
        "INCIDENT_PILOT_MAX_LABEL_VALUE",  # a limit flag
        "INCIDENT_PILOT_PULL_BUDGET",
        "INCIDENT_PILOT_RULES",
        "INCIDENT_PILOT_TOKENS",
        "INCIDENT_PILOT_LLM_API_KEY_FILE",
        "INCIDENT_PILOT_GITHUB_WEBHOOK_SECRET_FILE",
        "INCIDENT_PILOT_DB_POOL_SIZE",
        "INCIDENT_PILOT_SLACK_WEBHOOK",
        "INCIDENT_PILOT_URL",  # the incidents command line
        "INCIDENT_PILOT_API_TOKEN",
        "INCIDENT_PILOT_TEST_POSTGRES_DSN",  # the test suite
    ):
        assert name in known, name
    assert unknown_variable_warnings({n: "x" for n in known}) == []


@pytest.mark.e2e
def test_serve_warns_at_start_but_not_about_a_sinks_secret_variable(tmp_path: Path) -> None:
    config = tmp_path / "delivery.yaml"
    config.write_text(
        "sinks:\n"
        "  hook: {type: webhook, url: 'http://127.0.0.1:9/in', secret_env: INCIDENT_PILOT_HOOK_KEY}\n"
        "routes:\n  default: [{sink: hook}]\n",
        encoding="utf-8",
    )
    env = {
        "INCIDENT_PILOT_RETENTON": "1h",
        "INCIDENT_PILOT_HOOK_KEY": "a-webhook-signing-secret",
        "INCIDENT_PILOT_URL": "http://127.0.0.1:1",
    }
    with ServerProcess(tmp_path, "--config", str(config), env=env) as srv:
        log = srv.stderr_text()
    assert "unknown variable INCIDENT_PILOT_RETENTON is ignored; did you mean " in log
    assert "INCIDENT_PILOT_RETENTION?" in log
    assert "INCIDENT_PILOT_HOOK_KEY" not in log
    assert "INCIDENT_PILOT_URL" not in log


def test_every_variable_named_in_the_engine_is_known() -> None:
    """A variable the code reads but `serve` would warn about is a bug in the warning:
    a new one belongs in engine/server/variables.py (or in its flag's help)."""
    import re

    named = {
        m
        for path in (ROOT / "engine").rglob("*.py")
        for m in re.findall(
            r"INCIDENT_PILOT_[A-Z0-9_]*[A-Z0-9](?![A-Z0-9_])", path.read_text("utf-8")
        )
    }
    assert named - known_variables() == set()
