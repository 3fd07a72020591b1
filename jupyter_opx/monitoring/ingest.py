"""Feedback events: normalising and validating what arrives, all or nothing.

Three kinds of event, with the wire format of DESIGN.md:

* ``predictions`` — ``id``, ``score`` and/or ``label``, optional ``features``
  (a mapping), ``ts``, ``event_id``;
* ``treatments`` — ``id``, ``arm`` (e.g. ``"email"`` / ``"control"``), ``ts``, ``event_id``;
* ``outcomes`` — ``id``, ``value``, ``ts``, ``event_id``.

Every input (Python arrays, JSON arrays, NDJSON, CSV) becomes one DataFrame
with typed columns (``id`` str, ``ts`` UTC nanoseconds, the kind's value
columns, features as ``f:<name>`` columns, ``event_id`` when given) and a
128-bit event key (``eid_hi``, ``eid_lo``): from the ``event_id`` when given,
else from the event's content, so re-sending the same batch is idempotent. A
batch with any bad row is rejected whole, with a message that names the first
bad rows. Validation is vectorised (a million events in a fraction of a
second); only mixed-type input falls back to row-by-row checks.
:func:`normalize_deferred` leaves the keys to be computed by range
(:class:`EventKeys`), so the store can compute a large batch's keys chunk by
chunk while it encodes the previous chunk.

The HTTP path's usual batch, NDJSON of plain values, never becomes a
DataFrame: :func:`parse_events` returns the Arrow table from pyarrow's JSON
reader, checked and keyed (:func:`_arrow_events`), with the columns, types and
keys :func:`normalize` gives the same events; the store writes it as it is.
The round trip through pandas cost 7–13 ms of CPU per 10,000-event POST
(of 60–70 ms). Anything else in an NDJSON batch (gaps in the scores, booleans, nested
features) takes the general path.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd

from ..exceptions import ValidationError

KINDS = ("predictions", "treatments", "outcomes")
FEATURE_PREFIX = "f:"
MAX_SHOWN = 5
_CORE = {
    "predictions": ("id", "ts", "event_id", "score", "label", "features"),
    "treatments": ("id", "ts", "event_id", "arm"),
    "outcomes": ("id", "ts", "event_id", "value"),
}


def check_kind(kind: str) -> str:
    """Return ``kind`` if it is one of :data:`KINDS`, else raise."""
    if kind not in KINDS:
        raise ValidationError(f"unknown event kind {kind!r}; use one of {', '.join(KINDS)}")
    return kind


def _bad(kind: str, what: str, rows: Any) -> ValidationError:
    rows = [int(r) for r in list(rows)[:MAX_SHOWN]]
    shown = ", ".join(str(r) for r in rows)
    return ValidationError(
        f"{kind}: {what} (first bad rows: {shown}); nothing of this batch was stored",
        rows=rows,
    )


def _ids(kind: str, values: Any) -> pd.Series:
    """Entity ids as an Arrow-backed string column (vectorised; per row only for mixed input)."""
    return pd.Series(pd.arrays.ArrowStringArray(_id_array(kind, values)))


def _id_array(kind: str, values: Any) -> Any:
    """Entity ids, checked, as one Arrow ``large_string`` array (Arrow input is not copied)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    raw = values.to_numpy() if isinstance(values, (pd.Series, pd.Index)) else values
    try:
        arr = raw if isinstance(raw, pa.Array) else pa.array(raw, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # e.g. ints and strings mixed
        s = pd.Series(list(raw), dtype=object)
        bad = s.map(
            lambda v: (
                v is not None and (not isinstance(v, (str, int, np.integer)) or isinstance(v, bool))
            )
        )
        if bad.any():
            raise _bad(
                kind, "ids must be strings or integers", np.flatnonzero(bad.to_numpy())
            ) from None
        arr = pa.array([None if v is None else str(v) for v in s], type=pa.string())
    if pa.types.is_integer(arr.type) or pa.types.is_dictionary(arr.type):
        arr = pc.cast(arr, pa.string())
    if not (
        pa.types.is_string(arr.type)
        or pa.types.is_large_string(arr.type)
        or pa.types.is_null(arr.type)
    ):
        raise _bad(kind, "ids must be strings or integers", range(len(arr)))
    blank = _blank(arr) if not pa.types.is_null(arr.type) else pa.array(np.ones(len(arr), bool))
    blank_np = blank.to_numpy(zero_copy_only=False)
    if blank_np.any():
        raise _bad(kind, "every event needs a non-empty id", np.flatnonzero(blank_np))
    return pc.cast(arr, pa.large_string())


def _blank(arr: Any) -> Any:
    """Per string of an Arrow array: null, empty or whitespace only (``utf8_is_space``:
    non-empty and all whitespace), without building trimmed copies of a million strings."""
    import pyarrow.compute as pc

    return pc.or_kleene(
        pc.or_kleene(pc.is_null(arr), pc.equal(pc.binary_length(arr), 0)),
        pc.utf8_is_space(arr),
    )


def _scalar_time(kind: str, value: Any, now: pd.Timestamp) -> pd.Timestamp:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return now
    try:
        if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
            return pd.Timestamp(float(value), unit="s", tz="UTC")
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError, OverflowError):
        raise _bad(kind, "ts must be ISO 8601 or epoch seconds", [0]) from None
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _timestamps(kind: str, values: Any, n: int, now: pd.Timestamp) -> pd.Series:
    """UTC nanosecond timestamps; missing means now (vectorised for uniform input)."""
    if values is None or not pd.api.types.is_list_like(values):
        stamp = _scalar_time(kind, values, now)
        stamps = np.full(n, stamp.as_unit("ns").value, dtype="int64").view("M8[ns]")
        return pd.Series(pd.DatetimeIndex(stamps).tz_localize("UTC"))
    s = values.reset_index(drop=True) if isinstance(values, pd.Series) else pd.Series(values)
    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        out = pd.to_datetime(s, utc=True)
        return out.fillna(now).dt.as_unit("ns")
    if pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype):
        nums = s.astype(float)
        bad = np.isinf(nums.to_numpy())
        if bad.any():
            raise _bad(kind, "ts must be ISO 8601 or epoch seconds", np.flatnonzero(bad))
        return pd.to_datetime(nums, unit="s", utc=True).fillna(now).dt.as_unit("ns")
    inferred = pd.api.types.infer_dtype(s, skipna=True)
    result = pd.Series(pd.NaT, index=s.index, dtype="datetime64[ns, UTC]")
    missing = s.isna().to_numpy()
    result[missing] = now
    if inferred in ("string", "empty"):
        # epoch seconds sent as text ("1796018400", a CSV column) count as numbers
        numeric = pd.to_numeric(s, errors="coerce").notna().to_numpy() & ~missing
    elif inferred in ("integer", "floating", "mixed-integer-float", "decimal"):
        numeric = ~missing
    else:  # mixed input (strings and numbers): sort it out row by row
        numeric = (
            s.map(
                lambda v: (
                    isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
                )
            ).to_numpy()
            & ~missing
        )
    if numeric.any():
        nums = pd.to_numeric(s[numeric], errors="coerce").astype(float)
        bad = ~np.isfinite(nums)
        if bad.any():
            raise _bad(kind, "ts must be ISO 8601 or epoch seconds", nums.index[bad])
        result[numeric] = pd.to_datetime(nums, unit="s", utc=True)
    text = ~(missing | numeric)
    if text.any():
        parsed = pd.to_datetime(s[text].astype(str), utc=True, errors="coerce", format="ISO8601")
        if parsed.isna().any():
            raise _bad(kind, "ts must be ISO 8601 or epoch seconds", parsed.index[parsed.isna()])
        result[text] = parsed
    return result.dt.as_unit("ns")


