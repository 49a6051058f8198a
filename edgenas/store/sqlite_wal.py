"""Switching a SQLite file to WAL mode when other processes may be doing the same.

Two connections switching a fresh file to WAL at the same moment: SQLite answers one of them
"database is locked" at once, without waiting out the busy timeout (the journal-mode change needs the
exclusive lock, and SQLite refuses rather than risk a deadlock). Two processes opening a new project's
database together hit it about one race in twenty on our 2-core VM, and it failed a CI run.
``enable_wal`` retries that refusal until the timeout; any other error is raised at once.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

#: pause between tries while another connection switches the file
RETRY_S = 0.01


def enable_wal(con: Any, timeout_s: float) -> str:
    """``PRAGMA journal_mode = WAL`` on ``con`` (a ``sqlite3`` connection or cursor), retried while the
    file is locked, for at most ``timeout_s`` seconds; returns the journal mode it reports (an in-memory
    database stays ``memory``)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return str(con.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc).lower() or time.monotonic() >= deadline:
                raise
            time.sleep(RETRY_S)
