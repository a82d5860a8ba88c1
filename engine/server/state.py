"""The running service as one typed object, and the one function that builds it.

`build_state(settings)` is the composition root: `serve` calls it, and so does the
in-process app of the tests (engine.testing.open_app), so both run the same wiring: the
store, the rules, metrics, LLM narration, delivery (its `plan` in every store transaction,
its worker woken after each alert), the tokens and the request limits.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TextIO, TypeVar

import anyio
from starlette.concurrency import run_in_threadpool

from engine.adapters.deploy_config import HookConfig, load_hooks
from engine.alerts import AlertLimits
from engine.delivery.service import DeliveryConfigError, DeliveryService, load_delivery_config
from engine.ingest import ContextLimits
from engine.llm.commands import rule_templates
from engine.llm.config import LLMConfigError
from engine.llm.hook import DeliveryNarrator, llm_narrator
from engine.model import Alert
from engine.pipeline import AlertResult, Pipeline, PipelineSettings
from engine.pull.config import PullConfigError, load_pull_config
from engine.pull.runner import Envelope, PullRunner
from engine.rulefiles import load_rules
from engine.rules.ruleset import RuleSet
from engine.server.auth import AuthConfigError, TokenSet, load_tokens
from engine.server.counters import Counters
from engine.server.faults import Faults
from engine.server.metrics import Metrics
from engine.server.scrub import learn_secrets, store_error
from engine.server.settings import ServeSettings
from engine.store import open_store
from engine.store.base import Store
from engine.web.session import SessionKeyError, Sessions, load_session_key, session_key_text

log = logging.getLogger("incident_pilot")
Listener = Callable[[AlertResult], None]
T = TypeVar("T")


class StartupError(Exception):
    """The service cannot start. `serve` prints `details` (one problem a line), then the
    message, and exits 1."""

    def __init__(self, message: str, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.details = details or []


def redact_db(url: str) -> str:
    """The store URL (or conninfo string) without its passwords, for logs."""
    if "://" not in url and "=" not in url:
        return url
    from engine.store.postgres import redact  # only a URL store needs the Postgres driver

    return redact(url)


@dataclass
class AppState:
    settings: ServeSettings
    store: Store
    ruleset: RuleSet  # replaced whole by a reload; the pipeline reads it once per alert
    delivery: DeliveryService
    metrics: Metrics
    narrator: DeliveryNarrator | None  # None unless INCIDENT_PILOT_LLM_PROVIDER is set
    tokens: TokenSet
    counters: Counters
    hooks: HookConfig  # the deploy webhooks' secrets and service table
    pulls: PullRunner  # prometheus / loki rules, run after each new incident is stored
    sessions: Sessions  # browser sessions of the pages (engine.web)
    # Told of every stored alert outcome (metrics, the delivery worker's wake-up).
    listeners: list[Listener] = field(default_factory=list)
    started: float = field(default_factory=time.time)
    # The last rule reload's result (engine.server.reload.ReloadResult); None: none since start.
    last_reload: Any = None
    pipeline: Pipeline = field(init=False)
    faults: Faults = field(init=False)  # store readiness, failed writes, truncated fields
    alert_limits: AlertLimits = field(init=False)
    context_limits: ContextLimits = field(init=False)
    # One dedicated thread for context writes when the store serialises writes anyway
    # (run_context_write); None for the others.
    context_writer: ThreadPoolExecutor | None = field(init=False)

    def __post_init__(self) -> None:
        self.pipeline = Pipeline(
            self.store,
            lambda: self.ruleset,
            PipelineSettings(
                renotify_after=self.settings.renotify_after, public_url=self.settings.public_url
            ),
            plan=self.delivery.plan,
            hold=self.pulls.hold,
        )
        self.faults = Faults(self.store, self.metrics.registry)
        limits, max_future = self.settings.limits, self.settings.max_future
        self.alert_limits = limits.alert_limits(max_future=max_future)
        self.context_limits = limits.context_limits(max_future=max_future)
        self.context_writer = (
            ThreadPoolExecutor(1, thread_name_prefix="incident-pilot-context")
            if self.store.single_writer
            else None
        )

    async def run_context_write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a context write off the event loop. A store that serialises writes under one
        lock (`single_writer`: SQLite) gets them from the one dedicated thread (asyncio's
        executor hop), for less per request than anyio's worker-thread pool; other stores
        use the pool. Like anyio's `run_sync`, the call is shielded: a request timeout
        waits for the write to finish (acknowledged means committed), then takes effect."""
        writer = self.context_writer
        if writer is None:
            return await run_in_threadpool(fn, *args)
        context = contextvars.copy_context()
        with anyio.CancelScope(shield=True):
            return await asyncio.get_running_loop().run_in_executor(writer, context.run, fn, *args)
        raise AssertionError("a shielded scope is never cancelled")  # for the type checker

    def count(self, key: str, n: int = 1) -> None:
        self.counters.add(key, n)

    def notify(self, result: AlertResult) -> None:
        for listener in self.listeners:
            try:
                listener(result)
            except Exception:
                log.exception("listener failed for alert %s", result.alert.fingerprint)

    def handle_alert_sync(self, alert: Alert) -> AlertResult:
        result = self.pipeline.handle(alert)
        self.count(f"alerts_{alert.status}")
        self.count(f"outcome_{result.outcome.kind}")
        self.notify(result)
        return result

    def handle_alerts_sync(self, alerts: list[Alert]) -> list[AlertResult]:
        """Several alerts in one worker-thread hop, each committed on its own (a failure
        leaves the ones before it committed: a retry finds them as repeats)."""
        return [self.handle_alert_sync(alert) for alert in alerts]

    def pull_envelope(self) -> Envelope:
        """The answer cache the alerts of one request share (engine.pull.runner)."""
        return Envelope()

    def submit_pulls(self, envelope: Envelope, result: AlertResult) -> None:
        """After the alert's commit: its incident's pull rules, in the background."""
        try:
            self.pulls.submit(envelope, result)
        except Exception:
            log.exception("could not start the pull rules for %s", result.alert.fingerprint)

    def start(self) -> None:
        """Start the background work: the outbox worker (deliveries left from a previous
        run go out first)."""
        self.delivery.start()

    def close(self) -> None:
        """Stop the worker (sends in flight finish), then the context writer, then the store."""
        try:
            self.pulls.stop()  # their findings release held deliveries: before the worker
            self.delivery.stop()
            if self.context_writer is not None:
                self.context_writer.shutdown(wait=True)
        finally:
            self.store.close()