def _numbers(kind: str, name: str, values: Any, allow_missing: bool = False) -> pd.Series:
    s = values.reset_index(drop=True) if isinstance(values, pd.Series) else pd.Series(values)
    if pd.api.types.is_numeric_dtype(s.dtype) or pd.api.types.is_bool_dtype(s.dtype):
        as_num = s.astype(float)
        missing = s.isna().to_numpy()
    else:
        as_num = pd.to_numeric(s, errors="coerce").astype(float)
        if pd.api.types.infer_dtype(s, skipna=True) in ("boolean", "mixed"):
            bools = s.map(lambda v: isinstance(v, (bool, np.bool_)))
            if bools.any():  # True/False are fine outcome values: 1/0
                as_num[bools] = s[bools].astype(float)
        missing = s.isna().to_numpy()
    finite = np.isfinite(as_num.to_numpy())
    bad = ~finite & ~(missing if allow_missing else np.zeros(len(s), bool))
    if bad.any():
        raise _bad(kind, f"{name} must be a finite number", np.flatnonzero(bad))
    return as_num


_KIND_CODE = {"predictions": 1, "treatments": 2, "outcomes": 3}
_SEEDS = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xD1B54A32D192ED03))


_WORD_MASKS = np.array(
    [0, *((1 << (8 * k)) - 1 for k in range(1, 8)), (1 << 64) - 1], dtype=np.uint64
)
_STRING_SEEDS = {
    "opx-event-id-k01": np.uint64(0x8F1BBCDC6ED9EBA1),
    "opx-event-id-k02": np.uint64(0x5A827999CA62C1D6),
}


