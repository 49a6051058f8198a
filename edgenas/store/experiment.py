"""``ExperimentDB``: one handle on the experiment database, and its measurement store.

``ExperimentDB(url, project)`` resolves the URL (``edgenas.store.db``), checks the schema (a fresh
database is migrated at once) and turns every driver error into one ``DatabaseError``. Run records
live in ``edgenas.store.runs``; ``DbMeasurementStore`` is the ``MeasurementStore`` on its
``measurements`` table (the default store of deployment measurements).
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import sqlalchemy as sa

from edgenas.errors import EdgenasError, InputError
from edgenas.project import Project
from edgenas.store import db as dbmod
from edgenas.store.base import MeasurementStore, duplicate
from edgenas.store.record import Measurement
from edgenas.store.rows import DamagedRowError, decode_row, raw_columns
from edgenas.store.schema import measurements


class ExperimentDB:
    def __init__(self, url: str | None = None, project: Project | None = None, *, migrate: bool = True,
                 check: bool = True, readonly: bool = False) -> None:
        """``readonly``: the handle of a reading command (it writes nothing): an SQLite file it cannot write
        is opened read-only."""
        self.url = dbmod.resolve_url(url, project)
        self.where = dbmod.describe(self.url)
        with self.guard():  # an unreadable migration script: one error naming the database
            dbmod.check_migrations()  # before the engine makes the database's folder
        self.engine = dbmod.create_engine(self.url, create_parent=dbmod.is_default(url), readonly=readonly)
        #: the revision found on opening ("?": tables without edgenas's stamp; None: fresh)
        self.opened_revision: str | None = None
        try:
            self._check(migrate, check)
        except BaseException:
            self.engine.dispose()  # a refused database's connections are closed now, not when collected
            raise

    def _check(self, migrate: bool, check: bool) -> None:
        """The schema check (and a fresh database's migration) on opening."""
        path = dbmod.sqlite_path(self.url)
        if path is not None and path.is_file():  # checked before the engine switches the file to WAL mode
            with dbmod.peek_sqlite(path, self.url) as (rev, names):  # refused: no -wal or -shm file of it left
                if rev is None and names - dbmod.EDGENAS_TABLES:
                    raise self._foreign()
                if rev is not None and rev not in dbmod.known_revisions():  # another application's, or newer
                    raise dbmod.unknown_revision(self.where, rev, names)
            if rev is None and not names and not migrate:  # fresh: nothing to read, and nothing is written
                return
        if check:
            with self.guard():
                with self.engine.connect() as con:
                    rev = dbmod.current_revision(con, self.url)
                    if rev == "?" and dbmod.foreign_tables(con):
                        raise self._foreign()
                self.opened_revision = rev
                if rev in (None, "?") and migrate:
                    # fresh (or being migrated by another process right now): migrate under the lock,
                    # which checks again once the other process is done
                    dbmod.upgrade(self.engine)
                elif rev != dbmod.head_revision():
                    with self.engine.connect() as con:
                        dbmod.check_revision(con, url=self.url)  # raises: newer, or run `edgenas db upgrade`

    def _foreign(self) -> dbmod.DatabaseError:
        return dbmod.DatabaseError(f"database {self.where} holds tables but no edgenas schema revision; "
                                   "nothing was changed",
                                   hint="point --db / EDGENAS_DB at an edgenas database or a new one")

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextlib.contextmanager
    def guard(self) -> Iterator[None]:
        """Driver errors become one ``DatabaseError`` naming this database."""
        try:
            yield
        except EdgenasError:
            raise
        except sa.exc.SQLAlchemyError as exc:
            raise dbmod.translate(exc, self.url) from None
        except OSError as exc:
            raise dbmod.DatabaseError(f"cannot open database {self.where} ({exc})") from None

    @contextlib.contextmanager
    def begin(self) -> Iterator[sa.Connection]:
        """A connection in a transaction (committed on success, rolled back on any error)."""
        with self.guard():
            with self.engine.begin() as con:
                yield con

    @contextlib.contextmanager
    def read(self) -> Iterator[sa.Connection]:
        with self.guard():
            with self.engine.connect() as con:
                yield con

    def revision(self) -> str | None:
        with self.read() as con:
            return dbmod.current_revision(con, self.url)

    def upgrade(self) -> tuple[str | None, str]:
        with self.guard():
            return dbmod.upgrade(self.engine)

    @property
    def measurements(self) -> "DbMeasurementStore":
        return DbMeasurementStore(self)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> "ExperimentDB":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ExperimentDB({self.where!r})"


class DbMeasurementStore(MeasurementStore):
    """Deployment measurements in the experiment database (SQLite or PostgreSQL)."""

    def __init__(self, db: ExperimentDB) -> None:
        self.db = db

    def add(self, m: Measurement) -> None:
        row = dict(id=m.id, device=m.device, space=m.space, fingerprint_hash=m.fingerprint_hash,
                   lut_fingerprint=m.lut_fingerprint, predicted_ms=m.predicted_ms, created_at=m.created_at,
                   record=m.to_dict())
        try:
            with self.db.begin() as con:
                con.execute(measurements.insert().values(**row))
        except dbmod.DatabaseError:
            with self.db.read() as con:  # a unique-id violation is the caller's error, not the database's
                if con.execute(sa.select(measurements.c.seq).where(measurements.c.id == m.id)).first():
                    raise duplicate(m) from None
            raise

    def _where(self, q, device, space, fingerprint_hash):
        for col, v in (("device", device), ("space", space), ("fingerprint_hash", fingerprint_hash)):
            if v is not None:
                q = q.where(measurements.c[col] == v)
        return q

    def _select(self) -> Any:
        """seq and record, the record as its JSON text (``rows.raw_columns``): decoded by ``_decode``."""
        record = next(c for c in raw_columns(measurements, self.db.dialect) if c.name == "record")
        return sa.select(measurements.c.seq, record)

    def _decode(self, row: Any) -> Measurement:
        """A measurement row, checked: a damaged one is one ``DamagedRowError`` naming its row."""
        hint = ("the experiment database was edited or damaged: delete that measurement row, "
                "or restore the database from a backup")
        key = f"row {row.seq}"
        rec = decode_row({"record": row.record}, "measurements", where=self.db.where, key=key, hint=hint)["record"]
        try:
            return Measurement.from_dict(rec, where="measurement record")
        except InputError as exc:
            raise DamagedRowError(self.db.where, "measurements", key, "record", exc.message, hint=hint) from None

    def list(self, device=None, space=None, fingerprint_hash=None) -> list[Measurement]:
        q = self._where(self._select(), device, space, fingerprint_hash)
        with self.db.read() as con:
            rows = con.execute(q.order_by(measurements.c.seq)).all()
        return [self._decode(r) for r in rows]

    def count(self, device=None, space=None, fingerprint_hash=None) -> int:
        q = self._where(sa.select(sa.func.count()).select_from(measurements), device, space, fingerprint_hash)
        with self.db.read() as con:
            return int(con.execute(q).scalar_one())

    def get(self, id: str) -> Measurement:
        with self.db.read() as con:
            row = con.execute(self._select().where(measurements.c.id == id)).first()
        if row is None:
            raise InputError(f"no measurement with id '{id}' in {self!r}")
        return self._decode(row)

    def close(self) -> None:
        self.db.close()

    def __repr__(self) -> str:
        return f"DbMeasurementStore({self.db.where!r})"