def build_state(
    settings: ServeSettings,
    *,
    ruleset: RuleSet | None = None,
    stdout: TextIO | None = None,
    environ: Mapping[str, str] = os.environ,
) -> AppState:
    """The service `settings` describe, not started yet (`AppState.start`). `ruleset`:
    already loaded rules (default: load `settings.rules`, printing every problem).
    `stdout`: where the stdout sink prints incidents (default sys.stdout). `environ`:
    where INCIDENT_PILOT_TOKENS and the LLM settings are read. Raises StartupError."""
    if ruleset is None:
        ruleset = load_rules(list(settings.rules))
        if ruleset is None:
            raise StartupError("refusing to start with an invalid rule set")
    try:
        tokens = load_tokens(settings.auth, dict(environ))
    except AuthConfigError as exc:
        raise StartupError(f"invalid token configuration: {exc}") from None
    try:
        store = open_store(settings.db)
    except Exception as exc:  # a bad path or URL is the operator's mistake: say it plainly
        why = store_error(settings.db, exc)
        raise StartupError(f"cannot open the store {redact_db(settings.db)!r}: {why}") from None
    try:
        return _assemble(settings, store, ruleset, tokens, stdout, environ)
    except BaseException:
        store.close()
        raise


def _assemble(
    settings: ServeSettings,
    store: Store,
    ruleset: RuleSet,
    tokens: TokenSet,
    stdout: TextIO | None,
    environ: Mapping[str, str],
) -> AppState:
    counters = Counters()
    metrics = Metrics(store, counters, rules_loaded=len(ruleset.enabled))
    built: list[AppState] = []  # the rules in use are the state's (a reload replaces them)

    def templates() -> dict[str, dict[str, str]]:
        return rule_templates(built[0].ruleset if built else ruleset)

    try:  # optional LLM narration (engine.llm): off unless INCIDENT_PILOT_LLM_PROVIDER is set
        narrator = llm_narrator(
            store,
            ruleset.ownership,
            environ=environ,
            on_outcome=metrics.narration,
            templates=templates,
        )
    except LLMConfigError as exc:
        raise StartupError(f"refusing to start: {exc}") from None
    hooks, problems = load_hooks(settings.deploy_services, environ)
    if problems:
        raise StartupError("invalid deploy webhook configuration: " + "; ".join(problems))
    if hooks.secrets:
        log.info(
            "deploy webhooks on: %s (%d services mapped)",
            ", ".join(f"/hooks/{p}" for p in hooks.secrets),
            len(hooks.services),
        )
    try:  # sinks, routes, retries (engine.delivery)
        config = load_delivery_config(settings.config or None)
    except DeliveryConfigError as exc:
        raise StartupError(f"refusing to start: {exc}", exc.problems) from None
    delivery = DeliveryService(
        config,
        store,
        public_url=settings.public_url,
        fmt=settings.format,
        quiet=settings.quiet,
        narrator=narrator,
        stdout=stdout,
        on_outcome=metrics.delivery,
    )
    try:
        pull_config = load_pull_config(settings.pull, environ)
    except PullConfigError as exc:
        raise StartupError(f"refusing to start: {exc}") from None
    pulls = PullRunner(
        store,
        pull_config,
        on_done=delivery.wake,
        on_rule=metrics.pull_rule,
        count=metrics.pull_query,
        scrub=delivery.redactor.scrub,
        public_url=settings.public_url,
    )
    # The delivery redactor scrubs every secret of the process (serve scrubs logs with it).
    learn_secrets(
        delivery.redactor, db=settings.db, hooks=hooks, pulls=pull_config, environ=environ
    )
    try:
        sessions = Sessions(
            load_session_key(settings.web, environ, warn=bool(tokens)), settings.web.session_ttl
        )
    except SessionKeyError as exc:
        raise StartupError(f"refusing to start: {exc}") from None
    if key_text := session_key_text(settings.web, environ):
        delivery.redactor.add_value(key_text)  # never in a log line
    state = AppState(
        settings=settings,
        store=store,
        ruleset=ruleset,
        delivery=delivery,
        metrics=metrics,
        narrator=narrator,
        tokens=tokens,
        counters=counters,
        hooks=hooks,
        pulls=pulls,
        sessions=sessions,
        listeners=[metrics.observe, delivery.wake],
    )
    built.append(state)
    return state


def print_startup_error(exc: StartupError) -> None:
    for line in exc.details:
        sys.stderr.write(line + "\n")
    sys.stderr.write(f"incident-pilot: {exc}\n")