def _utf8_arrow(values: Any) -> Any:
    """``values`` (strings) as one Arrow ``large_binary`` array without nulls (null → "")."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(values, (pd.Series, pd.Index)):
        arr = pa.array(values.array if isinstance(values, pd.Series) else values, from_pandas=True)
    elif isinstance(values, (pa.Array, pa.ChunkedArray)):
        arr = values
    else:
        arr = pa.array(np.asarray(values, dtype=object), from_pandas=True)
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        arr = pc.cast(arr, pa.string())
    if arr.null_count:
        arr = pc.fill_null(arr, "")
    return pc.cast(arr, pa.large_binary())


def _hash_strings(values: Any, key: str) -> np.ndarray:
    """A 64-bit hash of each string's UTF-8 bytes, vectorised over Arrow's buffers.

    No Python object per string: the bytes are read 8 at a time through an
    unaligned ``uint64`` view of the data buffer, masked past each string's
    end, and chained through :func:`_mix` from a seed mixed with the length
    (so "ab" and "ab\\x00" differ). Each pass covers the strings still long
    enough, so the work is proportional to the total bytes, whatever the
    longest string.
    """
    seed = _STRING_SEEDS[key]
    arr = _utf8_arrow(values)
    n = len(arr)
    if n == 0:
        return np.empty(0, dtype=np.uint64)
    _, off_buf, data_buf = arr.buffers()
    offsets = np.frombuffer(off_buf, dtype=np.int64, count=n + 1, offset=arr.offset * 8)
    first = int(offsets[0])
    size = int(offsets[-1]) - first
    padded = np.zeros(size + 8, dtype=np.uint8)
    if size:
        padded[:size] = np.frombuffer(data_buf, dtype=np.uint8, count=size, offset=first)
    # every byte offset read as a little-endian uint64 (an unaligned, overlapping view)
    words = np.ndarray((size + 1,), dtype="<u8", buffer=padded, strides=(1,))
    starts = offsets[:-1] - first
    lengths = np.diff(offsets)
    with np.errstate(over="ignore"):
        h = _mix(lengths.astype(np.uint64) + seed)
        n_words = (lengths + 7) // 8
        most = int(n_words.max())
        # more[j]: how many strings have a word j (more than j words)
        more = n - np.cumsum(np.bincount(n_words, minlength=most + 1))
        # longest first, so that the strings with a word j are a prefix of ``order``
        # (a radix sort on small keys); the common case, no string over 8 bytes and
        # none empty, needs no order at all
        order: Any = None
        if most > 1 or more[0] < n:
            rank = most - n_words
            order = np.argsort(rank.astype(np.uint16) if most < 2**16 else rank, kind="stable")
        for j in range(most):
            rows = order[: int(more[j])] if order is not None else slice(None)
            left = np.minimum(lengths[rows] - 8 * j, 8)
            w = words[starts[rows] + 8 * j] & _WORD_MASKS[left]
            w += seed + np.uint64(j)
            h[rows] = _mix(h[rows] ^ _mix(w))
    return h


def _mix(x: Any) -> Any:
    """splitmix64's finaliser: a fast, well-spread 64-bit mix (wrapping arithmetic)."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)


