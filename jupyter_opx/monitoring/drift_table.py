"""Drift of every feature (and of the scores), per window, with a multiple-testing guard.

With k features tested in a window, a feature is flagged only when its
p-value is below α/k (Bonferroni) *and* its effect size passes a threshold:
on large windows a harmless shift is "significant", and on small ones a
large-looking shift may be noise, so neither alone decides (METRICS.md).

Kinds of feature, as the reference summary describes them:

- ``numeric``: PSI on the reference decile bins, KS against the reference
  CDF; p-value from KS; effect = PSI > ``psi_threshold`` or D > ``ks_threshold``.
- ``discrete``: a numeric feature whose reference has few distinct values
  (the summary stores their frequencies). METRICS.md counts these as
  categorical, so the p-value is the chi-square test over those values and
  the effect is the Jensen-Shannon distance; PSI, KS and the out-of-range
  share are reported as well.
- ``categorical``: chi-square p-value, effect = JS > ``js_threshold``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..exceptions import ValidationError
from .drift import EPS, categorical_drift, numeric_drift
from .windows import Window, window_codes

COLUMNS = [
    "feature",
    "kind",
    "n",
    "psi",
    "ks",
    "js",
    "p_value",
    "drifted",
    "missing_share",
    "out_of_range_share",
    "unseen_share",
    "test",
]


def _kind(reference: Mapping[str, Any]) -> str | None:
    kind = reference.get("kind")
    if kind == "numeric":
        return "discrete" if reference.get("categories") else "numeric"
    return "categorical" if kind == "categorical" else None


def _feature_rows(name: str, kind: str, stats: dict[str, np.ndarray], w: int) -> dict[str, Any]:
    nan = np.full(w, np.nan)
    numeric = kind == "numeric"
    return {
        "feature": [name] * w,
        "kind": [kind] * w,
        "n": np.asarray(stats["n"], dtype=np.int64),
        "psi": stats["psi"],
        "ks": stats.get("ks", nan),
        "js": nan if numeric else stats["js"],
        "p_value": stats["ks_p_value"] if numeric else stats["chi2_p_value"],
        "missing_share": stats["missing_share"],
        "out_of_range_share": stats.get("out_of_range_share", nan),
        "unseen_share": nan if numeric else stats["unseen_share"],
        "test": ["ks" if numeric else "chi2"] * w,
    }


def _flag(
    table: pd.DataFrame,
    alpha: float,
    psi_threshold: float,
    ks_threshold: float,
    js_threshold: float,
) -> pd.Series:
    keys = table["window"] if "window" in table else pd.Series(0, index=table.index)
    tested = table["p_value"].notna()
    k = tested.groupby(keys).transform("sum").clip(lower=1)
    numeric = table["kind"] == "numeric"
    # NaN comparisons are False, so an untested feature is never flagged
    effect = np.where(
        numeric,
        (table["psi"] > psi_threshold) | (table["ks"] > ks_threshold),
        table["js"] > js_threshold,
    )
    return pd.Series((table["p_value"] < alpha / k) & effect, index=table.index)


def drift_table(
    current: pd.DataFrame,
    summary: Mapping[str, Any],
    *,
    ts: Any = None,
    window: str | int | Window | None = None,
    windows: pd.Index | None = None,
    features: Sequence[str] | None = None,
    alpha: float = 0.05,
    psi_threshold: float = 0.2,
    ks_threshold: float = 0.1,
    js_threshold: float = 0.1,
    eps: float = EPS,
) -> pd.DataFrame:
    """Drift of each feature of ``current`` against the snapshot's reference summary.

    Parameters
    ----------
    current : pandas.DataFrame
        Current feature values, one row per prediction.
    summary : mapping
        The snapshot's reference summary (``{"features": {name: summary}}``,
        as :func:`jupyter_opx.snapshots.summaries.summarize` returns), or the
        ``features`` mapping itself.
    ts : array-like, optional
        Timestamp of each row; required with ``window``.
    window : str or int, optional
        Per-window table (see :func:`.windows.parse_window`); default: one
        table over all rows, without a ``window`` column.
    windows : pandas.Index, optional
        Window labels to report (default: first to last, empty ones kept).
    features : sequence of str, optional
        Features to test (default: every column that has a reference
        summary; datetime features and columns without one are skipped).
    alpha : float
        Family-wise significance level, divided by the number of features
        tested in the window (Bonferroni).
    psi_threshold, ks_threshold, js_threshold : float
        Effect sizes a drifted feature must exceed (see module docstring).
    eps : float
        PSI epsilon (and the expected share of a bucket the reference lacks).

    Returns
    -------
    pandas.DataFrame
        One row per feature (per window): ``[window,] feature, kind, n``
        (non-missing values tested), ``psi, ks, js, p_value, drifted,
        missing_share, out_of_range_share, unseen_share, test`` (``"ks"`` or
        ``"chi2"``: what ``p_value`` comes from). See :func:`drift_summary`
        for the share of drifted features.
    """
    refs = summary.get("features", summary)
    names = [
        str(c)
        for c in (features if features is not None else current.columns)
        if str(c) in refs and c in current.columns and _kind(refs[str(c)])
    ]
    if window is None:
        codes, labels, order = None, None, None
        w = 1
    else:
        if ts is None:
            raise ValidationError("a per-window drift table needs the rows' timestamps: pass ts=")
        codes, labels = window_codes(ts, window, windows)
        w = len(labels)
        # Sort the rows by window once so every numeric feature finds its
        # window segments contiguous (categorical counts need no order).
        order = np.argsort(codes, kind="stable")
    parts = []
    for name in names:
        ref = refs[name]
        kind = _kind(ref)
        assert kind is not None
        col = current[name]
        if kind == "categorical":
            stats = categorical_drift(col, ref, groups=codes, n_groups=w, eps=eps)
        else:
            values = pd.to_numeric(col, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
            groups = None
            if order is not None and codes is not None:
                values, groups = values[order], codes[order]
            stats = numeric_drift(values, ref, groups=groups, n_groups=w, eps=eps)
        parts.append((name, kind, stats))
    return assemble(
        parts,
        labels,
        w,
        alpha=alpha,
        psi_threshold=psi_threshold,
        ks_threshold=ks_threshold,
        js_threshold=js_threshold,
    )


def assemble(
    parts: Sequence[tuple[str, str, Mapping[str, Any]]],
    labels: pd.Index | None,
    w: int,
    *,
    alpha: float = 0.05,
    psi_threshold: float = 0.2,
    ks_threshold: float = 0.1,
    js_threshold: float = 0.1,
) -> pd.DataFrame:
    """The drift table from each feature's statistics (name, kind, stats per window).

    ``labels`` None: one table over all rows (``w`` = 1, no ``window`` column).
    :func:`drift_table` computes the statistics from the rows;
    :mod:`.incremental` from state it keeps up to date batch by batch.
    """
    rows = []
    for name, kind, stats in parts:
        arrays = {k: np.atleast_1d(np.asarray(v)) for k, v in stats.items()}
        rows.append(_feature_rows(name, kind, arrays, w))
    if rows:  # one frame from whole columns, not one frame per feature
        table = pd.DataFrame(
            {
                col: (
                    [v for r in rows for v in r[col]]
                    if isinstance(rows[0][col], list)
                    else np.concatenate([np.asarray(r[col]) for r in rows])
                )
                for col in rows[0]
            }
        )
    else:
        table = pd.DataFrame(columns=COLUMNS)
    if labels is not None:
        table.insert(0, "window", np.tile(np.asarray(labels), len(parts)))
        table = table.sort_values("window", kind="stable").reset_index(drop=True)
    table["drifted"] = _flag(table, alpha, psi_threshold, ks_threshold, js_threshold).astype(bool)
    return table[(["window"] if labels is not None else []) + COLUMNS]


def prediction_drift(
    scores: Any,
    summary: Mapping[str, Any],
    *,
    ts: Any = None,
    window: str | int | Window | None = None,
    windows: pd.Index | None = None,
    alpha: float = 0.05,
    psi_threshold: float = 0.2,
    ks_threshold: float = 0.1,
    eps: float = EPS,
) -> pd.DataFrame:
    """Drift of the model's scores against the scores it gave its reference data.

    Always the numeric test (PSI + KS), even when the reference scores take
    few distinct values, and a single test per window (no Bonferroni share
    with the features).

    Parameters
    ----------
    scores : array-like
        Current scores.
    summary : mapping
        The snapshot's reference summary (its ``prediction`` entry is used)
        or that entry itself.
    ts, window, windows, alpha, psi_threshold, ks_threshold, eps
        See :func:`drift_table`.

    Returns
    -------
    pandas.DataFrame
        The :func:`drift_table` columns with ``feature == "prediction"``;
        NaN statistics when the snapshot has no usable score summary.
    """
    ref = dict(summary.get("prediction", summary))
    ref.pop("categories", None)
    if ref.get("kind") != "numeric":
        ref = {"kind": "numeric", "count": 0, "missing": 0.0}  # skipped at snapshot time
    return drift_table(
        pd.DataFrame({"prediction": np.asarray(scores, dtype=float)}),
        {"prediction": ref},
        ts=ts,
        window=window,
        windows=windows,
        alpha=alpha,
        psi_threshold=psi_threshold,
        ks_threshold=ks_threshold,
        eps=eps,
    )


def drift_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Features tested and drifted, and the drifted share, per window of a drift table.

    Returns
    -------
    pandas.DataFrame
        ``[window,] tested, drifted, drifted_share`` (NaN share when nothing
        was tested).
    """
    tested = table["p_value"].notna()
    frame = pd.DataFrame({"tested": tested.astype(int), "drifted": table["drifted"].astype(int)})
    if "window" in table:
        frame["window"] = table["window"]
        out = frame.groupby("window", sort=True).sum().reset_index()
    else:
        out = frame.sum().to_frame().T.reset_index(drop=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["drifted_share"] = np.where(out["tested"] > 0, out["drifted"] / out["tested"], np.nan)
    return out


def drifted_share(table: pd.DataFrame) -> float:
    """Share of the tested features that drifted, over a whole drift table."""
    tested = int(table["p_value"].notna().sum())
    return float(table["drifted"].sum()) / tested if tested else float("nan")
