"""The experiment database itself, on SQLite and on a real PostgreSQL: migrations, schema checks, and
bad input (unreachable server, newer schema, corrupt or locked SQLite file, two writers)."""

from __future__ import annotations

import contextlib
import errno
import gc
import json
import multiprocessing as mp
import os
import re
import shutil
import sqlite3
import sys
import textwrap
import time

import pytest
import sqlalchemy as sa

from edgenas.store import DatabaseError, ExperimentDB, open_db, open_store
from edgenas.store import db as dbmod
from edgenas.store.schema import metadata

from .pgserver import _free_port
from .races import races


def test_fresh_database_is_migrated_to_the_newest_revision(db):
    assert db.revision() == dbmod.head_revision() == "0001"
    with db.read() as con:
        names = set(sa.inspect(con).get_table_names())
    assert {"runs", "run_devices", "evaluations", "fronts", "measurements", "alembic_version"} <= names


def test_migrations_build_exactly_the_declared_schema(db):
    """Alembic's autogenerate finds nothing to change: the migration and schema.py agree."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with db.read() as con:
        diff = compare_metadata(MigrationContext.configure(con), metadata)
    assert diff == []


def test_db_upgrade_is_idempotent_and_reports_the_revision(db_url, cli, monkeypatch, tmp_path):
    monkeypatch.setenv("EDGENAS_PROJECT", str(tmp_path))
    r = cli("db", "upgrade", "--db", db_url, "--json")
    assert r.code == 0, r.err
    import json

    first = json.loads(r.out)
    assert first["revision_before"] is None and first["revision"] == "0001"
    second = json.loads(cli("db", "upgrade", "--db", db_url, "--json").out)
    assert second["revision_before"] == "0001" and second["revision"] == "0001"


def test_a_newer_schema_is_a_clear_error_and_nothing_changes(db, db_url):
    with db.begin() as con:
        con.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(DatabaseError, match=r"schema revision 9999, newer than this edgenas knows \(newest 0001\)"):
        ExperimentDB(db_url)
    with pytest.raises(DatabaseError, match=f"database {re.escape(dbmod.describe(db_url))} has schema revision 9999, "
                                            "newer than this edgenas"):
        ExperimentDB(db_url, migrate=False, check=False).upgrade()  # db upgrade refuses too
    with db.read() as con:
        assert con.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one() == "9999"


def test_cli_newer_schema_is_one_red_line(db, db_url, cli, monkeypatch, tmp_path):
    monkeypatch.setenv("EDGENAS_PROJECT", str(tmp_path))
    with db.begin() as con:
        con.execute(sa.text("UPDATE alembic_version SET version_num = 'abcd'"))
    r = cli("runs", "list", "--db", db_url)
    assert r.code == 6 and "newer than this edgenas knows" in r.err and "upgrade edgenas" in r.err
    assert "Traceback" not in r.err and len(r.err.strip().splitlines()) == 1


def _project_database_of_revision(tmp_path, rev: str):
    """The path of ``tmp_path``'s own experiment database (``.edgenas/edgenas.db``, WAL mode), stamped ``rev``."""
    from edgenas.project import Project

    ExperimentDB(None, Project(tmp_path)).close()
    path = tmp_path / ".edgenas" / "edgenas.db"
    con = sqlite3.connect(path)
    con.execute("UPDATE alembic_version SET version_num = ?", (rev,))
    con.commit()
    con.close()
    return path


def _beside(path) -> list[str]:
    return sorted(p.name for p in path.parent.glob(path.name + "-*"))


def test_a_refused_newer_database_is_left_without_the_wal_and_shm_files_its_check_made(tmp_path, cli, monkeypatch):
    """Each refusal of a newer edgenas's database (exit 6, the file unchanged) left an empty -wal and a 32 KB -shm
    beside it: the read-only connection that read its revision made them, and only one that may write removes
    them when it closes. The refusal removes them so, as SQLite does; another connection's stay its own."""
    path = _project_database_of_revision(tmp_path, "0002")
    data = path.read_bytes()
    _refused_by_every_opening(f"sqlite:///{path}", "schema revision 0002, newer than this edgenas knows",
                              "upgrade edgenas")
    assert _beside(path) == []
    monkeypatch.setenv("EDGENAS_PROJECT", str(tmp_path))
    monkeypatch.delenv("EDGENAS_DB", raising=False)
    for args in (("runs", "list"), ("runs", "show", "abc"), ("runs", "stale"), ("db", "upgrade")):
        res = cli(*args)
        assert res.code == 6 and "newer than this edgenas" in res.err and len(res.err.splitlines()) == 1, args
        assert _beside(path) == [], args
    assert path.read_bytes() == data
    other: list[sqlite3.Connection] = []
    peek = dbmod._peek

    def peek_then_another_opens(*args):   # another process opens the database between the check and the refusal
        found = peek(*args)
        other.append(sqlite3.connect(path))
        other[0].execute("SELECT count(*) FROM runs").fetchall()
        return found

    monkeypatch.setattr(dbmod, "_peek", peek_then_another_opens)
    with pytest.raises(DatabaseError, match="newer than this edgenas"):
        ExperimentDB(f"sqlite:///{path}", migrate=False, readonly=True)
    assert _beside(path) == ["edgenas.db-shm", "edgenas.db-wal"]  # the other connection's: not unlinked under it
    assert other[0].execute("SELECT count(*) FROM runs").fetchone() == (0,)  # and it reads on
    other[0].close()
    assert _beside(path) == [] and path.read_bytes() == data


def test_unreachable_postgresql_is_one_clear_error(tmp_path, cli, monkeypatch):
    url = f"postgresql+psycopg://edgenas@127.0.0.1:{_free_port()}/nothing"
    t0 = time.monotonic()
    with pytest.raises(DatabaseError, match="cannot reach database postgresql"):
        ExperimentDB(url)
    assert time.monotonic() - t0 < 15
    monkeypatch.setenv("EDGENAS_PROJECT", str(tmp_path))
    r = cli("runs", "list", "--db", url)
    assert r.code == 6 and "cannot reach database" in r.err and "Traceback" not in r.err
    assert list(tmp_path.iterdir()) == []  # nothing created


