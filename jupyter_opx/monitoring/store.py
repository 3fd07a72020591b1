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
segments, so a live view stays cheap: a new segment's rows are checked against
the held event keys (a set of their high halves first, the full 128-bit key
only on a match) and merged in by time (appended when they are the newest,
the usual case) instead of deduplicating and sorting everything again.
:func:`read_delta` also tells a reader which rows arrived since its last read,
which :mod:`.incremental` folds into the metrics. :func:`compact` merges
small segments (readers then start again from the merged segment).

Writing a large batch (``opx.log_*`` of 200k rows or more, when a core is
idle) is pipelined: its event keys are computed 131,072 rows at a time while
the previous row group is encoded on another thread, and a third hashes and
writes the encoded bytes, sending them to the disk as it goes (so the sync
before the segment is published waits for the last few MB, not for 120);
small batches (an HTTP POST) are written in one go.
"""

from __future__ import annotations

import contextlib
import os
import threading
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, delete, insert, select

from ..exceptions import NotFoundError
from ..store import schema
from ..store.blobs import OffloadWriter
from ..store.db import Database, as_utc, utcnow
from ..workspace import Workspace
from .ingest import EventKeys, check_kind

SEG = schema.feedback_segments


# hashes and writes on a thread while pyarrow encodes (tests patch this name)
_Offload = OffloadWriter


_OFFLOAD_ROWS = 200_000  # smaller segments are written on the calling thread


def _spare_core(samples: int = 3, pause: float = 0.002) -> bool:
    """Whether a core is likely idle (the offload only pays when one is).

    Measured on a 2-core machine under a load average of 6: the copies cost
    ~0.2 s more than they saved on a 1M-row segment, with no core to overlap on.
    Judged by the tasks runnable right now (``/proc/loadavg``, this one
    included), the fewest of ``samples`` readings ``pause`` seconds apart: a
    process that keeps a core busy is runnable in every reading, a kernel
    thread that wakes for a moment is not (on an idle 2-core machine, 13 of
    2,000 single readings counted a second task; the serial path makes a
    1M-row batch ~0.75 s instead of ~0.5 s). Failing that, the 1-minute load
    average, which lags.
    """
    import time

    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux: trust the core count
        return (os.cpu_count() or 1) >= 2
    if cores < 2:
        return False
    try:
        running = []
        for i in range(samples):
            if i:
                time.sleep(pause)
            with open("/proc/loadavg") as fh:
                running.append(int(fh.read().split()[3].split("/")[0]))
        return min(running) <= cores - 1
    except (OSError, ValueError, IndexError):
        return os.getloadavg()[0] <= cores - 1


_CHUNK_ROWS = 131_072  # row group of a pipelined segment (keys of one while another encodes)


def _write_segment(
    ws: Workspace, frame: pd.DataFrame | Any, keys: EventKeys | None = None
) -> tuple[str, int]:
    """Encode ``frame`` (a DataFrame or an Arrow table) as a parquet blob (durable);
    returns its digest and size.

    With ``keys`` (the frame's event-key columns are placeholders) the keys are
    filled in here: for a large batch on a machine with a spare core, chunk by
    chunk, each chunk's keys computed (holding the GIL) while the previous
    chunk's row group is encoded on another thread (not holding it).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = len(frame)
    pipelined = keys is not None and n >= _OFFLOAD_ROWS and _spare_core()
    if isinstance(frame, pa.Table):  # from the HTTP path: already Arrow, keys included
        assert keys is None
        table = frame
    else:
        if keys is not None and not pipelined:
            frame["eid_hi"], frame["eid_lo"] = keys(0, n)
        # each float column is scanned for NaN (they become nulls): ~2.5 ms per million
        # rows, which pyarrow's thread pool halves on a large batch; on a small one
        # (an HTTP POST) the pool costs more than it saves
        threads = None if n >= _OFFLOAD_ROWS else 1
        table = pa.Table.from_pandas(frame, preserve_index=False, nthreads=threads)
    # dictionaries pay off for categories (arms, categorical features), not for
    # numbers, times or the ids and event ids, which are mostly distinct within a
    # batch: pyarrow would hash each into a dictionary only to give up at its limit
    dictionary = [
        f.name
        for f in table.schema
        if not (pa.types.is_floating(f.type) or pa.types.is_integer(f.type))
        and not pa.types.is_timestamp(f.type)
        and f.name not in ("id", "event_id")
    ]
    with ws.blobs.writer(durable=True) as sink:
        offload = pipelined or (n >= _OFFLOAD_ROWS and _spare_core())
        with (
            _Offload.around(sink) if offload else contextlib.nullcontext(sink) as target,
            pa.BufferedOutputStream(pa.PythonFile(target, mode="w"), buffer_size=8 << 20) as out,
        ):
            if pipelined:
                assert keys is not None
                _write_chunks(out, table, keys, dictionary)
            else:
                pq.write_table(table, out, compression="lz4", use_dictionary=dictionary or False)
    return sink.digest, sink.size


def _write_chunks(out: Any, table: Any, keys: EventKeys, dictionary: list[str]) -> None:
    """Row groups of :data:`_CHUNK_ROWS`: keys of the next while this one encodes."""
    from concurrent.futures import Future, ThreadPoolExecutor

    import pyarrow as pa
    import pyarrow.parquet as pq

    i_hi = table.schema.get_field_index("eid_hi")
    i_lo = table.schema.get_field_index("eid_lo")
    n = table.num_rows
    with (
        pq.ParquetWriter(
            out, table.schema, compression="lz4", use_dictionary=dictionary or False
        ) as writer,
        ThreadPoolExecutor(1, thread_name_prefix="opx-segment-encode") as pool,
    ):
        pending: Future[None] | None = None
        try:
            for start in range(0, n, _CHUNK_ROWS):
                stop = min(n, start + _CHUNK_ROWS)
                hi, lo = keys(start, stop)
                part = table.slice(start, stop - start)
                part = part.set_column(i_hi, table.schema.field(i_hi), pa.array(hi))
                part = part.set_column(i_lo, table.schema.field(i_lo), pa.array(lo))
                if pending is not None:
                    pending.result()
                pending = pool.submit(writer.write_table, part)
            if pending is not None:
                pending.result()
        finally:
            if pending is not None:
                pending.exception()  # never leave the writer busy on another thread


def _time_range(frame: pd.DataFrame | Any) -> tuple[datetime, datetime]:
    """The first and last ``ts`` of a batch (a DataFrame or an Arrow table)."""
    if isinstance(frame, pd.DataFrame):
        ts = frame["ts"]
        return ts.min().to_pydatetime(), ts.max().to_pydatetime()
    import pyarrow as pa
    import pyarrow.compute as pc

    bounds = pc.min_max(frame.column("ts").cast(pa.int64()))
    lo, hi = (pd.Timestamp(bounds[k].as_py(), tz="UTC") for k in ("min", "max"))
    return lo.to_pydatetime(), hi.to_pydatetime()


def append(
    ws: Workspace,
    model: str,
    kind: str,
    frame: pd.DataFrame | Any,
    run_id: int | None = None,
    keys: EventKeys | None = None,
) -> int:
    """Store a validated batch (a DataFrame, or the Arrow table of
    :func:`.ingest.parse_events`) as one segment; returns the segment id.

    The blob is written and synced first, then the catalog row is committed
    with a change-sequence bump: when this returns, the events are durable.
    ``keys``: see :func:`_write_segment`.
    """
    check_kind(kind)
    digest, size = _write_segment(ws, frame, keys)
    lo, hi = _time_range(frame)

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
    frame = pq.read_table(pa.BufferReader(pa.py_buffer(data))).to_pandas()
    if frame["id"].dtype != _ID_DTYPE:
        # segments written from Arrow (the HTTP path) carry no pandas metadata: their
        # ids read back as pandas' default "str"; every segment reads as normalize()'s
        frame["id"] = frame["id"].astype(_ID_DTYPE)
    return frame


#: the dtype of ``id`` in what :func:`.ingest.normalize` returns and :func:`read` reads
_ID_DTYPE = pd.StringDtype("pyarrow")


_EMPTY_COLUMNS = {
    "id": "str",
    "ts": "datetime64[ns, UTC]",
    "eid_hi": "uint64",
    "eid_lo": "uint64",
}
_HISTORY = 16  # deltas kept per cached stream, for readers a few batches behind


class _Cached:
    def __init__(self) -> None:
        self.ids: list[int] = []
        self.frame: pd.DataFrame | None = None
        self.hi: set[int] = set()  # eid_hi of the rows held: a first, cheap dedupe filter
        # (segment ids before, rows those segments added): the last few extensions
        self.deltas: list[tuple[tuple[int, ...], pd.DataFrame]] = []
        self.lock = threading.Lock()


_cache: dict[tuple[str, str, str], _Cached] = {}
_cache_lock = threading.Lock()


def _empty() -> pd.DataFrame:
    return pd.DataFrame({k: pd.Series(dtype=v) for k, v in _EMPTY_COLUMNS.items()})


def _dedupe_sort(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.drop_duplicates(["eid_hi", "eid_lo"], keep="first")
    return frame.sort_values("ts", kind="stable").reset_index(drop=True)


def _fresh_rows(entry: _Cached, parts: list[pd.DataFrame]) -> pd.DataFrame:
    """The rows of new segments that the cached frame does not hold yet, by time.

    The same rows a cold read would add: re-sent events (already held, or
    repeated within the new segments) are dropped, the first copy kept.
    """
    new = _dedupe_sort(pd.concat(parts, ignore_index=True, sort=False))
    hi = new["eid_hi"].to_numpy()
    maybe = np.fromiter((h in entry.hi for h in hi.tolist()), dtype=bool, count=len(hi))
    if maybe.any():  # same high half: compare the whole 128-bit key with the held rows
        assert entry.frame is not None
        held = entry.frame[["eid_hi", "eid_lo"]]
        cand = new.loc[maybe, ["eid_hi", "eid_lo"]].reset_index()
        seen = cand.merge(held, on=["eid_hi", "eid_lo"], how="inner")["index"].to_numpy()
        if len(seen):
            new = new.drop(index=seen).reset_index(drop=True)
    return new


def _extend(entry: _Cached, new: pd.DataFrame) -> pd.DataFrame:
    """The cached frame with ``new`` rows merged in by time (stable: held rows first)."""
    old = entry.frame
    assert old is not None
    if not len(new):
        return old
    frame = pd.concat([old, new], ignore_index=True, sort=False)
    if len(old) and len(new) and new["ts"].iloc[0] < old["ts"].iloc[-1]:
        # late events: a stable sort keeps held rows before new ones at equal times
        order = np.argsort(frame["ts"].array.asi8, kind="stable")
        frame = frame.take(order).reset_index(drop=True)
    return frame


def read(ws: Workspace, model: str, kind: str) -> pd.DataFrame:
    """All events of a model and kind, each once (re-sent events dropped), by time.

    Segments read before in this process are not read again: only new ones
    are read, and merged into what is cached (re-sent events checked against
    the held keys, a merge by time instead of a sort of everything).
    """
    return read_delta(ws, model, kind)[0]


def read_delta(
    ws: Workspace, model: str, kind: str, since: tuple[int, ...] | None = None
) -> tuple[pd.DataFrame, tuple[int, ...], pd.DataFrame | None]:
    """Like :func:`read`, plus what changed since an earlier read.

    Returns ``(frame, ids, delta)``: the events, the segment ids they come
    from (pass them as ``since`` next time) and the rows added since the read
    that returned ``since`` — every row of ``frame`` not in the earlier frame,
    by time — or None when that is unknown (``since`` not given, too old, or
    segments were compacted or removed): then start again from ``frame``.
    """
    check_kind(kind)
    key = (str(ws.root), model, kind)
    with _cache_lock:
        entry = _cache.setdefault(key, _Cached())
    with entry.lock:
        rows = segments(ws, model, kind)
        ids = [r.id for r in rows]
        if entry.frame is not None and ids[: len(entry.ids)] == entry.ids:
            new_rows = rows[len(entry.ids) :]
            if new_rows:
                before = tuple(entry.ids)
                fresh = _fresh_rows(entry, [_read_segment(ws, r.digest) for r in new_rows])
                entry.frame = _extend(entry, fresh)
                entry.hi.update(fresh["eid_hi"].tolist())
                entry.ids = ids
                entry.deltas = [*entry.deltas[-(_HISTORY - 1) :], (before, fresh)]
        else:  # first read, or segments were compacted: start again
            parts = [_read_segment(ws, r.digest) for r in rows]
            frame = (
                _dedupe_sort(pd.concat(parts, ignore_index=True, sort=False)) if parts else _empty()
            )
            entry.frame, entry.ids, entry.deltas = frame, ids, []
            entry.hi = set(frame["eid_hi"].tolist())
        assert entry.frame is not None
        now = tuple(entry.ids)
        delta: pd.DataFrame | None = None
        if since is not None:
            if since == now:
                delta = entry.frame.iloc[:0]
            else:
                starts = [i for i, (b, _) in enumerate(entry.deltas) if b == since]
                if starts:
                    chain = [d for _, d in entry.deltas[starts[-1] :]]
                    delta = chain[0] if len(chain) == 1 else _dedupe_sort(pd.concat(chain))
        return entry.frame, now, delta


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
