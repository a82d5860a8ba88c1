"""INCIDENT_PILOT_LLM_* settings: off by default, plain errors when half set."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.llm.config import LLMConfigError, load_config, parse_timeout
from engine.llm.narrator import Narrator

P = "INCIDENT_PILOT_LLM_"


def test_off_by_default() -> None:
    assert load_config({}) is None
    assert Narrator.from_env({}) is None
    assert Narrator.from_env({f"{P}PROVIDER": ""}) is None


def test_ollama_defaults() -> None:
    cfg = load_config({f"{P}PROVIDER": "ollama", f"{P}MODEL": "llama3.1:8b"})
    assert cfg is not None
    assert (cfg.base_url, cfg.timeout, cfg.api_key) == ("http://127.0.0.1:11434", 10.0, None)


def test_openai_compatible_with_key_file(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text("sk-from-file\n")
    cfg = load_config(
        {
            f"{P}PROVIDER": "openai-compatible",
            f"{P}BASE_URL": "http://127.0.0.1:8000/",
            f"{P}MODEL": "m",
            f"{P}API_KEY_FILE": str(key),
            f"{P}TIMEOUT": "2.5",
        }
    )
    assert cfg is not None
    assert (cfg.base_url, cfg.api_key, cfg.timeout) == (
        "http://127.0.0.1:8000",
        "sk-from-file",
        2.5,
    )
    assert "sk-from-file" not in repr(cfg) and "sk-from-file" not in cfg.describe()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({f"{P}PROVIDER": "gpt"}, "not supported"),
        ({f"{P}PROVIDER": "ollama"}, "MODEL is required"),
        ({f"{P}PROVIDER": "openai-compatible", f"{P}MODEL": "m"}, "BASE_URL is required"),
        ({f"{P}PROVIDER": "ollama", f"{P}MODEL": "m", f"{P}BASE_URL": "127.0.0.1"}, "http://"),
        ({f"{P}PROVIDER": "ollama", f"{P}MODEL": "m", f"{P}TIMEOUT": "soon"}, "not a timeout"),
        ({f"{P}PROVIDER": "ollama", f"{P}MODEL": "m", f"{P}TIMEOUT": "0"}, "above 0"),
        ({f"{P}PROVIDER": "ollama", f"{P}MODEL": "m", f"{P}API_KEY_FILE": "/nonexistent/k"}, "cannot read"),
    ],
)  # fmt: skip
def test_bad_settings_are_reported(env: dict[str, str], message: str) -> None:
    with pytest.raises(LLMConfigError, match=message):
        load_config(env)


@pytest.mark.parametrize(
    ("text", "seconds"), [("10", 10), ("0.5", 0.5), ("500ms", 0.5), ("1m", 60)]
)
def test_timeout_forms(text: str, seconds: float) -> None:
    assert parse_timeout(text) == seconds


def test_describe_and_secret_values_cover_a_password_in_the_base_url() -> None:
    cfg = load_config(
        {
            f"{P}PROVIDER": "ollama",
            f"{P}BASE_URL": "https://narrator:s3cret%2Fpw@llm.internal:11434/",
            f"{P}MODEL": "m",
            f"{P}API_KEY": "sk-key-0123",
        }
    )
    assert cfg is not None
    assert "s3cret" not in cfg.describe()
    assert "base_url=https://narrator:***@llm.internal:11434 " in cfg.describe()
    assert set(cfg.secret_values()) == {
        "sk-key-0123",
        "s3cret%2Fpw",
        "s3cret/pw",
        "bmFycmF0b3I6czNjcmV0L3B3",  # base64 of narrator:s3cret/pw (HTTP Basic)
    }
