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

from engine.narrate import StdoutReporter
from engine.server.app import AppState, create_app
from engine.server.settings import ServeSettings, settings_from_args
from engine.store import open_store
from engine.timeutil import utcnow

log = logging.getLogger("incident_pilot")


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
        try:
            yield
        finally:
            pruner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pruner
            await run_in_threadpool(state.store.close)

    app.router.lifespan_context = lifespan
    return app


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def make_state(settings: ServeSettings) -> AppState | None:
    from engine.commands import load_rules

    ruleset = load_rules(list(settings.rules))
    if ruleset is None:
        sys.stderr.write("incident-pilot: refusing to start with an invalid rule set\n")
        return None
    try:
        store = open_store(settings.db)
    except Exception as exc:  # a bad path or URL is the operator's mistake: say it plainly
        sys.stderr.write(f"incident-pilot: cannot open the store {settings.db!r}: {exc}\n")
        return None
    reporter = None if settings.quiet else StdoutReporter(settings.format)
    return AppState(settings=settings, store=store, ruleset=ruleset, reporter=reporter)


def serve(args: argparse.Namespace) -> int:
    from engine.cli import rule_dirs

    settings = settings_from_args(args, rule_dirs(args.rules))
    configure_logging(settings.log_level)
    state = make_state(settings)
    if state is None:
        return 1
    log.info(
        "incident-pilot listening on http://%s:%d (store %s, %d rules from %s)",
        settings.host,
        settings.port,
        settings.db,
        len(state.ruleset.enabled),
        ", ".join(str(d) for d in settings.rules),
    )
    uvicorn.run(
        build_app(state),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=settings.log_level == "debug",
        timeout_graceful_shutdown=30,
    )
    return 0