def test_password_is_hidden_in_messages(tmp_path):
    url = f"postgresql+psycopg://edgenas:s3cret@127.0.0.1:{_free_port()}/x"
    with pytest.raises(DatabaseError) as info:
        ExperimentDB(url)
    assert "s3cret" not in str(info.value) and "***" in str(info.value)
    assert dbmod.describe("not a url") == "not a url"  # shown as given


@pytest.mark.parametrize("url,match", [("nonsense", "not a database URL"),
                                       ("mysql://u@h/db", "unsupported database")])
def test_bad_urls(url, match):
    with pytest.raises(DatabaseError, match=match):
        ExperimentDB(url)


@pytest.mark.parametrize("url,problem", [
    ("postgresql+psycopg://edgenas:s3cret@127.0.0.1:port/x", "is not a database URL"),
    ("postgresql+psycopg://edgenas:s3c@ret:s3cret@h:5432x/x", "is not a database URL"),  # the parser quotes a part
    ("sqlite://edgenas:s3cret@/", "is an in-memory database"),
    ("postgresql+nodriver://edgenas:s3cret@h/x", "unsupported database"),
    # libpq reads a password from the query too: a server that refuses the connection
    ("postgresql+psycopg://edgenas:s3cret@127.0.0.1:1/x?password=s3cret2", "cannot reach"),
    ("postgresql+asyncpg://edgenas:s3cret@h/x?sslmode=require&Password=s3cret2", "unsupported database"),
])
def test_a_password_in_a_url_that_is_refused_is_never_shown(tmp_path, cli, monkeypatch, url, problem):
    """A URL that cannot be parsed, keeps nothing or names an unknown driver was printed back as given, password
    and all: the password is masked wherever the URL is named."""
    monkeypatch.setenv("EDGENAS_PROJECT", str(tmp_path))
    monkeypatch.delenv("EDGENAS_DB", raising=False)
    r = cli("runs", "list", "--db", url)
    assert r.code == 6 and len(r.err.splitlines()) == 1 and problem in r.err, r.err
    assert "s3c" not in r.err and "edgenas:***@" in r.err, r.err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("driver", ["sqlite+nodriver", "postgresql+nodriver"])
def test_a_driver_sqlalchemy_does_not_know_is_one_clear_error_and_creates_nothing(tmp_path, cli, monkeypatch,
                                                                                  driver):
    """``sqlite+nodriver://`` (a typo of the driver) was an internal error (exit 70) from SQLAlchemy's plugin loader."""
    url = f"{driver}:///{tmp_path}/e.db" if driver.startswith("sqlite") else f"{driver}://u@127.0.0.1:1/db"
    with pytest.raises(DatabaseError, match=f"unsupported database '{re.escape(url)}' .*nodriver") as info:
        ExperimentDB(url)
    assert info.value.hint.startswith("use sqlite:///PATH")
    monkeypatch.setenv("EDGENAS_PROJECT", str(tmp_path))
    r = cli("db", "upgrade", "--db", url)
    assert r.code == 6 and len(r.err.splitlines()) == 1 and "unsupported database" in r.err, r.err
    # a reading command: no file at the path reads as an empty database, but a driver that does not exist is
    # no database at all (it listed nothing, exit 0)
    r = cli("runs", "list", "--db", url)
    assert r.code == 6 and len(r.err.splitlines()) == 1 and "unsupported database" in r.err, r.err
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(DatabaseError) as info:  # a backend edgenas does not use: nothing more to say
        ExperimentDB("mysql://u:pw@h/db")
    assert info.value.message == "unsupported database 'mysql://u:***@h/db'"


