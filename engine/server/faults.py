"""What the service could not do as asked, made loud: store writes that failed (503 with
Retry-After, `/readyz`, metrics, one log line per change of state) and alert fields cut
to the soft limits (metrics, a WARNING per alert with its fingerprint).

Readiness. `/healthz` is liveness: the process answers. `/readyz` says whether the store
can commit: it is 503 with the reason from the moment a write fails with
`StoreUnavailable` until the probe (`Store.probe_write`: 64 KB written and committed,
nothing left behind) succeeds again. `/readyz` runs the probe at most once per
PROBE_INTERVAL, and so does a request whose write committed while not ready: one small
write getting through a nearly full disk does not make the store ready, the probe must.
No restart is needed: every request tries the store anew.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter as Tally
from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from engine.alerts import Truncation
from engine.store.base import Store
from engine.store.errors import StoreUnavailable

log = logging.getLogger("incident_pilot.store")
NS = "incident_pilot"
RETRY_AFTER_SECONDS = 10  # what 503 answers ask clients (Alertmanager, collectors) to wait
PROBE_INTERVAL = 1.0  # seconds a probe's answer is reused by /readyz
PROBE_WAIT = 2.0  # seconds /readyz waits for a probe before answering from the last state
# Where a failed write was going, for the failure counter's `operation` label.
OPERATIONS = (
    ("/alerts", "alerts"),
    ("/context/", "context"),
    ("/v1/", "otlp"),
    ("/loki/", "loki"),
    ("/hooks/", "hooks"),
    ("/api/incidents/", "resolve"),
)


def operation_of(method: str, path: str) -> str:
    """The `operation` of a failed request: what it was writing, or "read"."""
    if method in ("GET", "HEAD"):
        return "read"
    for prefix, operation in OPERATIONS:
        if path.startswith(prefix):
            return operation
    return "other"


class Faults:
    """Store readiness and the counters of failed writes and truncated fields, on the
    app's metrics registry."""

    def __init__(self, store: Store, registry: CollectorRegistry) -> None:
        self.store = store
        self.write_failures = Counter(
            f"{NS}_store_write_failures",
            "Store calls that could not commit (disk full, read-only, database gone, lock "
            "timeout), by operation; each was answered 503 with Retry-After",
            ["operation"],
            registry=registry,
        )
        self.ready_gauge = Gauge(
            f"{NS}_store_ready", "1 when the store can commit writes, else 0", registry=registry
        )
        self.truncations = Counter(
            f"{NS}_alert_fields_truncated",
            "Alert labels and annotations cut to the soft limits (or dropped past "
            "--max-labels), by field",
            ["field"],
            registry=registry,
        )
        for operation in (*dict(OPERATIONS).values(), "readiness", "read"):
            self.write_failures.labels(operation)  # present at 0 from the start
        for field in ("label", "annotation"):
            self.truncations.labels(field)
        self.ready_gauge.set(1)
        self._lock = threading.Lock()
        self.reason: str | None = None  # None: ready
        self.failing_since: float | None = None
        self._probed_at = 0.0
        self._probe: asyncio.Future[None] | None = None

    # --- store readiness --------------------------------------------------------------
    @property
    def ready(self) -> bool:
        return self.reason is None

    def failed(self, operation: str, exc: StoreUnavailable) -> None:
        """A call to the store could not be done (a write, the reads before it, or a read
        of the API: operation "read"): count it, not ready; the first failure after a
        success is logged at ERROR, later ones at DEBUG."""
        self.write_failures.labels(operation).inc()
        with self._lock:
            first = self.reason is None
            self.reason = exc.reason
            if first:
                self.failing_since = time.time()
            self.ready_gauge.set(0)
        if first:
            log.error(
                "the store cannot commit (%s), answering 503 until it can: %s",
                exc.reason,
                exc.detail or exc.reason,
            )
        else:
            log.debug("store still unavailable (%s) on %s", exc, operation)

    def succeeded(self) -> None:
        """The probe committed: ready again (logged once)."""
        if self.reason is None:
            return
        with self._lock:
            reason, since = self.reason, self.failing_since
            self.reason, self.failing_since = None, None
            self.ready_gauge.set(1)
        if reason is not None:
            down = time.time() - since if since else 0.0
            log.warning("the store commits again after %.1fs (%s)", down, reason)

    def _run_probe(self) -> None:
        try:
            self.store.probe_write()
        except StoreUnavailable as exc:
            self.failed("readiness", exc)
        else:
            self.succeeded()
        finally:
            self._probed_at = time.monotonic()

    def _start_probe(self) -> asyncio.Future[None] | None:
        """The probe running now, started if none ran in the last PROBE_INTERVAL."""
        if self._probe is None and time.monotonic() - self._probed_at >= PROBE_INTERVAL:
            self._probe = asyncio.ensure_future(run_in_threadpool(self._run_probe))
            self._probe.add_done_callback(self._probe_done)
        return self._probe

    def recheck(self) -> None:
        """After a request's write committed: when not ready, probe (in the background)
        whether the store takes writes again."""
        if self.reason is not None:
            self._start_probe()

    async def check(self) -> bool:
        """Probe the store (at most once per PROBE_INTERVAL, waiting at most PROBE_WAIT)
        and say whether it is ready."""
        probe = self._start_probe()
        if probe is not None:
            await asyncio.wait({probe}, timeout=PROBE_WAIT)
        return self.ready

    def _probe_done(self, probe: asyncio.Future[None]) -> None:
        self._probe = None
        if not probe.cancelled() and probe.exception() is not None:  # not a store failure
            log.error("readiness probe failed", exc_info=probe.exception())

    # --- alert fields -----------------------------------------------------------------
    def truncated(self, cuts: Sequence[Truncation]) -> None:
        """Count the cuts by field, and log one WARNING per alert naming what was cut
        (names and sizes, never values)."""
        by_alert: dict[str, list[Truncation]] = {}
        for cut in cuts:
            self.truncations.labels(cut.field).inc()
            by_alert.setdefault(cut.fingerprint, []).append(cut)
        for fp, alert_cuts in by_alert.items():
            shortened = [c for c in alert_cuts if c.removed]
            dropped = Tally(c.field for c in alert_cuts if not c.removed)
            parts = [
                f"{c.field} {c.name[:64]!r} cut by {c.removed:,} chars" for c in shortened[:10]
            ]
            if len(shortened) > 10:
                parts.append(f"{len(shortened) - 10} more cut")
            parts += [f"{n} {field}s dropped past --max-labels" for field, n in dropped.items()]
            log.warning(
                "alert %s over the soft limits, processed with a visible marker: %s",
                fp,
                "; ".join(parts),
            )


def unavailable_response(message: str) -> JSONResponse:
    return JSONResponse(
        {"error": message, "retry_after_seconds": RETRY_AFTER_SECONDS},
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


async def store_unavailable(request: Request, exc: Exception) -> Response:
    """The app's handler for StoreUnavailable: nothing of the request was acknowledged,
    so 503 with Retry-After (Alertmanager and collectors retry)."""
    assert isinstance(exc, StoreUnavailable)
    faults: Faults = request.app.state.ip.faults
    faults.failed(operation_of(request.method, request.url.path), exc)
    return unavailable_response(
        f"the store cannot commit right now ({exc.reason}); nothing of this request was "
        f"stored, retry after {RETRY_AFTER_SECONDS}s"
    )


async def readyz(request: Request) -> Response:
    faults: Faults = request.app.state.ip.faults
    if await faults.check():
        return JSONResponse({"status": "ready", "store": "ok"})
    since = faults.failing_since
    return JSONResponse(
        {
            "status": "not ready",
            "store": faults.reason,
            "failing_for_seconds": round(time.time() - since, 1) if since else None,
        },
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )
