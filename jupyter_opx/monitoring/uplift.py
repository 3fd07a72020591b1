"""Campaign effect: outcome rate per arm among the targeted, and the uplift.

Only entities with a treatment event (a campaign arm, the control arm
included) are compared, so the arms are alike apart from the treatment.
uplift = rate(treated) − rate(control); for churn a negative uplift means
fewer churners. Its 95% interval is Newcombe's hybrid score interval
(Newcombe 1998, method 10: the two Wilson intervals combined), which keeps
sensible limits for small arms and rates near 0 or 1 where the Wald interval
collapses or leaves [−1, 1]; the p-value is the pooled two-proportion z-test.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from ..exceptions import ValidationError
from .joins import latest_before, require_columns
from .windows import Window, to_timedelta, to_utc, window_codes


def _z(confidence: float) -> float:
    return float(stats.norm.ppf(0.5 + confidence / 2))


def wilson_interval(successes: Any, n: Any, confidence: float = 0.95) -> tuple[Any, Any]:
    """Wilson score interval of a proportion (NaN where n is 0).

    Parameters
    ----------
    successes, n : int or array-like
        Counts (broadcast together).
    confidence : float
        Two-sided confidence level.

    Returns
    -------
    (low, high) : floats or numpy.ndarray
    """
    x, nn = np.asarray(successes, dtype=float), np.asarray(n, dtype=float)
    z2 = _z(confidence) ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        p = x / nn
        den = 1 + z2 / nn
        center = (p + z2 / (2 * nn)) / den
        half = np.sqrt(z2) * np.sqrt(p * (1 - p) / nn + z2 / (4 * nn**2)) / den
    low, high = np.clip(center - half, 0, 1), np.clip(center + half, 0, 1)
    return low[()], high[()]


def newcombe_interval(
    x1: Any, n1: Any, x2: Any, n2: Any, confidence: float = 0.95
) -> tuple[Any, Any, Any]:
    """Difference p1 − p2 of two independent proportions and its hybrid score interval.

    Newcombe (1998), "Interval estimation for the difference between
    independent proportions", method 10: with Wilson limits (l1, u1), (l2, u2),
    low = d − √((p1 − l1)² + (u2 − p2)²), high = d + √((u1 − p1)² + (p2 − l2)²).

    Parameters
    ----------
    x1, n1 : int or array-like
        Successes and size of the first group (e.g. treated).
    x2, n2 : int or array-like
        Successes and size of the second group (e.g. control).
    confidence : float

    Returns
    -------
    (difference, low, high) : floats or numpy.ndarray
        NaN where either group is empty.
    """
    x1, n1, x2, n2 = (np.asarray(a, dtype=float) for a in (x1, n1, x2, n2))
    l1, u1 = wilson_interval(x1, n1, confidence)
    l2, u2 = wilson_interval(x2, n2, confidence)
    with np.errstate(invalid="ignore", divide="ignore"):
        p1, p2 = x1 / n1, x2 / n2
        d = p1 - p2
        low = d - np.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
        high = d + np.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return np.asarray(d)[()], np.asarray(low)[()], np.asarray(high)[()]


def two_proportion_pvalue(x1: Any, n1: Any, x2: Any, n2: Any) -> Any:
    """Two-sided p-value of the pooled two-proportion z-test.

    1.0 when both groups have the same all-0 or all-1 outcome (no variance,
    no evidence of a difference); NaN where either group is empty.
    """
    x1, n1, x2, n2 = (np.asarray(a, dtype=float) for a in (x1, n1, x2, n2))
    with np.errstate(invalid="ignore", divide="ignore"):
        pooled = (x1 + x2) / (n1 + n2)
        se = np.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
        z = (x1 / n1 - x2 / n2) / se
        p = np.where(se > 0, 2 * stats.norm.sf(np.abs(z)), 1.0)
    return np.where((n1 > 0) & (n2 > 0), p, np.nan)[()]


def treatment_outcomes(
    treatments: pd.DataFrame,
    outcomes: pd.DataFrame,
    horizon: Any = "30D",
    *,
    missing_outcome: float | None = None,
    now: Any = None,
    allow_exact_matches: bool = True,
) -> pd.DataFrame:
    """Each treatment with the outcome it led to.

    An outcome belongs to the latest treatment of the same entity within the
    horizon before it (as outcomes belong to predictions); when several fall
    to one treatment the latest wins.

    Parameters
    ----------
    treatments : pandas.DataFrame
        Columns ``id, ts, arm`` (rows without an arm are ignored).
    outcomes : pandas.DataFrame
        Columns ``id, ts, value``.
    horizon : str or timedelta
    missing_outcome : float, optional
        Outcome to assume for a treatment that got none once its horizon has
        passed — e.g. 0 when only churn events are logged. Default: unknown,
        so such treatments are left out of the rates.
    now : timestamp-like, optional
        When "the horizon has passed" is judged (default: current UTC time).
    allow_exact_matches : bool
        See :func:`.joins.latest_before`.

    Returns
    -------
    pandas.DataFrame
        ``id, ts, arm, outcome`` (NaN when unknown).
    """
    require_columns(treatments, "treatments", ("id", "ts", "arm"))
    require_columns(outcomes, "outcomes", ("id", "ts", "value"))
    t = treatments.loc[treatments["arm"].notna(), ["id", "ts", "arm"]].reset_index(drop=True)
    t["ts"] = to_utc(t["ts"]).array
    o_ts = to_utc(outcomes["ts"]).reset_index(drop=True)
    pos = latest_before(
        outcomes["id"], o_ts, t["id"], t["ts"], horizon, allow_exact_matches=allow_exact_matches
    )
    hit = pd.DataFrame({"_r": pos, "ts": o_ts, "value": pd.to_numeric(outcomes["value"]).array})
    hit = hit[hit["_r"] >= 0].sort_values("ts", kind="stable").drop_duplicates("_r", keep="last")
    value = np.full(len(t), np.nan)
    value[hit["_r"].to_numpy()] = hit["value"].to_numpy(dtype=float)
    if missing_outcome is not None:
        current = pd.Timestamp.now(tz="UTC") if now is None else to_utc([now]).iloc[0]
        closed = (t["ts"] + to_timedelta(horizon) <= current).to_numpy()
        value = np.where(np.isnan(value) & closed, float(missing_outcome), value)
    t["outcome"] = value
    return t


def uplift_table(
    treatments: pd.DataFrame,
    outcomes: pd.DataFrame,
    *,
    window: str | int | Window = "1d",
    windows: pd.Index | None = None,
    horizon: Any = "30D",
    control_arm: str = "control",
    cumulative: bool = False,
    missing_outcome: float | None = None,
    now: Any = None,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Outcome rate per arm and uplift against the control arm, per window of treatment time.

    Parameters
    ----------
    treatments, outcomes, horizon, missing_outcome, now
        See :func:`treatment_outcomes`. Outcomes must be 0/1.
    window : str or int
        See :func:`.windows.parse_window`; count windows are chunks of treatments.
    windows : pandas.Index, optional
        Window labels to report (default: first to last treatment, empty kept).
    control_arm : str
        The arm every other arm is compared with.
    cumulative : bool
        Counts run from the first window through each window, so the last
        row of each arm is the campaign's total so far.
    confidence : float
        Level of the intervals.

    Returns
    -------
    pandas.DataFrame
        One row per window and arm (control first): ``window, arm,
        n_targeted`` (treatments), ``n`` (with a known outcome),
        ``outcomes`` (positives), ``outcome_rate, rate_low, rate_high``
        (Wilson), and for the non-control arms ``uplift, ci_low, ci_high,
        p_value`` and ``kept, kept_low, kept_high`` = −uplift × n (entities
        whose outcome the treatment averted, with its interval); NaN where
        an arm is empty.

    Raises
    ------
    ValidationError
        Missing columns or non-binary outcomes.
    """
    t = treatment_outcomes(treatments, outcomes, horizon, missing_outcome=missing_outcome, now=now)
    y = t["outcome"].to_numpy(dtype=float)
    if not np.isin(y[~np.isnan(y)], (0.0, 1.0)).all():
        raise ValidationError("uplift needs 0/1 outcomes (e.g. churned or not)")
    codes, labels = window_codes(t["ts"], window, windows)
    w = len(labels)
    arm_names = sorted({str(a) for a in t["arm"]}, key=lambda a: (a != control_arm, a))
    arm_of = t["arm"].astype(str).to_numpy()
    known = ~np.isnan(y)
    counts = {}
    for arm in arm_names:
        rows = (arm_of == arm) & (codes >= 0)
        sel = rows & known
        c = np.vstack(
            [
                np.bincount(codes[rows], minlength=w),
                np.bincount(codes[sel], minlength=w),
                np.bincount(codes[sel], y[sel], minlength=w),
            ]
        ).astype(float)
        counts[arm] = np.cumsum(c, axis=1) if cumulative else c
    base = counts.get(control_arm, np.zeros((3, w)))
    parts = []
    for arm in arm_names:
        targeted, n, x = counts[arm]
        low, high = wilson_interval(x, n, confidence)
        with np.errstate(invalid="ignore", divide="ignore"):
            part = pd.DataFrame(
                {
                    "window": labels,
                    "arm": arm,
                    "n_targeted": targeted.astype(np.int64),
                    "n": n.astype(np.int64),
                    "outcomes": x.astype(np.int64),
                    "outcome_rate": x / n,
                    "rate_low": low,
                    "rate_high": high,
                }
            )
        nan = np.full(w, np.nan)
        d, lo, hi, p = nan, nan, nan, nan
        if arm != control_arm:
            d, lo, hi = newcombe_interval(x, n, base[2], base[1], confidence)
            p = two_proportion_pvalue(x, n, base[2], base[1])
        part["uplift"], part["ci_low"], part["ci_high"], part["p_value"] = d, lo, hi, p
        # 0 - d rather than -d: no "-0.0" kept when the uplift is exactly 0
        part["kept"], part["kept_low"], part["kept_high"] = (0 - d) * n, (0 - hi) * n, (0 - lo) * n
        parts.append(part)
    if not parts:
        return pd.DataFrame(
            columns=[
                "window",
                "arm",
                "n_targeted",
                "n",
                "outcomes",
                "outcome_rate",
                "rate_low",
                "rate_high",
                "uplift",
                "ci_low",
                "ci_high",
                "p_value",
                "kept",
                "kept_low",
                "kept_high",
            ]
        )
    table = pd.concat(parts, ignore_index=True)
    return table.sort_values("window", kind="stable").reset_index(drop=True)
