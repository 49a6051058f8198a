"""``enable_wal`` on real SQLite files, without a race to wait for: a connection holding the file's exclusive
lock stands for the other process switching it to WAL."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest

from edgenas.store.sqlite_wal import RETRY_S, enable_wal


class Counting:
    """A ``sqlite3`` connection that counts the statements run on it."""

    def __init__(self, con: sqlite3.Connection) -> None:
        self.con, self.tries = con, 0

    def execute(self, sql: str):
        self.tries += 1
        return self.con.execute(sql)


def _returns_within(seconds: float, call):
    """``call()``'s result or exception, or a failure if it has not returned after ``seconds`` (a retry loop that
    never gives up fails the test instead of hanging it)."""
    out: list = []

    def run() -> None:
        try:
            out.append(call())
        except BaseException as exc:
            out.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"still retrying after {seconds} s"
    if isinstance(out[0], BaseException):
        raise out[0]
    return out[0]


@pytest.fixture
def locked(tmp_path):
    """(path, the connection holding the exclusive lock of a fresh database file at ``path``)."""
    path = tmp_path / "a.db"
    sqlite3.connect(path).close()
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")
    yield path, holder
    holder.close()


def test_a_locked_file_is_retried_until_the_lock_goes(locked):
    path, holder = locked
    timer = threading.Timer(0.3, holder.execute, ("COMMIT",))
    timer.start()
    con = Counting(sqlite3.connect(path, timeout=0, check_same_thread=False))
    t0 = time.monotonic()
    assert _returns_within(30, lambda: enable_wal(con, 30)) == "wal"
    timer.join()
    assert time.monotonic() - t0 >= 0.25
    assert 2 <= con.tries <= 0.3 / RETRY_S + 10  # a pause between tries, not a busy loop
    con.con.close()


def test_a_file_locked_past_the_timeout_is_the_lock_error(locked):
    path, _ = locked
    con = sqlite3.connect(path, timeout=0, check_same_thread=False)
    t0 = time.monotonic()
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        _returns_within(20, lambda: enable_wal(con, 0.2))
    assert 0.2 <= time.monotonic() - t0 < 20
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        _returns_within(20, lambda: enable_wal(con, 0))  # no time left: one try
    con.close()


def test_another_error_is_raised_at_once(tmp_path):
    path = tmp_path / "b.db"
    sqlite3.connect(path).close()
    con = Counting(sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False))
    t0 = time.monotonic()
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        _returns_within(20, lambda: enable_wal(con, 5))
    assert con.tries == 1 and time.monotonic() - t0 < 2
    con.con.close()


def test_the_mode_reported_is_returned(tmp_path):
    con = sqlite3.connect(tmp_path / "c.db")
    assert enable_wal(con, 1) == "wal"
    assert enable_wal(sqlite3.connect(":memory:"), 1) == "memory"
    con.close()
