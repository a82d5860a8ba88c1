"""Run the pull rules (prometheus, loki) of newly opened incidents, after the commit.

`POST /alerts` stores each incident with its local rules' findings first (the pipeline
holds its first deliveries `budget` seconds, see engine.pipeline). Then, on this
runner's own event loop thread, each pull rule of the alert renders its query, asks the
source within what is left of the alert's budget, and is evaluated over the answer like
any rule; a failed, refused or late query becomes a LOW rule.error finding. The findings
are appended to the incident in one transaction that also releases its held deliveries,
so the first page goes out as soon as the pulls are done, and carries their findings.

Answers are shared per (query, time range) by the alerts of one envelope (one request):
an `Envelope` is that cache.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import httpx

from engine.model import Alert, Finding
from engine.pipeline import AlertResult
from engine.pull.config import PullConfig
from engine.pull.fetch import PullError, Request, ask, excerpt, name, records
from engine.rules.compiler import CompiledRule
from engine.rules.evaluate import (
    RuleTrace,
    base_scope,
    describe_error,
    evaluate_records,
    rule_error_finding,
)
from engine.rules.ruleset import RuleSet
from engine.store.base import NewPull, Store
from engine.timeutil import utcnow

log = logging.getLogger("incident_pilot.pull")
Answer = list[dict[str, Any]]  # the records of one stored pull (paths pulls/<id>/<n>)


def pull_rules(ruleset: RuleSet) -> list[CompiledRule]:
    return [r for r in ruleset.enabled if r.pull is not None]


class Envelope:
    """The answers asked for by the alerts of one request, by (query, time range)."""

    def __init__(self) -> None:
        self.answers: dict[Any, asyncio.Task[Answer]] = {}


class PullRunner:
    def __init__(
        self,
        store: Store,
        config: PullConfig,
        *,
        on_done: Callable[[], None] = lambda: None,
        on_rule: Callable[[str, str], None] = lambda rule, outcome: None,
        scrub: Callable[[str], str] = lambda text: text,
        clock: Callable[[], datetime] = utcnow,
        public_url: str = "",
        count: Callable[[str, str], None] = lambda source, outcome: None,
    ) -> None:
        """`on_rule(rule id, outcome)` hears of each pull rule that ends in a rule.error
        finding: outcome `overrun` (its source did not answer within the budget) or `error`
        (the server's metrics count both). `count(source, outcome)` is told of every query
        a pull rule needed: ok, error or timeout for one sent to the source, cached for one
        answered by the envelope's earlier request. `scrub` removes secrets from an error
        before it becomes a finding (a source or proxy may echo the token or the URL's
        password)."""
        self.store, self.config, self.on_done, self.clock = store, config, on_done, clock
        self.on_rule, self.scrub, self.count = on_rule, scrub, count
        self.public_url = public_url  # the templates' `public_url` and `incident_url`
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._client: httpx.AsyncClient | None = None
        self._pending: set[Any] = set()
        self._lock = threading.Lock()

    # --- what the pipeline and the request ask ------------------------------------
    def hold(self, ruleset: RuleSet) -> float:
        """How long a new incident's first deliveries wait for its pull rules (seconds)."""
        return self.config.budget if pull_rules(ruleset) else 0.0

    def submit(self, envelope: Envelope, result: AlertResult) -> None:
        """Run the pull rules of `result`'s incident when the alert opened one."""
        incident = result.outcome.incident
        if result.outcome.kind != "opened" or incident is None or result.ruleset is None:
            return
        rules = pull_rules(result.ruleset)
        if not rules:
            return
        deadline = time.monotonic() + self.config.budget
        loop = self._running_loop()
        job = self._alert(envelope, incident.id, result.alert, rules, deadline)
        future = asyncio.run_coroutine_threadsafe(job, loop)
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._forget)

    def _forget(self, future: Any) -> None:
        with self._lock:
            self._pending.discard(future)

    # --- lifecycle ---------------------------------------------------------------
    def _running_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def run() -> None:
                    asyncio.set_event_loop(loop)
                    self._client = httpx.AsyncClient(follow_redirects=False)
                    ready.set()
                    loop.run_forever()

                self._thread = threading.Thread(target=run, name="pull-loop", daemon=True)
                self._thread.start()
                ready.wait()
                self._loop = loop
            return self._loop

    def stop(self) -> None:
        """Let the pulls in flight finish (each is bounded by the budget), then stop."""
        with self._lock:
            pending, loop = list(self._pending), self._loop
        deadline = time.monotonic() + self.config.budget + 5
        for future in pending:
            try:
                future.result(timeout=max(0.0, deadline - time.monotonic()))
            except Exception:
                log.warning("a pull job did not finish before shutdown")
        if loop is None:
            return
        if self._client is not None:
            asyncio.run_coroutine_threadsafe(self._client.aclose(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(5)
        loop.close()
        self._loop = self._thread = self._client = None

    # --- one alert -----------------------------------------------------------------
    async def _alert(
        self,
        envelope: Envelope,
        incident_id: str,
        alert: Alert,
        rules: list[CompiledRule],
        deadline: float,
    ) -> None:
        alert_scope = alert.as_scope()
        found = await asyncio.gather(
            *(self._rule(envelope, rule, alert, alert_scope, deadline) for rule in rules)
        )
        findings = [f for f in found if f is not None]
        try:
            await asyncio.to_thread(self._append, incident_id, findings)
        except Exception:
            log.exception("could not add the pull findings of %s", incident_id)
        self.on_done()

    def _append(self, incident_id: str, findings: list[Finding]) -> None:
        self.store.add_findings(incident_id, findings, now=self.clock())

    async def _rule(
        self,
        envelope: Envelope,
        rule: CompiledRule,
        alert: Alert,
        alert_scope: dict[str, Any],
        deadline: float,
    ) -> Finding | None:
        spec = rule.pull
        assert spec is not None
        try:
            scope = base_scope(rule, alert_scope, public_url=self.public_url)
            query = spec.render(scope)
            if query is None:
                return None  # a var the alert lacks: the rule does not apply
            base = self.config.urls.get(spec.source, "")
            if not base:
                self._count(rule.id, "error")
                return rule_error_finding(
                    rule, f"no --{spec.source}-url is configured, so the query was not sent"
                )
            req = _request(spec.source, base, query, rule, alert, spec.ranged, spec.step)
            try:
                recs = await self._answer(envelope, req, deadline)
            except TimeoutError:
                self._count(rule.id, "overrun")
                return rule_error_finding(
                    rule,
                    f"{spec.source} did not answer within the pull budget "
                    f"({self.config.budget:g}s): {query}",
                )
            except (PullError, httpx.HTTPError) as exc:
                self._count(rule.id, "error")
                return rule_error_finding(
                    rule, self.scrub(f"{spec.source} query failed: {exc}; query: {query}")
                )
            anchor = alert.starts_at.timestamp()
            mine = [{**r, "age": round(anchor - r["_epoch"], 3)} for r in recs]
            return evaluate_records(rule, scope, mine, RuleTrace(rule.id))
        except Exception as exc:  # a broken rule must never break the others
            self._count(rule.id, "error")
            return rule_error_finding(rule, self.scrub(describe_error(exc)))

    def _count(self, rule_id: str, outcome: str) -> None:
        try:
            self.on_rule(rule_id, outcome)
        except Exception:  # metrics must never break a pull
            log.debug("could not count pull rule %s: %s", rule_id, outcome, exc_info=True)

    async def _answer(self, envelope: Envelope, req: Request, deadline: float) -> Answer:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        task = envelope.answers.get(req.key)
        if task is None:
            task = asyncio.ensure_future(self._fetch(req, remaining))
            task.add_done_callback(_retrieved)  # a late failure nobody waits for any more
            task.add_done_callback(lambda done: self.count(req.source, _outcome(done)))
            envelope.answers[req.key] = task
        else:
            self.count(req.source, "cached")
        try:
            return await asyncio.wait_for(asyncio.shield(task), remaining)
        except httpx.TimeoutException:
            raise TimeoutError from None

    async def _fetch(self, req: Request, timeout: float) -> Answer:
        assert self._client is not None
        data = await ask(self._client, req, self.config.headers(req.source), timeout)
        url, _ = req.endpoint()
        new = NewPull(
            source=req.source,
            url=url,
            query=req.query,
            start=req.start,
            end=req.end,
            step=req.step,
            link=req.link(),
            answer={},
        )
        stored = await asyncio.to_thread(self._store, new, data)
        return stored

    def _store(self, new: NewPull, data: dict[str, Any]) -> Answer:
        recs, total = records(new.source, data)
        answer = excerpt(data["resultType"], recs, total)
        pull = self.store.add_pull(replace(new, answer=answer), now=self.clock())
        return name(recs, pull.id)


def _retrieved(task: asyncio.Task[Answer]) -> None:
    if not task.cancelled():
        task.exception()


def _outcome(task: asyncio.Task[Answer]) -> str:
    """What became of a query sent to a source: ok (answered and stored), timeout (no
    answer in the budget), error (refused, failed, or not stored)."""
    if task.cancelled():
        return "timeout"
    exc = task.exception()
    if exc is None:
        return "ok"
    return "timeout" if isinstance(exc, TimeoutError | httpx.TimeoutException) else "error"


def _request(
    source: str,
    base: str,
    query: str,
    rule: CompiledRule,
    alert: Alert,
    ranged: bool,
    step: timedelta,
) -> Request:
    at = alert.starts_at
    if not ranged or rule.window is None:
        return Request(source, base, query, at, at, None)
    return Request(
        source, base, query, at - rule.window.before, at + rule.window.after, step.total_seconds()
    )
