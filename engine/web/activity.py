"""How often each rule fired and failed recently, for the rules page: an AppState
listener that keeps, per rule, the times of its last evaluations that fired or erred
(this process only; bounded)."""

from __future__ import annotations

import threading
import time
from collections import deque

from engine.pipeline import AlertResult

KEEP = 10_000  # times kept per rule and outcome: the counts are exact up to this many
WINDOWS = (("1h", 3600.0), ("24h", 86400.0))


class RuleActivity:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fired: dict[str, deque[float]] = {}
        self._errors: dict[str, deque[float]] = {}
        self.started = time.time()

    def observe(self, result: AlertResult) -> None:
        evaluation = result.evaluation
        if evaluation is None:
            return
        now = time.time()
        with self._lock:
            for trace in evaluation.traces:
                if trace.error:
                    self._errors.setdefault(trace.rule_id, deque(maxlen=KEEP)).append(now)
                elif trace.fired:
                    self._fired.setdefault(trace.rule_id, deque(maxlen=KEEP)).append(now)

    def counts(self, rule_id: str, now: float | None = None) -> dict[str, int]:
        """fired_1h, fired_24h, errors_1h, errors_24h."""
        now = time.time() if now is None else now
        out = {}
        with self._lock:
            for name, times in (("fired", self._fired), ("errors", self._errors)):
                seen = list(times.get(rule_id, ()))
                for label, seconds in WINDOWS:
                    out[f"{name}_{label}"] = sum(1 for t in seen if t >= now - seconds)
        return out
