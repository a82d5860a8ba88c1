"""The configuration file: schema, file:line:col problems, secrets, the built-in default."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from engine.delivery.config import SLACK_ENV, load_config
from engine.delivery.secrets import MASK, Secret
from engine.delivery.service import DeliveryService
from engine.model import Severity
from engine.store import open_store

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "config.yaml"
EXAMPLE_ENV = {
    "SLACK_ONCALL_WEBHOOK": "https://hooks.slack.example/services/T0/B0/oncall-secret-1",
    "PD_ROUTING_KEY": "pd-secret-routing-key-0001",
    "OPSGENIE_API_KEY": "genie-secret-key-0001",
    "AUDIT_WEBHOOK_SECRET": "audit-hmac-secret-0001",
}


def example_config(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """The shipped example with its secret files under tmp_path."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "slack-payments-webhook").write_text("https://hooks.slack.example/pay-secret\n")
    (secrets / "pd-payments").write_text("pd-payments-secret-key\n")
    text = EXAMPLE.read_text("utf-8").replace("/run/secrets/", f"{secrets}/")
    path = tmp_path / "config.yaml"
    path.write_text(text, "utf-8")
    return path, dict(EXAMPLE_ENV)


def problems_of(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> list[str]:
    path = tmp_path / "bad.yaml"
    path.write_text(text, "utf-8")
    config, problems = load_config(path, env or {})
    assert config is None
    return [f"{p.location}: {p.message}" for p in problems]


def test_the_example_config_loads_and_validates(tmp_path: Path) -> None:
    path, env = example_config(tmp_path)
    config, problems = load_config(path, env)
    assert problems == [] and config is not None
    assert set(config.sinks) >= {"console", "slack-oncall", "pagerduty", "opsgenie", "audit"}
    pd = next(e for e in config.routes["payments"] if e.sink == "pagerduty")
    assert pd.min_severity == Severity.HIGH
    assert config.secrets[pd.options["routing_key_ref"]].reveal() == "pd-payments-secret-key"
    assert config.policy.max_age == 86_400 and config.policy.max_attempts is None
    assert config.policy.lease == 120


def test_effective_config_masks_every_secret(tmp_path: Path) -> None:
    path, env = example_config(tmp_path)
    config, _ = load_config(path, env)
    assert config is not None
    store = open_store(":memory:")
    try:
        shown = repr(DeliveryService(config, store).effective_config())
    finally:
        store.close()
    for value in [*env.values(), "pd-payments-secret-key", "pay-secret"]:
        assert value not in shown
    assert MASK in shown and "env:PD_ROUTING_KEY" in shown


def test_errors_are_reported_at_file_line_col(tmp_path: Path) -> None:
    text = (
        "delivery:\n"
        "  base_delay: soon\n"
        "sinks:\n"
        "  pd:\n"
        "    type: pagerduty\n"
        "    routing_key: abc123\n"
        "  chat:\n"
        "    type: slack\n"
        "    webhook_url_env: CHAT\n"
        "    chanel: '#x'\n"
        "  hook:\n"
        "    type: webhok\n"
    )
    out = problems_of(tmp_path, text)
    bad = str(tmp_path / "bad.yaml")
    assert any(p.startswith(f"{bad}:2:15: ") and "duration" in p for p in out), out
    assert any(p.startswith(f"{bad}:6:5: routing_key must not be written") for p in out), out
    assert any(p.startswith(f"{bad}:10:5: ") and 'did you mean "channel"' in p for p in out)
    assert any(p.startswith(f"{bad}:12:11: ") and "webhook" in p for p in out), out


def test_references_and_secrets_are_checked(tmp_path: Path) -> None:
    text = (
        "sinks:\n"
        "  chat:\n"
        "    type: slack\n"
        "    webhook_url_env: CHAT_URL\n"
        "  pd:\n"
        "    type: pagerduty\n"
        "routes:\n"
        "  default:\n"
        "    - sink: nope\n"
        "    - sink: chat\n"
        "      routing_key_env: PD\n"
        "    - sink: pd\n"
    )
    out = problems_of(tmp_path, text)
    bad = str(tmp_path / "bad.yaml")
    assert f"{bad}:4:5: webhook_url: environment variable CHAT_URL is not set or empty" in out
    assert any(p.startswith(f"{bad}:9:7: no sink named 'nope'") for p in out), out
    assert f"{bad}:11:7: routing_key_env does not apply to a slack sink" in out
    assert any(p.startswith(f"{bad}:12:7: sink pd has no routing_key") for p in out), out


def test_yaml_syntax_errors_have_a_line(tmp_path: Path) -> None:
    out = problems_of(tmp_path, "sinks:\n  a: [\n")
    assert out and out[0].startswith(str(tmp_path / "bad.yaml") + ":")


def test_without_a_file_stdout_only_and_the_slack_variable_adds_slack() -> None:
    config, problems = load_config(None, {})
    assert problems == [] and config is not None
    assert [e.sink for e in config.routes["default"]] == ["stdout"]
    url = "http://127.0.0.1:9/services/T/B/slack-secret-token"
    config, _ = load_config(None, {SLACK_ENV: url})
    assert config is not None
    assert [e.sink for e in config.routes["default"]] == ["stdout", "slack"]
    assert config.sinks["slack"].type == "slack"
    assert config.secrets[f"env:{SLACK_ENV}"].reveal() == url


def test_secret_never_prints() -> None:
    s = Secret("hunter2-very-secret", "env:X")
    assert "hunter2" not in f"{s} {s!r} {[s]}" and str(s) == MASK


@pytest.mark.e2e
def test_serve_refuses_an_invalid_config(tmp_path: Path) -> None:
    bad = tmp_path / "config.yaml"
    bad.write_text("sinks:\n  pd:\n    type: pagerduty\n    routing_key: k-literal\n", "utf-8")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "engine",
            "serve",
            "--port",
            "1",
            "--db",
            ":memory:",
            "--config",
            str(bad),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode != 0
    assert f"{bad}:4:5: routing_key must not be written" in proc.stderr
    assert "k-literal" not in proc.stderr
