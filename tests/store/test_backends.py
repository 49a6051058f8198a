"""What is specific to one back end: the JSONL journal's crash tolerance, SQLite's schema table."""

from __future__ import annotations

import sqlite3

import pytest

from edgenas.errors import InputError
from edgenas.store import JsonlStore, SQLiteStore

from .races import races


def test_jsonl_ignores_then_removes_a_torn_last_line(tmp_path, make):
    path = tmp_path / "m.jsonl"
    s = JsonlStore(path)
    a = make()
    s.add(a)
    with open(path, "ab") as fh:  # a writer crashed half-way through its line
        fh.write(make().to_json().encode()[:57])
    assert s.list() == [a]
    b = make()
    s.add(b)
    assert s.list() == [a, b]
    assert path.read_bytes().count(b"\n") == 2


def test_jsonl_malformed_middle_line_is_named(tmp_path, make):
    path = tmp_path / "m.jsonl"
    s = JsonlStore(path)
    s.add(make())
    with open(path, "ab") as fh:
        fh.write(b"{not json}\n")
    s2 = JsonlStore(path)
    with pytest.raises(InputError, match="line 2 is not valid JSON"):
        s2.list()


def _one_record_edited(tmp_path, make, sql: str, *args) -> SQLiteStore:
    """A SQLite store of one record whose row ``sql`` (an UPDATE of ``measurements``) then changed."""
    db = tmp_path / "m.db"
    SQLiteStore(db).add(make())
    con = sqlite3.connect(db)
    con.execute(sql, args)
    con.commit()
    con.close()
    return SQLiteStore(db)


def test_a_number_too_large_for_a_float_is_a_malformed_record_in_either_store(tmp_path, make):
    """JSON reads 400 digits as an int; the record's checks met it as an internal OverflowError (float())."""
    huge = "1" + "0" * 400
    path = tmp_path / "m.jsonl"
    JsonlStore(path).add(make())
    with open(path, "a") as fh:
        fh.write(make().to_json().replace('"median_ms":5.0', f'"median_ms":{huge}') + "\n")
    assert huge in path.read_text()
    with pytest.raises(InputError, match="line 2 is not valid JSON \\(a number too large to read\\)"):
        JsonlStore(path).list()
    store = _one_record_edited(tmp_path, make, "UPDATE measurements SET record = replace(record, ?, ?)",
                               '"median_ms":5.0', f'"median_ms":{huge}')
    with pytest.raises(InputError, match="row 1 holds malformed JSON: a number too large to read"):
        store.list()


def test_jsonl_lines_are_complete_records(tmp_path, make):
    path = tmp_path / "m.jsonl"
    s = JsonlStore(path)
    ms = [make(), make()]
    for m in ms:
        s.add(m)
    lines = path.read_text().splitlines()
    assert len(lines) == 2 and all(line.startswith("{") and line.endswith("}") for line in lines)


def test_sqlite_uses_wal_and_records_its_schema(tmp_path, make):
    path = tmp_path / "m.db"
    SQLiteStore(path).add(make())
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert con.execute("SELECT version FROM schema_version").fetchall() == [(1,)]
    con.execute("UPDATE schema_version SET version = 7")
    con.commit()
    con.execute("PRAGMA journal_mode = DELETE")
    con.close()
    before = path.read_bytes()
    with pytest.raises(InputError, match=r"schema \[7\], this edgenas reads 1"):
        SQLiteStore(path)
    assert path.read_bytes() == before   # a newer edgenas's file: not switched to WAL by this one


def test_sqlite_not_a_database_is_a_clear_error(tmp_path):
    path = tmp_path / "m.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(InputError, match="is unusable"):
        SQLiteStore(path)


def _open(path) -> str:
    SQLiteStore(path)
    return "ok"


@pytest.mark.slow
def test_processes_opening_a_fresh_sqlite_store_at_once_all_get_in(tmp_path):
    """The measurement store's file switched to WAL by two processes at the same moment (see
    ``edgenas/store/sqlite_wal.py``): 100 races, every opener gets in."""
    for i, got in races(_open, lambda i: (tmp_path / f"race{i}.db",)):
        assert got == ["ok", "ok"], f"race {i}"


def test_jsonl_last_record_without_its_newline_is_a_record_and_the_next_one_goes_on_its_own_line(tmp_path, make):
    """A file whose last line lacks the newline (an editor strips it): that line is a whole record, kept,
    and the next record is written on a line of its own, never glued to it."""
    path = tmp_path / "m.jsonl"
    a, b, c = make(), make(), make()
    path.write_text(a.to_json() + "\n" + b.to_json())
    s = JsonlStore(path)
    assert s.list() == [a, b]
    s.add(c)
    assert path.read_text() == a.to_json() + "\n" + b.to_json() + "\n" + c.to_json() + "\n"
    assert s.list() == [a, b, c]


