"""Opening the experiment database: URL resolution, engines, and the schema check/migration on open.

The URL is ``--db`` / ``url=`` if given, else ``$EDGENAS_DB``, else the project's SQLite file
``.edgenas/edgenas.db``. SQLite runs in WAL mode (readers never block the writer) with a busy timeout
(writers wait for each other instead of failing); PostgreSQL is reached with psycopg 3
(``postgresql+psycopg://USER@HOST:PORT/DB``) with a connect timeout.

On open the schema revision is compared with the newest migration this code ships:

* a fresh database (no tables, or only alembic's empty stamp table: at revision ``base``) is migrated to
  the newest revision at once;
* an older revision is an error that says to run ``edgenas db upgrade``;
* a revision this code does not know (written by a newer edgenas) is an error: nothing is changed;
* tables without an edgenas revision (another application's database, alembic's stamp of its own or none)
  are an error, found through a read-only connection before anything is written, so the file is left
  exactly as it was.

An SQLite path is checked before anything is opened or created next to it (``check_sqlite_target``): a
folder, a FIFO, a device, a link loop or a new file in a missing folder is refused (only the project's
own ``.edgenas/`` is created); a failed migration removes the ``.migrate.lock`` it created.

Every failure to reach or read the database is one ``DatabaseError`` naming the database (the
password, if the URL has one, is hidden).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import stat
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
    project = project or Project.default()  # the path escaped: a project in "a?b" or "100%41" is not in "a" or "100A"
    return sa.URL.create("sqlite", database=str(project.state_dir / "edgenas.db")).render_as_string(hide_password=False)


def resolve_url(url: str | None = None, project: Project | None = None) -> str:
    return url or os.environ.get(ENV_VAR) or default_url(project)


def _given_url(url: str | None) -> tuple[str | None, sa.URL | None]:
    """The URL given (``url`` or ``$EDGENAS_DB``; None for the project's default) and its parse, None where it
    does not parse: opening it gives the one clear error."""
    given = url or os.environ.get(ENV_VAR)
    try:
        return given, make_url(given) if given else None
    except Exception:  # noqa: BLE001 - an unparsable URL: opening it gives the one clear error
        return given, None


def refuse_in_memory(url: str | None) -> None:
    """A given URL (``--db``, ``$EDGENAS_DB``) of an in-memory SQLite database is refused: a search recorded
    into it is gone when the command ends, without a word."""
    given, u = _given_url(url)
    if u is not None and u.get_backend_name() == "sqlite" and _sqlite_path(u) is None:  # no file: in memory
        raise DatabaseError(f"'{describe(given)}' is an in-memory database: what a command records there is gone "
                            "when it ends", hint="give sqlite:///PATH of a file, or a server URL")


def database_exists(project: Project, url: str | None = None) -> bool:
    """Whether there is an experiment database to read, checked without creating one: a server URL given
    (or ``$EDGENAS_DB``), or anything at the SQLite path (the URL's, else the project's own): a folder, a
    FIFO or a link there is not "no database" but one that opening it refuses with a clear error."""
    given = url or os.environ.get(ENV_VAR)
    if not given:
        return os.path.lexists(project.state_dir / "edgenas.db")
    try:
        path = _sqlite_path(make_url(given))
    except Exception:  # noqa: BLE001 - an unparsable URL: opening it gives the one clear error
        return True
    return path is None or os.path.lexists(path)


def check_driver(url: str | None) -> None:
    """Refuse, without connecting, a URL (``url`` or ``$EDGENAS_DB``) whose driver SQLAlchemy does not know: a
    reading command with ``sqlite+nodriver:///missing.db`` found no file, listed nothing and exited 0."""
    given, u = _given_url(url)
    try:
        if u is not None:
            u.get_dialect()
    except sa.exc.ArgumentError as exc:  # NoSuchModuleError
        raise _unsupported(str(given), exc) from None


def is_default(url: str | None) -> bool:
    """Whether ``url`` leaves the choice to the project (no URL, no ``$EDGENAS_DB``): its own ``.edgenas/``."""
    return not (url or os.environ.get(ENV_VAR))


def check_sqlite_target(path: Path, where: str, *, create_parent: bool = False) -> bool:
    """Refuse an SQLite path that cannot be a database file, before anything is opened or created next to
    it: a folder, a FIFO or a device (``/dev/zero`` never ends), a link loop, a link to nothing, a path
    through a file, or a new file in a folder that does not exist (a typo in ``--db`` must not create a
    tree of folders; the project's own ``.edgenas/`` is made when ``create_parent``). Returns whether the
    file exists."""
    hint = "give --db sqlite:///PATH of an edgenas database file, or of a new file in an existing folder"
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise DatabaseError(f"database {where} is a symbolic link to a file that does not exist",
                                hint=hint) from None
        if create_parent:
            return False
        if not path.parent.is_dir():
            raise DatabaseError(f"database {where}: the folder {path.parent} does not exist",
                                hint="create it first, or check the path in --db / $EDGENAS_DB") from None
        return False
    except OSError as exc:  # ELOOP, ENOTDIR, EACCES, ENAMETOOLONG
        raise DatabaseError(f"cannot open database {where}: {exc.strerror or exc}", hint=hint) from None
    if stat.S_ISDIR(st.st_mode):
        raise DatabaseError(f"database {where} is a folder, not a database file", hint=hint)
    if not stat.S_ISREG(st.st_mode):
        raise DatabaseError(f"database {where} is not a regular file (a FIFO, a device or a socket)", hint=hint)
    if st.st_size:  # an empty file is a new database to SQLite
        _check_sqlite_header(path, where, st.st_size)
    return True


#: what to do about a damaged database file (``_check_sqlite_header``, ``translate``)
DAMAGED_HINT = "move the file aside (a new one is created) or restore it from a backup"
#: the first 16 bytes of every SQLite 3 database file
SQLITE_MAGIC = b"SQLite format 3\x00"


def _check_sqlite_header(path: Path, where: str, size: int) -> None:
    """Refuse a file that cannot be an SQLite database from its first page alone, before SQLite opens it: it
    makes the -wal and -shm files of a WAL database (which edgenas's are) before it reads a page, and leaves
    them when the file turns out to be something else or cut short."""
    try:
        with open(path, "rb") as f:
            head = f.read(100)
    except OSError:  # unreadable: SQLite's opening says so, as for any database
        return
    if len(head) < 100 or not head.startswith(SQLITE_MAGIC):
        raise DatabaseError(f"database {where} is damaged or not a SQLite file (no SQLite header)",
                            hint=DAMAGED_HINT)
    page = int.from_bytes(head[16:18], "big")
    page = 65536 if page == 1 else page
    if page < 512 or page & (page - 1):
        raise DatabaseError(f"database {where} is damaged (its header gives a page size of {page})",
                            hint=DAMAGED_HINT)
    if size < page:
        raise DatabaseError(f"database {where} is damaged: cut short at {size} bytes, less than its first "
                            f"{page}-byte page", hint=DAMAGED_HINT)


#: the tables of the edgenas schema (and alembic's stamp): a database holding others is not edgenas's
EDGENAS_TABLES = frozenset({"runs", "run_devices", "evaluations", "fronts", "measurements", "alembic_version"})


@contextlib.contextmanager
def peek_sqlite(path: Path, url: str) -> Iterator[tuple[str | None, set[str]]]:
    """(revision, table names) of an existing SQLite file, read through a read-only connection without
    the pragmas of ``create_engine`` (which switch the file to WAL mode): nothing in the file changes,
    so another application's database can be refused as it is. A ``DatabaseError`` in the block (the caller
    refusing what it found) or in the reading removes the -wal and -shm files the read-only connection made
    beside a WAL file (``_fold_made``): each refusal of a newer edgenas's database left an empty -wal and a
    32 KB -shm beside it."""
    made = [f for f in (Path(f"{path}-wal"), Path(f"{path}-shm")) if not os.path.lexists(f)]
    try:
        yield _peek(path, url, made)
    except DatabaseError:
        _fold_made(path, made)
        raise


def _peek(path: Path, url: str, made: list[Path]) -> tuple[str | None, set[str]]:
    """``peek_sqlite``'s reading; a damaged file's -wal and -shm files it made are removed (``_remove_made``)."""
    import sqlite3

    try:
        con = sqlite3.connect(readonly_uri(path), uri=True, timeout=BUSY_TIMEOUT_S)
    except sqlite3.Error as exc:
        raise translate(exc, url) from None
    try:
        names = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        rev = None
        if "alembic_version" in names:
            row = con.execute("SELECT version_num FROM alembic_version").fetchone()
            rev = row[0] if row else None
        return rev, names
    except sqlite3.Error as exc:
        error, damaged = translate(exc, url), says_damaged(str(exc))
    finally:
        con.close()
    if damaged:
        _remove_made(made)
    raise error


def _remove_made(made: list[Path]) -> None:
    """Remove the -wal and -shm files SQLite made beside a database it then found damaged (it leaves them):
    those that were not there before, the -wal file while it is empty (no process wrote to a file SQLite
    cannot read)."""
    wal = [f for f in made if f.name.endswith("-wal")]
    if any(f.is_file() and f.stat().st_size for f in wal):
        return
    for f in made:
        with contextlib.suppress(OSError):
            f.unlink()


def _fold_made(path: Path, made: list[Path]) -> None:
    """Remove the -wal and -shm files a read-only connection made beside the WAL file ``path`` that is then
    refused (only a connection that may write removes them): through such a connection, opened, read and closed,
    which removes them as SQLite does when it is the last one to close, so those another process opened
    meanwhile stay its own (unlinking them, as ``_remove_made`` does, could split its readers and writers
    between two -shm files). Only while the -wal is empty: nothing is written to the file."""
    import sqlite3
    from urllib.parse import quote

    wal = Path(f"{path}-wal")
    if not any(os.path.lexists(f) for f in made) or (wal.is_file() and wal.stat().st_size):
        return
    with contextlib.suppress(sqlite3.Error):  # best effort: the refusal is the error to report
        con = sqlite3.connect(f"file://{quote(os.path.abspath(path))}?mode=rw", uri=True, timeout=1.0)
        try:
            con.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()  # opens the WAL: closing removes it
        finally:
            con.close()


def describe(url: str) -> str:
    """The URL with any password masked (for messages), an unparsable one's too, and a ``?password=`` that
    libpq reads as the password."""
    try:
        shown = make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL is shown as given, but for what may be a password
        shown = re.sub(r"(://[^/@]*?:)[^/]*@", r"\1***@", url)
    return re.sub(r"([?&]password=)[^&]*", r"\1***", shown, flags=re.IGNORECASE)


def check_writable(url: str) -> None:
    """Refuse an SQLite database file this process cannot write (read-only or immutable, or its folder, where
    SQLite keeps its journal, or a -wal or -shm file beside it), so a search fails before it runs, not when it
    records its result. Servers are checked by their first write."""
    try:
        path = _sqlite_path(make_url(url))
    except Exception:  # noqa: BLE001 - create_engine has refused a bad URL already
        return
    if path is None or not path.is_file():  # a new file: creating it (open_db) fails first where it cannot be
        return
    if not _file_writable(path):  # SQLite's journal
        raise DatabaseError(f"database {describe(url)} is read-only for edgenas (the file or its folder)",
                            hint="check their permissions, or give another --db")
    if beside := _read_only_beside(path):
        raise DatabaseError(f"database {describe(url)} is read-only for edgenas "
                            f"({' and '.join(f.name for f in beside)} beside it)",
                            hint="check their permissions, or give another --db")


def _read_as_it_is(path: Path) -> bool:
    """Whether a reading command opens ``path`` read-only (``readonly_uri``, no pragmas): where it cannot be
    written, and where it is not in WAL mode (byte 18 of its header is 2 in WAL mode), which a connection of its
    own switches (``serve`` turned a copy made by VACUUM INTO, in the rollback journal, into a WAL file), unless
    a -journal or -wal file lies beside it (a killed writer's: only a connection that can write rolls it back or
    folds it in). Not the usual WAL file: a read-only connection leaves the -wal and -shm files it needs, where
    one of its own removes them when it closes last (a server's requests overlap: -wal files were left)."""
    if not writable(path):
        return True
    if os.path.lexists(f"{path}-journal") or os.path.lexists(f"{path}-wal"):
        return False
    try:
        with open(path, "rb") as f:
            head = f.read(20)
    except OSError:  # SQLite's opening says why
        return False
    return len(head) == 20 and head[18] != 2


def writable(path: Path) -> bool:
    """Whether SQLite can write ``path``: the file, its folder (a journal or WAL file goes next to it) and any
    -wal or -shm file beside it (with one read-only, SQLite reads the database but every write fails, "attempt
    to write a readonly database": a search found it out when it recorded its result)."""
    return _file_writable(path) and not _read_only_beside(path)


def _file_writable(path: Path) -> bool:
    return os.access(path, os.R_OK | os.W_OK) and os.access(path.parent, os.W_OK | os.X_OK)


def _read_only_beside(path: Path) -> list[Path]:
    """The -wal and -shm files beside ``path`` that SQLite cannot both read and write (one that appeared
    meanwhile is asked again: another writer's, which its last connection removes)."""
    rw = os.R_OK | os.W_OK
    return [f for f in (Path(f"{path}-wal"), Path(f"{path}-shm"))
            if not (os.access(f, rw) or not os.path.lexists(f) or os.access(f, rw))]


def readonly_uri(path: Path) -> str:
    """A read-only SQLite URI of ``path``; ``immutable`` where it cannot be written (``writable``: the file, its
    folder, a -wal or -shm file beside it): a WAL database there cannot be opened otherwise (its -shm file
    cannot be made, or not used), and nobody writes it.

    Not where a -wal file beside it holds changes (a writer killed, or a copy taken while one ran): read as
    immutable the file was without them, rows and even tables missing, and no error. It is read through
    the -shm file beside it, or refused when there is none (SQLite cannot read the -wal without one)."""
    from urllib.parse import quote

    uri = f"file://{quote(os.path.abspath(path))}?mode=ro"  # an empty authority: a path of "//x" is not host x
    if writable(path):
        return uri
    wal, shm = Path(f"{path}-wal"), Path(f"{path}-shm")
    if not (wal.is_file() and wal.stat().st_size > 0):
        return uri + "&immutable=1"
    if shm.is_file() and os.access(shm, os.R_OK):
        return uri
    why = (f"{shm.name} beside them cannot be read" if os.path.lexists(shm)  # another user's, kept from others
           else f"no {shm.name} beside them, and edgenas cannot write the file or its folder")
    raise DatabaseError(f"database {path} has changes in {wal.name} that SQLite cannot read ({why})",
                        hint=f"open it once where its folder can be written, which folds {wal.name} into it; "
                             f"or copy {path.name} with {wal.name} to such a folder and give --db sqlite:///COPY")


def sqlite_path(url: str) -> Path | None:
    """The file of an SQLite URL (None: a server, an in-memory database or an unparsable URL)."""
    try:
        return _sqlite_path(make_url(url))
    except Exception:  # noqa: BLE001 - create_engine refuses a bad URL with the clear error
        return None


def _sqlite_path(u: sa.URL) -> Path | None:
    return Path(u.database) if u.get_backend_name() == "sqlite" and u.database not in (None, "", ":memory:") else None


def _text(data: bytes) -> str | bytes:
    """SQLite text as str; text that is not UTF-8 (written by something else) as its bytes."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data


def create_engine(url: str, *, create_parent: bool = False, readonly: bool = False) -> Engine:
    """The engine for ``url``; an SQLite path is checked first (``check_sqlite_target``), and its folder
    created only when ``create_parent`` (the project's own database). ``readonly`` (a reading command) opens
    an SQLite file read-only, without the WAL switch, where it cannot write it or the file is in another journal
    mode (``_read_as_it_is``; a read-only project's runs could not be listed: "attempt to write a readonly
    database")."""
    try:
        u = make_url(url)
    except Exception as exc:  # noqa: BLE001 - sqlalchemy raises ArgumentError and others
        shown = describe(url)  # the parser's words may quote a password: not said where one was masked
        raise DatabaseError(f"'{shown}' is not a database URL" + (f" ({exc})" if shown == url else ""),
                            hint="e.g. sqlite:///PATH or postgresql+psycopg://USER@HOST:PORT/DB") from None
    backend = u.get_backend_name()
    if backend == "sqlite":
        if u.query.get("uri") not in (None, "false", "0"):  # SQLite then opens a file: URI, not the path checked here
            raise DatabaseError(f"database {describe(url)}: SQLite URI filenames (uri=true) are not supported",
                                hint="give sqlite:///PATH of the database file, without ?uri=")
        path = _sqlite_path(u)
        if path is not None and not check_sqlite_target(path, describe(url), create_parent=create_parent) \
                and create_parent:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise DatabaseError(f"cannot create the folder of database {describe(url)}: {exc.strerror or exc}",
                                    hint="check the project folder and its permissions") from None
        if readonly and path is not None and path.is_file() and _read_as_it_is(path):
            import sqlite3

            uri = readonly_uri(path)  # refused here, once, where the file cannot be read whole

            def connect() -> sqlite3.Connection:
                con = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S)
                con.text_factory = _text
                return con

            return sa.create_engine("sqlite://", creator=connect)
        try:
            engine = sa.create_engine(u, connect_args={"timeout": BUSY_TIMEOUT_S})
        except sa.exc.ArgumentError as exc:  # NoSuchModuleError: a driver SQLAlchemy does not know
            raise _unsupported(url, exc) from None

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_con, _record) -> None:  # noqa: ANN001
            cur = dbapi_con.cursor()
            cur.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            enable_wal(cur, BUSY_TIMEOUT_S)
            cur.execute("PRAGMA foreign_keys = ON")
            cur.execute("PRAGMA synchronous = NORMAL")
            cur.close()
            dbapi_con.text_factory = _text  # a damaged row's bad text is a value store.rows names, not a fetch error

        return engine
    if backend == "postgresql":
        if u.drivername == "postgresql":
            u = u.set(drivername="postgresql+psycopg")
        if u.drivername != "postgresql+psycopg":  # asyncpg or psycopg2 was "needs psycopg 3", with psycopg 3 there
            raise _unsupported(url, f"driver '{u.get_driver_name()}': edgenas talks to PostgreSQL through psycopg 3")
        try:
            return sa.create_engine(u, connect_args={"connect_timeout": CONNECT_TIMEOUT_S}, pool_pre_ping=True)
        except ImportError:
            raise DatabaseError("PostgreSQL support needs psycopg 3",
                                hint="pip install 'psycopg[binary]'") from None
    raise _unsupported(url)


def _unsupported(url: str, exc: Exception | str | None = None) -> DatabaseError:
    said = f" ({str(exc).strip().splitlines()[0]})" if exc is not None and str(exc).strip() else ""
    return DatabaseError(f"unsupported database '{describe(url)}'{said}",
                         hint="use sqlite:///PATH or postgresql+psycopg://USER@HOST:PORT/DB")


def _alembic_config(connection: sa.Connection):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


#: (head, every revision) of the migrations, read once a process: read per request by ``edgenas serve`` out of
#: file descriptors, alembic found none and a good database was "newer than this edgenas knows (newest None)"
_SCRIPTS: list[tuple[str, frozenset[str]]] = []


def _revisions() -> tuple[str, frozenset[str]]:
    if _SCRIPTS:
        return _SCRIPTS[0]
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    script = ScriptDirectory.from_config(cfg)
    found = (script.get_current_head(), frozenset(s.revision for s in script.walk_revisions()))
    if found[0] is None or not found[1]:  # a folder that could not be read now: ask again next time
        from edgenas.outdirs import fds_exhausted

        if (fds := fds_exhausted()) is not None:
            raise _fds_error("cannot read edgenas' database migrations", fds)
        return found  # type: ignore[return-value]
    _SCRIPTS.append(found)  # type: ignore[arg-type]
    return found  # type: ignore[return-value]


def _fds_error(what: str, fds: OSError) -> DatabaseError:
    """``what`` failed for want of file descriptors: the error keeps ``fds`` as its ``fd_cause``, so the CLI
    says so (exit 6) and the API answers 503, not 500."""
    from edgenas.outdirs import FD_HINT

    error = DatabaseError(f"{what}: too many open files", hint=FD_HINT)
    error.fd_cause = fds  # type: ignore[attr-defined]
    return error


def check_migrations() -> None:
    """Refuse to open any database when edgenas's own migrations cannot be read (their folder's permissions, a
    damaged install): alembic finds no revision then, a new database was left unmigrated and then refused as
    lacking "part of the edgenas schema", and a good one was "newer than this edgenas knows"."""
    if _revisions()[0] is None:
        raise DatabaseError(f"cannot read edgenas's database migrations in {MIGRATIONS / 'versions'}",
                            hint="check that folder's permissions, or reinstall edgenas")


def head_revision() -> str:
    return _revisions()[0]


def known_revisions() -> set[str]:
    return set(_revisions()[1])


def current_revision(connection: sa.Connection, url: str | None = None) -> str | None:
    """The database's revision; None for a fresh database; ``"?"`` for tables without alembic's stamp."""
    from alembic.migration import MigrationContext

    heads = MigrationContext.configure(connection).get_current_heads()
    if len(heads) > 1:  # alembic's get_current_revision raised its CommandError: an internal error (exit 70)
        raise DatabaseError(f"database {describe(url or str(connection.engine.url))} has several schema revisions "
                            f"({', '.join(str(h) for h in heads)}): its alembic_version table was damaged or edited",
                            hint="restore it from a backup")
    rev = heads[0] if heads else None
    if rev is None and set(sa.inspect(connection).get_table_names()) - {"alembic_version"}:
        return "?"  # another application's tables, or edgenas's while another process migrates a fresh file
    return rev  # None also for alembic's empty stamp table alone: a database at ``base`` (downgraded) is fresh


def foreign_tables(connection: sa.Connection) -> set[str]:
    """Tables that are not edgenas's (another application's database)."""
    return set(sa.inspect(connection).get_table_names()) - EDGENAS_TABLES


@contextlib.contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    """One process migrates at a time: a lock file next to a SQLite file, an advisory lock on PostgreSQL."""
    path = _sqlite_path(engine.url)
    if path is not None:
        lock, created = _open_lock(Path(str(path) + ".migrate.lock"), describe(str(engine.url)))
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
        except BaseException:
            if created:  # a failed migration leaves nothing of ours behind
                with contextlib.suppress(OSError):
                    os.unlink(str(path) + ".migrate.lock")
            raise
        finally:
            os.close(lock)
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


def _open_lock(lock: Path, where: str) -> tuple[int, bool]:
    """(descriptor, created): the lock file, opened without following a link or blocking on a FIFO."""
    flags = os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        try:
            fd, created = os.open(lock, flags | os.O_CREAT | os.O_EXCL, 0o644), True
        except FileExistsError:
            fd, created = os.open(lock, flags), False
    except OSError as exc:
        raise DatabaseError(f"cannot open the migration lock {lock} of database {where}: {exc.strerror or exc}",
                            hint="move it aside if it is not a plain file; check the folder's permissions") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise DatabaseError(f"the migration lock {lock} of database {where} is not a regular file",
                            hint="move it aside")
    return fd, created


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Migrate to the newest revision; returns (revision before, revision after)."""
    from alembic import command

    head = head_revision()
    with _migration_lock(engine):
        if engine.dialect.name != "sqlite":
            with engine.begin() as con:  # PostgreSQL: DDL is transactional as it is
                before = check_revision(con, allow_old=True)
                if before != head:
                    command.upgrade(_alembic_config(con), "head")
            return before, head
        with engine.connect() as con, _sqlite_ddl_transaction(con):
            before = check_revision(con, allow_old=True)
            if before != head:
                command.upgrade(_alembic_config(con), "head")
    return before, head


@contextlib.contextmanager
def _sqlite_ddl_transaction(con: sa.Connection) -> Iterator[None]:
    """The whole migration as one SQLite transaction. Python's sqlite3 commits each CREATE TABLE by itself
    (only DML opens its implicit transaction), so a first run killed while it set the database up left
    tables without the schema stamp, which every later command refused; and a reader in another process
    saw those tables meanwhile (the API answered 500). Here the driver's own transaction handling is off
    and ``BEGIN IMMEDIATE`` takes the write lock for the DDL and the stamp together."""
    dbapi = con.connection.dbapi_connection
    saved = dbapi.isolation_level
    dbapi.isolation_level = None
    try:
        con.exec_driver_sql("BEGIN IMMEDIATE")
        try:
            yield
            con.commit()  # sqlite3's commit() ends the explicit transaction
        except BaseException:
            con.rollback()
            raise
    finally:
        dbapi.isolation_level = saved


def check_revision(con: sa.Connection, *, allow_old: bool = False, url: str | None = None) -> str | None:
    where = describe(url or str(con.engine.url))
    rev = current_revision(con, url)
    head = head_revision()
    if rev == "?" and not foreign_tables(con):  # an edgenas before 5 December set a new file up table by table
        raise DatabaseError(f"database {where} holds edgenas tables but no schema revision: its first set-up was "
                            "interrupted", hint="move the file aside (a new one is created on the next run)")
    if rev == "?":
        raise DatabaseError(f"database {where} holds tables but no edgenas schema revision",
                            hint="point --db / EDGENAS_DB at an edgenas database or a new one")
    if rev is not None and rev not in known_revisions():
        raise unknown_revision(where, rev, set(sa.inspect(con).get_table_names()))
    if rev not in (None, head) and not allow_old:
        raise DatabaseError(f"database {where} has schema revision {rev}; this edgenas needs {head}",
                            hint="run: edgenas db upgrade")
    return rev


def unknown_revision(where: str, rev: str, tables: set[str]) -> DatabaseError:
    """The error for a schema revision this edgenas does not know: a newer edgenas's database, or (none of
    edgenas's tables) another application's that alembic manages too."""
    if not tables & (EDGENAS_TABLES - {"alembic_version"}):
        return DatabaseError(f"database {where} holds another application's schema (revision {rev}), not "
                             "edgenas's; nothing was changed",
                             hint="point --db / EDGENAS_DB at an edgenas database or a new one")
    return DatabaseError(f"database {where} has schema revision {rev}, newer than this edgenas knows "
                         f"(newest {head_revision()}); nothing was changed", hint="upgrade edgenas")


def says_damaged(text: str) -> bool:
    """Whether an SQLite error's text says the file is damaged or not a database."""
    low = text.lower()
    return "file is not a database" in low or "malformed" in low or "disk image" in low


def translate(exc: BaseException, url: str) -> DatabaseError:
    """One clear ``DatabaseError`` for a driver error."""
    from edgenas.outdirs import fds_exhausted

    where = describe(url)
    cause = getattr(exc, "orig", None) or exc
    said = str(cause).strip()
    text = said.splitlines()[0] if said else type(cause).__name__  # a driver error may say nothing at all
    low = text.lower()
    if "database is locked" in low or "database table is locked" in low:
        return DatabaseError(f"database {where} is locked by another writer ({text})",
                             hint=f"another process held the write lock for over {BUSY_TIMEOUT_S:.0f} s; retry")
    if says_damaged(low):
        return DatabaseError(f"database {where} is damaged or not a SQLite file ({text})", hint=DAMAGED_HINT)
    if "could not decode to utf-8" in low:
        return DatabaseError(f"database {where} holds text that is not UTF-8 ({text})",
                             hint="it was edited or damaged: restore it from a backup")
    if "disk i/o error" in low or "database or disk is full" in low:
        return DatabaseError(f"cannot write database {where}: the disk is full or failing ({text})",
                             hint="free some space, then retry")
    if "unable to open" in low and (fds := fds_exhausted()) is not None:  # SQLite names no errno: look
        return _fds_error(f"cannot open database {where}", fds)
    if "unable to open" in low or "readonly" in low or "read-only" in low:
        return DatabaseError(f"cannot open database {where} ({text})", hint="check the path and its permissions")
    if "no such table" in low or "no such column" in low or ("relation" in low and "does not exist" in low):
        return DatabaseError(f"database {where} lacks part of the edgenas schema ({text})",
                             hint="it was damaged or edited: restore it from a backup, or move it aside "
                                  "(a new one is created)")
    if "deadlock detected" in low or "could not serialize" in low:
        return DatabaseError(f"database {where}: another writer changed the same rows at once ({text})",
                             hint="nothing of this command was written; retry")
    if isinstance(exc, sa.exc.OperationalError) or "connection" in low:
        return DatabaseError(f"cannot reach database {where} ({text})",
                             hint=f"check the server, the URL in --db / ${ENV_VAR}, and the network")
    return DatabaseError(f"database {where}: {text}")