@pytest.mark.parametrize("query", ["file::memory:?uri=true", "file:e.db?mode=memory&uri=true", "e.db?uri=1"])
def test_an_sqlite_uri_filename_is_refused_and_creates_nothing(tmp_path, cli, monkeypatch, query):
    """``?uri=true`` has SQLite open a ``file:`` URI, not the path edgenas checked: an in-memory database (a search
    recorded into it was gone) or another file, with a stray ``.migrate.lock`` named after the URI."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EDGENAS_PROJECT", str(tmp_path))
    monkeypatch.delenv("EDGENAS_DB", raising=False)
    url = f"sqlite:///{query}"
    with pytest.raises(DatabaseError, match="SQLite URI filenames"):
        ExperimentDB(url)
    r = cli("db", "upgrade", "--db", url)
    assert r.code == 6 and len(r.err.splitlines()) == 1 and "uri=true" in r.err, r.err
    assert list(tmp_path.iterdir()) == []
    dbmod.create_engine(f"sqlite:///{tmp_path}/e.db?uri=false").dispose()  # the default, said outright


def test_corrupt_sqlite_file_is_reported_and_left_alone(tmp_path, cli, monkeypatch):
    path = tmp_path / "edgenas.db"
    junk = b"this is not sqlite at all " * 200
    path.write_bytes(junk)
    with pytest.raises(DatabaseError, match="damaged or not a SQLite file"):
        ExperimentDB(f"sqlite:///{path}")
    monkeypatch.setenv("EDGENAS_PROJECT", str(tmp_path))
    r = cli("runs", "list", "--db", f"sqlite:///{path}")
    assert r.code == 6 and "move the file aside" in r.err and "Traceback" not in r.err
    assert path.read_bytes() == junk


def test_locked_sqlite_is_one_clear_error_and_nothing_is_lost(tmp_path, monkeypatch, make):
    url = f"sqlite:///{tmp_path / 'edgenas.db'}"
    store = ExperimentDB(url).measurements
    kept = make()
    store.add(kept)
    monkeypatch.setattr(dbmod, "BUSY_TIMEOUT_S", 0.3)
    blocker = sqlite3.connect(tmp_path / "edgenas.db", isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")  # another process holds the write lock and does not let go
    try:
        locked = ExperimentDB(url, check=False).measurements
        with pytest.raises(DatabaseError, match="is locked by another writer"):
            locked.add(make())
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert ExperimentDB(url).measurements.list() == [kept]


def test_sqlite_uses_wal_and_a_busy_timeout(tmp_path):
    db = ExperimentDB(f"sqlite:///{tmp_path / 'e.db'}")
    with db.read() as con:
        assert con.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert con.exec_driver_sql("PRAGMA busy_timeout").scalar() == int(dbmod.BUSY_TIMEOUT_S * 1000)
        assert con.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1  # a device row of no run is refused
        assert con.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL: WAL's safe and fast setting


def _open_fresh(url: str, q) -> None:
    try:
        ExperimentDB(url)
        q.put("ok")
    except Exception as exc:  # noqa: BLE001 - reported to the test
        q.put(repr(exc))


@pytest.mark.slow
def test_processes_opening_a_fresh_database_at_once_migrate_it_once(db_url):
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_open_fresh, args=(db_url, q)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert sorted(q.get(timeout=5) for _ in procs) == ["ok"] * 2
    assert ExperimentDB(db_url).revision() == "0001"


def test_legacy_measurement_file_is_imported_by_db_upgrade(tmp_path, make, no_env_db):
    from edgenas.project import Project
    from edgenas.store import import_legacy_measurements

    project = Project(tmp_path)
    legacy = open_store(project, kind="sqlite")
    ms = [make(), make()]
    for m in ms:
        legacy.add(m)
    db = ExperimentDB(project=project)
    assert import_legacy_measurements(db, project) == 2
    assert import_legacy_measurements(db, project) == 0  # only once
    assert db.measurements.list() == ms


def _connect(url: str) -> str:
    with dbmod.create_engine(url).connect() as con:
        return con.exec_driver_sql("PRAGMA journal_mode").scalar()


@pytest.mark.slow
def test_processes_switching_a_fresh_sqlite_file_to_wal_at_once_all_get_in(tmp_path):
    """Two connections switching a fresh file to WAL at the same moment: SQLite answers one of them
    "database is locked" at once, without the busy timeout (about 1 race in 20 here; it failed a CI
    run). 100 races, each of two processes released together: every connection gets in, in WAL."""
    for i, got in races(_connect, lambda i: (f"sqlite:///{tmp_path / f'race{i}.db'}",)):
        assert got == ["wal", "wal"], f"race {i}"


def test_a_first_set_up_that_fails_half_way_leaves_no_table_behind(tmp_path):
    """Python's sqlite3 committed each CREATE TABLE of the migration by itself: a first run killed (or failing)
    half-way left tables without the schema stamp, which every later command refused ("holds tables but no
    edgenas schema revision"), and a reader in another process saw them meanwhile. The set-up is one
    transaction now. The failure is made by SQLite itself: an authorizer refuses the fourth table."""
    path = tmp_path / "e.db"
    engine = dbmod.create_engine(f"sqlite:///{path}")

    @sa.event.listens_for(engine, "connect")
    def _refuse_fronts(dbapi_con, _record) -> None:  # noqa: ANN001
        dbapi_con.set_authorizer(lambda action, a1, *_: sqlite3.SQLITE_DENY
                                 if action == sqlite3.SQLITE_CREATE_TABLE and a1 == "fronts" else sqlite3.SQLITE_OK)

    with pytest.raises(sa.exc.DatabaseError, match="not authorized"):
        dbmod.upgrade(engine)
    engine.dispose()
    assert not (tmp_path / "e.db.migrate.lock").exists()  # the lock it made goes with it (one there before stays)
    con = sqlite3.connect(path)
    assert con.execute("SELECT name FROM sqlite_master").fetchall() == []  # runs, run_devices, evaluations: gone
    con.close()
    assert ExperimentDB(f"sqlite:///{path}").revision() == dbmod.head_revision()  # the next run sets it up


def test_a_database_left_half_set_up_by_an_older_edgenas_says_so(tmp_path, cli, monkeypatch):
    path = tmp_path / "e.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE runs (id TEXT PRIMARY KEY)")
    con.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
    con.commit()
    con.close()
    monkeypatch.setenv("EDGENAS_DB", f"sqlite:///{path}")
    res = cli("runs", "list")
    assert res.code == 6 and "its first set-up was interrupted" in res.err and "move the file aside" in res.err


def test_a_deadlock_is_not_called_an_unreachable_server():
    exc = sa.exc.OperationalError("DELETE FROM runs", {}, Exception("deadlock detected\nDETAIL: ..."))
    err = dbmod.translate(exc, "postgresql+psycopg://u@h/db")
    assert "another writer changed the same rows at once" in err.message and "cannot reach" not in err.message
    assert "retry" in err.hint


def _held(path) -> list[str]:
    """The descriptors of this process open on ``path`` or its -wal / -shm files."""
    out = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/self/fd/{fd}").startswith(str(path)):
                out.append(fd)
    return out


def test_closing_a_handle_or_its_store_lets_go_of_the_file(tmp_path, make):
    """``edgenas serve`` opens a handle per request: one that kept its connections ran the process out of file
    descriptors."""
    path = tmp_path / "e.db"
    with ExperimentDB(f"sqlite:///{path}") as db:
        db.measurements.add(make())
        assert _held(path) and repr(db) == f"ExperimentDB('sqlite:///{path}')"
    assert _held(path) == []
    store = ExperimentDB(f"sqlite:///{path}").measurements
    assert store.count() == 1 and _held(path)
    store.close()
    assert _held(path) == []
    with ExperimentDB(f"sqlite:///{path}").measurements as store:  # a store as a context manager closes too
        assert store.count() == 1 and _held(path)
    assert _held(path) == []


def test_an_edgenas_database_with_a_table_of_the_users_own_still_opens(db, db_url, make):
    """Only an unstamped database holding other tables is another application's: a user's own table next to
    edgenas's (a view's helper, notes) is left alone, and the database opens as before."""
    kept = make()
    db.measurements.add(kept)
    with db.begin() as con:
        con.execute(sa.text("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)"))
    again = ExperimentDB(db_url)
    assert again.opened_revision == dbmod.head_revision() and again.measurements.list() == [kept]
    again.close()


def _next_edgenas(tmp_path, monkeypatch, upgrade_body: str) -> None:
    """This process becomes an edgenas whose schema has one more revision, ``0002`` (its ``upgrade`` is
    ``upgrade_body``), after the real migrations."""
    folder = tmp_path / "migrations"
    shutil.copytree(dbmod.MIGRATIONS, folder, ignore=shutil.ignore_patterns("__pycache__"))
    (folder / "versions" / "0002_next.py").write_text(
        '"""The next schema."""\n\nimport sqlalchemy as sa\nfrom alembic import op\n\n'
        'revision = "0002"\ndown_revision = "0001"\nbranch_labels = None\ndepends_on = None\n\n\n'
        f"def upgrade() -> None:\n{textwrap.indent(textwrap.dedent(upgrade_body), '    ')}\n")
    monkeypatch.setattr(dbmod, "MIGRATIONS", folder)
    monkeypatch.setattr(dbmod, "_SCRIPTS", [])


def _stamp_and_tables(path) -> tuple[str, set[str]]:
    con = sqlite3.connect(path)
    try:
        return (con.execute("SELECT version_num FROM alembic_version").fetchone()[0],
                {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")})
    finally:
        con.close()


def _database_of_one_measurement(tmp_path, make):
    """(path, URL, the measurement, its stamp and tables) of a new SQLite database holding one measurement."""
    path = tmp_path / "e.db"
    url = f"sqlite:///{path}"
    kept = make()
    with ExperimentDB(url) as db:
        db.measurements.add(kept)
    return path, url, kept, _stamp_and_tables(path)


def test_an_older_schema_is_refused_until_db_upgrade_which_keeps_every_row(tmp_path, monkeypatch, make, cli):
    path, url, kept, before = _database_of_one_measurement(tmp_path, make)
    assert before[0] == "0001"
    _next_edgenas(tmp_path, monkeypatch, 'op.create_table("notes", sa.Column("id", sa.Integer, primary_key=True))')
    for open_it in (lambda: ExperimentDB(url), lambda: ExperimentDB(url, migrate=False, readonly=True)):
        with pytest.raises(DatabaseError, match=r"has schema revision 0001; this edgenas needs 0002") as info:
            open_it()
        assert info.value.hint == "run: edgenas db upgrade"
    assert _stamp_and_tables(path) == before  # nothing migrated behind the user's back
    monkeypatch.setenv("EDGENAS_PROJECT", str(tmp_path))
    res = cli("db", "upgrade", "--db", url, "--json")
    assert res.code == 0, res.err
    assert json.loads(res.out)["revision_before"] == "0001" and json.loads(res.out)["revision"] == "0002"
    assert _stamp_and_tables(path) == ("0002", before[1] | {"notes"})
    with ExperimentDB(url) as db:
        assert db.opened_revision == "0002" and db.measurements.list() == [kept]


def test_a_migration_that_fails_half_way_changes_nothing_and_says_so(tmp_path, monkeypatch, make):
    """The upgrade of an existing database is one transaction too: a failure after the migration's first
    change leaves the database at its revision, every row kept, and is one ``DatabaseError``."""
    path, url, kept, before = _database_of_one_measurement(tmp_path, make)
    _next_edgenas(tmp_path, monkeypatch, '''\
        op.create_table("notes", sa.Column("id", sa.Integer, primary_key=True))
        op.execute("DELETE FROM measurements")
        op.execute("INSERT INTO measurements (seq) VALUES (1)")  # NOT NULL constraint failed''')
    db = ExperimentDB(url, migrate=False, check=False)
    with pytest.raises(DatabaseError, match="NOT NULL constraint failed"):
        db.upgrade()
    db.close()
    assert _stamp_and_tables(path) == before  # no notes table
    assert (tmp_path / "e.db.migrate.lock").is_file()  # the first set-up's: another process may hold it
    con = sqlite3.connect(path)
    assert con.execute("SELECT id FROM measurements").fetchall() == [(kept.id,)]
    con.close()


@pytest.mark.parametrize("kind,problem", [("fifo", "is not a regular file"),
                                          ("folder", "cannot open the migration lock"),
                                          ("link", "cannot open the migration lock")])
def test_a_migration_lock_that_is_no_plain_file_is_refused_and_left_alone(tmp_path, kind, problem):
    """A planted ``.migrate.lock``: a FIFO is not waited on, a link is not followed (the file it names is not
    written), a folder is not removed; the error says to move it aside, and once it is, the database is set up."""
    path, lock, target = tmp_path / "e.db", tmp_path / "e.db.migrate.lock", tmp_path / "precious"
    target.write_text("keep me")
    {"fifo": lambda: os.mkfifo(lock), "folder": lock.mkdir, "link": lambda: lock.symlink_to(target)}[kind]()
    with pytest.raises(DatabaseError, match=problem) as info:
        ExperimentDB(f"sqlite:///{path}")
    assert str(lock) in info.value.message and "move it aside" in info.value.hint
    if kind != "fifo":  # the system's words, without the errno and the path again
        assert info.value.message.endswith(f": {os.strerror(errno.EISDIR if kind == 'folder' else errno.ELOOP)}")
    assert os.path.lexists(lock) and target.read_text() == "keep me" and _held(lock) == []
    (os.rmdir if kind == "folder" else os.unlink)(lock)
    with ExperimentDB(f"sqlite:///{path}") as db:
        assert db.revision() == dbmod.head_revision()


def test_the_migrations_are_read_once_and_a_read_that_found_none_is_not_kept(tmp_path, monkeypatch):
    """``edgenas serve`` read the migrations per request; out of file descriptors alembic found none, and a good
    database was "newer than this edgenas knows (newest None)". They are read once a process now, and a read
    that found nothing is asked again next time instead of being kept."""
    unreadable = tmp_path / "migrations"
    shutil.copytree(dbmod.MIGRATIONS, unreadable, ignore=shutil.ignore_patterns("__pycache__", "0*.py"))
    real = dbmod.MIGRATIONS
    monkeypatch.setattr(dbmod, "_SCRIPTS", [])
    monkeypatch.setattr(dbmod, "MIGRATIONS", unreadable)
    assert dbmod.head_revision() is None and dbmod.known_revisions() == set()
    monkeypatch.setattr(dbmod, "MIGRATIONS", real)
    assert dbmod.head_revision() == "0001" and dbmod.known_revisions() == {"0001"}
    monkeypatch.setattr(dbmod, "MIGRATIONS", unreadable)
    assert dbmod.head_revision() == "0001" and dbmod.known_revisions() == {"0001"}


@pytest.mark.parametrize("driver_says,message,hint", [
    ("database is locked", "is locked by another writer (database is locked)", "held the write lock for over 30 s"),
    ("database table is locked: runs", "is locked by another writer", "retry"),
    ("file is not a database", "is damaged or not a SQLite file", "restore it from a backup"),
    ("database disk image is malformed", "is damaged or not a SQLite file", "move the file aside"),
    ("Could not decode to UTF-8 column 'space' with text 'x'", "holds text that is not UTF-8", "restore it"),
    ("disk I/O error", "cannot write database sqlite:///e.db: the disk is full or failing", "free some space"),
    ("database or disk is full", "the disk is full or failing (database or disk is full)", "free some space"),
    ("unable to open database file", "cannot open database sqlite:///e.db (unable to open", "check the path"),
    ("attempt to write a readonly database", "cannot open database sqlite:///e.db (attempt", "its permissions"),
    ("no such table: fronts", "lacks part of the edgenas schema (no such table: fronts)", "move it aside"),
    ("no such column: runs.warm_start", "lacks part of the edgenas schema", "restore it from a backup"),
    ('relation "runs" does not exist', "lacks part of the edgenas schema", "damaged or edited"),
    ("could not serialize access due to concurrent update", "another writer changed the same rows at once",
     "nothing of this command was written"),
    ("server closed the connection unexpectedly\nThis probably means", "cannot reach database sqlite:///e.db "
     "(server closed the connection unexpectedly)", "$EDGENAS_DB"),
    ("SSL SYSCALL error: EOF detected", "cannot reach database sqlite:///e.db (SSL SYSCALL", "the network"),
    ('FATAL:  database "nothing" does not exist', "cannot reach database sqlite:///e.db (FATAL", "the URL in --db"),
])
def test_each_driver_error_is_one_database_error_naming_its_cause(driver_says, message, hint):
    """The driver's words (SQLite's, PostgreSQL's), wrapped as SQLAlchemy raises them: each is one error naming
    the database, its cause and what to do."""
    err = dbmod.translate(sa.exc.OperationalError("SELECT 1", {}, Exception(driver_says)), "sqlite:///e.db")
    assert isinstance(err, DatabaseError) and message in err.message and hint in err.hint, (err.message, err.hint)
    assert not hasattr(err, "fd_cause")


def test_an_error_of_no_known_kind_is_named_as_the_driver_gives_it():
    err = dbmod.translate(sa.exc.IntegrityError("INSERT", {}, Exception("UNIQUE constraint failed: runs.id")),
                          "postgresql+psycopg://u:pw@h/db")
    assert err.message == "database postgresql+psycopg://u:***@h/db: UNIQUE constraint failed: runs.id"
    assert dbmod.translate(ValueError(""), "sqlite:///e.db").message == "database sqlite:///e.db: ValueError"
    silent = sa.exc.OperationalError("SELECT 1", {}, sqlite3.OperationalError())  # a driver error that says nothing
    assert dbmod.translate(silent, "sqlite:///e.db").message == ("cannot reach database sqlite:///e.db "
                                                                 "(OperationalError)")
    blank = sa.exc.IntegrityError("INSERT", {}, sqlite3.IntegrityError(" \n"))
    assert dbmod.translate(blank, "sqlite:///e.db").message == "database sqlite:///e.db: IntegrityError"
    closed = sa.exc.InterfaceError("SELECT 1", {}, Exception("connection already closed"))
    assert dbmod.translate(closed, "sqlite:///e.db").message.startswith("cannot reach database sqlite:///e.db")


def test_a_table_missing_from_the_database_is_one_error_not_a_crash(tmp_path, make):
    """A database whose fronts table was dropped (edited by hand, a damaged copy): reading a run's front is one
    error naming what is missing."""
    from edgenas.store.runs import run_fronts

    path = tmp_path / "e.db"
    with ExperimentDB(f"sqlite:///{path}") as db:
        db.measurements.add(make())
    con = sqlite3.connect(path)
    con.execute("DROP TABLE fronts")
    con.close()
    with ExperimentDB(f"sqlite:///{path}") as db, pytest.raises(DatabaseError) as info:
        run_fronts(db, "abc")
    assert info.value.message == (f"database sqlite:///{path} lacks part of the edgenas schema (no such table: "
                                  "fronts)") and "restore it from a backup" in info.value.hint


def test_checking_a_database_url_before_a_deploy_creates_nothing(tmp_path, no_env_db):
    """``check_db_url`` (a deploy checks the URL before minutes of measuring) opens and makes nothing: a file in
    a folder that does not exist is refused, a new file in an existing one is fine but not made yet."""
    from edgenas.store import check_db_url

    with pytest.raises(DatabaseError, match=f"the folder {tmp_path}/no/such does not exist"):
        check_db_url(f"sqlite:///{tmp_path}/no/such/x.db")
    check_db_url(f"sqlite:///{tmp_path}/new.db")
    assert list(tmp_path.iterdir()) == []


def _damaged_copy(tmp_path, how: str):
    """A real edgenas database (WAL mode), then damaged ``how``."""
    path = tmp_path / "e.db"
    ExperimentDB(f"sqlite:///{path}").close()
    data = bytearray(path.read_bytes())
    if how == "garbage":
        path.write_bytes(b"hello\n" * 40)
    elif how == "page size":
        data[16:18] = (3000).to_bytes(2, "big")
        path.write_bytes(bytes(data))
    elif how == "cut short":
        path.write_bytes(bytes(data[:100]))
    else:  # the schema page overwritten past the header: SQLite finds it out only when it reads the page
        data[100:4096] = b"\xa5" * (4096 - 100)
        path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("how, said", [("garbage", "no SQLite header"),
                                       ("page size", "its header gives a page size of 3000"),
                                       ("cut short", "cut short at 100 bytes, less than its first 4096-byte page"),
                                       ("schema page", "(database disk image is malformed)")])
def test_a_damaged_database_is_refused_without_leaving_wal_or_shm_files(tmp_path, no_env_db, how, said):
    """SQLite makes a WAL database's -wal and -shm files when it opens it, before it reads a page, and left them
    beside a database it then found damaged: every refusing command made two files. The first page is checked
    before SQLite opens the file, and the files SQLite made for a database it found damaged are removed."""
    from edgenas.store import check_db_url

    path = _damaged_copy(tmp_path, how)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    for open_it in (lambda: ExperimentDB(f"sqlite:///{path}"), lambda: open_db(f"sqlite:///{path}", readonly=True),
                    lambda: check_db_url(f"sqlite:///{path}")):
        with pytest.raises(DatabaseError) as info:
            open_it()
        assert info.value.message.startswith(f"database sqlite:///{path} is damaged") and said in info.value.message
        assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_files_beside_a_damaged_database_that_were_there_are_kept(tmp_path, no_env_db):
    """Only the -wal and -shm files SQLite made now are removed: a -wal file that holds pages, or one that was
    there before, is another writer's."""
    path = _damaged_copy(tmp_path, "schema page")
    wal = tmp_path / "e.db-wal"
    wal.write_bytes(b"")
    with pytest.raises(DatabaseError, match="is damaged"):
        ExperimentDB(f"sqlite:///{path}")
    assert wal.exists()


