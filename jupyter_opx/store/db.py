"""The metadata database: engine set-up, migrations, transactions, change sequence.

One code path for SQLite and PostgreSQL. SQLite-specific set-up is limited to
connection pragmas (WAL, busy timeout, foreign keys) and to starting write
transactions with ``BEGIN IMMEDIATE``: a deferred SQLite transaction that reads
then writes cannot wait for another writer and fails at once with "database is
locked", which would break concurrent snapshots of the same name.

PostgreSQL gets the same guarantees as SQLite, so that the read-then-write
transactions above this module (next version, lease, job state) need no
second code path:

- write transactions run one at a time: they start by taking a transaction
  advisory lock (released at commit or rollback), and then run at READ
  COMMITTED, so each statement sees what the previous writer committed;
- read transactions run at REPEATABLE READ: one consistent snapshot, as a
  SQLite read transaction sees;
- sessions use UTC, so a naive timestamp means UTC as it does on SQLite;
- a write that still fails transiently (serialization failure, deadlock, a
  unique-key clash with a writer outside jupyter_opx, a dropped connection)
  is retried by :meth:`Database.run_write`.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, TypeVar

from sqlalchemy import Connection, create_engine, event, func, insert, select, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, ProgrammingError

from ..exceptions import StoreError
from . import schema

#: the Alembic revision this code expects; bump with every new migration
HEAD_REVISION = "0004"
#: the PostgreSQL advisory lock key that serialises jupyter_opx's write transactions
PG_WRITE_LOCK = 7301
#: SQLSTATEs after which a PostgreSQL transaction may simply be run again
_PG_RETRY = {"40001", "40P01", "55P03"}  # serialization failure, deadlock, lock not available
T = TypeVar("T")


def _finite(value: Any) -> Any:
    """``value`` with every non-finite float inside it replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def json_dumps(value: Any) -> str:
    """Serialise a JSON column's value: standard JSON, NaN and infinities as null.

    Python's default writes ``NaN``/``Infinity``, which SQLite keeps as text but
    PostgreSQL refuses; both get null instead (as ``JSON.stringify`` does).
    """
    try:
        return json.dumps(value, allow_nan=False)
    except ValueError:
        return json.dumps(_finite(value), allow_nan=False)


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(timezone.utc)


def as_utc(value: datetime | None) -> datetime | None:
    """Return ``value`` as an aware UTC datetime (SQLite hands back naive ones)."""
    if value is None:
        return None
    return (
        value.replace(tzinfo=timezone.utc)
        if value.tzinfo is None
        else value.astimezone(timezone.utc)
    )


