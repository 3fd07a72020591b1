"""The metadata database: engine set-up, migrations, transactions, change sequence.

One code path for SQLite and PostgreSQL. SQLite-specific set-up is limited to
connection pragmas (WAL, busy timeout, foreign keys) and to starting write
transactions with ``BEGIN IMMEDIATE``: a deferred SQLite transaction that reads
then writes cannot wait for another writer and fails at once with "database is
locked", which would break concurrent snapshots of the same name.
"""

from __future__ import annotations

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
HEAD_REVISION = "0003"
T = TypeVar("T")


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
        An SQLAlchemy URL (``sqlite:///path/opx.db``, ``postgresql+psycopg://…``).
    """

    def __init__(self, url: str) -> None:
        self.url = make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        try:
            self.engine = self._create_engine()
            self._migrate()
        except OperationalError as exc:
            raise StoreError(
                f"cannot open the database {self.url.render_as_string(hide_password=True)}: "
                f"{exc.orig}; check the 'database' setting and that the server is reachable"
            ) from exc

    def _create_engine(self) -> Engine:
        if not self.is_sqlite:
            return create_engine(self.url, pool_pre_ping=True, future=True)
        engine = create_engine(self.url, connect_args={"timeout": 60}, future=True)

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
        with self.transaction(write=True) as conn:
            if not self.is_sqlite and conn.dialect.name == "postgresql":
                # serialise concurrent first opens of a fresh PostgreSQL store
                conn.execute(text("SELECT pg_advisory_xact_lock(7301)"))
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

        A unique-key clash (two writers picking the same next version on
        PostgreSQL) or a transient lock rolls the transaction back; it is then
        run again with fresh reads.
        """
        for attempt in range(attempts):
            try:
                with self.transaction(write=True) as conn:
                    return fn(conn)
            except (IntegrityError, OperationalError) as exc:
                transient = isinstance(exc, IntegrityError) or "locked" in str(exc.orig)
                if not transient or attempt == attempts - 1:
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


__all__ = ["HEAD_REVISION", "DBAPIError", "Database", "as_utc", "utcnow"]
