"""`incident-pilot serve` settings: every one a flag and an INCIDENT_PILOT_* variable."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from engine.adapters.deploy_config import add_hook_arguments
from engine.adapters.loki import DEFAULT_SERVICE_LABELS, add_loki_arguments
from engine.adapters.volume import VolumeFilter, add_volume_arguments, volume_from_args
from engine.pull.config import PullSettings, add_pull_arguments, pull_from_args
from engine.server.auth import AuthSettings, add_auth_arguments, auth_from_args
from engine.server.limits import Limits, add_limit_arguments, limits_from_args
from engine.timeutil import TimeFormatError, parse_duration
from engine.web.session import WebSettings, add_web_arguments, web_from_args

ENV_PREFIX = "INCIDENT_PILOT_"
DEFAULT_DB = "incident-pilot.db"


def _env(name: str, default: str) -> str:
    """The variable's text, else `default`. Given to argparse as the default as it is: a
    string default goes through the flag's `type`, so a bad value gets the bad flag's
    one-line usage error, not a traceback while the parser is being built."""
    return os.environ.get(ENV_PREFIX + name, default)


def _choice(*allowed: str) -> Callable[[str], str]:
    """A `type` that checks `choices` (argparse does not check a default's)."""

    def check(text: str) -> str:
        if text not in allowed:
            raise argparse.ArgumentTypeError(
                f"invalid choice: {text!r} (choose from {', '.join(map(repr, allowed))})"
            )
        return text

    check.__name__ = "choice"
    return check


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"invalid port: {text!r} (0 to 65535)")
    return port


def _duration(text: str) -> timedelta:
    try:
        return parse_duration(text)
    except TimeFormatError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _size(text: str) -> int:
    units = {"k": 1024, "m": 1024**2, "g": 1024**3}
    t = text.strip().lower().removesuffix("b").removesuffix("i")
    try:
        if t and t[-1] in units:
            return int(float(t[:-1]) * units[t[-1]])
        return int(t)
    except (ValueError, OverflowError):  # "x", "nan", "1e999k"
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a size (e.g. 1048576, 512k, 5m)"
        ) from None


def _truthy(text: str) -> bool:
    return text.lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class ServeSettings:
    host: str = "127.0.0.1"
    port: int = 9099
    rules: tuple[Path, ...] = ()
    db: str = DEFAULT_DB
    retention: timedelta = timedelta(hours=24)
    incident_retention: timedelta = timedelta(days=90)
    format: str = "text"
    quiet: bool = False
    log_level: str = "info"
    renotify_after: timedelta = timedelta(hours=4)
    max_body: int = 5 * 1024 * 1024
    max_future: timedelta = timedelta(minutes=5)
    public_url: str = ""
    config: str = ""  # the delivery configuration file (sinks, routes); "" = built-in
    extra: dict[str, object] = field(default_factory=dict)
    # Operability (engine/server/auth.py, limits.py, logs.py).
    limits: Limits = field(default_factory=Limits)
    auth: AuthSettings = field(default_factory=AuthSettings)
    log_format: str = "text"
    # What the OTLP and Loki adapters store (engine/adapters/volume.py).
    volume: VolumeFilter = field(default_factory=VolumeFilter)
    # The deploy webhooks' service table (engine/adapters/deploy_config.py); "" = none.
    deploy_services: str = ""
    # Stream labels that name the service of a Loki push, first match wins.
    loki_service_labels: tuple[str, ...] = DEFAULT_SERVICE_LABELS
    # Pull sources (engine/pull/config.py): Prometheus, Loki, the per-alert budget.
    pull: PullSettings = field(default_factory=PullSettings)
    # Browser sessions of the pages (engine/web/session.py).
    web: WebSettings = field(default_factory=WebSettings)


