"""Helpers for tests and rule authors: alert payloads, a real server process, an in-process
client.

- `make_alert(**labels)` / `make_webhook(*alerts)`: request bodies for `POST /alerts`.
- `free_port()`: a free TCP port on 127.0.0.1.
- `ServerProcess`: `python -m engine serve` on a free loopback port with a temporary
  SQLite file; waits (bounded) for `/healthz`; always stopped on exit.
- `open_app(settings)`: the app `serve` runs, built by the same `build_state` and
  `create_app`, in this process (outbox worker started; no pruner, no SIGHUP handler);
  `wait_for_deliveries(state)` waits until its outbox has sent everything due;
  `printed(state)` is then what its stdout sink printed.
- `AppClient`: a synchronous client for the app in this process (httpx `ASGITransport`),
  no sockets, no lifespan.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import httpx
from starlette.applications import Starlette

from engine.rules.ruleset import RuleSet
from engine.server.app import create_app
from engine.server.settings import ServeSettings
from engine.server.state import AppState, build_state
from engine.timeutil import format_ts, utcnow

_ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"
ENV_PREFIX = "INCIDENT_PILOT_"


def ts(at: datetime | None = None, **ago: float) -> str:
    """An RFC 3339 time: `at` (default now) minus `ago` (timedelta keywords): ts(minutes=3)."""
    return format_ts((at or utcnow()) - timedelta(**ago))


def make_alert(
    *,
    status: str = "firing",
    starts_at: datetime | str | None = None,
    ends_at: datetime | str | None = None,
    annotations: dict[str, str] | None = None,
    fingerprint: str | None = None,
    generator_url: str = "",
    **labels: str,
) -> dict[str, Any]:
    """One alert as Alertmanager sends it (webhook v4). `alertname` defaults to
    HighErrorRate; without `fingerprint` the server computes it from the labels."""
    labels = {"alertname": "HighErrorRate", **labels}
    alert: dict[str, Any] = {"status": status, "labels": labels, "annotations": annotations or {}}
    if starts_at is not None:
        alert["startsAt"] = format_ts(starts_at) if isinstance(starts_at, datetime) else starts_at
    if ends_at is not None:
        alert["endsAt"] = format_ts(ends_at) if isinstance(ends_at, datetime) else ends_at
    if fingerprint is not None:
        alert["fingerprint"] = fingerprint
    if generator_url:
        alert["generatorURL"] = generator_url
    return alert


def make_webhook(*alerts: dict[str, Any], receiver: str = "incident-pilot") -> dict[str, Any]:
    """An Alertmanager webhook v4 envelope around `alerts`."""
    firing = any(a.get("status", "firing") == "firing" for a in alerts)
    common = dict(alerts[0]["labels"]) if alerts else {}
    for a in alerts[1:]:
        common = {k: v for k, v in common.items() if a["labels"].get(k) == v}
    return {
        "version": "4",
        "receiver": receiver,
        "status": "firing" if firing else "resolved",
        "alerts": list(alerts),
        "groupLabels": {},
        "commonLabels": common,
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.invalid:9093",
        "groupKey": "{}:{}",
        "truncatedAlerts": 0,
    }


def free_port() -> int:
    """A TCP port nothing listens on right now (the OS picks it; a race is still possible,
    so ServerProcess retries on another port if the bind fails)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


class ServerError(RuntimeError):
    pass


