"""Opening the experiment database: URL resolution, engines, and the schema check/migration on open.

The URL is ``--db`` / ``url=`` if given, else ``$EDGENAS_DB``, else the project's SQLite file
``.edgenas/edgenas.db``. SQLite runs in WAL mode (readers never block the writer) with a busy timeout
(writers wait for each other instead of failing); PostgreSQL is reached with psycopg 3
(``postgresql+psycopg://USER@HOST:PORT/DB``) with a connect timeout.

On open the schema revision is compared with the newest migration this code ships:

* a fresh database (no tables) is migrated to the newest revision at once;
* an older revision is an error that says to run ``edgenas db upgrade``;
* a revision this code does not know (written by a newer edgenas) is an error: nothing is changed.

Every failure to reach or read the database is one ``DatabaseError`` naming the database (the
password, if the URL has one, is hidden).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Iterator

import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from edgenas.errors import EdgenasError
from edgenas.project import Project
from edgenas.store.sqlite_wal import enable_wal

ENV_VAR = "EDGENAS_DB"
BUSY_TIMEOUT_S = 30.0
CONNECT_TIMEOUT_S = 10
MIGRATIONS = Path(__file__).with_name("migrations")


class DatabaseError(EdgenasError):
    """The experiment database cannot be reached, read or written, or has an unknown schema."""

    exit_code = 6


def default_url(project: Project | None = None) -> str:
    project = project or Project.default()
    return f"sqlite:///{project.state_dir / 'edgenas.db'}"


def resolve_url(url: str | None = None, project: Project | None = None) -> str:
    return url or os.environ.get(ENV_VAR) or default_url(project)


def database_exists(project: Project, url: str | None = None) -> bool:
    """Whether there is an experiment database to read, checked without creating one: a server URL given
    (or ``$EDGENAS_DB``), or an SQLite file that exists (the URL's, else the project's own)."""
    given = url or os.environ.get(ENV_VAR)
    if not given:
        return (project.state_dir / "edgenas.db").is_file()
    try:
        path = _sqlite_path(make_url(given))
    except Exception:  # noqa: BLE001 - an unparsable URL: opening it gives the one clear error
        return True
    return path is None or path.is_file()


def describe(url: str) -> str:
    """The URL with any password masked (for messages)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL is shown as given
        return url


def check_writable(url: str) -> None:
    """Refuse an SQLite database file this process cannot write (read-only or immutable, or its folder, where
    SQLite keeps its journal), so a search fails before it runs, not when it records its result. Servers
    are checked by their first write."""
    try:
        path = _sqlite_path(make_url(url))
    except Exception:  # noqa: BLE001 - create_engine has refused a bad URL already
        return
    if path is None or not path.is_file():  # a new file: creating it (open_db) fails first where it cannot be
        return
    if not (os.access(path, os.R_OK | os.W_OK) and os.access(path.parent, os.W_OK | os.X_OK)):  # SQLite's journal
        raise DatabaseError(f"database {describe(url)} is read-only for edgenas (the file or its folder)",
                            hint="check their permissions, or give another --db")


def _sqlite_path(u: sa.URL) -> Path | None:
    return Path(u.database) if u.get_backend_name() == "sqlite" and u.database not in (None, "", ":memory:") else None


def create_engine(url: str) -> Engine:
    try:
        u = make_url(url)
    except Exception as exc:  # noqa: BLE001 - sqlalchemy raises ArgumentError and others
        raise DatabaseError(f"'{url}' is not a database URL ({exc})",
                            hint="e.g. sqlite:///PATH or postgresql+psycopg://USER@HOST:PORT/DB") from None
    backend = u.get_backend_name()
    if backend == "sqlite":
        path = _sqlite_path(u)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(u, connect_args={"timeout": BUSY_TIMEOUT_S})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_con, _record) -> None:  # noqa: ANN001
            cur = dbapi_con.cursor()
            cur.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            enable_wal(cur, BUSY_TIMEOUT_S)
            cur.execute("PRAGMA foreign_keys = ON")
            cur.execute("PRAGMA synchronous = NORMAL")
            cur.close()

        return engine
    if backend == "postgresql":
        if u.drivername == "postgresql":
            u = u.set(drivername="postgresql+psycopg")
        try:
            return sa.create_engine(u, connect_args={"connect_timeout": CONNECT_TIMEOUT_S}, pool_pre_ping=True)
        except ImportError:
            raise DatabaseError("PostgreSQL support needs psycopg 3",
                                hint="pip install 'psycopg[binary]'") from None
    raise DatabaseError(f"unsupported database '{describe(url)}'",
                        hint="use sqlite:///PATH or postgresql+psycopg://USER@HOST:PORT/DB")


