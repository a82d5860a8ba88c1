"""Play a scenario through the HTTP API of a live server.

First the background context (two hours of it, up to now) and the past faults (fired and
resolved an hour and more ago, so that the recurrences have something to recur). Then the
live faults in real time: the server refuses times in the future and the cascade rule
compares incidents' `opened_at` (the server's clock) with alerts' `startsAt`, so each
alert is sent when it would arrive, `GROUP_WAIT_S` after its `startsAt` (Alertmanager's
default group_wait). Live faults start `LIVE_WINDOW_S / faults` apart (the longest first),
each stays open until `GROUP_WAIT_S` after its last alert fired, and the flapping noise
alerts fire and resolve at random moments in between. `time_scale` shrinks every live
time (the smoke test runs at 0.02; the reported figures at 1.0).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from bench.quality.scenario import AlertSpec, Fault, Scenario
from engine.testing import make_alert, make_webhook

CHUNK = 5000
GROUP_WAIT_S = 30.0
LIVE_WINDOW_S = 150.0
PAST_START_S = 6000  # the first past fault's onset, seconds before the run
FINDINGS_WAIT_S = 5.0


def _ts(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Player:
    def __init__(self, client: httpx.Client) -> None:
        self.client = client
        self.sent: list[dict[str, Any]] = []  # one per firing alert sent
        self.lag: list[float] = []  # seconds each live event was sent late
        self.open_spans: list[tuple[float, float]] = []  # each live fault: (first event, resolved)
        self.live_started = 0.0  # time.monotonic() when the live phase started

    def context(
        self, kind: str, records: list[dict[str, Any]], anchor: datetime, scale: float = 1.0
    ) -> None:
        body = []
        for rec in records:
            out = {k: v for k, v in rec.items() if k not in ("at", "role", "ts", "id")}
            out["ts"] = _ts(anchor + timedelta(seconds=rec["at"] * scale))
            body.append(out)
        for i in range(0, len(body), CHUNK):
            r = self.client.post(f"/context/{kind}", json=body[i : i + CHUNK])
            r.raise_for_status()
            for rec, sent, rid in zip(
                records[i : i + CHUNK], body[i : i + CHUNK], r.json()["ids"], strict=True
            ):
                rec["id"], rec["ts"] = rid, sent["ts"]

    def fault_context(self, fault: Fault, onset: datetime, scale: float = 1.0) -> None:
        for kind in ("deploys", "logs", "traces"):
            if getattr(fault, kind):
                self.context(kind, getattr(fault, kind), onset, scale)

    def fire(self, spec: AlertSpec, start: datetime) -> None:
        res = self._post(spec, start, None)
        self.sent.append(
            {
                "key": spec.key,
                "group": spec.group,
                "service": spec.labels["service"],
                "alertname": spec.labels["alertname"],
                "fingerprint": res.get("fingerprint"),
                "outcome": res.get("outcome"),
                "incident": res.get("incident"),
                "ttf_ms": res.get("ttf_ms"),
                "startsAt": _ts(start),
            }
        )

    def resolve(self, spec: AlertSpec, start: datetime, end: datetime) -> None:
        self._post(spec, start, max(end, start + timedelta(milliseconds=1)))

    def _post(self, spec: AlertSpec, start: datetime, end: datetime | None) -> dict[str, Any]:
        alert = make_alert(
            status="resolved" if end else "firing",
            starts_at=start,
            ends_at=end,
            annotations={"summary": spec.summary},
            **spec.labels,
        )
        sent = time.perf_counter()
        r = self.client.post("/alerts", json=make_webhook(alert))
        r.raise_for_status()
        result: dict[str, Any] = r.json()["results"][0]
        if end is None:
            result["ttf_ms"] = self._findings_visible(result.get("incident"), sent)
        return result

    def _findings_visible(self, incident: str | None, sent: float) -> float | None:
        """Milliseconds from sending the alert to its incident showing findings."""
        if not incident:
            return None
        deadline = sent + FINDINGS_WAIT_S
        while time.perf_counter() < deadline:
            r = self.client.get(f"/api/incidents/{incident}")
            if r.status_code == 200 and r.json().get("findings"):
                return round((time.perf_counter() - sent) * 1000, 3)
            time.sleep(0.005)
        return None


def _past(p: Player, faults: list[Fault], started: datetime) -> None:
    for i, f in enumerate(faults):
        onset = started - timedelta(seconds=PAST_START_S - i * 360)
        p.fault_context(f, onset)
        for start, spec, end in sorted(
            ((s, a, e) for a in f.alerts for s, e in a.episodes), key=lambda x: x[0]
        ):
            at = onset + timedelta(seconds=start)
            p.fire(spec, at)
            p.resolve(spec, at, onset + timedelta(seconds=end if end is not None else 1200))


def _live_events(
    p: Player,
    faults: list[Fault],
    noise: list[AlertSpec],
    scale: float,
    window: float,
    rng: random.Random,
) -> list[tuple[float, int, Callable[[datetime], None]]]:
    """(seconds after the live phase starts, order, action(now)) for every live event."""
    events: list[tuple[float, int, Callable[[datetime], None]]] = []
    wait = GROUP_WAIT_S * scale

    def span(f: Fault) -> float:
        starts = [s for a in f.alerts for s, _ in a.episodes]
        return max(starts) - min(starts)

    ordered = sorted(faults, key=span, reverse=True)
    gap = window * scale / max(1, len(ordered))
    for k, f in enumerate(ordered):
        first = min(s for a in f.alerts for s, _ in a.episodes)
        t_onset = (
            k * gap - first * scale
        )  # live seconds of the onset's arrival; startsAt is `wait` earlier
        events.append(
            (
                k * gap,
                len(events),
                lambda now, f=f, t=t_onset: p.fault_context(
                    f, now + timedelta(seconds=t - _clock(p) - wait), scale
                ),
            )
        )
        last = 0.0
        for spec in f.alerts:
            for s, e in spec.episodes:
                t_fire = t_onset + s * scale
                events.append(
                    (
                        t_fire,
                        len(events),
                        lambda now, spec=spec: p.fire(spec, now - timedelta(seconds=wait)),
                    )
                )
                if e is not None:
                    dur = (e - s) * scale
                    events.append(
                        (
                            t_onset + e * scale,
                            len(events),
                            lambda now, spec=spec, d=dur: p.resolve(
                                spec,
                                now - timedelta(seconds=wait + d),
                                now - timedelta(seconds=wait),
                            ),
                        )
                    )
                else:
                    last = max(last, t_fire)
        p.open_spans.append((k * gap, last + wait))
        for spec in f.alerts:
            s = spec.episodes[-1][0]
            if spec.episodes[-1][1] is None:
                held = last + wait - (t_onset + s * scale)
                events.append(
                    (
                        last + wait,
                        len(events),
                        lambda now, spec=spec, h=held: p.resolve(
                            spec, now - timedelta(seconds=h + wait), now
                        ),
                    )
                )
    end = max(t for t, _, _ in events)
    for spec in noise:
        for _s, e in spec.episodes:
            t = rng.uniform(0, max(1.0, end - e * scale))
            one = AlertSpec(spec.key, spec.group, spec.labels, spec.summary, [(0.0, e)])
            events.append(
                (t, len(events), lambda now, one=one: p.fire(one, now - timedelta(seconds=wait)))
            )
            events.append(
                (
                    t + e * scale,
                    len(events),
                    lambda now, one=one, d=e * scale: p.resolve(
                        one, now - timedelta(seconds=wait + d), now - timedelta(seconds=wait)
                    ),
                )
            )
    return events


def _clock(p: Player) -> float:
    return time.monotonic() - p.live_started


def play(
    scenario: Scenario,
    client: httpx.Client,
    log: Callable[[str], None],
    time_scale: float = 1.0,
    window: float = LIVE_WINDOW_S,
) -> dict[str, Any]:
    """Play everything; returns what was sent (per firing alert: its group, fingerprint,
    the incident the server answered, time to findings) and the play's timings."""
    p = Player(client)
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    for kind, records in scenario.background.items():
        p.context(kind, records, started)
    log(f"background: {', '.join(f'{len(v)} {k}' for k, v in scenario.background.items())}")
    _past(p, [f for f in scenario.faults if f.phase == "past"], started)
    live = [f for f in scenario.faults if f.phase == "live"]
    events = _live_events(p, live, scenario.noise, time_scale, window, random.Random(scenario.seed))
    events.sort(key=lambda e: (e[0], e[1]))
    log(f"live phase: {len(live)} faults over {events[-1][0]:.0f} s")
    p.live_started = time.monotonic()
    for due, _, action in events:
        delay = due - _clock(p)
        if delay > 0:
            time.sleep(delay)
        p.lag.append(max(0.0, -delay))
        action(datetime.now(UTC))
    log(
        f"played {len(scenario.faults)} faults, {len(p.sent)} firing alerts in {time.perf_counter() - t0:.1f}s"
    )
    return {
        "sent": p.sent,
        "play_seconds": round(time.perf_counter() - t0, 1),
        "live_seconds": round(events[-1][0], 1),
        "max_lag_s": round(max(p.lag), 2),
        "max_faults_open": max(sum(a <= t < b for a, b in p.open_spans) for t, _ in p.open_spans),
    }
