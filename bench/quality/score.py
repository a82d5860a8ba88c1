"""Scores from what the server stored, read through the API only (GET /api/incidents/{id}),
against the scenario's ground truth.

- deploy attribution: a `deploy.*` finding at HIGH (or CRITICAL) severity or high
  confidence blames the deploys its summary names (the commits of its evidence that the
  summary mentions). It is right when the commit is the culprit of a fault whose alerts
  the incident holds; anything else (a distractor, a routine deploy) is a false positive.
  Counted over every incident opened, merged ones included (a dependent's incident merged
  into its root keeps its findings). Recall: faults with a culprit blamed on an incident
  that held one of their alerts.
- grouping: pages per root cause = incidents a fault's alerts opened that were not merged
  away; membership precision/recall by pair counting over firing alerts (two alerts in one
  incident are a correct pair when they belong to the same fault or the same flapping
  noise alert; recall counts pairs of the same fault only).
- noise compression: firing alerts sent / incidents that paged.
- time to finding: alert POST sent until GET /api/incidents/{id} shows findings.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from itertools import combinations
from typing import Any

import httpx

from bench.quality.scenario import Scenario

BLAMING_SEVERITIES = ("high", "critical")
PAST_NOTE = "no past-incident retrieval yet (issue 16 item 3): not measured"


def pct(values: Sequence[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[max(1, math.ceil(p / 100 * len(ordered))) - 1], 2)


def ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else None


def fetch_incidents(client: httpx.Client, ids: set[str]) -> dict[str, dict[str, Any]]:
    """Every incident in `ids` and every one they were merged into."""
    out: dict[str, dict[str, Any]] = {}
    todo = sorted(ids)
    while todo:
        inc_id = todo.pop()
        if inc_id in out:
            continue
        r = client.get(f"/api/incidents/{inc_id}")
        r.raise_for_status()
        out[inc_id] = inc = r.json()
        into = (inc.get("resolution") or {}).get("merged_into")
        if into and into not in out:
            todo.append(into)
    return out


def final(incidents: dict[str, dict[str, Any]], inc_id: str) -> str:
    seen = set()
    while inc_id not in seen:
        seen.add(inc_id)
        into = (incidents[inc_id].get("resolution") or {}).get("merged_into")
        if not into:
            break
        inc_id = into
    return inc_id


def blamed_commits(inc: dict[str, Any]) -> list[str]:
    """The commits the incident's blaming deploy findings name."""
    out = []
    for f in inc.get("findings", []):
        if not f["rule"].startswith("deploy."):
            continue
        if f.get("severity") not in BLAMING_SEVERITIES and f.get("confidence") != "high":
            continue
        commits = [
            e["snapshot"]["commit"]
            for e in f.get("evidence", [])
            if "commit" in (e.get("snapshot") or {})
        ]
        named = [c for c in commits if c in f.get("summary", "")] or commits[:1]
        out += named
    return out


