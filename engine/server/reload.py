"""Hot reload of the rules: SIGHUP or `POST /-/reload` (admin scope).

The whole set is loaded and linted again; it replaces the running set (one attribute
assignment: an alert being evaluated finishes on the set it started with) only when there
is no error. Otherwise the old set stays, and the problems are logged, answered (422) and
exported as `incident_pilot_rules_last_reload_success 0`.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from engine.rules.loader import load_ruleset
from engine.rules.problems import Problem, SourceLocation

if TYPE_CHECKING:
    from engine.server.state import AppState

log = logging.getLogger("incident_pilot.reload")
_lock = threading.Lock()  # one reload at a time (per process)


@dataclass
class ReloadResult:
    ok: bool
    rules: int
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"reloaded": self.ok, "rules": self.rules}
        if not self.ok:
            out["error"] = (
                f"the rules have {len(self.errors)} error(s); the previous rules stay in use"
            )
            out["problems"] = self.errors
        out["warnings"] = self.warnings
        return out


def reload_rules(state: AppState) -> ReloadResult:
    """Load, lint and (when clean) swap in the rules from the configured directories.
    Synchronous: call from a worker thread."""
    with _lock:
        dirs = [Path(d) for d in state.settings.rules] or list(state.ruleset.dirs)
        problems: list[Problem] = [
            Problem(SourceLocation(str(d)), "rules directory does not exist", "not-found")
            for d in dirs
            if not d.exists()
        ]
        ruleset = None
        if not problems:
            try:
                ruleset, problems = load_ruleset(dirs)
            except Exception as exc:  # a loader bug must not take the server down
                log.exception("reloading the rules failed")
                problems = [Problem(SourceLocation("-"), f"loader failed: {exc}", "internal")]
        errors = [str(p) for p in problems if p.level == "error"]
        warnings = [str(p) for p in problems if p.level == "warning"]
        if ruleset is None or errors:
            for text in errors:
                log.error("rule reload: %s", text)
            log.error(
                "rule reload failed with %d error(s); keeping the %d rules in use",
                len(errors),
                len(state.ruleset.enabled),
            )
            state.metrics.reloaded(False)
            failed = ReloadResult(False, len(state.ruleset.enabled), errors, warnings)
            state.last_reload = failed
            return failed
        state.ruleset = ruleset  # atomic: the pipeline reads it once per alert
        count = len(ruleset.enabled)
        log.info("rules reloaded: %d enabled rules from %s", count, ", ".join(map(str, dirs)))
        state.metrics.reloaded(True, count)
        done = ReloadResult(True, count, [], warnings)
        state.last_reload = done
        return done


async def post_reload(request: Request) -> Response:
    state: AppState = request.app.state.ip
    result = await run_in_threadpool(reload_rules, state)
    return JSONResponse(result.to_dict(), status_code=200 if result.ok else 422)


def install_sighup(state: AppState) -> Callable[[], None]:
    """Reload on SIGHUP (in a worker thread). Returns a function that removes the handler.
    A no-op where signals cannot be handled (Windows, a thread other than the main one)."""
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[ReloadResult]] = set()

    def on_sighup() -> None:
        log.info("SIGHUP: reloading the rules")
        task = asyncio.ensure_future(run_in_threadpool(reload_rules, state))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    try:
        loop.add_signal_handler(signal.SIGHUP, on_sighup)
    except (AttributeError, NotImplementedError, RuntimeError, ValueError):
        return lambda: None

    def remove() -> None:
        loop.remove_signal_handler(signal.SIGHUP)

    return remove
