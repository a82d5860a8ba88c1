"""The concrete claims in a piece of prose: what the grounding check must find in the incident.

`extract_claims(text)` walks the prose once per kind of claim, most specific first, and
blanks out what it consumed so a command's commit is not read again as a number.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

SEVERITY_WORDS = ("info", "low", "medium", "high", "critical")
COMMAND_WORDS = (
    "kubectl", "curl", "wget", "systemctl", "journalctl", "docker", "podman", "helm", "git",
    "ssh", "scp", "sudo", "rm", "psql", "mysql", "redis-cli", "aws", "gcloud", "terraform",
    "pkill", "killall", "iptables", "nslookup", "traceroute", "tcpdump", "apt-get", "yum",
    "pip", "npm", "ansible", "argocd", "openssl", "crontab", "chmod", "chown",
    "bash", "sh", "zsh", "python", "python3", "perl", "nc", "ncat", "powershell", "eval",
)  # fmt: skip


# Hyphenated words of plain English: not service names.
def words(text: str) -> frozenset[str]:
    return frozenset(text.split())


ENGLISH_COMPOUNDS = words(
    "on-call follow-up follow-ups roll-back rolled-back well-known read-only long-running "
    "real-time time-out built-in third-party up-to-date re-run re-deploy self-hosted "
    "so-called non-zero user-facing customer-facing and/or e-mail x-ray p99-latency "
    "end-to-end per-service top-level low-level high-level error-rate"
)
STOPWORDS = words(
    "a an the this that these those its it their our your his her same other another each "
    "every any all some which what who whose one owning owner owners responsible affected "
    "default relevant on-call is was were be been are has have had will would should could "
    "may might must can to for of in on at by from with and or but not no as if so than "
    "then also still just only already now there here they we you he she them us "
    "alert alerts incident incidents"
)
NUMBER_WORDS = {
    "a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
    "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "fifteen": 15,
    "twenty": 20, "thirty": 30, "forty": 40, "forty-five": 45, "fifty": 50, "sixty": 60,
    "ninety": 90,
}  # fmt: skip
_UNITS = (
    (r"milliseconds?|msecs?|ms", 0.001),
    (r"seconds?|secs?|s", 1.0),
    (r"minutes?|mins?|m", 60.0),
    (r"hours?|hrs?|h", 3600.0),
    (r"days?|d", 86400.0),
)
_UNIT_RE = "|".join(f"(?:{u})" for u, _ in _UNITS)
_NUM_WORD_RE = "|".join(sorted(NUMBER_WORDS, key=len, reverse=True))
_LONG_UNITS = r"milliseconds?|seconds?|minutes?|hours?|days?"
_PIECE = (
    rf"(?:(?:\d{{1,3}}(?:,\d{{3}})+|\d+(?:\.\d+)?)\s?(?:{_UNIT_RE})"
    rf"|(?:{_NUM_WORD_RE})\s+(?:{_LONG_UNITS}))(?![\w-])"
)
_COMPACT = r"(?:\d+(?:ms|[dhms]))+(?![\w-])"
DURATION_RE = re.compile(
    rf"(?<![\w.,-])(?:{_COMPACT}|{_PIECE}(?:\s+(?:and\s+)?{_PIECE})*)", re.IGNORECASE
)
_PIECE_RE = re.compile(rf"(?<![\w.,-])({_PIECE})", re.IGNORECASE)
_SPLIT_PIECE = re.compile(rf"([\d.,]+|[a-z-]+)\s*({_UNIT_RE})$", re.IGNORECASE)
NUMBER_RE = re.compile(r"(?<![\w.,-])(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(\s?%|\s?percent)?(?![\w])")
QUOTE_RE = re.compile(r"[\"\u201c]([^\"\u201c\u201d\n]{1,300})[\"\u201d]")
_BACKTICKS = re.compile(r"```[^\n]*\n(.*?)```|`([^`\n]+)`", re.DOTALL)
_CMD_RE = re.compile(
    rf"(?:^|(?<=[\s(\"']))(?:\$\s+)?(?:{'|'.join(re.escape(w) for w in COMMAND_WORDS)})"
    r"(?![\w-])|^\s*\$\s+(?=\S)",
    re.MULTILINE,
)
_COMPOUND = re.compile(
    r"(?<![\w])(?!\d+(?:[.,]\d+)+(?![\w./:@-]))[A-Za-z0-9]+(?:[-_./:@][A-Za-z0-9]+)+"
)
_HEX = re.compile(r"(?<![\w-])(?=[0-9a-f]*[a-f])(?=[0-9a-f]*\d)[0-9a-f]{7,40}(?![\w-])", re.I)
_MIXED_ID = re.compile(r"(?<![\w-])(?=[A-Za-z]*\d)(?=\d*[A-Za-z])[A-Za-z0-9]{6,}(?![\w-])")
_CAMEL = re.compile(r"(?<![\w-])[A-Z][a-z0-9]+(?:[A-Z][a-z0-9]*)+(?![\w-])")
_SEVERITY = re.compile(rf"(?<![\w-])({'|'.join(SEVERITY_WORDS)})(?![\w])", re.IGNORECASE)
_SEV_COMPOUND = re.compile(
    rf"^({'|'.join(SEVERITY_WORDS)})-(severity|confidence|priority|impact|risk)$", re.I
)
_ADJACENT = re.compile(
    r"(?<![\w-])([A-Za-z][\w-]*)\s+(?:team|service|squad)\b"
    r"|\b(?:team|service|squad|owned by|routed to|owner is)\s+([A-Za-z][\w-]*)",
    re.IGNORECASE,
)
_TECHNICAL = re.compile(r"[/\-=:.$~*|<>'\"{}\[\]@_\d]")


@dataclass(frozen=True)
class Claim:
    kind: str  # command quote id hex time duration number percent severity name
    text: str  # as written in the prose
    value: float | str  # normalised: seconds, a number, or lower-case text
    unit: float = 1.0  # durations and numbers: the precision the prose wrote


def duration_seconds(text: str) -> tuple[float, float]:
    """`1h30m`, `10 minutes`, `1 hour and 30 minutes` -> (seconds, smallest unit written)."""
    pieces = re.findall(r"(\d+)(ms|[dhms])", text) if re.fullmatch(_COMPACT, text) else []
    if not pieces:
        pieces = [_SPLIT_PIECE.match(m.group(1)).groups() for m in _PIECE_RE.finditer(text)]  # type: ignore[union-attr]
    total, smallest = 0.0, float("inf")
    for num, unit in pieces:
        size = next(s for u, s in _UNITS if re.fullmatch(u, unit, re.IGNORECASE))
        num = num.replace(",", "")
        value = float(NUMBER_WORDS.get(num.lower(), 0) or num)
        decimals = len(num.split(".")[1]) if "." in num else 0
        total += value * size
        smallest = min(smallest, size * 10**-decimals)
    return total, smallest


def numbers_in(text: str) -> Iterator[float]:
    """Every number written in `text`, however it is embedded (for the incident's side)."""
    for m in re.finditer(r"\d+(?:,\d{3})*(?:\.\d+)?", text):
        yield float(m.group().replace(",", ""))


class _Prose:
    """The text being read, with consumed spans blanked out (offsets stay put)."""

    def __init__(self, text: str):
        self.text = text
        self.claims: list[Claim] = []

    def blank(self, start: int, end: int) -> None:
        self.text = self.text[:start] + " " * (end - start) + self.text[end:]

    def take(self, pattern: re.Pattern[str]) -> Iterator[re.Match[str]]:
        for m in list(pattern.finditer(self.text)):
            yield m
            self.blank(m.start(), m.end())

    def add(self, kind: str, text: str, value: float | str, unit: float = 1.0) -> None:
        self.claims.append(Claim(kind, text.strip(), value, unit))


def _command_claim(line: str) -> str:
    """The part of an inline command that must match: up to its last technical token, and at
    least the command and two more words (`kubectl delete namespace`)."""
    tokens: list[str] = []
    for raw in line.split():
        token = raw.rstrip(".,;:!?)")
        if token:
            tokens.append(token)
        if token != raw or raw.endswith(("'", '"')):
            break
    last = max((i for i, t in enumerate(tokens) if _TECHNICAL.search(t)), default=0)
    return " ".join(tokens[: max(last + 1, min(3, len(tokens)))])


def _compound(p: _Prose, token: str) -> None:
    low = token.lower()
    parts = re.split(r"[-_./:@]", low)
    if re.fullmatch(r"[\d.,]+", low) or all(len(x) <= 1 for x in parts):
        return  # a decimal number (read later) or an abbreviation such as e.g.
    if low in ENGLISH_COMPOUNDS:
        return
    sev = _SEV_COMPOUND.match(low)
    if sev:
        p.add("severity", token, sev.group(1))
    elif re.fullmatch(r"[\d:]+", low):
        p.add("time", token, low)
    else:
        p.add("id", token, low)


def extract_claims(text: str, known_names: frozenset[str] = frozenset()) -> list[Claim]:
    p = _Prose(text)
    for m in p.take(_BACKTICKS):
        for line in (m.group(1) or m.group(2) or "").splitlines():
            if line.strip():
                p.add("command", line, " ".join(line.split()).lower())
    for m in p.take(QUOTE_RE):  # a quotation of 4+ words must be a verbatim quote
        if len(m.group(1).split()) >= 4:
            p.add("quote", m.group(1), " ".join(m.group(1).split()).lower())
            # A command inside a quotation is still a command: quoting data is no licence
            # to hand on-call a command from it.
            for cm in _CMD_RE.finditer(m.group(1)):
                cmd = _command_claim(m.group(1)[cm.start() :].strip().removeprefix("$").strip())
                if cmd:
                    p.add("command", cmd, cmd.lower())
        else:
            p.text = p.text[: m.start()] + m.group(1).center(len(m.group())) + p.text[m.end() :]
    for m in list(_CMD_RE.finditer(p.text)):
        if not p.text[m.start() : m.end()].strip():
            continue  # inside a command already read
        line = p.text[m.start() :].split("\n", 1)[0]
        cmd = _command_claim(line.strip().removeprefix("$").strip())
        if cmd:
            last = cmd.split()[-1]
            p.blank(m.start(), p.text.index(last, m.start()) + len(last))
            p.add("command", cmd, cmd.lower())
    for m in p.take(_COMPOUND):
        _compound(p, m.group())
    for kind, pattern in (("hex", _HEX), ("id", _MIXED_ID), ("id", _CAMEL)):
        for m in p.take(pattern):
            if kind == "id" and DURATION_RE.fullmatch(m.group()):
                continue
            p.add(kind, m.group(), m.group().lower())
    for m in p.take(DURATION_RE):
        seconds, unit = duration_seconds(m.group())
        p.add("duration", m.group(), seconds, unit)
    for m in p.take(NUMBER_RE):
        whole, frac, pct = m.groups()
        value = float(whole.replace(",", "") + (frac or ""))
        unit = 10 ** -(len(frac) - 1) if frac else 1.0
        p.add("percent" if pct else "number", m.group(), value, unit)
    for m in p.take(_SEVERITY):
        p.add("severity", m.group(), m.group().lower())
    for m in _ADJACENT.finditer(p.text):
        word = (m.group(1) or m.group(2) or "").lower()
        if word and word not in STOPWORDS and word not in ENGLISH_COMPOUNDS:
            p.add("name", word, word)
    for word in re.findall(r"[\w-]+", p.text):
        if word.lower() in known_names:
            p.add("name", word, word.lower())
    return p.claims
