"""WAL checkpoints off the write path (SQLite).

By default SQLite checkpoints inside the COMMIT that pushes the WAL past 1,000 pages: that
commit copies the WAL back into the database file and syncs it, for tens to hundreds of
milliseconds, while it holds the store's write lock, so whichever alert happens to commit
then waits for it (a prune of a large backlog, or a burst of context, makes that often).
This thread runs PASSIVE checkpoints on a connection of its own a few times a second
instead. A PASSIVE checkpoint never waits for readers or writers, and writers go on
appending to the WAL while it runs, so the copy no longer sits inside anyone's
transaction.

The WAL file is rewound (reused from its start) only when a write begins after a
checkpoint that caught up with every frame, so under writes with no pause at all the
background checkpoints never quite catch up and the file would grow. The writer's own
automatic checkpoint therefore stays on, as a backstop at BACKSTOP_PAGES (16 MB of WAL):
by then the background has already copied nearly every frame, so the checkpoint inside
that one commit copies only the last few, completes, and the log rewinds.
"""

from __future__ import annotations

import logging
import sqlite3
import threading

INTERVAL = 0.25  # seconds between background checkpoints
BACKSTOP_PAGES = 4_000  # the writer's wal_autocheckpoint (SQLite's default is 1,000)

log = logging.getLogger("incident_pilot.store")


class Checkpointer:
    """A daemon thread checkpointing the WAL of the SQLite file at `path`."""

    def __init__(self, path: str, interval: float = INTERVAL) -> None:
        self.path = path
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        conn = None
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            failing = ""  # reported once until it works again, not 4 times a second
            while not self._stop.wait(self.interval):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.Error as exc:  # e.g. disk full: the next round tries again
                    if str(exc) != failing:
                        log.warning("WAL checkpoint failed (retrying quietly): %s", exc)
                        failing = str(exc)
                    continue
                if failing:
                    log.warning("WAL checkpoints work again")
                    failing = ""
        except sqlite3.Error as exc:
            log.warning("WAL checkpointer stopped: %s", exc)
        finally:
            if conn is not None:
                conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