class ServerProcess:
    """`python -m engine serve` in a subprocess, for tests that need a real server.

        with ServerProcess(tmp_path, "--format", "json") as srv:
            httpx.post(srv.url + "/alerts", json=make_alert(service="api"))
            srv.stdout_text()

    The database is `db` (default: a file in `workdir`); stdout and stderr go to files in
    `workdir` so nothing blocks on a full pipe. INCIDENT_PILOT_* variables of the calling
    environment are not passed on (`env` adds some). `start()` polls /healthz for at most
    `startup_timeout` seconds. `kill()` is SIGKILL (a crash); `stop()` is SIGTERM and wait;
    `start()` again reuses the same database file.
    """

    def __init__(
        self,
        workdir: Path | str | None = None,
        *args: str,
        db: str | None = None,
        env: dict[str, str] | None = None,
        startup_timeout: float = 20.0,
        via_env: bool = False,
    ) -> None:
        if workdir is None:
            self._tmp: tempfile.TemporaryDirectory[str] | None = tempfile.TemporaryDirectory(
                prefix="incident-pilot-"
            )
            workdir = self._tmp.name
        else:
            self._tmp = None
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.db = db or str(self.workdir / "incident-pilot.db")
        self.args = list(args)
        self.extra_env = dict(env or {})
        self.startup_timeout = startup_timeout
        self.via_env = via_env  # host, port and db as INCIDENT_PILOT_* variables, not flags
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._stdout_path = self.workdir / "stdout.txt"
        self._stderr_path = self.workdir / "stderr.txt"

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def command(self) -> list[str]:
        where = [] if self.via_env else ["--host", LOOPBACK, "--port", str(self.port)]
        where += [] if self.via_env else ["--db", self.db]
        return [sys.executable, "-m", "engine", "serve", *where, *self.args]

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(_ROOT), os.environ.get("PYTHONPATH", "")) if p
        )
        env["PYTHONUNBUFFERED"] = "1"
        if self.via_env:
            env.update(
                {f"{ENV_PREFIX}HOST": LOOPBACK, f"{ENV_PREFIX}PORT": str(self.port)}
                | {f"{ENV_PREFIX}DB": self.db}
            )
        env.update(self.extra_env)
        return env

    def start(self) -> ServerProcess:
        """Launch and wait for /healthz; on a port taken meanwhile, again on another one."""
        last = ""
        for _attempt in range(3):
            self.launch()
            try:
                self.wait_ready()
                return self
            except ServerError as exc:
                last = str(exc)
                self._terminate(signal.SIGKILL)
                if "address already in use" not in self.stderr_text().lower():
                    break
        raise ServerError(last)

    def launch(self) -> ServerProcess:
        """Start the process on a free port without waiting for it (`wait_ready` does):
        for starting several servers at once."""
        if self.proc is not None and self.proc.poll() is None:
            raise ServerError("the server is already running")
        self.port = free_port()
        self.starts += 1
        # Append: a restart keeps what the earlier run printed.
        with open(self._stdout_path, "ab") as out, open(self._stderr_path, "ab") as err:
            self.proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=self._env(),
                cwd=str(self.workdir),
            )
        return self

    def wait_ready(self) -> None:
        """Poll /healthz (at most `startup_timeout` seconds); ServerError if the process
        exits or does not answer in time."""
        assert self.proc is not None
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None:
                raise ServerError(
                    f"server exited with {code} before answering /healthz:\n{self.stderr_text()}"
                )
            try:
                r = httpx.get(self.url + "/healthz", timeout=1.0)
                if r.status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise ServerError(
            f"server did not answer /healthz within {self.startup_timeout}s:\n{self.stderr_text()}"
        )

    def send_signal(self, sig: int) -> None:
        assert self.proc is not None, "the server is not running"
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 30.0) -> int:
        """Wait for the process to exit (after `send_signal`); its exit status."""
        assert self.proc is not None, "the server is not running"
        return self.proc.wait(timeout)

    def _terminate(self, sig: int, timeout: float = 10.0) -> int | None:
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=timeout)
        return proc.returncode

    def kill(self) -> int | None:
        """SIGKILL: the process gets no chance to clean up (a crash, a power cut of the process)."""
        return self._terminate(signal.SIGKILL)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM and wait for a graceful shutdown (SIGKILL after `timeout`)."""
        return self._terminate(signal.SIGTERM, timeout)

    def restart(self) -> ServerProcess:
        self.stop()
        return self.start()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stdout_text(self) -> str:
        return self._stdout_path.read_text("utf-8", "replace") if self._stdout_path.exists() else ""

    def stderr_text(self) -> str:
        return self._stderr_path.read_text("utf-8", "replace") if self._stderr_path.exists() else ""

    def wait_for_stdout(self, needle: str, timeout: float = 10.0, count: int = 1) -> str:
        """Poll stdout until `needle` appears `count` times; returns the text (or raises)."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.stdout_text()
            if text.count(needle) >= count:
                return text
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"{needle!r} did not appear {count} time(s) on the server's stdout within "
                    f"{timeout}s; stdout was:\n{text}\nstderr:\n{self.stderr_text()}"
                )
            time.sleep(0.05)

    def client(self, timeout: float = 10.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout)

    def __enter__(self) -> ServerProcess:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            self.stop()
        finally:
            if self._tmp is not None:
                self._tmp.cleanup()


def open_app(
    settings: ServeSettings,
    *,
    ruleset: RuleSet | None = None,
    stdout: TextIO | None = None,
) -> tuple[AppState, Starlette]:
    """The state and app `serve` builds from `settings` (the same `build_state` and
    `create_app`), with the outbox worker running as under `serve`. In-process clients do
    not run the lifespan, so the retention pruner and the SIGHUP handler stay off. The
    stdout sink prints to `stdout`. Call `state.close()` when done."""
    state = build_state(settings, ruleset=ruleset, stdout=stdout)
    state.start()
    return state, create_app(state)


def wait_for_deliveries(state: AppState, timeout: float = 10.0) -> None:
    """Wait until the outbox holds nothing pending or being sent (raises on timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        outbox = state.store.stats().get("outbox") or {}
        if not outbox.get("pending") and not outbox.get("sending"):
            return
        if time.monotonic() >= deadline:
            raise AssertionError(f"deliveries still due after {timeout}s: {outbox}")
        time.sleep(0.02)


def printed(state: AppState) -> str:
    """What the stdout sink of an app from `open_app(..., stdout=io.StringIO())` printed,
    once every delivery due has gone out."""
    wait_for_deliveries(state)
    sink = state.delivery.sinks["stdout"]
    stream = getattr(sink, "stream", None)
    if not isinstance(stream, io.StringIO):
        raise TypeError("printed() needs an app opened with stdout=io.StringIO()")
    return stream.getvalue()


class AppClient:
    """A synchronous client for a Starlette app in this process (httpx ASGITransport).

    No sockets and no lifespan: build the app with `open_app`.
    """

    def __init__(self, app: Any, base_url: str = "http://incident-pilot.test") -> None:
        self._loop = asyncio.new_event_loop()
        self._client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url=base_url, timeout=30.0
        )

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        return self._loop.run_until_complete(self._client.request(method, url, **kwargs))

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def run(self, coro: Any) -> Any:
        """Run a coroutine on this client's loop (e.g. several requests with asyncio.gather)."""
        return self._loop.run_until_complete(coro)

    @property
    def aclient(self) -> httpx.AsyncClient:
        return self._client

    def close(self) -> None:
        try:
            self._loop.run_until_complete(self._client.aclose())
        finally:
            self._loop.close()

    def __enter__(self) -> AppClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def post_json_lines(client: httpx.Client | AppClient, path: str, records: Sequence[Any]) -> Any:
    """POST records as NDJSON; returns the response."""
    import json

    body = "".join(json.dumps(r) + "\n" for r in records)
    return client.post(path, content=body, headers={"content-type": "application/x-ndjson"})
