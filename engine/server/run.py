"""`incident-pilot serve`: load and check the rules, open the store, run uvicorn."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from collections.abc import AsyncIterator
from datetime import timedelta

import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool

from engine.delivery.service import setup_delivery, start_delivery, stop_delivery
from engine.llm.config import LLMConfigError
from engine.llm.hook import llm_narrator
from engine.narrate import StdoutReporter
from engine.server.app import AppState, create_app
from engine.server.auth import startup_check
from engine.server.hooks import startup_check as hooks_startup_check
from engine.server.logs import configure as configure_logs
from engine.server.reload import install_sighup
from engine.server.settings import ServeSettings, settings_from_args
from engine.store import open_store
from engine.timeutil import utcnow

log = logging.getLogger("incident_pilot")


def redact_db(url: str) -> str:
    """The store URL without its password, for logs."""
    if "://" not in url:
        return url
    from engine.store.postgres import redact

    return redact(url)


def prune_interval(retention: timedelta) -> float:
    return max(10.0, min(retention.total_seconds() / 20, 300.0))


async def prune_forever(state: AppState) -> None:
    """Drop context older than the retention period, every few minutes."""
    interval = prune_interval(state.settings.retention)
    while True:
        try:
            cutoff = utcnow() - state.settings.retention
            removed = await run_in_threadpool(state.store.prune_context, cutoff)
            if removed:
                log.info("pruned %d context records older than %s", removed, cutoff.isoformat())
        except Exception:
            log.exception("pruning context failed; will retry")
        await asyncio.sleep(interval)


def build_app(state: AppState) -> Starlette:
    app = create_app(state)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        pruner = asyncio.create_task(prune_forever(state))
        remove_sighup = install_sighup(app)  # SIGHUP reloads the rules
        start_delivery(state)  # the outbox worker (engine.delivery)
        try:
            yield
        finally:
            remove_sighup()
            pruner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pruner
            await run_in_threadpool(stop_delivery, state)
            await run_in_threadpool(state.store.close)

    app.router.lifespan_context = lifespan
    return app


def configure_logging(level: str, fmt: str = "text") -> None:
    configure_logs(level, fmt)  # key=value or JSON lines on stderr (engine.server.logs)


def make_state(settings: ServeSettings) -> AppState | None:
    from engine.commands import load_rules

    ruleset = load_rules(list(settings.rules))
    if ruleset is None:
        sys.stderr.write("incident-pilot: refusing to start with an invalid rule set\n")
        return None
    try:
        store = open_store(settings.db)
    except Exception as exc:  # a bad path or URL is the operator's mistake: say it plainly
        sys.stderr.write(
            f"incident-pilot: cannot open the store {redact_db(settings.db)!r}: {exc}\n"
        )
        return None
    reporter = None if settings.quiet else StdoutReporter(settings.format)
    state = AppState(settings=settings, store=store, ruleset=ruleset, reporter=reporter)
    try:  # optional LLM narration (engine.llm): off unless INCIDENT_PILOT_LLM_PROVIDER is set
        narrator = llm_narrator(store, ruleset.ownership)
    except LLMConfigError as exc:
        sys.stderr.write(f"incident-pilot: refusing to start: {exc}\n")
        store.close()
        return None
    if not setup_delivery(state, narrator):  # sinks, routes, outbox (engine.delivery)
        store.close()
        return None
    return state


def serve(args: argparse.Namespace) -> int:
    from engine.cli import rule_dirs

    settings = settings_from_args(args, rule_dirs(args.rules))
    configure_logging(settings.log_level, settings.log_format)
    problem = startup_check(settings.host, settings.auth) or hooks_startup_check(settings)
    if problem:
        sys.stderr.write(f"incident-pilot: {problem}\n")
        return 2
    state = make_state(settings)
    if state is None:
        return 1
    log.info(
        "incident-pilot listening on http://%s:%d (store %s, %d rules from %s)",
        settings.host,
        settings.port,
        redact_db(settings.db),
        len(state.ruleset.enabled),
        ", ".join(str(d) for d in settings.rules),
    )
    uvicorn.run(
        build_app(state),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,  # engine.server.logs writes one access line per request
        log_config=None,  # keep the handlers configure_logging installed
        timeout_graceful_shutdown=30,
        **settings.limits.uvicorn_options(),
    )
    return 0
