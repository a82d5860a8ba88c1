"""The incident page's timeline: what happened to the service around the alert, drawn as
inline SVG on the server (no script).

The window is the one the rules looked at: from the longest `window.before` to the
longest `window.after` of the enabled rules that read deploys, logs or traces, around the
alert's start. In it: the deploys of the alert's service, its ERROR-or-worse log lines
counted in bins, its slowest traces, and the alert's start; every mark links to the page
of its record (a bin links to its newest log line).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from markupsafe import Markup, escape

from engine.model import CONTEXT_KINDS, ContextRecord, Incident
from engine.rules.ruleset import RuleSet
from engine.store.base import Store
from engine.timeutil import format_ts

ERROR_LEVELS = frozenset({"ERROR", "FATAL", "CRITICAL", "PANIC", "ALERT", "EMERGENCY"})
DEFAULT_BEFORE = timedelta(minutes=30)
MIN_AFTER = timedelta(minutes=2)  # room to the right of the alert line
BINS = 30
MAX_LOGS = 20_000  # log lines read for the bins (newest first)
MAX_TRACES = 5_000
SLOW_TRACES = 10  # marks: the slowest ones, at or above the window's 90th percentile
MAX_DEPLOYS = 50
WIDTH, HEIGHT = 960, 220
LEFT, RIGHT, TOP = 56, 16, 24
LANES = {"deploy": (TOP, 40), "errors": (76, 110), "trace": (196, 0)}


@dataclass(frozen=True)
class ContextRef:
    """A record by kind and id: what a mark links to."""

    kind: str
    id: str


@dataclass
class Mark:
    kind: str  # deploy | errors | trace | alert
    at: datetime
    label: str
    href: str
    value: float = 0.0


@dataclass
class Timeline:
    start: datetime
    end: datetime
    alert_at: datetime
    service: str | None
    marks: list[Mark] = field(default_factory=list)
    bin_width: timedelta = timedelta(0)

    def count(self, kind: str) -> int:
        return sum(1 for m in self.marks if m.kind == kind)


def rule_window(ruleset: RuleSet) -> tuple[timedelta, timedelta]:
    """(before, after) the alert's start that the context rules read."""
    spans = [r.window for r in ruleset.enabled if r.window and r.source in CONTEXT_KINDS]
    before = max((w.before for w in spans if w), default=DEFAULT_BEFORE)
    after = max((w.after for w in spans if w), default=timedelta(0))
    return before, max(after, MIN_AFTER)


def gather(
    store: Store,
    incident: Incident,
    ruleset: RuleSet,
    link: Callable[[ContextRecord | ContextRef], str],
) -> Timeline:
    """Read the service's context in the rules' window (indexed queries, bounded)."""
    alert_at = incident.alert.starts_at
    before, after = rule_window(ruleset)
    tl = Timeline(alert_at - before, alert_at + after, alert_at, incident.service)
    tl.marks.append(Mark("alert", alert_at, f"alert {incident.alertname or ''} started", "#alerts"))
    if not incident.service:
        return tl
    service = incident.service
    start, end = tl.start, tl.end
    for rec in store.query_context(
        "deploys", start=start, end=end, service=service, limit=MAX_DEPLOYS
    ):
        what = " ".join(str(rec.fields.get(k) or "") for k in ("commit", "author")).strip()
        tl.marks.append(Mark("deploy", rec.ts, f"deploy {what}".strip(), link(rec)))
    # Only (ts, id, level) of the log lines: the bins need no more.
    levels = store.context_column(
        "logs", "level", start=start, end=end, service=service, limit=MAX_LOGS
    )
    t0 = tl.start.timestamp()
    width = ((tl.end - tl.start) / BINS).total_seconds()
    tl.bin_width = timedelta(seconds=width)
    bins: dict[int, list[tuple[float, str]]] = {}
    for ts, rid, level in levels:
        if str(level or "").upper() in ERROR_LEVELS:
            n = min(BINS - 1, int((ts - t0) / width))
            bins.setdefault(n, []).append((ts, rid))
    for n, recs in sorted(bins.items()):
        newest = max(recs, key=lambda rec: (rec[0], int(rec[1])))
        at = tl.start + tl.bin_width * n
        label = f"{len(recs)} ERROR lines from {format_ts(at)}"
        tl.marks.append(Mark("errors", at, label, link(ContextRef("logs", newest[1])), len(recs)))
    durations = store.context_column(
        "traces", "duration_ms", start=start, end=end, service=service, limit=MAX_TRACES
    )
    if durations:
        ordered = sorted(float(d or 0) for _, _, d in durations)
        p90 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]
        slow = sorted(
            (t for t in durations if float(t[2] or 0) >= max(p90, 1e-9)), key=lambda t: -float(t[2])
        )
        for _ts, rid, _d in slow[:SLOW_TRACES]:
            trace = store.get_context("traces", rid)
            if trace is not None:
                duration = float(trace.fields.get("duration_ms") or 0)
                label = f"trace {trace.fields.get('trace_id') or trace.id}: {duration:g} ms"
                tl.marks.append(Mark("trace", trace.ts, label, link(trace), duration))
    return tl