def _mix_inplace(x: np.ndarray, tmp: np.ndarray) -> np.ndarray:
    """:func:`_mix` of an array it may overwrite, without temporaries (``tmp``: scratch)."""
    np.right_shift(x, _S30, out=tmp)
    x ^= tmp
    x *= _M1
    np.right_shift(x, _S27, out=tmp)
    x ^= tmp
    x *= _M2
    np.right_shift(x, _S31, out=tmp)
    x ^= tmp
    return x


def _combine(parts: list[Any], seed: np.uint64) -> np.ndarray:
    """``h = mix(h ^ mix(part + seed))`` over the parts, from ``h = seed``.

    A part may be a scalar (the same for every event: the kind); the work on
    arrays is done in place, one new array per part.
    """
    n = max(len(p) for p in parts if np.ndim(p))
    h: Any = seed
    tmp = np.empty(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for part in parts:
            if not np.ndim(part) and not np.ndim(h):
                h = _mix(h ^ _mix(np.uint64(part) + seed))
                continue
            if np.ndim(part):
                inner = np.add(part.astype(np.uint64, copy=False), seed, dtype=np.uint64)
                inner = _mix_inplace(inner, tmp)
            else:
                inner = np.full(n, _mix(np.uint64(part) + seed), dtype=np.uint64)
            inner ^= h
            h = _mix_inplace(inner, tmp)
    if not np.ndim(h):
        return np.full(n, h, dtype=np.uint64)
    out: np.ndarray = h
    return out


def _both(parts: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    """The two 64-bit halves of the keys; on large batches the second in another thread
    (numpy releases the GIL)."""
    n = max(len(p) for p in parts if np.ndim(p))
    if n < 200_000:
        return _combine(parts, _SEEDS[0]), _combine(parts, _SEEDS[1])
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        lo = pool.submit(_combine, parts, _SEEDS[1])
        hi = _combine(parts, _SEEDS[0])
        return hi, lo.result()


def _event_keys(kind: str, frame: pd.DataFrame, given: Any) -> tuple[np.ndarray, np.ndarray]:
    """A 128-bit key per event (two uint64 columns) that identifies re-sent events.

    From the given ``event_id`` when there is one, else from the event's
    content (kind, id, time and its value): the same event sent twice gets the
    same key, so readers count it once. Strings are hashed once, vectorised over
    their Arrow buffers (:func:`_hash_strings`); the parts are then combined with
    a vectorised 64-bit mix under two seeds.
    """
    numbers = [
        frame[col].to_numpy(dtype=float) for col in ("score", "label", "value") if col in frame
    ]
    hi, lo = _content_keys(
        kind,
        frame["id"],  # Arrow-backed: hashed over its buffers, no copy
        np.asarray(frame["ts"].array.asi8),
        numbers,
        frame.get("arm"),
    )
    if given is not None:
        g = pd.Series(given).reset_index(drop=True)
        present = (~g.isna()).to_numpy()
        if present.any():
            g_hi, g_lo = _given_keys(kind, g.astype(str))
            hi = np.where(present, g_hi, hi)
            lo = np.where(present, g_lo, lo)
    return hi, lo


def _content_keys(
    kind: str, ids: Any, ts_ns: np.ndarray, numbers: list[np.ndarray], arm: Any
) -> tuple[np.ndarray, np.ndarray]:
    """The keys of events without an ``event_id``: kind, id, time (int64 ns), the
    kind's numbers in the order score, label, value (float64), the arm."""
    parts: list[Any] = [
        np.uint64(_KIND_CODE[kind]),
        _hash_strings(ids, "opx-event-id-k01"),
        ts_ns.view(np.uint64),
    ]
    parts += [np.nan_to_num(v, nan=-1.0).view(np.uint64) for v in numbers]
    if arm is not None:
        parts.append(_hash_strings(arm, "opx-event-id-k01"))
    return _both(parts)


def _given_keys(kind: str, text: Any) -> tuple[np.ndarray, np.ndarray]:
    """The keys of events from their ``event_id`` (strings)."""
    return _both(
        [
            np.uint64(_KIND_CODE[kind]),
            _hash_strings(text, "opx-event-id-k01"),
            _hash_strings(text, "opx-event-id-k02"),
        ]
    )


def _features(kind: str, features: Any, n: int) -> pd.DataFrame:
    if features is None:
        return pd.DataFrame(index=range(n))
    if isinstance(features, pd.DataFrame):
        frame = features.reset_index(drop=True)
    else:
        rows = list(features)
        bad = [i for i, r in enumerate(rows) if r is not None and not isinstance(r, dict)]
        if bad:
            raise _bad(kind, "features must be an object of name → value", bad)
        frame = pd.DataFrame([r or {} for r in rows])
    if len(frame) != n:
        raise ValidationError(f"{kind}: {len(frame)} feature rows for {n} events")
    frame.columns = [f"{FEATURE_PREFIX}{c}" for c in frame.columns]
    return frame


class EventKeys:
    """The event keys of a normalised batch, computed for a range of its rows on demand.

    :func:`normalize_deferred` returns one, so a large batch's keys (hashing its
    ids holds the GIL) can be computed chunk by chunk while the previous chunk
    is encoded on another thread (:func:`.store.append`).
    """

    def __init__(self, kind: str, frame: pd.DataFrame, given: Any) -> None:
        self.kind = kind
        self.frame = frame
        self.given = None if given is None else np.asarray(list(given), dtype=object)

    def __call__(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """``(eid_hi, eid_lo)`` of rows ``start:stop`` (the same as over the whole batch)."""
        whole = start == 0 and stop >= len(self.frame)
        sub = self.frame if whole else self.frame.iloc[start:stop]
        given = None if self.given is None else self.given[start:stop]
        return _event_keys(self.kind, sub, given)


def normalize(
    kind: str,
    *,
    ids: Any,
    ts: Any = None,
    event_ids: Any = None,
    score: Any = None,
    label: Any = None,
    features: Any = None,
    arm: Any = None,
    value: Any = None,
    now: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """One typed, validated DataFrame of events (see the module docstring).

    Raises
    ------
    ValidationError
        Naming the first bad rows; nothing is stored.
    """
    frame, keys = normalize_deferred(
        kind,
        ids=ids,
        ts=ts,
        event_ids=event_ids,
        score=score,
        label=label,
        features=features,
        arm=arm,
        value=value,
        now=now,
    )
    frame["eid_hi"], frame["eid_lo"] = keys(0, len(frame))
    return frame


def normalize_deferred(
    kind: str,
    *,
    ids: Any,
    ts: Any = None,
    event_ids: Any = None,
    score: Any = None,
    label: Any = None,
    features: Any = None,
    arm: Any = None,
    value: Any = None,
    now: pd.Timestamp | None = None,
) -> tuple[pd.DataFrame, EventKeys]:
    """:func:`normalize` without the event keys: their columns hold zeros, and the
    :class:`EventKeys` returned computes them (pass both to :func:`.log.log_events`).

    Raises
    ------
    ValidationError
        Naming the first bad rows; nothing is stored.
    """
    check_kind(kind)
    now = now if now is not None else pd.Timestamp.now(tz="UTC")
    id_s = _ids(kind, ids)
    n = len(id_s)
    if n == 0:
        raise ValidationError(f"{kind}: the batch is empty")

    def broadcast(values: Any, name: str) -> Any:
        if values is None:
            return None
        if not pd.api.types.is_list_like(values):  # one value for the whole batch
            return [values] * n
        seq = values if hasattr(values, "__len__") else list(values)
        if len(seq) != n:
            raise ValidationError(f"{kind}: {len(seq)} values of {name} for {n} ids")
        return seq

    frame = pd.DataFrame({"id": id_s})
    # a single time for the batch stays a scalar: _timestamps broadcasts it cheaply
    one_time = ts is None or not pd.api.types.is_list_like(ts)
    frame["ts"] = _timestamps(kind, ts if one_time else broadcast(ts, "ts"), n, now)
    if kind == "predictions":
        if score is None and label is None:
            raise ValidationError("predictions need a score (or a label) for every event")
        both = score is not None and label is not None
        if score is not None:
            frame["score"] = _numbers(kind, "score", broadcast(score, "score"), allow_missing=both)
        if label is not None:
            frame["label"] = _numbers(kind, "label", broadcast(label, "label"), allow_missing=both)
        if both:
            neither = frame["score"].isna() & frame["label"].isna()
            if neither.any():
                raise _bad(
                    kind, "every prediction needs a score or a label", np.flatnonzero(neither)
                )
        feats = _features(kind, features, n)
        frame = pd.concat([frame, feats], axis=1)
    elif kind == "treatments":
        arms = pd.Series(broadcast(arm, "arm"), dtype=object) if arm is not None else None
        if arms is None:
            raise ValidationError("treatments need an arm for every event (e.g. email, control)")
        bad = arms.isna() | arms.map(lambda v: not isinstance(v, str) or not v.strip())
        if bad.any():
            raise _bad(kind, "arm must be a non-empty string", np.flatnonzero(bad.to_numpy()))
        frame["arm"] = arms.astype(str).to_numpy()
    else:
        if value is None:
            raise ValidationError("outcomes need a value for every event")
        frame["value"] = _numbers(kind, "value", broadcast(value, "value"))
    given = broadcast(event_ids, "event_id") if event_ids is not None else None
    keys = EventKeys(kind, frame, given)
    frame["eid_hi"] = np.zeros(n, dtype=np.uint64)  # placeholders: see EventKeys
    frame["eid_lo"] = np.zeros(n, dtype=np.uint64)
    if given is not None:
        frame["event_id"] = pd.Series(given, dtype=object).astype(str).to_numpy()
    return frame, keys


def from_records(kind: str, records: list[Any], now: pd.Timestamp | None = None) -> pd.DataFrame:
    """Events from JSON objects (a JSON array or NDJSON lines), validated."""
    check_kind(kind)
    bad = [i for i, r in enumerate(records) if not isinstance(r, dict)]
    if bad:
        raise _bad(kind, "each event must be a JSON object", bad)
    allowed = set(_CORE[kind])
    unknown = sorted({k for r in records for k in r} - allowed)
    if unknown:
        raise ValidationError(
            f"{kind}: unknown field(s) {', '.join(unknown)}; "
            f"the fields are {', '.join(_CORE[kind])}"
        )

    def column(name: str) -> list[Any] | None:
        if not any(name in r for r in records):
            return None
        return [r.get(name) for r in records]

    score = column("score")
    label = column("label")
    if kind == "predictions" and score is not None and label is None:
        missing = [i for i, v in enumerate(score) if v is None]
        if missing:
            raise _bad(kind, "every prediction needs a score or a label", missing)
    return normalize(
        kind,
        ids=[r.get("id") for r in records],
        ts=column("ts"),
        event_ids=column("event_id"),
        score=score,
        label=label,
        features=column("features"),
        arm=column("arm"),
        value=column("value"),
        now=now,
    )


class _NotPlain(Exception):
    """The Arrow table has a column only the general (pandas) path handles."""


def _plain_numbers(table: Any, name: str) -> Any:
    """Column ``name`` as float64 when it is all finite numbers (None when absent)."""
    import pyarrow as pa

    if name not in table.column_names:
        return None
    col = table.column(name).combine_chunks()
    if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)) or col.null_count:
        raise _NotPlain(name)  # missing values, booleans, text: the general path decides
    col = col.cast(pa.float64())
    if not np.isfinite(col.to_numpy()).all():
        raise _NotPlain(name)
    return col


def _plain_strings(table: Any, name: str) -> Any:
    """Column ``name`` when it is non-empty strings throughout (None when absent)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if name not in table.column_names:
        return None
    col = table.column(name).combine_chunks()
    if not pa.types.is_string(col.type) or pc.any(_blank(col)).as_py():
        raise _NotPlain(name)
    return col


def _arrow_times(kind: str, table: Any, now: pd.Timestamp) -> Any:
    """``ts`` as Arrow ``timestamp[ns, UTC]``: missing means ``now``.

    Arrow's JSON reader types ISO 8601 times to the second as UTC timestamps
    (an offset applied, none meaning UTC), which cast here without a Python
    object; anything else (fractions of a second, epoch seconds) goes through
    :func:`_timestamps`, the rules and errors of every other input.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    n = table.num_rows
    utc_ns = pa.timestamp("ns", "UTC")
    if "ts" not in table.column_names:
        return pa.array(np.full(n, now.as_unit("ns").value, dtype="int64"), type=pa.int64()).cast(
            utc_ns
        )
    col = table.column("ts").combine_chunks()
    if pa.types.is_timestamp(col.type) and col.type.tz is None:
        try:
            # naive Arrow timestamps are UTC already: the cast only labels them
            out = col.cast(pa.timestamp(col.type.unit, "UTC")).cast(utc_ns)
        except pa.ArrowInvalid:  # out of the nanosecond range: the general path says so
            raise _NotPlain("ts") from None
        return pc.fill_null(out, pa.scalar(now.as_unit("ns").value, type=pa.int64()).cast(utc_ns))
    return pa.array(_timestamps(kind, col.to_pandas(), n, now), type=utc_ns)


def _arrow_events(kind: str, table: Any, now: pd.Timestamp) -> Any:
    """A parsed NDJSON batch normalised without leaving Arrow: the columns, types and
    event keys of :func:`normalize` (as :func:`.store.append` writes them), checked
    with the same rules.

    Handles the plain batch: ids, times, numbers without gaps, arms and event ids
    non-empty strings, features of flat values. Raises :class:`_NotPlain` for
    anything else, which the general path then takes (with its precise errors).
    """
    import pyarrow as pa

    n = table.num_rows
    if n == 0:
        raise _NotPlain("empty")
    ids = _id_array(kind, table.column("id"))  # bad ids: the same error as the general path
    ts = _arrow_times(kind, table, now)
    columns: dict[str, Any] = {"id": ids, "ts": ts}
    numbers: list[np.ndarray] = []
    arm = None
    if kind == "predictions":
        score, label = _plain_numbers(table, "score"), _plain_numbers(table, "label")
        if score is None and label is None:
            raise _NotPlain("score")
        for name, col in (("score", score), ("label", label)):
            if col is not None:
                columns[name] = col
                numbers.append(col.to_numpy())
        if "features" in table.column_names:
            feats = table.column("features").combine_chunks()
            if not pa.types.is_struct(feats.type):
                raise _NotPlain("features")
            for field, values in zip(feats.type, feats.flatten(), strict=True):
                if pa.types.is_nested(field.type):
                    raise _NotPlain("features")
                columns[f"{FEATURE_PREFIX}{field.name}"] = values
    elif kind == "treatments":
        arm = _plain_strings(table, "arm")
        if arm is None:
            raise _NotPlain("arm")
        columns["arm"] = arm
    else:
        value = _plain_numbers(table, "value")
        if value is None:
            raise _NotPlain("value")
        columns["value"] = value
        numbers.append(value.to_numpy())
    given = _plain_strings(table, "event_id")
    if given is not None:
        hi, lo = _given_keys(kind, given)
    else:
        hi, lo = _content_keys(kind, ids, ts.cast(pa.int64()).to_numpy(), numbers, arm)
    columns["eid_hi"], columns["eid_lo"] = pa.array(hi), pa.array(lo)
    if given is not None:
        columns["event_id"] = given
    return pa.table(columns)


def _ndjson_arrow(kind: str, body: bytes, now: pd.Timestamp | None) -> Any:
    """NDJSON through pyarrow's C++ JSON reader (columns at once, no Python per line).

    Returns an Arrow table when the batch is plain (:func:`_arrow_events`: no
    pandas round trip, the store writes it as it is), else a DataFrame from the
    parsed columns, or None when the body needs the row-by-row path (malformed
    lines, mixed types, unknown fields): that path produces the precise error.
    """
    import io

    import pyarrow as pa
    import pyarrow.json as pj

    try:
        # threads: the body is parsed in blocks on every core (one batch is ~5 MB)
        table = pj.read_json(io.BytesIO(body))
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return None
    names = set(table.column_names)
    if not names <= set(_CORE[kind]) or "id" not in names:
        return None
    ids = table.column("id")
    if not (pa.types.is_string(ids.type) or pa.types.is_integer(ids.type)):
        return None
    now = now if now is not None else pd.Timestamp.now(tz="UTC")
    try:
        return _arrow_events(kind, table, now)
    except _NotPlain:
        pass

    def column(name: str) -> Any:
        if name not in names:
            return None
        col = table.column(name)
        if pa.types.is_struct(col.type) or pa.types.is_list(col.type):
            return None if name != "features" else col
        return col.to_pandas()

    features = None
    if "features" in names:
        feats = table.column("features")
        if not pa.types.is_struct(feats.type):
            return None
        flat = pa.Table.from_arrays(
            feats.combine_chunks().flatten(), names=[f.name for f in feats.type]
        )
        features = flat.to_pandas()
    return normalize(
        kind,
        ids=ids.to_pandas(),
        ts=column("ts"),
        event_ids=column("event_id"),
        score=column("score"),
        label=column("label"),
        features=features,
        arm=column("arm"),
        value=column("value"),
        now=now,
    )


_NDJSON = (
    "application/x-ndjson",
    "application/ndjson",
    "application/jsonl",
    "application/jsonlines",
)


def _frame_of(table: Any) -> pd.DataFrame:
    """An Arrow batch of :func:`_arrow_events` as the DataFrame :func:`normalize` returns."""
    frame = table.to_pandas()
    frame["id"] = pd.arrays.ArrowStringArray(table.column("id").combine_chunks())
    return frame


def parse_body(
    kind: str, body: bytes, content_type: str, now: pd.Timestamp | None = None
) -> pd.DataFrame:
    """Events from an HTTP body: JSON array, NDJSON or CSV (by Content-Type).

    CSV has the same columns; features are columns named ``features.NAME``.
    """
    events = parse_events(kind, body, content_type, now)
    return events if isinstance(events, pd.DataFrame) else _frame_of(events)


def _text(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise ValidationError("the body must be UTF-8 text") from None


def parse_events(kind: str, body: bytes, content_type: str, now: pd.Timestamp | None = None) -> Any:
    """:func:`parse_body` for the HTTP ingestion path: a plain NDJSON batch comes back
    as the Arrow table the store writes (no pandas round trip), anything else as a
    DataFrame; :func:`.log.log_events` takes either.
    """
    ctype = (content_type or "application/json").split(";")[0].strip().lower()
    # UTF-8 is checked first (Arrow's JSON reader does not check every string); ASCII,
    # the usual body, is UTF-8 already: a fast scan instead of a 5 MB decode
    text = None if body.isascii() else _text(body)
    if ctype in _NDJSON:
        fast = _ndjson_arrow(check_kind(kind), body, now)
        if fast is not None:
            return fast
    if text is None:
        text = _text(body)
    if ctype in _NDJSON:
        records = []
        for i, line in enumerate(text.splitlines()):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValidationError(
                    f"{kind}: line {i + 1} is not JSON ({exc.msg})", rows=[i]
                ) from None
        return from_records(kind, records, now)
    if ctype in ("text/csv", "application/csv"):
        import io

        try:
            frame = pd.read_csv(io.StringIO(text), dtype={"id": str, "event_id": str, "arm": str})
        except (ValueError, pd.errors.ParserError) as exc:
            raise ValidationError(f"{kind}: the CSV cannot be read ({exc})") from None
        feats = [c for c in frame.columns if c.startswith("features.")]
        records = frame.drop(columns=feats).to_dict(orient="records")
        for rec, (_, row) in zip(records, frame[feats].iterrows(), strict=True):
            for key, val in list(rec.items()):
                if isinstance(val, float) and math.isnan(val):
                    rec[key] = None
            if feats:
                rec["features"] = {
                    c[len("features.") :]: (None if pd.isna(v) else v) for c, v in row.items()
                }
        return from_records(kind, records, now)
    if ctype not in ("application/json", "text/json", ""):
        raise ValidationError(
            f"unsupported Content-Type {ctype!r}: send application/json (an array), "
            "application/x-ndjson or text/csv"
        )
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationError(
            f"{kind}: the body is not JSON ({exc.msg} at line {exc.lineno})"
        ) from None
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise ValidationError(f"{kind}: send a JSON array of events")
    return from_records(kind, data, now)