def test_a_plain_postgresql_url_is_reached_through_psycopg_3():
    """``postgresql://`` names SQLAlchemy's default driver, psycopg2, which edgenas does not install: such a URL
    was "PostgreSQL support needs psycopg 3" with psycopg 3 there."""
    engine = dbmod.create_engine("postgresql://edgenas@127.0.0.1:5432/db")
    assert engine.dialect.driver == "psycopg" and engine.url.drivername == "postgresql+psycopg"
    engine.dispose()


@pytest.mark.parametrize("driver", ["asyncpg", "psycopg2", "pg8000"])
def test_a_postgresql_driver_other_than_psycopg_3_is_named_not_called_a_missing_psycopg_3(driver):
    """``postgresql+asyncpg://`` (not installed; async besides) said "PostgreSQL support needs psycopg 3", which
    is installed: the message names the driver given and the one edgenas uses."""
    with pytest.raises(DatabaseError) as info:
        dbmod.create_engine(f"postgresql+{driver}://u:pw@127.0.0.1:5432/db")
    assert info.value.message == (f"unsupported database 'postgresql+{driver}://u:***@127.0.0.1:5432/db' (driver "
                                  f"'{driver}': edgenas talks to PostgreSQL through psycopg 3)")


def _refused_by_every_opening(url, match, hint):
    """Opening ``url`` to write (migrating a fresh database), to read only, and for ``edgenas db upgrade``:
    each is one ``DatabaseError`` matching ``match`` with ``hint``."""
    for open_it in (lambda: ExperimentDB(url), lambda: ExperimentDB(url, migrate=False, readonly=True),
                    lambda: ExperimentDB(url, migrate=False, check=False).upgrade()):
        with pytest.raises(DatabaseError, match=match) as info:
            open_it()
        assert info.value.hint == hint


