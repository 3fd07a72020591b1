"""Late labels: joining outcomes to the predictions (and treatments) they belong to.

An outcome arrives days after the prediction it judges, possibly out of
order, possibly for an entity that was scored several times. It belongs to
the latest prediction of the same entity made at or before the outcome and
no longer ago than the horizon; an outcome with no such prediction labels
nothing. :func:`pandas.merge_asof` does exactly this join (``by`` entity,
``direction="backward"``, ``tolerance=horizon``) in one sorted pass.

Event tables use the wire-format columns: predictions ``id, ts, score``
(and/or ``label``), outcomes ``id, ts, value``, treatments ``id, ts, arm``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from ..exceptions import ValidationError
from .windows import to_timedelta, to_utc


def require_columns(frame: pd.DataFrame, what: str, columns: Iterable[str]) -> None:
    """Raise a :class:`ValidationError` naming the columns ``frame`` lacks."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValidationError(
            f"{what} need the column(s) {', '.join(missing)} "
            f"(they have {', '.join(map(str, frame.columns)) or 'none'})"
        )


def latest_before(
    left_ids: Any,
    left_ts: Any,
    right_ids: Any,
    right_ts: Any,
    horizon: Any = "30D",
    *,
    allow_exact_matches: bool = True,
) -> np.ndarray:
    """For each left event, the latest right event of the same id at or before it.

    Parameters
    ----------
    left_ids, left_ts : array-like
        The events looking back (e.g. outcomes).
    right_ids, right_ts : array-like
        The events looked for (e.g. predictions).
    horizon : str or timedelta or float
        How far back to look (see :func:`.windows.to_timedelta`).
    allow_exact_matches : bool
        Whether a right event at exactly the left event's time counts
        (default: yes — an outcome logged at the instant of a prediction,
        as in a backfill with daily dates, still labels it).

    Returns
    -------
    numpy.ndarray of int64
        Row position in the right events, −1 where there is none. Among
        right events at the same time, the one given last wins.
    """

    def frame(ids: Any, ts: Any, pos: str) -> pd.DataFrame:
        t = to_utc(pd.Series(ts)).reset_index(drop=True)
        i = pd.Series(ids).reset_index(drop=True)
        if len(i) != len(t):
            raise ValidationError("ids and timestamps must have the same length")
        return pd.DataFrame({"id": i, "ts": t, pos: np.arange(len(t))})

    left, right = frame(left_ids, left_ts, "_l"), frame(right_ids, right_ts, "_r")
    out = np.full(len(left), -1, dtype=np.int64)
    if len(left) == 0 or len(right) == 0:
        return out
    if left["id"].dtype != right["id"].dtype:
        # merge_asof needs one key type; ids sent as 17 and "17" are one entity
        left["id"], right["id"] = left["id"].astype(str), right["id"].astype(str)
    merged = pd.merge_asof(
        left.sort_values("ts", kind="stable"),
        right.sort_values("ts", kind="stable"),
        on="ts",
        by="id",
        direction="backward",
        tolerance=to_timedelta(horizon),
        allow_exact_matches=allow_exact_matches,
    )
    found = merged["_r"].notna().to_numpy()
    out[merged["_l"].to_numpy()[found]] = merged["_r"].to_numpy()[found].astype(np.int64)
    return out


def join_outcomes(
    predictions: pd.DataFrame,
    outcomes: pd.DataFrame,
    horizon: Any = "30D",
    *,
    allow_exact_matches: bool = True,
) -> pd.DataFrame:
    """Predictions with the outcome that labels each (if any).

    Parameters
    ----------
    predictions : pandas.DataFrame
        Columns ``id, ts`` (and any others, kept).
    outcomes : pandas.DataFrame
        Columns ``id, ts, value``, in any order.
    horizon, allow_exact_matches
        See :func:`latest_before`.

    Returns
    -------
    pandas.DataFrame
        ``predictions`` (same index and order, ``ts`` as UTC) plus
        ``outcome`` (float, NaN when unlabelled) and ``outcome_ts``. When
        several outcomes fall to one prediction the latest wins, so a
        corrected outcome replaces the earlier one.
    """
    require_columns(predictions, "predictions", ("id", "ts"))
    require_columns(outcomes, "outcomes", ("id", "ts", "value"))
    out = predictions.copy()
    out["ts"] = to_utc(predictions["ts"]).array
    o_ts = to_utc(outcomes["ts"]).reset_index(drop=True)
    pos = latest_before(
        outcomes["id"],
        o_ts,
        predictions["id"],
        out["ts"],
        horizon,
        allow_exact_matches=allow_exact_matches,
    )
    hit = pd.DataFrame(
        {"_r": pos, "ts": o_ts, "value": pd.to_numeric(outcomes["value"]).to_numpy(dtype=float)}
    )
    hit = hit[hit["_r"] >= 0].sort_values("ts", kind="stable")
    hit = hit.drop_duplicates("_r", keep="last")
    value = np.full(len(out), np.nan)
    value[hit["_r"].to_numpy()] = hit["value"].to_numpy(dtype=float)
    when = np.full(len(out), np.datetime64("NaT"), dtype="datetime64[ns]")
    when[hit["_r"].to_numpy()] = hit["ts"].to_numpy(dtype="datetime64[ns]")
    out["outcome"] = value
    out["outcome_ts"] = pd.DatetimeIndex(when).tz_localize("UTC")
    return out


def attach_arms(
    joined: pd.DataFrame,
    treatments: pd.DataFrame | None,
    horizon: Any = "30D",
) -> pd.Series:
    """The treatment arm that may have changed each prediction's outcome.

    A prediction's arm is that of the latest treatment of the same entity
    within the horizon before its outcome — or, while it has no outcome yet,
    before the end of its horizon — since that is the treatment that can have
    acted on the outcome. None when there is no such treatment.

    Parameters
    ----------
    joined : pandas.DataFrame
        Output of :func:`join_outcomes`.
    treatments : pandas.DataFrame or None
        Columns ``id, ts, arm``.
    horizon
        See :func:`latest_before`.

    Returns
    -------
    pandas.Series
        Arm per prediction (object; None when untargeted), aligned with ``joined``.
    """
    arms = pd.Series([None] * len(joined), index=joined.index, dtype=object)
    if treatments is None or len(treatments) == 0 or len(joined) == 0:
        return arms
    require_columns(treatments, "treatments", ("id", "ts", "arm"))
    span = to_timedelta(horizon)
    end = joined["outcome_ts"].where(joined["outcome"].notna(), joined["ts"] + span)
    pos = latest_before(joined["id"], end, treatments["id"], treatments["ts"], span)
    found = pos >= 0
    values = np.asarray(treatments["arm"], dtype=object)
    arms.iloc[np.flatnonzero(found)] = values[pos[found]]
    return arms