def test_jsonl_blank_lines_are_skipped_not_the_end(tmp_path, make):
    path = tmp_path / "m.jsonl"
    a, b = make(), make()
    path.write_text("\n" + a.to_json() + "\n  \n\n" + b.to_json() + "\n")
    assert JsonlStore(path).list() == [a, b]


def test_jsonl_store_creates_its_folders(tmp_path, make):
    path = tmp_path / "a" / "b" / "m.jsonl"
    s = JsonlStore(path)
    m = make()
    s.add(m)
    assert path.read_text() == m.to_json() + "\n" and s.list() == [m]


def test_jsonl_reader_waits_for_a_writer_holding_the_lock(tmp_path, make):
    """A reader takes a shared lock: while a writer holds the exclusive one, ``list`` waits."""
    import fcntl
    import threading

    path = tmp_path / "m.jsonl"
    s = JsonlStore(path)
    m = make()
    s.add(m)
    got = []
    with open(path, "rb") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        t = threading.Thread(target=lambda: got.append(s.list()))
        t.start()
        t.join(0.5)
        assert t.is_alive() and got == []
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    t.join(10)
    assert got == [[m]]


def test_jsonl_add_syncs_the_file_before_releasing_it(tmp_path, make, monkeypatch):
    import fcntl
    import os

    path = tmp_path / "m.jsonl"
    s = JsonlStore(path)
    events = []
    real_fsync, real_flock = os.fsync, fcntl.flock
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(fcntl, "flock", lambda fd, op: (events.append(op), real_flock(fd, op))[1])
    s.add(make())
    assert events == [fcntl.LOCK_EX, "fsync", fcntl.LOCK_UN]


def test_json_nested_deeper_than_the_parser_reads_is_one_error_in_either_store(tmp_path, make):
    """3,000 levels of brackets: json.loads' RecursionError left both stores as an internal error (``db upgrade``
    reads them); a torn last line that deep is a torn line like any other."""
    deep = "[" * 3000 + "]" * 3000
    path = tmp_path / "m.jsonl"
    a = make()
    JsonlStore(path).add(a)
    with open(path, "a") as fh:
        fh.write(deep[:4000])
    assert JsonlStore(path).list() == [a]
    with open(path, "a") as fh:
        fh.write(deep[4000:] + "\n")
    with pytest.raises(InputError, match="line 2 is nested too deeply"):
        JsonlStore(path).list()
    store = _one_record_edited(tmp_path, make, "UPDATE measurements SET record = ?", deep)
    with pytest.raises(InputError, match="row 1 holds JSON nested too deeply"):
        store.list()


def test_sqlite_record_text_that_is_not_utf8_is_a_malformed_record(tmp_path, make):
    """SQLite keeps any bytes as TEXT; Python's sqlite3 failed to fetch the row (an internal OperationalError)."""
    store = _one_record_edited(tmp_path, make, "UPDATE measurements SET record = CAST(X'7bff7d' AS TEXT)")
    with pytest.raises(InputError, match="row 1 holds malformed JSON: 'utf-8' codec can't decode byte 0xff"):
        store.list()


def test_sqlite_store_creates_its_folders_and_names_its_file(tmp_path, make):
    path = tmp_path / "a" / "b" / "m.db"
    s = SQLiteStore(path)
    m = make()
    s.add(m)
    assert path.is_file() and s.list() == [m]
    assert repr(s) == f"SQLiteStore('{path}')"
    assert repr(JsonlStore(tmp_path / "m.jsonl")) == f"JsonlStore('{tmp_path}/m.jsonl')"


def test_sqlite_database_of_another_shape_is_a_clear_error_and_gets_no_table(tmp_path):
    """A database whose ``measurements`` table has other columns: creating the indexes fails, and the tables
    created before it are rolled back."""
    path = tmp_path / "m.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE measurements (x)")
    con.commit()
    con.close()
    before = path.read_bytes()
    with pytest.raises(InputError, match="is unusable: no such column: device"):
        SQLiteStore(path)
    assert path.read_bytes() == before   # not switched to WAL either (bytes 18-19 of the header were 2, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.db"]
    con = sqlite3.connect(path)
    assert con.execute("SELECT name FROM sqlite_master ORDER BY name").fetchall() == [("measurements",)]
    con.close()
