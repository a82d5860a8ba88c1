"""The grounding check: prose is used only when every concrete claim in it is in the incident.

The incident grounds a claim when the claim appears in its title, ids, team, alert labels
and annotations, findings (summary, suggestion, outputs) or evidence (paths, snapshots),
after sensible normalisation: `3 minutes` = `3m` = an age of 180 s, `86%` = a share of
0.857, `2,750` = `2750.0`, a 7-character commit prefix = the full SHA.

Commands are held to more: only the literal text of the rules' templates grounds one (with
the values the rule substituted), never data an alert sender or log writer controls
(engine.llm.commands).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from engine.llm.claims import (
    DURATION_RE,
    QUOTE_RE,
    SEVERITY_WORDS,
    STOPWORDS,
    Claim,
    duration_seconds,
    extract_claims,
    numbers_in,
    words,
)
from engine.llm.commands import Source, Templates, command_grounded, shipped_templates, sources_of
from engine.model import Incident
from engine.serialize import incident_to_dict
from engine.timeutil import TimeFormatError, parse_ts

# Causal assertions: the rules never name a root cause, so prose that does must build it
# only from what the findings themselves say (quoted data inside a summary does not count).
_CAUSE = re.compile(
    r"\b(?:root[- ]cause|caused by|because of|due to|culprit|(?:is|was|be) the cause|"
    r"cause (?:is|was)|triggered by|resulted from|stems? from|responsible for)\b",
    re.IGNORECASE,
)
_CAUSE_WORDS = words(
    "root cause caused causes because due culprit triggered resulted stem stems responsible "
    "likely probably possibly apparently appears seems suspect suspected behind issue "
    "problem outage failure failures"
)
_QUOTED = re.compile(r"\"[^\"]*\"")
_WORD = re.compile(r"[A-Za-z0-9][\w-]*")
_PERCENT = re.compile(r"(\d+(?:,\d{3})*(?:\.\d+)?)\s?%")
_HEX_TOKEN = re.compile(r"(?<![0-9a-z])[0-9a-f]{7,}(?![0-9a-z])")


@dataclass
class Facts:
    """What one incident grounds, normalised for quick lookups."""

    corpus: str  # every string of the incident, lower case, whitespace collapsed
    words: set[str] = field(default_factory=set)
    rule_words: set[str] = field(default_factory=set)  # what the rules wrote themselves
    numbers: list[float] = field(default_factory=list)  # as written (0.857, 2750, 5)
    percents: list[float] = field(default_factory=list)  # 86 for a share of 0.857, 5 for 5%
    hexes: list[str] = field(default_factory=list)  # SHAs, trace ids, fingerprints
    durations: list[float] = field(default_factory=list)
    severities: set[str] = field(default_factory=set)
    commands: list[Source] = field(default_factory=list)  # what may ground a command


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from _strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, bool) or value is None:
        return
    else:
        yield str(value)


def _timestamps(strings: Iterable[str]) -> list[float]:
    out = []
    for s in strings:
        if re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:.]+(?:Z|[+-]\d\d:\d\d)", s):
            with contextlib.suppress(TimeFormatError):
                out.append(parse_ts(s).timestamp())
    return out


def facts_of(incident: Incident, templates: Templates | None = None) -> Facts:
    """What `incident` grounds; `templates` (rule id -> its summary and suggestion sources,
    default: the shipped rules') say which text of the findings a rule wrote itself."""
    data = incident_to_dict(incident)
    data.pop("narration", None)
    strings = list(_strings(data))
    corpus = " ".join(" ".join(strings).lower().split())
    facts = Facts(corpus=corpus, words=set(_WORD.findall(corpus)))
    nums = {float(n) for s in strings for n in numbers_in(s)}
    nums |= {float(len(incident.findings)), float(incident.repeat_count)}
    nums |= {float(len(f.evidence)) for f in incident.findings}
    written_pct = {float(m.replace(",", "")) for s in strings for m in _PERCENT.findall(s)}
    facts.numbers = sorted(nums | {p / 100 for p in written_pct})
    facts.percents = sorted(nums | {n * 100 for n in nums if 0 < n <= 1})
    facts.hexes = sorted(set(_HEX_TOKEN.findall(corpus)))
    durs = {duration_seconds(m.group())[0] for s in strings for m in DURATION_RE.finditer(s)}
    for f in incident.findings:  # `*_ms` fields of evidence are durations too
        for e in f.evidence:
            for k, v in e.snapshot.items():
                if k.endswith("_ms") and isinstance(v, int | float):
                    durs.add(v / 1000)
    stamps = _timestamps(strings)
    starts = incident.alert.starts_at.timestamp()
    durs |= {abs(t - starts) for t in stamps} | {
        abs(t - incident.opened_at.timestamp()) for t in stamps
    }
    facts.durations = sorted(durs)
    facts.severities = {incident.severity.word}
    facts.severities |= {f.severity.word for f in incident.findings}
    facts.severities |= {f.confidence.word for f in incident.findings}
    alert_text = " ".join([incident.title, *_strings(incident.alert.labels)])
    alert_text += " " + " ".join(_strings(incident.alert.annotations))
    facts.severities |= set(_WORD.findall(alert_text.lower())) & set(SEVERITY_WORDS)
    authored = [f.summary + " " + f.suggestion for f in incident.findings]
    authored += [f.rule_id.replace(".", " ").replace("_", " ") for f in incident.findings]
    facts.rule_words = set(_WORD.findall(_QUOTED.sub(" ", " ".join(authored)).lower()))
    facts.commands = sources_of(incident, shipped_templates() if templates is None else templates)
    return facts


def _in_corpus(text: str, corpus: str) -> bool:
    needle = " ".join(text.lower().split())
    return bool(needle) and re.search(rf"(?<![\w]){re.escape(needle)}(?![\w])", corpus) is not None


def _near(value: float, candidates: list[float], unit: float) -> bool:
    tolerance = unit / 2 + 1e-9
    return any(abs(value - c) <= max(tolerance, 0.02 * c if unit >= 60 else 0) for c in candidates)


def grounded(claim: Claim, facts: Facts) -> bool:
    v = claim.value
    if claim.kind == "command":
        return command_grounded(claim.text, facts.commands)
    if claim.kind == "quote":
        return " ".join(str(v).split()) in facts.corpus
    if claim.kind == "hex":
        return any(h.startswith(str(v)) for h in facts.hexes)
    if claim.kind == "time":  # 11:59 inside 2026-01-01T11:59:00Z
        return re.search(rf"{re.escape(str(v))}(?!\d)", facts.corpus) is not None
    if claim.kind == "id":  # error-spike names logs.error_spike
        forms = {str(v), str(v).replace("-", "_"), str(v).replace("_", "-")}
        return any(_in_corpus(f, facts.corpus) for f in forms)
    if claim.kind == "name":
        return str(v) in facts.words or _in_corpus(str(v), facts.corpus)
    if claim.kind == "severity":
        return str(v) in facts.severities
    if claim.kind == "duration":
        return _near(float(v), facts.durations, claim.unit)
    if claim.kind == "percent":
        return _near(float(v), facts.percents, claim.unit)
    return _near(float(v), facts.numbers, claim.unit)


def causal_claims(text: str, facts: Facts) -> list[str]:
    """Causal sentences built from anything the findings do not say themselves."""
    out = []
    prefixes = {w[:5] for w in facts.rule_words}
    for sentence in re.split(r"(?<=[.!?])\s+|\n", QUOTE_RE.sub(" ", text)):
        m = _CAUSE.search(sentence)
        if not m:
            continue
        content = {w.lower() for w in _WORD.findall(sentence)} - STOPWORDS - _CAUSE_WORDS
        if any(len(w) >= 3 and w[:5] not in prefixes for w in content):
            out.append(" ".join(sentence[m.start() :].split())[:60].rstrip(" .,;:"))
    return out


@dataclass(frozen=True)
class Verdict:
    ok: bool
    ungrounded: tuple[str, ...] = ()  # the failing claims, as written in the prose

    @property
    def reason(self) -> str:
        return f'ungrounded "{self.ungrounded[0]}"' if self.ungrounded else ""


def check(
    text: str,
    incident: Incident,
    known_names: Iterable[str] = (),
    facts: Facts | None = None,
    templates: Templates | None = None,
) -> Verdict:
    """Is every concrete claim of `text` grounded in `incident`? `templates`: the rules'
    template sources (see `facts_of`)."""
    facts = facts or facts_of(incident, templates)
    names = frozenset(n.lower() for n in known_names)
    bad = [c.text for c in extract_claims(text, names) if not grounded(c, facts)]
    bad += causal_claims(text, facts)
    return Verdict(ok=not bad, ungrounded=tuple(dict.fromkeys(bad)))
