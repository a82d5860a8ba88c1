"""LLM narration settings from the environment (the Go original's variable names)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from engine.delivery.secrets import url_credentials
from engine.timeutil import TimeFormatError, parse_duration

PROVIDERS = ("ollama", "openai-compatible")
DEFAULT_TIMEOUT = 10.0
MAX_TIMEOUT = 300.0
DEFAULT_BASE_URLS = {"ollama": "http://127.0.0.1:11434"}
ENV_PREFIX = "INCIDENT_PILOT_LLM_"


class LLMConfigError(ValueError):
    """The LLM settings are wrong: the operator's mistake, reported at start-up."""


@dataclass(frozen=True)
class LLMConfig:
    provider: str  # one of PROVIDERS
    base_url: str  # without a trailing slash
    model: str
    timeout: float = DEFAULT_TIMEOUT  # seconds, the total budget of one narration call
    api_key: str | None = field(default=None, repr=False)  # never printed

    def secret_values(self) -> list[str]:
        """What a log line or a stored reason must never show: the API key, the base URL's
        password and its Basic-auth form."""
        return ([self.api_key] if self.api_key else []) + url_credentials(self.base_url)

    def describe(self) -> str:
        """For start-up logs: everything but the key."""
        key = "set" if self.api_key else "none"
        return (
            f"provider={self.provider} base_url={without_password(self.base_url)} "
            f"model={self.model} "
            f"timeout={self.timeout:g}s api_key={key}"
        )


def without_password(url: str) -> str:
    """`url` with the password of its userinfo (https://user:pass@host) as `***`."""
    scheme, sep, rest = url.partition("://")
    authority, slash, path = rest.partition("/")
    userinfo, at, host = authority.rpartition("@")
    if not sep or not at or ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}{slash}{path}"


def parse_timeout(text: str) -> float:
    """`10`, `2.5` (seconds) or a duration such as `500ms`, `10s`, `1m`."""
    raw = text.strip()
    try:
        seconds = float(raw)
    except ValueError:
        try:
            seconds = parse_duration(raw).total_seconds()
        except TimeFormatError:
            raise LLMConfigError(
                f"{ENV_PREFIX}TIMEOUT={raw!r} is not a timeout (use seconds, e.g. 10, or 500ms, 10s)"
            ) from None
    if not 0 < seconds <= MAX_TIMEOUT:
        raise LLMConfigError(
            f"{ENV_PREFIX}TIMEOUT must be above 0 and at most {MAX_TIMEOUT:g}s, got {raw!r}"
        )
    return seconds


def _api_key(environ: Mapping[str, str]) -> str | None:
    key = environ.get(f"{ENV_PREFIX}API_KEY", "").strip()
    if key:
        return key
    path = environ.get(f"{ENV_PREFIX}API_KEY_FILE", "").strip()
    if not path:
        return None
    try:
        key = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise LLMConfigError(f"cannot read {ENV_PREFIX}API_KEY_FILE {path!r}: {reason}") from None
    if not key:
        raise LLMConfigError(f"{ENV_PREFIX}API_KEY_FILE {path!r} is empty")
    return key


def load_config(environ: Mapping[str, str] = os.environ) -> LLMConfig | None:
    """The LLM settings, or None when narration by LLM is off (no provider set).

    Raises LLMConfigError when a provider is set but the rest does not add up.
    """
    provider = environ.get(f"{ENV_PREFIX}PROVIDER", "").strip().lower()
    if provider in ("", "none", "off", "disabled"):
        return None
    if provider not in PROVIDERS:
        raise LLMConfigError(
            f"{ENV_PREFIX}PROVIDER={provider!r} is not supported (use {' or '.join(PROVIDERS)})"
        )
    base_url = environ.get(f"{ENV_PREFIX}BASE_URL", "").strip() or DEFAULT_BASE_URLS.get(
        provider, ""
    )
    if not base_url:
        raise LLMConfigError(f"{ENV_PREFIX}BASE_URL is required for provider {provider}")
    if not base_url.startswith(("http://", "https://")):
        raise LLMConfigError(f"{ENV_PREFIX}BASE_URL must start with http:// or https://")
    model = environ.get(f"{ENV_PREFIX}MODEL", "").strip()
    if not model:
        raise LLMConfigError(f"{ENV_PREFIX}MODEL is required when {ENV_PREFIX}PROVIDER is set")
    timeout_raw = environ.get(f"{ENV_PREFIX}TIMEOUT", "").strip()
    timeout = parse_timeout(timeout_raw) if timeout_raw else DEFAULT_TIMEOUT
    return LLMConfig(
        provider=provider,
        base_url=base_url.rstrip("/"),
        model=model,
        timeout=timeout,
        api_key=_api_key(environ),
    )
