"""Real store failures for tests: a small tmpfs that fills up, a file-size limit on a
running process, a lock held by another process, a throwaway PostgreSQL cluster that is
stopped and started again. Each helper says why it cannot run (the caller skips with
that reason) instead of pretending.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import shutil
import sqlite3
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from engine.testing import free_port


class Unavailable(Exception):
    """This kind of fault cannot be made here; the message says why."""


# --- a small filesystem ---------------------------------------------------------------


@contextlib.contextmanager
def small_tmpfs(size: str = "8m") -> Iterator[Path]:
    """A tmpfs of `size` mounted on a new directory, unmounted on exit. Needs root (or
    CAP_SYS_ADMIN): Unavailable otherwise."""
    where = Path(tempfile.mkdtemp(prefix="incident-pilot-tmpfs-"))
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0777", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        where.rmdir()
        raise Unavailable(f"cannot mount a tmpfs: {done.stderr.strip() or done.returncode}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False, capture_output=True)
        with contextlib.suppress(OSError):
            where.rmdir()


def fill(directory: Path, name: str = "filler") -> Path:
    """Write zeros into `directory/name` until the filesystem is full; the file's path."""
    path = directory / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for size in (1 << 20, 65536, 4096, 1):  # coarse to fine, to the last byte
            chunk = b"\0" * size
            while True:
                try:
                    os.write(fd, chunk)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
    finally:
        os.close(fd)
    return path


# --- a file-size limit on a running process --------------------------------------------


def limit_file_size(pid: int, max_bytes: int | None) -> None:
    """RLIMIT_FSIZE of process `pid` (None: unlimited). Python ignores SIGXFSZ, so a
    write past the limit fails with EFBIG instead of killing the process."""
    import resource

    value = resource.RLIM_INFINITY if max_bytes is None else max_bytes
    try:  # the soft limit only: raising a hard limit again may need CAP_SYS_RESOURCE
        _, hard = resource.prlimit(pid, resource.RLIMIT_FSIZE)
        if hard != resource.RLIM_INFINITY and (value == resource.RLIM_INFINITY or value > hard):
            value = hard
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (value, hard))
    except (PermissionError, OSError) as exc:
        raise Unavailable(f"cannot set RLIMIT_FSIZE on process {pid}: {exc}") from None


# --- a lock held by another process -----------------------------------------------------


@contextlib.contextmanager
def sqlite_write_lock(path: str) -> Iterator[None]:
    """Hold SQLite's write lock on `path` (BEGIN IMMEDIATE in another connection, here
    in the test's process) until the block ends."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    try:
        conn.execute("BEGIN IMMEDIATE")
        yield
        conn.execute("ROLLBACK")
    finally:
        conn.close()


# --- a throwaway PostgreSQL cluster ----------------------------------------------------


def postgres_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if not found:
        raise Unavailable("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin")
    return Path(found[-1]).parent


class ThrowawayPostgres:
    """A PostgreSQL cluster of its own (initdb in a temp dir, its own free port), run as
    the `postgres` user (initdb refuses root): `start()`, `stop()` (fast shutdown: the
    connections are cut, as when the database goes away), `close()` removes it all."""

    def __init__(self) -> None:
        self.bin = postgres_bin()
        if os.geteuid() == 0:
            if shutil.which("runuser") is None:
                raise Unavailable("running as root without runuser: cannot become postgres")
            self.prefix = ["runuser", "-u", "postgres", "--"]
        else:
            self.prefix = []
        self.dir = Path(tempfile.mkdtemp(prefix="incident-pilot-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self._lock = threading.Lock()
        if self.prefix:
            shutil.chown(self.dir, "postgres", "postgres")
        done = self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres")
        if done.returncode != 0:
            self.close()
            raise Unavailable(f"initdb failed: {done.stderr.strip()[-300:]}")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.prefix, str(self.bin / tool), *args],
            capture_output=True,
            text=True,
            check=False,
            cwd=str(self.dir),
            timeout=120,
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        done = self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.dir / "log"), "-o", options, "-w",
            "start",
        )  # fmt: skip
        if done.returncode != 0:
            log = (self.dir / "log").read_text() if (self.dir / "log").exists() else ""
            raise Unavailable(f"pg_ctl start failed: {done.stderr.strip()} {log[-300:]}")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def read_only(self, on: bool) -> None:
        """Every transaction of every session read-only from now on (or no longer):
        `default_transaction_read_only`, set for the server and reloaded, as a failover to
        a standby or an operator freezing the database does."""
        import psycopg

        options = "-c default_transaction_read_only=off"  # this session may still write
        with psycopg.connect(self.url, autocommit=True, options=options) as conn:
            if on:
                conn.execute("ALTER SYSTEM SET default_transaction_read_only = on")
            else:
                conn.execute("ALTER SYSTEM RESET default_transaction_read_only")
            conn.execute("SELECT pg_reload_conf()")

    def close(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)