def score(scenario: Scenario, played: dict[str, Any], client: httpx.Client) -> dict[str, Any]:
    sent = [s for s in played["sent"] if s["incident"]]
    incidents = fetch_incidents(client, {s["incident"] for s in sent})
    merged = {i for i, inc in incidents.items() if (inc.get("resolution") or {}).get("merged_into")}
    paged = [i for i in incidents if i not in merged]
    for s in sent:
        s["final"] = final(incidents, s["incident"])
    kind_of = {f.id: f.kind if not f.recurrence_of else "recurrence" for f in scenario.faults}
    culprit = {f.id: f.culprit["commit"] for f in scenario.faults if f.culprit}
    roles: dict[str, str] = {d["commit"]: d["role"] for d in scenario.background["deploys"]}
    for f in scenario.faults:
        roles.update({d["commit"]: d["role"] for d in f.deploys})
    opener = {s["incident"]: s for s in sent if s["outcome"] == "opened"}
    members: dict[str, set[str]] = defaultdict(set)  # final incident -> groups
    touched: dict[str, set[str]] = defaultdict(set)  # group -> incidents (original and final)
    for s in sent:
        members[s["final"]].add(s["group"])
        touched[s["group"]].update({s["incident"], s["final"]})

    def kind_of_incident(inc_id: str) -> str:
        s = opener.get(inc_id)
        return "noise" if not s or s["group"].startswith("noise:") else kind_of[s["group"]]

    # deploy attribution
    per_kind: dict[str, Counter[str]] = defaultdict(Counter)
    fp_roles: Counter[str] = Counter()
    held: dict[str, set[str]] = defaultdict(set)  # incident -> groups it held, ever
    for s in sent:
        held[s["incident"]].add(s["group"])
        held[s["final"]].add(s["group"])
    for inc_id in incidents:
        k = kind_of_incident(inc_id)
        good = {culprit[g] for g in held[inc_id] if g in culprit}
        for commit in blamed_commits(incidents[inc_id]):
            if commit in good:
                per_kind[k]["tp"] += 1
            else:
                per_kind[k]["fp"] += 1
                fp_roles[roles.get(commit, "unknown")] += 1
    found = {
        g for g, c in culprit.items() if any(c in blamed_commits(incidents[i]) for i in touched[g])
    }
    for g in culprit:
        per_kind[kind_of[g]]["faults_with_culprit"] += 1
        per_kind[kind_of[g]]["found"] += g in found

    def attribution(c: Counter[str]) -> dict[str, Any]:
        return {
            "precision": ratio(c["tp"], c["tp"] + c["fp"]),
            "recall": ratio(c["found"], c["faults_with_culprit"]),
            "blaming_findings": c["tp"] + c["fp"],
            "false_positives": c["fp"],
            "faults_with_culprit": c["faults_with_culprit"],
        }

    # grouping
    pages_of: dict[str, int] = {}
    for f in scenario.faults:
        pages_of[f.id] = len(
            {
                s["incident"]
                for s in sent
                if s["group"] == f.id and s["outcome"] == "opened" and s["incident"] not in merged
            }
        )
    pairs: dict[str, Counter[str]] = defaultdict(Counter)
    for a, b in combinations(sent, 2):
        same_inc, same_group = a["final"] == b["final"], a["group"] == b["group"]
        if not same_inc and not (same_group and not a["group"].startswith("noise:")):
            continue
        kinds = {kind_of.get(a["group"], "noise"), kind_of.get(b["group"], "noise")}
        for k in (*kinds, "overall"):
            if same_inc and same_group:
                pairs[k]["tp"] += 1
            elif same_inc:
                pairs[k]["fp"] += 1
            else:
                pairs[k]["fn"] += 1

    def grouping(k: str, faults: list[str]) -> dict[str, Any]:
        c = pairs[k]
        return {
            "faults": len(faults),
            "pages_per_root_cause": ratio(sum(pages_of[f] for f in faults), len(faults)),
            "membership_precision": ratio(c["tp"], c["tp"] + c["fp"]) if c["tp"] + c["fp"] else 1.0,
            "membership_recall": ratio(c["tp"], c["tp"] + c["fn"]) if c["tp"] + c["fn"] else 1.0,
        }

    def ttf(rows: list[dict[str, Any]]) -> dict[str, Any]:
        ms = [r["ttf_ms"] for r in rows if r.get("ttf_ms") is not None]
        return {
            "n": len(ms),
            "p50": pct(ms, 50),
            "p99": pct(ms, 99),
            "missing": len(rows) - len(ms),
        }

    firing = played["sent"]
    by_kind: dict[str, Any] = {}
    for k in sorted({*kind_of.values(), "noise"}):
        faults = [f for f, fk in kind_of.items() if fk == k]
        rows = [s for s in firing if kind_of.get(s["group"], "noise") == k]
        by_kind[k] = {
            "alerts": len(rows),
            "deploy_attribution": attribution(per_kind[k]),
            "grouping": grouping(k, faults) if faults else None,
            "time_to_finding_ms": ttf(rows),
        }
    total: Counter[str] = Counter()
    for c in per_kind.values():
        total.update(c)
    return {
        "deploy_attribution": {**attribution(total), "false_positive_deploys": dict(fp_roles)},
        "grouping": grouping("overall", list(kind_of)),
        "noise": {
            "alerts_in": len(firing),
            "incidents_opened": len(paged),
            "merged": len(merged),
            "compression": ratio(len(firing), len(paged)),
        },
        "time_to_finding_ms": ttf(firing),
        "past_incidents": {"recall_at_3": None, "false_citation_rate": None, "note": PAST_NOTE},
        "by_kind": by_kind,
    }
