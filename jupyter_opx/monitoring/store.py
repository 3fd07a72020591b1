"""Where feedback events live: immutable parquet segments plus a catalog in SQL.

Why this layout (measured on this project's 2-core machine, see bench/):
appending rows to an indexed SQL table costs ~1 µs per row on SQLite and more
on PostgreSQL, and reading 10M rows back through SQL into pandas takes tens of
seconds; the metrics need whole columns (scores, features, timestamps), which
is what a columnar format serves. So each ingested batch becomes one parquet
*segment*, stored as a content-addressed blob (hash-verified on read, on the
local disk or an object store), and one small catalog row (model, kind,
row count, time range) in the metadata database, committed in the same
transaction that bumps the change sequence. A batch is therefore durable and
visible at once, or not at all. Reading a model's events concatenates its
segments (pyarrow reads millions of rows a second) and drops re-sent events
by their event key; a per-process cache keeps what was read and adds only new
segments, so a live view stays cheap. :func:`compact` merges small segments.
"""

from __future__ import annotations

import contextlib
import threading
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import Connection, delete, insert, select

from ..exceptions import NotFoundError
from ..store import schema
from ..store.db import Database, as_utc, utcnow
from ..workspace import Workspace
from .ingest import check_kind

SEG = schema.feedback_segments


def _write_segment(ws: Workspace, frame: pd.DataFrame) -> tuple[str, int]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    # dictionaries pay off for ids and categories, not for continuous numbers
    dictionary = [
        f.name
        for f in table.schema
        if not (pa.types.is_floating(f.type) or pa.types.is_integer(f.type))
        and not pa.types.is_timestamp(f.type)
    ]
    with (
        ws.blobs.writer(durable=True) as sink,
        pa.BufferedOutputStream(pa.PythonFile(sink, mode="w"), buffer_size=8 << 20) as out,
    ):
        pq.write_table(table, out, compression="lz4", use_dictionary=dictionary or False)
    return sink.digest, sink.size


def append(
    ws: Workspace, model: str, kind: str, frame: pd.DataFrame, run_id: int | None = None
) -> int:
    """Store a validated batch as one segment; returns the segment id.

    The blob is written and synced first, then the catalog row is committed
    with a change-sequence bump: when this returns, the events are durable.
    """
    check_kind(kind)
    digest, size = _write_segment(ws, frame)
    ts = frame["ts"]
    lo, hi = ts.min().to_pydatetime(), ts.max().to_pydatetime()

    def write(conn: Connection) -> int:
        Database.record_blobs(conn, {digest: size})
        inserted = conn.execute(
            insert(SEG).values(
                model=model,
                kind=kind,
                digest=digest,
                rows=len(frame),
                min_ts=lo,
                max_ts=hi,
                created_at=utcnow(),
                run_id=run_id,
            )
        ).inserted_primary_key
        assert inserted is not None
        Database.record_change(conn, "feedback", f"{model}/{kind}")
        return int(inserted[0])

    segment_id: int = ws.db.run_write(write)
    return segment_id


def segments(ws: Workspace, model: str, kind: str) -> list[Any]:
    """Catalog rows of a model's segments of one kind, oldest first."""
    if not ws.exists:
        return []
    with ws.db.transaction() as conn:
        return list(
            conn.execute(
                select(SEG).where(SEG.c.model == model, SEG.c.kind == kind).order_by(SEG.c.id)
            ).all()
        )


def _read_segment(ws: Workspace, digest: str) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = ws.blobs.get_buffer(digest)  # hash-verified
    return pq.read_table(pa.BufferReader(pa.py_buffer(data))).to_pandas()


class _Cached:
    def __init__(self) -> None:
        self.ids: list[int] = []
        self.frame: pd.DataFrame | None = None
        self.lock = threading.Lock()


_cache: dict[tuple[str, str, str], _Cached] = {}
_cache_lock = threading.Lock()


def read(ws: Workspace, model: str, kind: str) -> pd.DataFrame:
    """All events of a model and kind, each once (re-sent events dropped), by time.

    Segments read before in this process are not read again: only new ones
    are added to what is cached.
    """
    check_kind(kind)
    key = (str(ws.root), model, kind)
    with _cache_lock:
        entry = _cache.setdefault(key, _Cached())
    with entry.lock:
        rows = segments(ws, model, kind)
        ids = [r.id for r in rows]
        if entry.frame is not None and ids[: len(entry.ids)] == entry.ids:
            new = rows[len(entry.ids) :]
            parts = [entry.frame] if new else []
        else:  # first read, or segments were compacted: start again
            new, parts = rows, []
        parts += [_read_segment(ws, r.digest) for r in new]
        if new or entry.frame is None:
            frame = (
                pd.concat(parts, ignore_index=True, sort=False)
                if parts
                else pd.DataFrame(
                    {
                        "id": pd.Series(dtype=str),
                        "ts": pd.Series(dtype="datetime64[ns, UTC]"),
                        "eid_hi": pd.Series(dtype="uint64"),
                        "eid_lo": pd.Series(dtype="uint64"),
                    }
                )
            )
            frame = frame.drop_duplicates(["eid_hi", "eid_lo"], keep="first")
            frame = frame.sort_values("ts", kind="stable").reset_index(drop=True)
            entry.frame, entry.ids = frame, ids
        assert entry.frame is not None
        return entry.frame


def last_event_time(ws: Workspace, model: str, kind: str = "predictions") -> datetime | None:
    """The newest event time of a model and kind, from the catalog alone."""
    rows = segments(ws, model, kind)
    return as_utc(max(r.max_ts for r in rows)) if rows else None


def compact(ws: Workspace, model: str, kind: str, min_segments: int = 16) -> int:
    """Merge a model's segments of one kind into one (re-sent events dropped).

    Returns the number of segments merged (0 when there were fewer than
    ``min_segments``). Readers never see a partial state: the new segment and
    the removal of the old ones commit together.
    """
    rows = segments(ws, model, kind)
    if len(rows) < min_segments:
        return 0
    frame = pd.concat([_read_segment(ws, r.digest) for r in rows], ignore_index=True, sort=False)
    frame = frame.drop_duplicates(["eid_hi", "eid_lo"], keep="first")
    frame = frame.sort_values("ts", kind="stable")
    digest, size = _write_segment(ws, frame.reset_index(drop=True))
    old = [r.id for r in rows]

    def write(conn: Connection) -> None:
        Database.record_blobs(conn, {digest: size})
        conn.execute(delete(SEG).where(SEG.c.id.in_(old)))
        conn.execute(
            insert(SEG).values(
                model=model,
                kind=kind,
                digest=digest,
                rows=len(frame),
                min_ts=frame["ts"].min().to_pydatetime(),
                max_ts=frame["ts"].max().to_pydatetime(),
                created_at=utcnow(),
                run_id=None,
            )
        )
        Database.record_change(conn, "feedback", f"{model}/{kind} compacted")

    ws.db.run_write(write)
    for r in rows:  # old blobs no longer referenced by any segment
        if r.digest != digest:
            with contextlib.suppress(OSError, NotFoundError):
                ws.blobs.fs.rm_file(ws.blobs.path(r.digest))
            with ws.db.transaction(write=True) as conn:
                conn.execute(delete(schema.blobs).where(schema.blobs.c.digest == r.digest))
    return len(rows)