def add_serve_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--host",
        default=_env("HOST", "127.0.0.1"),
        help=f"address to listen on (default 127.0.0.1) [env {ENV_PREFIX}HOST]",
    )
    p.add_argument(
        "--port",
        type=_port,
        default=_env("PORT", "9099"),
        help=f"port to listen on (default 9099) [env {ENV_PREFIX}PORT]",
    )
    p.add_argument(
        "--db",
        default=_env("DB", DEFAULT_DB),
        help=f"the store: a SQLite file path, ':memory:' for a throwaway run, or a postgresql:// URL "
        f"(default ./{DEFAULT_DB}) [env {ENV_PREFIX}DB]",
    )
    p.add_argument(
        "--retention",
        type=_duration,
        default=_env("RETENTION", "24h"),
        help=f"how long context records (deploys, logs, traces) are kept (default 24h) [env {ENV_PREFIX}RETENTION]",
    )
    p.add_argument(
        "--incident-retention",
        type=_duration,
        default=_duration(_env("INCIDENT_RETENTION", "90d")),
        help="how long resolved incidents (with their alerts and outbox rows) and delivered "
        f"outbox rows are kept (default 90d) [env {ENV_PREFIX}INCIDENT_RETENTION]",
    )
    p.add_argument(
        "--format",
        type=_choice("text", "json"),
        choices=("text", "json"),
        default=_env("FORMAT", "text"),
        help=f"how incidents are printed on stdout: a text report, or one JSON object per line "
        f"(default text) [env {ENV_PREFIX}FORMAT]",
    )
    p.add_argument(
        "--quiet",
        action="store_true",
        default=_truthy(_env("QUIET", "")),
        help=f"do not print incidents on stdout [env {ENV_PREFIX}QUIET=1]",
    )
    p.add_argument(
        "--log-level",
        type=_choice("debug", "info", "warning", "error"),
        choices=("debug", "info", "warning", "error"),
        default=_env("LOG_LEVEL", "info"),
        help=f"log verbosity, on stderr (default info) [env {ENV_PREFIX}LOG_LEVEL]",
    )
    p.add_argument(
        "--renotify-after",
        type=_duration,
        default=_env("RENOTIFY_AFTER", "4h"),
        help="an alert attached to an open incident notifies again only after this long "
        f"(default 4h) [env {ENV_PREFIX}RENOTIFY_AFTER]",
    )
    p.add_argument(
        "--max-body",
        type=_size,
        default=_env("MAX_BODY", "5m"),
        help=f"largest request body accepted, in bytes (default 5m = 5 MiB; larger gets 413) "
        f"[env {ENV_PREFIX}MAX_BODY]",
    )
    p.add_argument(
        "--public-url",
        default=_env("PUBLIC_URL", ""),
        help=f"the URL users reach this service at, for incident links (default http://HOST:PORT) "
        f"[env {ENV_PREFIX}PUBLIC_URL]",
    )
    p.add_argument(
        "--log-format",
        type=_choice("text", "json"),
        choices=("text", "json"),
        default=_env("LOG_FORMAT", "text"),
        help=f"log lines on stderr: key=value text or JSON (default text) [env {ENV_PREFIX}LOG_FORMAT]",
    )
    add_limit_arguments(p, _size)
    add_auth_arguments(p)
    add_volume_arguments(p, ENV_PREFIX)
    add_loki_arguments(p, ENV_PREFIX)
    add_config_argument(p)
    add_hook_arguments(p)
    add_pull_arguments(p, _duration)
    add_web_arguments(p, _duration)


def add_config_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        metavar="FILE",
        default=_env("CONFIG", ""),
        help="delivery configuration (sinks, routes, retries; see docs/OPERATIONS.md), "
        f"checked against schemas/config.schema.json [env {ENV_PREFIX}CONFIG]",
    )


def settings_from_args(args: argparse.Namespace, rules: list[Path]) -> ServeSettings:
    return ServeSettings(
        host=args.host,
        port=args.port,
        rules=tuple(rules),
        db=args.db,
        retention=args.retention,
        incident_retention=args.incident_retention,
        format=args.format,
        quiet=args.quiet,
        log_level=args.log_level,
        renotify_after=args.renotify_after,
        max_body=args.max_body,
        public_url=args.public_url or f"http://{args.host}:{args.port}",
        config=args.config,
        limits=limits_from_args(args),
        auth=auth_from_args(args),
        log_format=args.log_format,
        volume=volume_from_args(args),
        deploy_services=args.deploy_services,
        loki_service_labels=args.loki_service_labels,
        pull=pull_from_args(args),
        web=web_from_args(args),
    )
