"""Connections that do not send a request cannot hold the server.

uvicorn's h11 protocol with two additions:
- a head timeout: a connection that has not sent a complete request head (request line and
  headers) within `head_timeout` seconds of opening, or of its previous response, is closed
  (after a `408` when it sent part of one), at a point spread over the timeout's last tenth.
  Trickling a byte at a time does not extend it.
- a connection cap that sheds idle connections: past `max_connections` open connections, the
  connection that has waited longest for a request head is closed to make room. A connection
  with a request in progress is never shed; only when every connection has one is the new
  connection refused (closed at once).

So idle and slow clients use file descriptors and a little memory, never the capacity working
clients need; the request concurrency limit (`limits.ConcurrencyLimitMiddleware`) counts
requests, not connections. `raise_fd_limit` lifts the process's open-file limit to its hard
limit at start, so thousands of sockets fit.
"""

from __future__ import annotations

import asyncio
import logging
import random
import resource
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("incident_pilot")
HEAD_SPREAD = 0.1  # a head timeout of 10 s closes the connection after 9 to 10 s
FD_RESERVE = 64  # descriptors kept for the store, rule files, logs and outgoing requests
_TIMEOUT_BODY = b"the request line and headers did not arrive in time\n"
_TIMEOUT_ANSWER = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    + f"content-length: {len(_TIMEOUT_BODY)}\r\nconnection: close\r\n\r\n".encode()
    + _TIMEOUT_BODY
)


class GuardedH11Protocol(H11Protocol):
    """One connection. Class attributes are set per server by `guarded_protocol`."""

    head_timeout: float = 10.0
    max_connections: int = 0  # 0: no cap

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._partial = False  # bytes of a head have arrived since the wait began
        # Connections waiting for a request head, the longest-waiting first (per server).
        state = self.server_state
        if not hasattr(state, "awaiting_head"):
            state.awaiting_head = {}  # type: ignore[attr-defined]
        self._awaiting: dict[GuardedH11Protocol, None] = state.awaiting_head  # type: ignore[attr-defined]

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        over = self.max_connections and len(self.connections) > self.max_connections
        if over and not self._shed_one():
            log.warning(
                "refused a connection: %d open, each with a request in progress",
                len(self.connections) - 1,
            )
            self.transport.abort()
            return
        self._await_head()

    def _shed_one(self) -> bool:
        """Close the connection that has waited longest for a request head."""
        for victim in self._awaiting:
            if victim is not self:
                victim._close_idle()
                return True
        return False

    def _await_head(self) -> None:
        self._stop_waiting()
        self._partial = False
        self._awaiting[self] = None
        if self.head_timeout > 0:
            # Spread over the last tenth of the timeout: thousands of connections opened
            # at once are closed over a second, never in one turn of the event loop.
            delay = self.head_timeout * (1 - HEAD_SPREAD * random.random())
            self._head_timer = self.loop.call_later(delay, self._head_timed_out)

    def _stop_waiting(self) -> None:
        self._awaiting.pop(self, None)
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _close_idle(self) -> None:
        self._stop_waiting()
        if not self.transport.is_closing():
            if self._partial:
                self.transport.write(_TIMEOUT_ANSWER)
            self.transport.close()

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.conn.their_state is h11.IDLE:
            self._close_idle()

    def data_received(self, data: bytes) -> None:
        self._partial = True
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE and self in self._awaiting:
            self._stop_waiting()  # a request head arrived (or the parser refused it)

    def on_response_complete(self) -> None:
        super().on_response_complete()  # may start a pipelined request at once
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_waiting()
        super().connection_lost(exc)


def guarded_protocol(head_timeout: float, max_connections: int) -> type[GuardedH11Protocol]:
    """The protocol class for uvicorn's `http=` option, with these limits."""
    return type(
        "GuardedH11Protocol",
        (GuardedH11Protocol,),
        {"head_timeout": head_timeout, "max_connections": max_connections},
    )


def raise_fd_limit() -> int:
    """Lift the soft open-file limit to the hard limit; return the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-file limit from %d: %s", soft, exc)
    return soft


def connection_cap(max_connections: int, fd_limit: int) -> int:
    """`max_connections`, lowered to what the open-file limit allows (with a warning)."""
    room = max(fd_limit - FD_RESERVE, 1)
    if max_connections == 0 or max_connections > room:
        if max_connections:
            log.warning(
                "--max-connections %d is more than the open-file limit allows; using %d",
                max_connections,
                room,
            )
        return room
    return max_connections


ACCEPT_ERROR = "socket.accept() out of system resource"
ACCEPT_ERROR_INTERVAL = 10.0  # seconds between two reports of refused accepts


def quiet_accept_errors(
    loop: asyncio.AbstractEventLoop, interval: float = ACCEPT_ERROR_INTERVAL
) -> None:
    """While the process is out of file descriptors, asyncio retries accept() every second
    and logs each failure with a traceback. Report it once per `interval` instead, on one
    line with how many failures it stands for; other loop errors go where they went."""
    previous = loop.get_exception_handler()
    last, missed = -interval, 0

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        nonlocal last, missed
        if context.get("message") != ACCEPT_ERROR:
            if previous is not None:
                previous(loop, context)
            else:
                loop.default_exception_handler(context)
            return
        missed += 1
        now = loop.time()
        if now - last >= interval:
            log.error(
                "cannot accept new connections: %s (%d time(s) since the last report); they "
                "wait in the listen backlog until descriptors free up",
                context.get("exception"),
                missed,
            )
            last, missed = now, 0

    loop.set_exception_handler(handler)