class Database:
    """Connections to the metadata database, migrated to :data:`HEAD_REVISION`.

    Parameters
    ----------
    url : str
        An SQLAlchemy URL (``sqlite:///path/opx.db``, ``postgresql+psycopg://…``;
        a plain ``postgresql://`` uses psycopg 3 too, the driver of the
        ``postgres`` extra).
    """

    def __init__(self, url: str) -> None:
        self.url = make_url(url)
        if self.url.drivername == "postgresql":
            self.url = self.url.set(drivername="postgresql+psycopg")
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        try:
            self.engine = self._create_engine()
        except ImportError as exc:
            raise StoreError(
                f"the database driver for {self.url.drivername} is not installed ({exc}); "
                "for PostgreSQL: pip install 'jupyter_opx[postgres]'"
            ) from exc
        try:
            self._migrate()
        except OperationalError as exc:
            raise StoreError(
                f"cannot open the database {self.url.render_as_string(hide_password=True)}: "
                f"{exc.orig}; check the 'database' setting and that the server is reachable"
            ) from exc

    def _create_engine(self) -> Engine:
        if not self.is_sqlite:
            engine = create_engine(
                self.url, pool_pre_ping=True, json_serializer=json_dumps, future=True
            )
            if engine.dialect.name == "postgresql":
                self._set_up_postgresql(engine)
            return engine
        engine = create_engine(
            self.url, connect_args={"timeout": 60}, json_serializer=json_dumps, future=True
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            # Let SQLAlchemy's "begin" event, not pysqlite, start transactions.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            # FULL: a committed transaction survives a power cut too (feedback promises it)
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            immediate = conn.get_execution_options().get("opx_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine

    @staticmethod
    def _set_up_postgresql(engine: Engine) -> None:
        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("SET TIME ZONE 'UTC'")
            # the default, so that read transactions need no extra statement
            cur.execute(
                "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL REPEATABLE READ"
            )
            cur.close()
            dbapi_conn.commit()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            if conn.get_execution_options().get("opx_write", False):
                # one round trip; READ COMMITTED so that statements after the lock see
                # everything committed before it (a snapshot would predate the lock)
                conn.exec_driver_sql(
                    "SET TRANSACTION ISOLATION LEVEL READ COMMITTED; "
                    f"SELECT pg_advisory_xact_lock({PG_WRITE_LOCK})"
                )

    # -- migrations ----------------------------------------------------------------
    def current_revision(self) -> str | None:
        """The Alembic revision the database is at (``None`` when empty)."""
        try:
            with self.engine.connect() as conn:
                return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except (OperationalError, ProgrammingError):
            return None

    def _migrate(self) -> None:
        if self.current_revision() == HEAD_REVISION:
            return
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", "jupyter_opx.store:migrations")
        # a write transaction: concurrent first opens of a fresh store migrate it once
        with self.transaction(write=True) as conn:
            rev = None
            if self.engine.dialect.has_table(conn, "alembic_version"):
                rev = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
            if rev == HEAD_REVISION:
                return
            if rev is not None and rev > HEAD_REVISION:
                raise StoreError(
                    f"this store was written by a newer jupyter_opx (schema {rev}); "
                    "upgrade jupyter_opx to use it"
                )
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    # -- transactions --------------------------------------------------------------
    @contextmanager
    def transaction(self, write: bool = False) -> Iterator[Connection]:
        """A connection inside one transaction, committed on success.

        ``write=True`` takes the write lock up front on SQLite so that a
        read-then-write transaction waits for other writers instead of failing.
        """
        engine = self.engine.execution_options(opx_write=True) if write else self.engine
        try:
            with engine.begin() as conn:
                yield conn
        except OperationalError as exc:
            if "readonly" in str(exc.orig).lower() or "read-only" in str(exc.orig).lower():
                raise StoreError(
                    f"the store's database is read-only ({exc.orig}); "
                    "make it writable or set OPX_HOME to a writable folder"
                ) from exc
            raise

    def run_write(self, fn: Callable[[Connection], T], attempts: int = 8) -> T:
        """Run ``fn`` in a write transaction, retrying on a lost race.

        A unique-key clash, a transient lock (SQLite), a serialization failure
        or deadlock (PostgreSQL) or a dropped connection rolls the transaction
        back; it is then run again with fresh reads.
        """
        for attempt in range(attempts):
            try:
                with self.transaction(write=True) as conn:
                    return fn(conn)
            except DBAPIError as exc:
                if not _transient(exc) or attempt == attempts - 1:
                    raise
                time.sleep(0.01 * (2**attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def record_change(conn: Connection, kind: str, subject: str) -> None:
        """Bump the change sequence inside the caller's transaction."""
        conn.execute(insert(schema.changes).values(at=utcnow(), kind=kind, subject=subject))

    @staticmethod
    def record_blobs(conn: Connection, sizes: dict[str, int]) -> None:
        """Register stored blobs (digest → size) in the caller's transaction, once each."""
        now = utcnow()
        for digest, size in sizes.items():
            known = conn.execute(
                select(schema.blobs.c.digest).where(schema.blobs.c.digest == digest)
            ).first()
            if known is None:
                conn.execute(insert(schema.blobs).values(digest=digest, size=size, created_at=now))

    def register_blobs(self, sizes: dict[str, int]) -> None:
        """:meth:`record_blobs` in a transaction of its own."""
        if sizes:
            self.run_write(lambda conn: self.record_blobs(conn, sizes))

    def change_seq(self) -> int:
        """The highest change sequence number (0 for an empty store)."""
        with self.transaction() as conn:
            return int(conn.execute(select(func.max(schema.changes.c.seq))).scalar() or 0)

    def dispose(self) -> None:
        """Close pooled connections."""
        self.engine.dispose()


def _transient(exc: DBAPIError) -> bool:
    """Whether a failed write transaction may succeed when simply run again."""
    if isinstance(exc, IntegrityError) or exc.connection_invalidated:
        return True
    state = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    if state in _PG_RETRY:
        return True
    return isinstance(exc, OperationalError) and "locked" in str(exc.orig)


__all__ = ["HEAD_REVISION", "DBAPIError", "Database", "as_utc", "utcnow"]