def _alembic_config(connection: sa.Connection):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(cfg).get_current_head()


def known_revisions() -> set[str]:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return {s.revision for s in ScriptDirectory.from_config(cfg).walk_revisions()}


def current_revision(connection: sa.Connection) -> str | None:
    """The database's revision; None for a fresh database; ``"?"`` for tables without alembic's stamp."""
    from alembic.migration import MigrationContext

    rev = MigrationContext.configure(connection).get_current_revision()
    if rev is None and sa.inspect(connection).get_table_names():
        names = set(sa.inspect(connection).get_table_names())
        if names & {"runs", "evaluations", "measurements"}:
            return "?"
    return rev


@contextlib.contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    """One process migrates at a time: a lock file next to a SQLite file, an advisory lock on PostgreSQL."""
    path = _sqlite_path(engine.url)
    if path is not None:
        with open(str(path) + ".migrate.lock", "a") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        return
    if engine.dialect.name == "postgresql":
        with engine.connect() as con:
            con.execute(sa.text("SELECT pg_advisory_lock(727001)"))
            try:
                yield
            finally:
                con.execute(sa.text("SELECT pg_advisory_unlock(727001)"))
                con.commit()
        return
    yield


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Migrate to the newest revision; returns (revision before, revision after)."""
    from alembic import command

    head = head_revision()
    with _migration_lock(engine):
        with engine.begin() as con:
            before = check_revision(con, allow_old=True)
            if before != head:
                command.upgrade(_alembic_config(con), "head")
    return before, head


def check_revision(con: sa.Connection, *, allow_old: bool = False, url: str | None = None) -> str | None:
    where = describe(url or str(con.engine.url))
    rev = current_revision(con)
    head = head_revision()
    if rev == "?":
        raise DatabaseError(f"database {where} holds tables but no edgenas schema revision",
                            hint="point --db / EDGENAS_DB at an edgenas database or a new one")
    if rev is not None and rev not in known_revisions():
        raise DatabaseError(f"database {where} has schema revision {rev}, newer than this edgenas knows "
                            f"(newest {head}); nothing was changed", hint="upgrade edgenas")
    if rev not in (None, head) and not allow_old:
        raise DatabaseError(f"database {where} has schema revision {rev}; this edgenas needs {head}",
                            hint="run: edgenas db upgrade")
    return rev


def translate(exc: BaseException, url: str) -> DatabaseError:
    """One clear ``DatabaseError`` for a driver error."""
    where = describe(url)
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    low = text.lower()
    if "database is locked" in low or "database table is locked" in low:
        return DatabaseError(f"database {where} is locked by another writer ({text})",
                             hint=f"another process held the write lock for over {BUSY_TIMEOUT_S:.0f} s; retry")
    if "file is not a database" in low or "malformed" in low or "disk image" in low:
        return DatabaseError(f"database {where} is damaged or not a SQLite file ({text})",
                             hint="move the file aside (a new one is created) or restore it from a backup")
    if "disk i/o error" in low or "database or disk is full" in low:
        return DatabaseError(f"cannot write database {where}: the disk is full or failing ({text})",
                             hint="free some space, then retry")
    if "unable to open" in low or "readonly" in low or "read-only" in low:
        return DatabaseError(f"cannot open database {where} ({text})", hint="check the path and its permissions")
    if "no such table" in low or "no such column" in low or ("relation" in low and "does not exist" in low):
        return DatabaseError(f"database {where} lacks part of the edgenas schema ({text})",
                             hint="it was damaged or edited: restore it from a backup, or move it aside "
                                  "(a new one is created)")
    if isinstance(exc, sa.exc.OperationalError) or "connection" in low:
        return DatabaseError(f"cannot reach database {where} ({text})",
                             hint=f"check the server, the URL in --db / ${ENV_VAR}, and the network")
    return DatabaseError(f"database {where}: {text}")
