"""`incident-pilot serve`: build the service from the settings, run uvicorn."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from datetime import timedelta

import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool

from engine.rulefiles import rule_dirs
from engine.server.app import create_app
from engine.server.auth import startup_check
from engine.server.connections import quiet_accept_errors, raise_fd_limit
from engine.server.logs import configure as configure_logs
from engine.server.logs import scrub_secrets
from engine.server.reload import install_sighup
from engine.server.settings import settings_from_args
from engine.server.state import AppState, StartupError, build_state, print_startup_error, redact_db
from engine.server.variables import known_variables, unknown_variable_warnings
from engine.timeutil import utcnow

log = logging.getLogger("incident_pilot")


def prune_interval(retention: timedelta) -> float:
    return max(10.0, min(retention.total_seconds() / 20, 300.0))


def prune_once(state: AppState) -> None:
    """One pass of retention (engine.store.retention): context older than --retention,
    then resolved incidents and delivered outbox rows older than --incident-retention.
    Runs in a worker thread; each chunk is its own short transaction."""
    now = utcnow()
    cutoff = now - state.settings.retention
    removed = state.store.prune_context(cutoff)
    if removed:
        log.info("pruned %d context records older than %s", removed, cutoff.isoformat())
    cutoff = now - state.settings.incident_retention
    gone = state.store.prune_incidents(cutoff)
    if any(gone.values()):
        log.info(
            "pruned %d resolved incidents and %d delivered outbox rows older than %s",
            gone["incidents"],
            gone["deliveries"],
            cutoff.isoformat(),
        )


async def prune_forever(state: AppState) -> None:
    """Apply retention every few minutes."""
    interval = prune_interval(state.settings.retention)
    while True:
        try:
            await run_in_threadpool(prune_once, state)
        except Exception:
            log.exception("pruning failed; will retry")
        await asyncio.sleep(interval)


def serving(state: AppState) -> Callable[[Starlette], AbstractAsyncContextManager[None]]:
    """The app's lifespan: the background work runs while the server does, and the state
    (worker, store) is closed when it stops."""

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        quiet_accept_errors(asyncio.get_running_loop())  # out of descriptors: one line a while
        pruner = asyncio.create_task(prune_forever(state))
        remove_sighup = install_sighup(state)  # SIGHUP reloads the rules
        state.start()  # the outbox worker (engine.delivery)
        try:
            yield
        finally:
            remove_sighup()
            pruner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pruner
            await run_in_threadpool(state.close)

    return lifespan


def serve(args: argparse.Namespace) -> int:
    settings = settings_from_args(args, rule_dirs(args.rules))
    configure_logs(settings.log_level, settings.log_format)  # key=value or JSON on stderr
    problem = startup_check(settings.host, settings.auth)
    if problem:
        sys.stderr.write(f"incident-pilot: {problem}\n")
        return 2
    try:
        state = build_state(settings)
    except StartupError as exc:
        print_startup_error(exc)
        return 1
    scrub_secrets(state.delivery.redactor.scrub)
    secret_vars = [ref[4:] for ref in state.delivery.config.secrets if ref.startswith("env:")]
    for warning in unknown_variable_warnings(os.environ, known_variables(secret_vars)):
        log.warning("%s", warning)
    fd_limit = raise_fd_limit()  # thousands of connections need as many descriptors
    log.info(
        "incident-pilot listening on http://%s:%d (store %s, %d rules from %s)",
        settings.host,
        settings.port,
        redact_db(settings.db),
        len(state.ruleset.enabled),
        ", ".join(str(d) for d in settings.rules),
    )
    uvicorn.run(
        create_app(state, lifespan=serving(state)),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,  # engine.server.logs writes one access line per request
        log_config=None,  # keep the handlers configure_logs installed
        timeout_graceful_shutdown=30,
        **settings.limits.uvicorn_options(fd_limit),
    )
    return 0
