"""``SQLiteStore``: the default measurement store, ``<project>/measurements/edgenas.db``.

WAL journal mode (readers never block the writer), a ``schema_version`` table checked on open, and a
fresh connection per operation with a busy timeout, so threads and processes can write concurrently
(SQLite serialises the writers). The full record is kept as JSON next to indexed filter columns, so the
JSON record format stays the single source of truth.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from edgenas.errors import InputError
from edgenas.limits import TooDeep, loads_json
from edgenas.store.base import MeasurementStore, duplicate
from edgenas.store.record import Measurement
from edgenas.store.sqlite_wal import enable_wal

DB_SCHEMA = 1
BUSY_TIMEOUT_S = 60.0

_DDL = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS measurements (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    device TEXT NOT NULL,
    space TEXT NOT NULL,
    fingerprint_hash TEXT NOT NULL,
    created_at REAL NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS measurements_device_space ON measurements (device, space);
CREATE INDEX IF NOT EXISTS measurements_fingerprint ON measurements (fingerprint_hash);
"""


class SQLiteStore(MeasurementStore):
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            con = self._connect()
        except sqlite3.DatabaseError as exc:
            raise InputError(f"measurement database {self.path} is unusable: {exc}",
                             hint="move the file aside; a new one is created") from None
        with closing(con):
            try:
                con.execute("BEGIN IMMEDIATE")  # one process creates the schema, others wait
                for stmt in filter(None, (s.strip() for s in _DDL.split(";"))):
                    con.execute(stmt)
                rows = con.execute("SELECT version FROM schema_version").fetchall()
                versions = {r[0] for r in rows} or {DB_SCHEMA}
                if versions != {DB_SCHEMA}:
                    con.execute("ROLLBACK")
                    raise InputError(f"measurement database {self.path} has schema {sorted(versions)}, "
                                     f"this edgenas reads {DB_SCHEMA}", hint="upgrade edgenas")
                if not rows:
                    con.execute("INSERT INTO schema_version (version) VALUES (?)", (DB_SCHEMA,))
                con.execute("COMMIT")
                # WAL only once the file is known to be ours: switching it is a change to the file (its
                # header), which a database refused above (another shape, another schema) must not get
                enable_wal(con, BUSY_TIMEOUT_S)
            except sqlite3.DatabaseError as exc:
                raise InputError(f"measurement database {self.path} is unusable: {exc}",
                                 hint="move the file aside; a new one is created") from None

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        con.execute("PRAGMA synchronous=FULL")
        return con

    def add(self, m: Measurement) -> None:
        with closing(self._connect()) as con:
            try:
                con.execute(
                    "INSERT INTO measurements (id, device, space, fingerprint_hash, created_at, record) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (m.id, m.device, m.space, m.fingerprint_hash, m.created_at, m.to_json()))
            except sqlite3.IntegrityError:
                raise duplicate(m) from None

    def list(self, device=None, space=None, fingerprint_hash=None) -> list[Measurement]:
        where, args = self._where(device, space, fingerprint_hash)
        with closing(self._connect()) as con:
            con.text_factory = bytes  # text that is not UTF-8 is a malformed record, not a fetch error
            rows = con.execute(f"SELECT seq, record FROM measurements{where} ORDER BY seq", args).fetchall()
        out = []
        for seq, text in rows:
            try:
                data = loads_json(text)
            except TooDeep:  # deeper than json.loads reads; from_dict refuses what is less deep
                raise InputError(f"{self.path}: row {seq} holds JSON nested too deeply") from None
            except ValueError as exc:  # JSONDecodeError, or a value no record holds (limits.UnreadableValue)
                raise InputError(f"{self.path}: row {seq} holds malformed JSON: {getattr(exc, 'msg', exc)}") from None
            out.append(Measurement.from_dict(data, where=f"{self.path} row {seq}"))
        return out

    def count(self, device=None, space=None, fingerprint_hash=None) -> int:
        where, args = self._where(device, space, fingerprint_hash)
        with closing(self._connect()) as con:
            return int(con.execute(f"SELECT COUNT(*) FROM measurements{where}", args).fetchone()[0])

    @staticmethod
    def _where(device, space, fingerprint_hash) -> tuple[str, tuple]:
        conds, args = [], []
        for col, v in (("device", device), ("space", space), ("fingerprint_hash", fingerprint_hash)):
            if v is not None:
                conds.append(f"{col} = ?")
                args.append(v)
        return (" WHERE " + " AND ".join(conds) if conds else ""), tuple(args)

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r})"