def test_a_database_stamped_with_two_revisions_is_one_clear_error_and_left_alone(tmp_path, cli, monkeypatch):
    """An ``alembic_version`` table holding two rows (edited by hand, or damaged): alembic's own error escaped as
    an internal error (exit 70), from every command and from ``edgenas serve``."""
    path = tmp_path / "e.db"
    url = f"sqlite:///{path}"
    ExperimentDB(url).close()
    con = sqlite3.connect(path)
    con.execute("INSERT INTO alembic_version VALUES ('0002')")
    con.commit()
    con.close()
    before = _stamp_and_tables(path)
    _refused_by_every_opening(url, r"database sqlite:///\S+ has several schema revisions \(0001, 0002\): its "
                                   r"alembic_version table was damaged", "restore it from a backup")
    monkeypatch.setenv("EDGENAS_PROJECT", str(tmp_path))
    for args in (("runs", "list"), ("db", "upgrade")):
        res = cli(*args, "--db", url)
        assert res.code == 6 and "has several schema revisions" in res.err and len(res.err.splitlines()) == 1, res.err
    assert _stamp_and_tables(path) == before
    con = sqlite3.connect(path)
    assert con.execute("SELECT version_num FROM alembic_version").fetchall() == [("0001",), ("0002",)]
    con.close()


