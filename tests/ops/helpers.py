"""Shared helpers for the operability tests (tokens, payloads, a server subprocess)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
TOKENS = {
    "ingest": "ingest-0123456789abcdef-tok",
    "read": "read-0123456789abcdef-token",
    "admin": "admin-0123456789abcdef-tok",
}
TOKENS_ENV = ",".join(f"{scope}:{token}" for scope, token in TOKENS.items())
FIXTURES = ROOT / "tests" / "fixtures" / "alertmanager"


def bearer(scope: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[scope]}"}


def alert(name: str = "HighErrorRate", service: str = "checkout-api", **labels: str) -> dict:
    return {
        "status": "firing",
        "labels": {"alertname": name, "service": service, **labels},
        "annotations": {"summary": f"{name} on {service}"},
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """`incident-pilot serve` in a subprocess; stderr goes to a file (`log()`)."""

    def __init__(self, tmp_path: Path, *args: str, tokens: bool = True, db: Path | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.db = db or tmp_path / "server.db"
        self.stderr_path = tmp_path / f"server-{self.port}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("INCIDENT_PILOT_")}
        env["PYTHONUNBUFFERED"] = "1"
        if tokens:
            env["INCIDENT_PILOT_TOKENS"] = TOKENS_ENV
        self.cmd = [
            sys.executable, "-m", "engine", "serve", "--port", str(self.port),
            "--db", str(self.db), "--quiet", *args,
        ]  # fmt: skip
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> Server:
        self._err = self.stderr_path.open("ab")
        self.proc = subprocess.Popen(
            self.cmd, cwd=ROOT, env=self.env, stdout=subprocess.DEVNULL, stderr=self._err
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=0.5).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server did not start in {timeout}s:\n{self.log()}")

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self._err.close()

    def log(self) -> str:
        return self.stderr_path.read_text(errors="replace")
