"""Windows over event timestamps, event volume and freshness.

A window is either a span of UTC time (``"1h"``, ``"1d"``, ``"1w"``, or a
multiple such as ``"6h"``) labelled by its start, or a chunk of N events in
time order (``"1000"`` or ``1000``) labelled by its number 0, 1, 2, …. Every
per-window table built from these keeps the empty windows between the first
and the last one, so a quiet hour shows as a gap instead of vanishing.

Time windows are computed with integer arithmetic on nanoseconds since the
epoch: UTC has no daylight-saving jumps, so every hour, day and week has the
same length, and flooring is exact and vectorised.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..exceptions import ValidationError

_NS = {"h": 3_600 * 10**9, "d": 86_400 * 10**9, "w": 7 * 86_400 * 10**9}
# 1970-01-05 is a Monday: weeks start on Monday (ISO 8601), hours and days at
# the epoch's midnight, so "6h" windows start at 00, 06, 12 and 18 UTC.
_WEEK_ORIGIN = 4 * 86_400 * 10**9
_TIME_RE = re.compile(r"^\s*(\d*)\s*(h|hours?|d|days?|w|weeks?)\s*$", re.IGNORECASE)
_COUNT_RE = re.compile(r"^\s*(\d+)\s*(events?)?\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Window:
    """A parsed window specification.

    Attributes
    ----------
    kind : str
        ``"time"`` (labels are UTC start timestamps) or ``"count"`` (labels
        are chunk numbers).
    size : int
        Width in nanoseconds for time windows, events per chunk for counts.
    origin : int
        Nanoseconds since the epoch that time windows are aligned to.
    """

    kind: str
    size: int
    origin: int = 0


def parse_window(window: str | int | Window) -> Window:
    """Parse ``"1h"``, ``"1d"``, ``"1w"``, ``"6h"``, ``"1000"`` or ``1000``.

    Parameters
    ----------
    window : str or int or Window
        A time span (number + ``h``/``d``/``w``, or ``hour``/``day``/``week``)
        or a number of events per chunk.

    Returns
    -------
    Window

    Raises
    ------
    ValidationError
        When the specification is neither.
    """
    if isinstance(window, Window):
        return window
    if isinstance(window, (int, np.integer)) and not isinstance(window, bool):
        if window < 1:
            raise ValidationError(f"window of {window} events: use a positive number")
        return Window("count", int(window))
    text = str(window)
    match = _TIME_RE.match(text)
    if match:
        mult = int(match.group(1) or 1)
        unit = match.group(2)[0].lower()
        if mult < 1:
            raise ValidationError(f"window {text!r}: use a positive length such as 1{unit}")
        return Window("time", mult * _NS[unit], _WEEK_ORIGIN if unit == "w" else 0)
    match = _COUNT_RE.match(text)
    if match and int(match.group(1)) >= 1:
        return Window("count", int(match.group(1)))
    raise ValidationError(
        f"unknown window {text!r}: use 1h, 1d, 1w (or a multiple such as 6h) "
        "or a number of events such as 1000"
    )


def to_utc(ts: Any) -> pd.Series:
    """Timestamps as a ``datetime64[ns, UTC]`` Series (index kept for a Series).

    Parameters
    ----------
    ts : array-like
        Datetimes (naive ones are taken as UTC), ISO 8601 strings, or numbers
        of seconds since the epoch.

    Returns
    -------
    pandas.Series

    Raises
    ------
    ValidationError
        When a timestamp cannot be parsed or is missing.
    """
    s = ts if isinstance(ts, pd.Series) else pd.Series(ts)
    if len(s) == 0:
        return pd.Series([], index=s.index, dtype="datetime64[ns, UTC]")
    try:
        if pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype):
            out = pd.to_datetime(s, unit="s", utc=True)
        elif pd.api.types.is_datetime64_any_dtype(s.dtype):
            out = pd.to_datetime(s, utc=True)
        else:
            out = pd.to_datetime(s, utc=True, format="ISO8601")
    except (ValueError, TypeError, OverflowError) as exc:
        raise ValidationError(f"timestamps must be ISO 8601 or epoch seconds: {exc}")
    if out.isna().any():
        raise ValidationError("timestamps must not be missing: give every event a ts")
    return out.dt.as_unit("ns")


def to_timedelta(value: Any) -> pd.Timedelta:
    """A duration from ``"30D"``, ``"12h"``, a timedelta, or a number of seconds."""
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return pd.Timedelta(seconds=float(value))
    try:
        out = pd.Timedelta(value)
    except (ValueError, TypeError) as exc:
        raise ValidationError(f"duration {value!r} not understood ({exc}): use e.g. '30D'")
    if pd.isna(out):
        raise ValidationError("a duration is required, e.g. '30D'")
    return out


def _ns(ts: pd.Series) -> np.ndarray:
    return ts.to_numpy(dtype="datetime64[ns]").view("int64")


def _from_ns(ns: np.ndarray) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(pd.to_datetime(ns, unit="ns", utc=True))


def chunk_starts(ts: Any, size: int) -> pd.DatetimeIndex:
    """Start timestamp of each chunk of ``size`` events taken in time order."""
    ns = np.sort(_ns(to_utc(ts)))
    return _from_ns(ns[::size])


def assign_windows(ts: Any, window: str | int | Window, *, starts: Any = None) -> pd.Series:
    """The window label of each event.

    Parameters
    ----------
    ts : array-like
        Event timestamps (see :func:`to_utc`).
    window : str or int or Window
        See :func:`parse_window`.
    starts : array-like, optional
        For count windows only: chunk start timestamps from
        :func:`chunk_starts` of *another* event stream (usually predictions),
        so outcomes or treatments fall in the prediction chunk that was open
        at their time. Events before the first chunk go to chunk 0.

    Returns
    -------
    pandas.Series
        Aligned with ``ts``: UTC start timestamps for time windows, chunk
        numbers (int64) for count windows. Ties in time keep input order.
    """
    spec = parse_window(window)
    t = to_utc(ts)
    ns = _ns(t)
    if spec.kind == "time":
        labels = spec.origin + np.floor_divide(ns - spec.origin, spec.size) * spec.size
        return pd.Series(_from_ns(labels), index=t.index, name="window")
    if starts is not None:
        edges = _ns(to_utc(starts))
        chunk = np.clip(np.searchsorted(edges, ns, side="right") - 1, 0, None)
    else:
        order = np.argsort(ns, kind="stable")
        chunk = np.empty(len(ns), dtype=np.int64)
        chunk[order] = np.arange(len(ns)) // spec.size
    return pd.Series(chunk.astype(np.int64), index=t.index, name="window")


def window_range(labels: Any, window: str | int | Window) -> pd.Index:
    """Every window label from the first to the last of ``labels``, empty ones included."""
    spec = parse_window(window)
    lab = pd.Series(labels)
    if spec.kind == "count":
        top = int(lab.max()) + 1 if len(lab) else 0
        return pd.RangeIndex(0, top, name="window")
    if len(lab) == 0:
        return pd.DatetimeIndex([], tz="UTC", name="window").as_unit("ns")
    ns = _ns(to_utc(lab))
    return pd.Index(_from_ns(np.arange(ns.min(), ns.max() + 1, spec.size)), name="window")


def window_codes(
    ts: Any,
    window: str | int | Window,
    windows: pd.Index | None = None,
    *,
    starts: Any = None,
) -> tuple[np.ndarray, pd.Index]:
    """Integer window codes 0 … W−1 of each event, and the W window labels.

    Parameters
    ----------
    ts, window, starts
        See :func:`assign_windows`.
    windows : pandas.Index, optional
        The labels to report (e.g. shared by several tables); events outside
        them get code −1. Default: :func:`window_range` of the events.

    Returns
    -------
    codes : numpy.ndarray of int64
    windows : pandas.Index
    """
    labels = assign_windows(ts, window, starts=starts)
    index = window_range(labels, window) if windows is None else pd.Index(windows, name="window")
    if len(labels) == 0:
        return np.zeros(0, dtype=np.int64), index
    if isinstance(index, pd.DatetimeIndex):
        index = index.tz_convert("UTC") if index.tz is not None else index.tz_localize("UTC")
    codes = np.asarray(index.get_indexer(labels), dtype=np.int64)
    return codes, index


def volume(
    window: str | int | Window,
    predictions: Any = None,
    treatments: Any = None,
    outcomes: Any = None,
    windows: pd.Index | None = None,
) -> pd.DataFrame:
    """Events per window for each stream.

    Parameters
    ----------
    window : str or int or Window
        See :func:`parse_window`. Count windows are chunks of predictions;
        treatments and outcomes fall in the prediction chunk open at their time.
    predictions, treatments, outcomes : array-like, optional
        Timestamps of each kind of event.
    windows : pandas.Index, optional
        Labels to report; default from the first to the last event of any kind.

    Returns
    -------
    pandas.DataFrame
        Columns ``window, predictions, treatments, outcomes`` (counts, 0 for
        empty windows).
    """
    spec = parse_window(window)
    streams = {"predictions": predictions, "treatments": treatments, "outcomes": outcomes}
    stamps = {k: to_utc(v if v is not None else []) for k, v in streams.items()}
    starts = chunk_starts(stamps["predictions"], spec.size) if spec.kind == "count" else None
    if windows is None:
        if spec.kind == "count":
            windows = pd.RangeIndex(0, len(starts) if starts is not None else 0, name="window")
        else:
            everything = pd.concat(list(stamps.values()), ignore_index=True)
            windows = window_range(assign_windows(everything, spec), spec)
    out = pd.DataFrame({"window": windows})
    for name, t in stamps.items():
        if spec.kind == "count" and (starts is None or len(starts) == 0):
            codes = np.zeros(0, dtype=np.int64)
        else:
            # predictions chunk by their own order (ties in time split evenly);
            # the other streams by the chunks' start times
            own = name == "predictions"
            codes, _ = window_codes(t, spec, windows, starts=None if own else starts)
        codes = codes[codes >= 0]
        out[name] = np.bincount(codes, minlength=len(windows)).astype(np.int64)
    return out


def freshness(prediction_ts: Any, now: Any = None) -> pd.Timedelta:
    """Time since the last prediction (``NaT`` when there is none).

    Parameters
    ----------
    prediction_ts : array-like
        Prediction timestamps.
    now : timestamp-like, optional
        The reference time (default: the current UTC time).

    Returns
    -------
    pandas.Timedelta
    """
    t = to_utc(prediction_ts)
    if len(t) == 0:
        return pd.NaT
    current = pd.Timestamp.now(tz="UTC") if now is None else to_utc([now]).iloc[0]
    return pd.Timedelta(current - t.max())
