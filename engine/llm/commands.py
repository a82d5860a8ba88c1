"""Where a command in a narration may come from: the literal text of the rules' templates.

Prose may repeat a command only when a rule wrote it. The command must appear in the
rendered summary or suggestion of one of the incident's findings, its command word must
be literal text of that finding's template, and every value the rule substituted into it
must be one plain token (a service name, a commit, an incident id): never words, pipes,
quotes or redirections. A command that is only in data an alert sender or a log writer
controls (an annotation, a context record, a log pattern or a regex capture quoted into a
summary) grounds nothing, however faithfully the prose repeats it.

Which characters of a rendered text are literal is found by aligning it with its template:
each stretch of the template between `{% %}` tags is a sequence of literal chunks with
`{{ }}` slots between them; what lies between the chunks, and whatever no stretch accounts
for, counts as a value.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass

from engine.model import Incident
from engine.rules.ruleset import RuleSet

# rule id -> {"summary": template source, "suggestion": template source}
Templates = Mapping[str, Mapping[str, str]]
_TAG = re.compile(r"({{.*?}}|{%.*?%}|{#.*?#})", re.DOTALL)
_PLAIN = re.compile(r"[A-Za-z0-9._\-/:@%+=,~]+")
MAX_TEXT = 8_000  # characters: a longer rendered text is not aligned (no command from it)


@dataclass(frozen=True)
class Source:
    """A rendered template text and, per character, whether the template wrote it."""

    text: str
    literal: bytes  # 1: literal text of the template; 0: a value or unaccounted for


@functools.lru_cache(maxsize=256)
def _stretches(source: str) -> tuple[tuple[re.Pattern[str], ...], ...]:
    """Per stretch of `source` between block tags, its literal chunks in order (a slot lies
    between two chunks), each a pattern in which any run of whitespace matches any other."""
    stretches: list[list[str]] = [[]]
    for i, piece in enumerate(_TAG.split(source)):
        if i % 2 == 0:
            if piece.strip():
                stretches[-1].append(piece)
        elif not piece.startswith("{{"):  # {% %} or {# #}: what follows may not follow
            stretches.append([])
    return tuple(
        tuple(
            re.compile(
                "".join(r"\s*" if w.isspace() else re.escape(w) for w in re.split(r"(\s+)", c))
            )
            for c in chunks
        )
        for chunks in stretches
        if chunks
    )


def align(text: str, source: str) -> Source:
    """Which characters of `text` (rendered from the template `source`) are literal.

    Each literal chunk is matched at its first occurrence after the previous one: never
    backtracking, so a value crafted to repeat the template's words costs linear time (and
    can at most make a value look like the template's own text)."""
    literal = bytearray(len(text))
    if len(text) <= MAX_TEXT:
        for chunks in _stretches(source):
            start = 0
            while start <= len(text):
                spans, pos = [], start
                for chunk in chunks:
                    m = chunk.search(text, pos)
                    if m is None:
                        break
                    spans.append(m.span())
                    pos = m.end()  # a chunk has a non-space character: pos moves on
                if len(spans) < len(chunks):
                    break  # a later start finds each chunk no earlier: none would match
                for a, b in spans:
                    literal[a:b] = b"\x01" * (b - a)
                start = pos
    return Source(text, bytes(literal))


def sources_of(incident: Incident, templates: Templates) -> list[Source]:
    """The findings' rendered summaries and suggestions, aligned with their templates."""
    out = []
    for finding in incident.findings:
        sources = templates.get(finding.rule_id) or {}
        for name, text in (("summary", finding.summary), ("suggestion", finding.suggestion)):
            source = sources.get(name)
            if source and text:
                out.append(align(text, source))
    return out


def command_grounded(command: str, sources: list[Source]) -> bool:
    """Does `command` appear in a rule's rendered text, written by the template, with only
    plain single-token values substituted into it?"""
    tokens = command.split()
    if not tokens:
        return False
    pattern = re.compile(
        r"(?<![\w-])" + r"\s+".join(re.escape(t) for t in tokens) + r"(?![\w-])", re.IGNORECASE
    )
    for source in sources:
        for m in pattern.finditer(source.text):
            if _written_by_template(source, m.start(), m.end(), len(tokens[0])):
                return True
    return False


def _written_by_template(source: Source, start: int, end: int, head: int) -> bool:
    if not all(source.literal[start : start + head]):
        return False  # the command word itself came from a value
    i = start
    while i < end:
        if source.literal[i]:
            i += 1
            continue
        j = i
        while j < end and not source.literal[j]:
            j += 1
        if not _PLAIN.fullmatch(source.text[i:j]):
            return False  # a value that adds words, a pipe, a quote...
        i = j
    return True


def rule_templates(rules: RuleSet) -> dict[str, dict[str, str]]:
    """`Templates` of a rule set: each enabled rule's summary and suggestion sources."""
    return {
        rule.id: {k: v for k, v in rule.templates.items() if k in ("summary", "suggestion")}
        for rule in rules.enabled
    }


@functools.cache
def shipped_templates() -> dict[str, dict[str, str]]:
    """The shipped rules' templates: what grounds commands when no rule set is given."""
    from engine.paths import rules_dir
    from engine.rules.loader import load_ruleset

    ruleset, _ = load_ruleset([rules_dir()], render_check=False)
    return rule_templates(ruleset)