def test_unable_to_open_while_file_descriptors_run_out_is_called_so():
    """SQLite's "unable to open database file" names no errno: with most of the process's descriptors in use it is
    "too many open files" (the API answers 503 for its ``fd_cause``), and only that error is."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 2, hard))
    try:
        full, other = (dbmod.translate(sa.exc.OperationalError("SELECT 1", {}, Exception(says)), "sqlite:///e.db")
                       for says in ("unable to open database file", "no such table: runs"))
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert full.message == "cannot open database sqlite:///e.db: too many open files" and "ulimit -n" in full.hint
    assert full.fd_cause.errno == errno.EMFILE and full.exit_code == 6
    assert "lacks part of the edgenas schema" in other.message and not hasattr(other, "fd_cause")


def test_reading_a_database_that_is_not_there_creates_nothing(tmp_path, cli, monkeypatch, no_env_db):
    from edgenas.project import Project

    monkeypatch.setenv("EDGENAS_PROJECT", str(tmp_path))
    res = cli("runs", "list", "--json", "--db", f"sqlite:///{tmp_path}/none.db")
    assert res.code == 0 and json.loads(res.out) == [] and list(tmp_path.iterdir()) == []
    project = Project(tmp_path)
    assert dbmod.database_exists(project, "postgresql+psycopg://u@h/db")  # a server: only opening it can tell
    assert dbmod.database_exists(project, "not a url")  # opening it gives the one clear error
    assert not dbmod.database_exists(project, f"sqlite:///{tmp_path}/none.db")
    (tmp_path / "none.db").mkdir()  # not "no database": one that opening it refuses
    assert dbmod.database_exists(project, f"sqlite:///{tmp_path}/none.db")


def test_migrations_unreadable_for_want_of_file_descriptors_are_called_so(tmp_path, monkeypatch):
    """Out of descriptors, alembic finds no migration: that is "too many open files" (``edgenas serve`` answers
    503), not a good database "newer than this edgenas knows (newest None)"."""
    import resource

    unreadable = tmp_path / "migrations"
    shutil.copytree(dbmod.MIGRATIONS, unreadable, ignore=shutil.ignore_patterns("__pycache__", "0*.py"))
    monkeypatch.setattr(dbmod, "_SCRIPTS", [])
    monkeypatch.setattr(dbmod, "MIGRATIONS", unreadable)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 4, hard))
    try:
        with pytest.raises(DatabaseError) as info:
            dbmod.head_revision()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert info.value.message == "cannot read edgenas' database migrations: too many open files"
    assert info.value.fd_cause is not None and "ulimit -n" in info.value.hint and dbmod._SCRIPTS == []


def test_a_refused_database_is_let_go_at_once(tmp_path):
    """``edgenas serve`` opens the database per request: each refused opening (here a newer schema) kept its
    connections and their files open until the garbage collector came by."""
    path = tmp_path / "e.db"
    ExperimentDB(f"sqlite:///{path}").close()
    con = sqlite3.connect(path)
    con.execute("UPDATE alembic_version SET version_num = '9999'")
    con.commit()
    con.close()
    gc.disable()  # what is held is held by the refused handle, not by garbage not yet collected
    try:
        for readonly in (False, True, False):
            with pytest.raises(DatabaseError, match="newer than this edgenas knows"):
                ExperimentDB(f"sqlite:///{path}", migrate=not readonly, readonly=readonly)
            assert _held(path) == []
        con = sqlite3.connect(path)  # a stamp of two revisions: refused once the engine has connected
        con.execute("UPDATE alembic_version SET version_num = '0001'")
        con.execute("INSERT INTO alembic_version VALUES ('9999')")
        con.commit()
        con.close()
        for readonly in (False, True, False):
            with pytest.raises(DatabaseError, match="several schema revisions"):
                ExperimentDB(f"sqlite:///{path}", migrate=not readonly, readonly=readonly)
            assert _held(path) == []
    finally:
        gc.enable()


def test_reading_an_empty_database_file_leaves_it_empty(tmp_path, cli, monkeypatch, no_env_db):
    """An empty file (``touch edgenas.db``) is a fresh database: a reading command lists nothing and leaves it
    as it is, never opened through the engine (which switches the file to WAL mode, writing its header)."""
    path = tmp_path / "e.db"
    path.touch()
    monkeypatch.setenv("EDGENAS_PROJECT", str(tmp_path))
    res = cli("runs", "list", "--json", "--db", f"sqlite:///{path}")
    assert res.code == 0 and json.loads(res.out) == [], res.err
    with ExperimentDB(f"sqlite:///{path}", migrate=False, readonly=True) as db:
        assert db.opened_revision is None
    assert path.stat().st_size == 0 and sorted(p.name for p in tmp_path.iterdir()) == ["e.db"]


def test_opening_a_database_leaves_no_advisory_lock_held(pg_db):
    """PostgreSQL's migration lock is a session's advisory lock: one left held by a pooled connection would keep
    every other process's first opening waiting for ever."""
    with pg_db.read() as con:
        assert con.execute(sa.text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")).scalar_one() == 0


def test_postgresql_without_psycopg_3_is_one_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if not installed: importing it raises ImportError
    with pytest.raises(DatabaseError, match="PostgreSQL support needs psycopg 3") as info:
        dbmod.create_engine("postgresql+psycopg://edgenas@127.0.0.1:5432/db")
    assert info.value.hint == "pip install 'psycopg[binary]'"


def test_the_projects_database_is_made_in_its_state_folder_that_holds_other_things_already(tmp_path, no_env_db):
    from edgenas.project import Project

    project = Project(tmp_path)
    project.state_dir.mkdir()
    (project.state_dir / "other").write_text("x")
    with ExperimentDB(project=project) as db:
        assert db.revision() == dbmod.head_revision()
    assert (project.state_dir / "edgenas.db").is_file() and (project.state_dir / "other").read_text() == "x"


def test_a_connection_the_server_dropped_is_replaced(pg_db, pg_url):
    """``edgenas serve`` keeps its pooled connections: one the PostgreSQL server closed meanwhile (a restart, an
    idle timeout) is found by its ping and replaced, not the next request's 'cannot reach database'."""
    db = pg_db
    assert db.revision() == dbmod.head_revision()  # the pool holds connections
    other = dbmod.create_engine(pg_url)
    with other.connect() as con:  # every other session of this database is closed by the server
        assert con.execute(sa.text("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE "
                                   "datname = current_database() AND pid <> pg_backend_pid()")).scalar_one() >= 1
    other.dispose()
    assert db.revision() == dbmod.head_revision()


def test_an_older_schema_on_postgresql_is_refused_until_db_upgrade(db, db_url, tmp_path, monkeypatch, make):
    kept = make()
    db.measurements.add(kept)
    _next_edgenas(tmp_path, monkeypatch, 'op.create_table("notes", sa.Column("id", sa.Integer, primary_key=True))')
    with pytest.raises(DatabaseError, match="has schema revision 0001; this edgenas needs 0002"):
        ExperimentDB(db_url)
    with ExperimentDB(db_url, migrate=False, check=False) as old:
        assert old.upgrade() == ("0001", "0002")
    with ExperimentDB(db_url) as new, new.read() as con:
        assert new.measurements.list() == [kept] and "notes" in sa.inspect(con).get_table_names()


def test_a_path_the_system_cannot_follow_is_named_in_the_systems_words(tmp_path):
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    with pytest.raises(DatabaseError) as info:
        dbmod.check_sqlite_target(tmp_path / "loop", "sqlite:///loop")
    assert info.value.message == f"cannot open database sqlite:///loop: {os.strerror(errno.ELOOP)}"


def test_check_sqlite_target_says_whether_the_file_exists_and_refuses_a_missing_folder_unless_told(tmp_path):
    """Its answer (does the file exist?) and its default (no folder is made for a path given by the user)."""
    (tmp_path / "e.db").write_bytes(b"")
    assert dbmod.check_sqlite_target(tmp_path / "e.db", "e") is True
    assert dbmod.check_sqlite_target(tmp_path / "e.db", "e", create_parent=True) is True
    assert dbmod.check_sqlite_target(tmp_path / "new.db", "new") is False
    assert dbmod.check_sqlite_target(tmp_path / "no" / "new.db", "new", create_parent=True) is False
    with pytest.raises(DatabaseError, match=f"database w: the folder {tmp_path}/no does not exist"):
        dbmod.check_sqlite_target(tmp_path / "no" / "new.db", "w")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.db"]


def test_a_project_state_folder_that_cannot_be_made_is_one_clear_error(tmp_path, no_env_db):
    """The project's own ``.edgenas/`` is made on first use; where it cannot be (here a link to nothing stands
    there) that is said, not SQLite's "unable to open database file" later."""
    from edgenas.project import Project

    (tmp_path / ".edgenas").symlink_to(tmp_path / "gone")
    with pytest.raises(DatabaseError, match="cannot create the folder of database sqlite:///.*: File exists") as info:
        ExperimentDB(None, Project(tmp_path))
    assert info.value.hint == "check the project folder and its permissions"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".edgenas"]


