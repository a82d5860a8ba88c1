"""Pull source settings: `--prometheus-url`, `--loki-url`, their bearer tokens, the budget."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

ENV_PREFIX = "INCIDENT_PILOT_"
DEFAULT_BUDGET = timedelta(seconds=2)


class PullConfigError(Exception):
    pass


@dataclass(frozen=True)
class PullSettings:
    prometheus_url: str = ""
    prometheus_token_file: str = ""
    loki_url: str = ""
    loki_token_file: str = ""
    budget: timedelta = DEFAULT_BUDGET


@dataclass(frozen=True)
class PullConfig:
    """What the runner uses: the base URLs, the tokens (read once), the budget."""

    urls: Mapping[str, str]  # source -> base URL ("" = not configured)
    tokens: Mapping[str, str]  # source -> bearer token ("" = none)
    budget: float  # seconds per alert

    def headers(self, source: str) -> dict[str, str]:
        token = self.tokens.get(source, "")
        return {"Authorization": f"Bearer {token}"} if token else {}


def _env(name: str, default: str) -> str:
    return os.environ.get(ENV_PREFIX + name, default)


def add_pull_arguments(p: argparse.ArgumentParser, duration: Callable[[str], timedelta]) -> None:
    p.add_argument(
        "--prometheus-url",
        default=_env("PROMETHEUS_URL", ""),
        help="the Prometheus that `source: prometheus` rules query, e.g. http://prometheus:9090 "
        f"(default: none) [env {ENV_PREFIX}PROMETHEUS_URL]",
    )
    p.add_argument(
        "--prometheus-token-file",
        default=_env("PROMETHEUS_TOKEN_FILE", ""),
        help="a file holding the bearer token sent to Prometheus (or set "
        f"{ENV_PREFIX}PROMETHEUS_TOKEN) [env {ENV_PREFIX}PROMETHEUS_TOKEN_FILE]",
    )
    p.add_argument(
        "--loki-url",
        default=_env("LOKI_URL", ""),
        help="the Loki that `source: loki` rules query, e.g. http://loki:3100 (default: none) "
        f"[env {ENV_PREFIX}LOKI_URL]",
    )
    p.add_argument(
        "--loki-token-file",
        default=_env("LOKI_TOKEN_FILE", ""),
        help=f"a file holding the bearer token sent to Loki (or set {ENV_PREFIX}LOKI_TOKEN) "
        f"[env {ENV_PREFIX}LOKI_TOKEN_FILE]",
    )
    p.add_argument(
        "--pull-budget",
        type=duration,
        default=_env("PULL_BUDGET", "2s"),  # goes through `type` like the flag
        help="how long the pull rules of one alert may take; its first page waits at most this "
        f"long for them (default 2s) [env {ENV_PREFIX}PULL_BUDGET]",
    )


def pull_from_args(args: argparse.Namespace) -> PullSettings:
    return PullSettings(
        prometheus_url=getattr(args, "prometheus_url", "") or "",
        prometheus_token_file=getattr(args, "prometheus_token_file", "") or "",
        loki_url=getattr(args, "loki_url", "") or "",
        loki_token_file=getattr(args, "loki_token_file", "") or "",
        budget=getattr(args, "pull_budget", DEFAULT_BUDGET),
    )


def _token(source: str, file: str, environ: Mapping[str, str]) -> str:
    if file:
        try:
            return Path(file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise PullConfigError(
                f"cannot read the {source} token file {file}: {exc.strerror}"
            ) from None
    return environ.get(f"{ENV_PREFIX}{source.upper()}_TOKEN", "").strip()


def load_pull_config(settings: PullSettings, environ: Mapping[str, str]) -> PullConfig:
    """Raises PullConfigError for a URL that is not http(s) or an unreadable token file."""
    urls = {"prometheus": settings.prometheus_url, "loki": settings.loki_url}
    for source, url in urls.items():
        if url and not url.startswith(("http://", "https://")):
            raise PullConfigError(f"--{source}-url must be an http:// or https:// URL: {url!r}")
    if settings.budget <= timedelta(0):
        raise PullConfigError("--pull-budget must be positive")
    tokens = {
        "prometheus": _token("prometheus", settings.prometheus_token_file, environ),
        "loki": _token("loki", settings.loki_token_file, environ),
    }
    return PullConfig(
        urls={k: v.rstrip("/") for k, v in urls.items()},
        tokens=tokens,
        budget=settings.budget.total_seconds(),
    )