def _x(tl: Timeline, at: datetime) -> float:
    span = (tl.end - tl.start).total_seconds() or 1.0
    frac = (at - tl.start).total_seconds() / span
    return round(LEFT + max(0.0, min(1.0, frac)) * (WIDTH - LEFT - RIGHT), 1)


def _link(mark: Mark, shape: str) -> str:
    title = escape(f"{mark.label} at {format_ts(mark.at)}")
    return (
        f'<a href="{escape(mark.href)}" class="mark mark-{mark.kind}" data-kind="{mark.kind}">'
        f"<title>{title}</title>{shape}</a>"
    )


def _ticks(tl: Timeline) -> list[str]:
    out = []
    span = tl.end - tl.start
    step = next(
        (
            s
            for s in (60, 120, 300, 600, 900, 1800, 3600, 7200, 21600)
            if span.total_seconds() / s <= 8
        ),
        43200,
    )
    first = math.ceil(tl.start.timestamp() / step) * step
    t = first
    while t <= tl.end.timestamp():
        at = datetime.fromtimestamp(t, tl.start.tzinfo)
        x = _x(tl, at)
        out.append(
            f'<line class="tick" x1="{x}" y1="{TOP - 6}" x2="{x}" y2="{HEIGHT - 18}"/>'
            f'<text class="tick-label" x="{x}" y="{HEIGHT - 4}" text-anchor="middle">'
            f"{at:%H:%M}</text>"
        )
        t += step
    return out


def render_svg(tl: Timeline) -> Markup:
    """The timeline as an <svg> element (every text escaped)."""
    parts = [
        # A group, not role="img": an image's children are hidden from screen readers,
        # and every mark here is a link with its own name (its <title>).
        f'<svg class="timeline" viewBox="0 0 {WIDTH} {HEIGHT}" role="group" '
        f'aria-labelledby="timeline-title" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="timeline-title">{escape(_summary(tl))}</title>',
        *_ticks(tl),
        f'<text class="lane" x="4" y="{LANES["deploy"][0] + 14}">deploys</text>',
        f'<text class="lane" x="4" y="{LANES["errors"][0] + 60}">errors</text>',
        f'<text class="lane" x="4" y="{LANES["trace"][0] + 4}">slow</text>',
    ]
    peak = max((m.value for m in tl.marks if m.kind == "errors"), default=1.0) or 1.0
    bar = max(2.0, (WIDTH - LEFT - RIGHT) / BINS - 2)
    slowest = max((m.value for m in tl.marks if m.kind == "trace"), default=1.0) or 1.0
    for m in tl.marks:
        x = _x(tl, m.at)
        if m.kind == "deploy":
            top = LANES["deploy"][0]
            shape = (
                f'<line x1="{x}" y1="{top}" x2="{x}" y2="{HEIGHT - 18}"/>'
                f'<polygon points="{x - 7},{top} {x + 7},{top} {x},{top + 12}"/>'
            )
        elif m.kind == "errors":
            top, height = LANES["errors"]
            h = round(max(3.0, height * m.value / peak), 1)
            shape = (
                f'<rect x="{x}" y="{round(top + height - h, 1)}" width="{bar:.1f}" height="{h}"/>'
            )
        elif m.kind == "trace":
            r = round(3 + 5 * m.value / slowest, 1)
            shape = f'<circle cx="{x}" cy="{LANES["trace"][0]}" r="{r}"/>'
        else:
            shape = (
                f'<line x1="{x}" y1="{TOP - 10}" x2="{x}" y2="{HEIGHT - 18}"/>'
                f'<text x="{x + 4}" y="{TOP - 12}">alert</text>'
            )
        parts.append(_link(m, shape))
    parts.append("</svg>")
    return Markup("".join(parts))


def _summary(tl: Timeline) -> str:
    return (
        f"{_plural(tl.count('deploy'), 'deploy')}, "
        f"{_plural(int(sum(m.value for m in tl.marks if m.kind == 'errors')), 'ERROR line')} and "
        f"{_plural(tl.count('trace'), 'slow trace')} of {tl.service or 'the service'} "
        f"from {format_ts(tl.start)} to {format_ts(tl.end)}; the alert started {format_ts(tl.alert_at)}"
    )


def legend(tl: Timeline) -> Sequence[tuple[str, str]]:
    return [
        ("deploy", _plural(tl.count("deploy"), "deploy")),
        ("errors", f"ERROR lines per {int(tl.bin_width.total_seconds())} s"),
        ("trace", f"{_plural(tl.count('trace'), 'slow trace')} (the window's slowest)"),
        ("alert", "the alert started"),
    ]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"
