"""A lease in the database: exactly one active scheduler per store.

The holder renews the lease well before it expires; a standby scheduler
takes it over only once it has expired, i.e. when the holder stopped renewing
(crashed, killed, or cut off). Every step is one short write transaction, so
the same code is safe on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Connection, delete, insert, select, update

from ..store import schema
from ..store.db import as_utc, utcnow
from ..workspace import Workspace

L = schema.leases
SCHEDULER = "scheduler"


def try_acquire(ws: Workspace, holder: str, ttl: float, name: str = SCHEDULER) -> bool:
    """Take or renew the lease ``name`` for ``ttl`` seconds; False if someone else holds it."""

    def write(conn: Connection) -> bool:
        now = utcnow()
        expires = now + timedelta(seconds=ttl)
        row = conn.execute(select(L).where(L.c.name == name)).first()
        if row is None:
            conn.execute(
                insert(L).values(name=name, holder=holder, acquired_at=now, expires_at=expires)
            )
            return True
        current = as_utc(row.expires_at)
        assert current is not None
        if row.holder != holder and current > now:
            return False
        values = {"holder": holder, "expires_at": expires}
        if row.holder != holder:
            values["acquired_at"] = now
        conn.execute(update(L).where(L.c.name == name).values(**values))
        return True

    return bool(ws.db.run_write(write))


def release(ws: Workspace, holder: str, name: str = SCHEDULER) -> None:
    """Give the lease up (a clean shutdown lets a standby take over at once)."""
    ws.db.run_write(
        lambda conn: conn.execute(delete(L).where(L.c.name == name, L.c.holder == holder))
    )


def holder_of(ws: Workspace, name: str = SCHEDULER) -> tuple[str, datetime] | None:
    """``(holder, expires_at)`` of a live lease, or None."""
    if not ws.exists:
        return None
    with ws.db.transaction() as conn:
        row = conn.execute(select(L).where(L.c.name == name)).first()
    if row is None:
        return None
    expires = as_utc(row.expires_at)
    assert expires is not None
    return (row.holder, expires) if expires > utcnow() else None


def scheduler_active(ws: Workspace) -> bool:
    """Whether a scheduler currently holds the lease of this store."""
    return holder_of(ws) is not None