def test_a_database_path_beginning_with_two_slashes_opens_as_the_same_file(tmp_path, no_env_db, make):
    """``sqlite://///PATH`` (a path of ``//PATH``, the same file to the system): its check through SQLite's URI
    ``file://PATH`` took the path's first folder for a host ("invalid uri authority"), read or written."""
    with ExperimentDB(f"sqlite:///{tmp_path}/e.db") as db:
        db.measurements.add(make())
    url = f"sqlite:////{tmp_path}/e.db"
    with ExperimentDB(url) as db:
        assert db.opened_revision == dbmod.head_revision() and len(db.measurements.list()) == 1
    with open_db(url, readonly=True) as db:
        assert len(db.measurements.list()) == 1
    assert dbmod.readonly_uri(tmp_path / "e.db") == f"file://{tmp_path}/e.db?mode=ro"


def test_a_database_downgraded_to_base_is_fresh_and_db_upgrade_migrates_it(tmp_path, cli, monkeypatch):
    """The real migration's ``downgrade`` to ``base`` (what ``alembic downgrade base`` leaves) keeps only alembic's
    empty stamp table: revision ``base``, not a set-up that was interrupted. ``edgenas db upgrade`` takes it to
    the newest revision ("from empty"), and so does opening it, as a fresh database is."""
    from alembic import command

    urls = []
    for name in ("cli.db", "open.db"):
        url = f"sqlite:///{tmp_path / name}"
        ExperimentDB(url).close()
        engine = dbmod.create_engine(url)
        with engine.begin() as con:
            command.downgrade(dbmod._alembic_config(con), "base")
        engine.dispose()
        con = sqlite3.connect(tmp_path / name)
        assert {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")} == {"alembic_version"}
        assert con.execute("SELECT * FROM alembic_version").fetchall() == []
        con.close()
        urls.append(url)
    monkeypatch.setenv("EDGENAS_PROJECT", str(tmp_path))
    res = cli("db", "upgrade", "--db", urls[0], "--json")
    assert res.code == 0, res.err
    assert json.loads(res.out)["revision_before"] is None and json.loads(res.out)["revision"] == dbmod.head_revision()
    with ExperimentDB(urls[1], migrate=False, readonly=True) as db:  # a reader migrates nothing
        assert db.opened_revision is None
    for url in urls:
        with ExperimentDB(url) as db:
            assert db.revision() == dbmod.head_revision()
            with db.read() as con:
                assert set(sa.inspect(con).get_table_names()) == set(metadata.tables) | {"alembic_version"}


def test_another_applications_alembic_database_is_refused_as_such_and_left_alone(db_url, tmp_path, cli, monkeypatch):
    """Another application that alembic manages too keeps its own stamp in ``alembic_version``: it was called a
    database of a newer edgenas ("upgrade edgenas"), and an SQLite file was switched to WAL mode on the way
    (a -wal and a -shm file beside it, its header rewritten) although the message said nothing was changed."""
    eng = sa.create_engine(db_url)
    with eng.begin() as con:
        con.execute(sa.text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)"))
        con.execute(sa.text("INSERT INTO alembic_version VALUES ('a1b2c3d4e5f6')"))
        con.execute(sa.text("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)"))
        con.execute(sa.text("INSERT INTO users VALUES (1, 'ann')"))
    eng.dispose()
    path = dbmod.sqlite_path(db_url)
    beside = (lambda: sorted(p for p in os.listdir(path.parent) if p.startswith(path.name))) if path else None
    before = (path.read_bytes(), beside()) if path else None
    _refused_by_every_opening(db_url, r"holds another application's schema \(revision a1b2c3d4e5f6\), not "
                                      r"edgenas's; nothing was changed",
                              "point --db / EDGENAS_DB at an edgenas database or a new one")
    monkeypatch.setenv("EDGENAS_PROJECT", str(tmp_path))
    res = cli("db", "upgrade", "--db", db_url)
    assert res.code == 6 and "another application's schema" in res.err and len(res.err.strip().splitlines()) == 1
    if path:
        assert (path.read_bytes(), beside()) == before  # no -wal, -shm or .migrate.lock either
    eng = sa.create_engine(db_url)
    with eng.connect() as con:
        assert set(sa.inspect(con).get_table_names()) == {"alembic_version", "users"}
        assert con.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one() == "a1b2c3d4e5f6"
    eng.dispose()


def test_another_applications_sqlite_file_without_alembic_is_left_byte_for_byte(tmp_path):
    """Refused from the read-only look before the engine's first connection, which would switch the file to WAL
    mode (its header rewritten, a -wal and a -shm file beside it)."""
    path = tmp_path / "other.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    con.execute("INSERT INTO users VALUES (1, 'ann')")
    con.commit()
    con.close()
    before = path.read_bytes()
    for kw in ({}, {"migrate": False, "readonly": True}, {"migrate": False, "check": False}):
        with pytest.raises(DatabaseError, match="holds tables but no edgenas schema revision; nothing was changed"):
            ExperimentDB(f"sqlite:///{path}", **kw)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["other.db"]
