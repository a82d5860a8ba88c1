"""`incident-pilot incidents list|show|resolve` and `incident-pilot deliveries list|retry`:
a running server's incidents and deliveries from a terminal, over its JSON API.

The server is `--url` or INCIDENT_PILOT_URL (default http://127.0.0.1:9099), the bearer
token `--token` or INCIDENT_PILOT_API_TOKEN. Exit status: 0 done, 1 the server refused or
could not be reached (one line on stderr), 2 a usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from engine.client.api import DEFAULT_URL, TOKEN_ENV, URL_ENV, ApiClient, ApiError
from engine.links import incident_url
from engine.narrate import printable, render_text
from engine.timeutil import (
    TimeFormatError,
    format_duration,
    format_ts,
    is_duration,
    parse_duration,
    parse_ts,
    utcnow,
)

MAX_TITLE = 60
MAX_ERROR = 60


def _since(text: str) -> str:
    """--since: RFC 3339, or a duration meaning that long ago (`2h`)."""
    try:
        if is_duration(text):
            return format_ts(utcnow() - parse_duration(text))
        return format_ts(parse_ts(text))
    except TimeFormatError as exc:
        raise argparse.ArgumentTypeError(f"{exc} (or a duration such as 2h)") from None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number above 0")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value <= 3600:  # also refuses nan and inf
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds from 0 to 3600")
    return value


def _server_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--url",
        default=os.environ.get(URL_ENV) or DEFAULT_URL,
        help=f"the server (default {DEFAULT_URL}) [env {URL_ENV}]",
    )
    p.add_argument(
        "--token",
        default=os.environ.get(TOKEN_ENV) or None,
        help="bearer token: read scope to list and show, admin to resolve and retry; prefer "
        f"the variable, a command line is visible to other users [env {TOKEN_ENV}]",
    )
    p.add_argument(
        "--timeout", type=_seconds, default=10.0, help="seconds to wait for the server (default 10)"
    )


def _json_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the API's JSON answer")


def add_client_commands(sub: Any) -> None:
    """The `incidents` and `deliveries` subcommands, on the top-level subparsers."""
    inc = sub.add_parser(
        "incidents",
        help="list, show and resolve a running server's incidents",
        description="A running server's incidents, over its API.",
    )
    inc_sub = inc.add_subparsers(dest="action", metavar="ACTION", required=True)
    ls = inc_sub.add_parser("list", help="recent incidents as a table, newest first")
    ls.add_argument("--status", choices=("open", "resolved"))
    ls.add_argument(
        "--severity", help="one or more of info, low, medium, high, critical, comma-separated"
    )
    ls.add_argument("--service", help="exactly this service")
    ls.add_argument("--team", help="exactly this team")
    ls.add_argument(
        "--since", type=_since, help="opened at or after: RFC 3339, or a duration ago (2h)"
    )
    ls.add_argument(
        "--search",
        metavar="WORDS",
        help="text search: every word starts a word of the id, title, team or a label value",
    )
    ls.add_argument("--limit", type=_positive, default=50, help="at most this many (default 50)")
    ls.add_argument("--cursor", help="the next page: the cursor the previous page printed")
    _json_option(ls)
    _server_options(ls)
    show = inc_sub.add_parser(
        "show", help="one incident: findings, suggestions and evidence, as stdout prints it"
    )
    show.add_argument("id", metavar="ID")
    _json_option(show)
    _server_options(show)
    res = inc_sub.add_parser("resolve", help="resolve an incident by hand (admin scope)")
    res.add_argument("id", metavar="ID")
    res.add_argument("--note", help="why, kept with the incident (e.g. 'rolled back a39bf2c')")
    _json_option(res)
    _server_options(res)

    dlv = sub.add_parser(
        "deliveries",
        help="list a running server's deliveries, retry a dead one",
        description="A running server's outbox: what was sent to which sink, over its API.",
    )
    dlv_sub = dlv.add_subparsers(dest="action", metavar="ACTION", required=True)
    dls = dlv_sub.add_parser("list", help="deliveries as a table, newest first")
    dls.add_argument(
        "--status",
        help="dead (the API's default), pending, sending, delivered, a comma-separated list, "
        "or all",
    )
    dls.add_argument("--incident", metavar="ID", help="of this incident")
    dls.add_argument("--sink", help="to this sink (its name in the configuration)")
    dls.add_argument("--limit", type=_positive, default=50, help="at most this many (default 50)")
    dls.add_argument(
        "--before", metavar="ID", help="older than this delivery id (the next page of a list)"
    )
    _json_option(dls)
    _server_options(dls)
    retry = dlv_sub.add_parser("retry", help="send a dead delivery again (admin scope)")
    retry.add_argument("id", metavar="ID")
    _json_option(retry)
    _server_options(retry)


# --- output ------------------------------------------------------------------------


def _cut(value: Any, width: int) -> str:
    text = " ".join(str(printable("" if value is None else value)).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Columns as wide as their widest cell; the last column is not padded."""
    cells = [[str(h) for h in headers], *[[str(c) for c in r] for r in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        padded = [c.ljust(w) for c, w in zip(row[:-1], widths, strict=False)]
        lines.append("  ".join([*padded, row[-1]]).rstrip())
    return "\n".join(lines) + "\n"


def _age(opened_at: Any) -> str:
    """How long ago, to the second (`3m12s`); `-` when the time is unreadable."""
    try:
        seconds = (utcnow() - parse_ts(str(opened_at))).total_seconds()
    except TimeFormatError:
        return "-"
    return format_duration(seconds) if seconds >= 1 else "0s"


def incidents_table(incidents: Sequence[dict[str, Any]]) -> str:
    rows = [
        (
            _cut(i.get("id"), 40),
            _cut(i.get("status"), 10),
            _cut(i.get("severity"), 10),
            _cut(i.get("service") or "-", 30),
            _cut(i.get("team") or "-", 20),
            _age(i.get("opened_at")),
            1 + int(i.get("attached_count") or 0),
            _cut(i.get("title"), MAX_TITLE),
        )
        for i in incidents
    ]
    headers = ("ID", "STATUS", "SEVERITY", "SERVICE", "TEAM", "AGE", "ALERTS", "TITLE")
    return table(headers, rows)


def deliveries_table(deliveries: Sequence[dict[str, Any]]) -> str:
    rows = [
        (
            _cut(d.get("id"), 20),
            _cut(d.get("incident"), 40),
            _cut(d.get("sink"), 20),
            _cut(d.get("event"), 10),
            _cut(d.get("status"), 10),
            _cut(d.get("attempts"), 8),
            _cut(d.get("last_error") or "-", MAX_ERROR),
        )
        for d in deliveries
    ]
    headers = ("ID", "INCIDENT", "SINK", "EVENT", "STATUS", "ATTEMPTS", "LAST ERROR")
    return table(headers, rows)


# --- the commands --------------------------------------------------------------------


def _out(text: str) -> None:
    sys.stdout.write(text)


def _incidents(api: ApiClient, args: argparse.Namespace) -> dict[str, Any]:
    if args.action == "list":
        names = ("status", "severity", "service", "team", "since", "limit", "cursor")
        filters = {k: getattr(args, k) for k in names}
        filters["q"] = args.search
        answer = api.list_incidents(filters)
        if not args.json:
            found = answer.get("incidents") or []
            _out(incidents_table(found) if found else "no incidents\n")
            if answer.get("next_cursor"):
                _out(f"more: --cursor {printable(answer['next_cursor'])}\n")
        return answer
    if args.action == "show":
        incident = api.get_incident(args.id)
        if not args.json:
            colour = sys.stdout.isatty()
            link = incident_url(api.url, str(incident.get("id", args.id)))
            # The words stdout uses: an unchanged incident prints exactly as it did there.
            event = "resolved" if incident.get("status") == "resolved" else "opened"
            _out(render_text(incident, event, colour=colour, link=link))
        return incident
    answer = api.resolve_incident(args.id, args.note)
    if not args.json:
        incident = answer.get("incident") or {}
        done = "resolved" if answer.get("resolved") else "was already resolved"
        when = incident.get("resolved_at") or ""
        _out(f"{printable(incident.get('id', args.id))} {done}{' at ' + when if when else ''}\n")
    return answer


def _deliveries(api: ApiClient, args: argparse.Namespace) -> dict[str, Any]:
    if args.action == "list":
        filters = {k: getattr(args, k) for k in ("status", "incident", "sink", "limit", "before")}
        answer = api.list_deliveries(filters)
        if not args.json:
            found = answer.get("deliveries") or []
            _out(deliveries_table(found) if found else "no deliveries\n")
        return answer
    answer = api.retry_delivery(args.id)
    if not args.json:
        d = answer.get("delivery", answer)
        _out(
            f"delivery {printable(d.get('id', args.id))} to {printable(d.get('sink', '?'))} "
            f"({printable(d.get('incident', '?'))}) is {printable(d.get('status', 'queued'))}\n"
        )
    return answer


COMMANDS: dict[str, Callable[[ApiClient, argparse.Namespace], dict[str, Any]]] = {
    "incidents": _incidents,
    "deliveries": _deliveries,
}


def run(args: argparse.Namespace) -> int:
    """Run `incidents ...` or `deliveries ...`; errors are one line on stderr."""
    try:
        with ApiClient(args.url, args.token, timeout=args.timeout) as api:
            answer = COMMANDS[args.command](api, args)
    except ApiError as exc:
        sys.stderr.write(f"incident-pilot: {exc}\n")
        return 1
    if args.json:
        _out(json.dumps(answer, indent=2) + "\n")
    return 0
