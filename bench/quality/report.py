"""The quality table (Markdown), docs/QUALITY.md's results section and quality.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

BEGIN, END = "<!-- quality:results:begin -->", "<!-- quality:results:end -->"
KIND_ORDER = (
    "bad_deploy",
    "upstream_outage",
    "oom_crashloop",
    "latency_regression",
    "leader_thrash",
    "recurrence",
    "noise",
)


def _f(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.3f}".rstrip("0").rstrip(".") if v < 100 else f"{v:.0f}"
    return str(v)


def markdown(result: dict[str, Any]) -> str:
    da, gr, no, tt = (
        result["deploy_attribution"],
        result["grouping"],
        result["noise"],
        result["time_to_finding_ms"],
    )
    lines = [
        f"Seed {result['seed']}, {result['services']} services, {result['faults']} faults "
        f"({result['faults_per_kind']} live per kind, distractor rate {result['distractor_rate']}), "
        f"{no['alerts_in']} firing alerts; live faults started over {result['live_window_s']:.0f} s, "
        f"up to {result['max_faults_open']} open at once; `{result['command']}`; {result['duration_seconds']} s.",
        "",
        "| Score | Value |",
        "|---|---|",
        f"| deploy attribution precision | {_f(da['precision'])} ({da['blaming_findings']} blaming findings, {da['false_positives']} wrong: {', '.join(f'{k} {v}' for k, v in sorted(da['false_positive_deploys'].items())) or 'none'}) |",
        f"| deploy attribution recall | {_f(da['recall'])} (of {da['faults_with_culprit']} faults caused by a deploy) |",
        f"| pages per root cause | {_f(gr['pages_per_root_cause'])} |",
        f"| incident membership precision | {_f(gr['membership_precision'])} |",
        f"| incident membership recall | {_f(gr['membership_recall'])} |",
        f"| noise compression (alerts in ÷ incidents opened) | {_f(no['compression'])} ({no['alerts_in']} ÷ {no['incidents_opened']}; {no['merged']} merged into a root) |",
        f"| time to finding p50 / p99 (ms) | {_f(tt['p50'])} / {_f(tt['p99'])} (n={tt['n']}, none within 5 s: {tt['missing']}) |",
        "| past incidents recall@3 / false citation rate | — / — (no past-incident retrieval yet) |",
        "",
        "| Fault kind | Faults | Alerts | Blaming findings (wrong) | Attribution recall | Pages per root cause | Membership P / R | Time to finding p50 / p99 (ms) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for k in KIND_ORDER:
        row = result["by_kind"].get(k)
        if not row:
            continue
        a, g, t = row["deploy_attribution"], row["grouping"] or {}, row["time_to_finding_ms"]
        lines.append(
            f"| {k} | {g.get('faults', '—')} | {row['alerts']} | {a['blaming_findings']} ({a['false_positives']}) | "
            f"{_f(a['recall'])} | {_f(g.get('pages_per_root_cause'))} | "
            f"{_f(g.get('membership_precision'))} / {_f(g.get('membership_recall'))} | {_f(t['p50'])} / {_f(t['p99'])} |"
        )
    return "\n".join(lines)


def write_json(path: Path, result: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")


def write_docs(path: Path, table: str) -> None:
    """Replace the section between the markers (the page's prose stays as written)."""
    text = path.read_text()
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    if not rest:
        raise ValueError(f"{path} has no {BEGIN} marker")
    path.write_text(f"{head}{BEGIN}\n{table}\n{END}{tail}")
