"""Reference summaries: what drift is later measured against, without the data.

Computed at snapshot time for each feature of the reference (training) data;
a few KB per feature whatever the data's size (see METRICS.md).

Numeric feature::

    {"kind": "numeric", "count", "missing", "mean", "std", "min", "max",
     "quantiles": [1001 values at probabilities 0, 0.001, …, 1]   # or
     "values": [sorted values]                                   # when few rows
     "bins": {"edges": [inner decile edges], "counts": [...]},   # PSI bins
     "categories": {...}}                                        # few distinct values

Categorical feature::

    {"kind": "categorical", "count", "missing", "distinct",
     "categories": {value: count, ... top 50}, "other": count}

``count``/``missing``/moments are exact over all rows; quantiles, bins and
category counts come from a deterministic uniform sample of at most
:data:`MAX_SAMPLE` rows (recorded as ``sample_rows``) — their error (well
under 1% of the CDF) is far below any drift worth reporting, and it keeps a
snapshot of millions of rows fast.

PSI bins are right-closed on the inner edges, with open outer bins
(−∞, e₁], (e₁, e₂], …, (e_k, +∞): :func:`bin_index` is the one place that
assigns a value to a bin, for the reference here and for live data later.
"""

from __future__ import annotations

import math
from typing import Any

SUMMARY_VERSION = 1
MAX_SAMPLE = 100_000
GRID = 1001
TOP_CATEGORIES = 50
DISCRETE_MAX = 20
DECILES = tuple(i / 10 for i in range(1, 10))


def _f(x: Any) -> float | None:
    value = float(x)
    return value if math.isfinite(value) else None


def bin_index(edges: Any, values: Any) -> Any:
    """The PSI bin of each value: 0 … len(edges), right-closed inner edges."""
    import numpy as np

    return np.searchsorted(np.asarray(edges, dtype=float), values, side="left")


def sorted_quantiles(sorted_values: Any, probs: Any) -> Any:
    """Quantiles of already sorted values, numpy's default (linear) method, without re-sorting."""
    import numpy as np

    s = np.asarray(sorted_values, dtype=float)
    pos = np.asarray(probs, dtype=float) * (len(s) - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def decile_edges(sorted_values: Any) -> list[float]:
    """Inner bin edges at the deciles of sorted reference values (ties merged)."""
    import numpy as np

    if len(sorted_values) == 0:
        return []
    edges = np.unique(sorted_quantiles(sorted_values, DECILES))
    return [float(e) for e in edges]


def numeric_summary(values: Any, sample: Any) -> dict[str, Any]:
    """Summary of a numeric column; ``sample`` is a row sample of the same column."""
    import numpy as np

    full = np.asarray(values, dtype=float)
    missing = np.isnan(full)
    # most columns have no missing value: no copy of a million floats for them
    finite = full[~missing] if missing.any() else full
    n = len(full)
    out: dict[str, Any] = {
        "kind": "numeric",
        "count": int(n),
        "missing": float(1 - len(finite) / n) if n else 0.0,
    }
    if len(finite) == 0:
        return out
    out.update(
        mean=_f(finite.mean()),
        std=_f(finite.std(ddof=1)) if len(finite) > 1 else 0.0,
        min=_f(finite.min()),
        max=_f(finite.max()),
    )
    s = np.asarray(sample, dtype=float)
    s = np.sort(s[~np.isnan(s)])  # the one sort: everything below reads it
    if len(s) == 0:
        return out
    if len(s) <= GRID:
        out["values"] = [float(v) for v in s]
    else:
        grid = sorted_quantiles(s, np.linspace(0.0, 1.0, GRID))
        out["quantiles"] = [float(v) for v in grid]
    edges = decile_edges(s)
    # bins (e[i-1], e[i]]: on sorted values, counts are differences of right insertion points
    cuts = np.searchsorted(s, np.asarray(edges, dtype=float), side="right")
    counts = np.diff(np.concatenate(([0], cuts, [len(s)])))
    out["bins"] = {"edges": edges, "counts": [int(c) for c in counts]}
    starts = np.flatnonzero(np.concatenate(([True], s[1:] != s[:-1])))
    if len(starts) <= DISCRETE_MAX:
        cnt = np.diff(np.concatenate((starts, [len(s)])))
        out["categories"] = {_num_key(s[i]): int(c) for i, c in zip(starts, cnt, strict=True)}
    return out


def _num_key(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def categorical_summary(values: Any, sample: Any) -> dict[str, Any]:
    """Summary of a categorical (or boolean, or string) column."""
    import pandas as pd

    full = pd.Series(values)
    n = len(full)
    missing = int(full.isna().sum())
    counts = pd.Series(sample).value_counts(dropna=True)
    counts = counts[counts > 0]  # a categorical dtype lists unused categories too
    # count first, stringify the few distinct keys after (values like 1 and "1" merge)
    counts = (
        counts.groupby(counts.index.astype(str)).sum().sort_values(ascending=False, kind="stable")
    )
    top = counts.iloc[:TOP_CATEGORIES]
    return {
        "kind": "categorical",
        "count": int(n),
        "missing": missing / n if n else 0.0,
        "distinct": len(counts),
        "categories": {str(k): int(v) for k, v in top.items()},
        "other": int(counts.iloc[TOP_CATEGORIES:].sum()),
    }


def summarize(frame: Any, seed: int = 0) -> dict[str, Any]:
    """Reference summaries of every column of ``frame``.

    Parameters
    ----------
    frame : pandas.DataFrame
        The reference (usually training) data.
    seed : int
        Seed of the row sample taken when ``frame`` has more than
        :data:`MAX_SAMPLE` rows (fixed, so summaries are reproducible).

    Returns
    -------
    dict
        ``{"version", "rows", "sample_rows", "features": {column: summary}}``.
    """
    import numpy as np
    import pandas as pd

    n = len(frame)
    if n > MAX_SAMPLE:
        idx = np.sort(np.random.default_rng(seed).choice(n, MAX_SAMPLE, replace=False))
    else:
        idx = None
    features: dict[str, Any] = {}
    for name, col in frame.items():
        dtype = col.dtype
        # take the sample before converting: a categorical column would otherwise
        # be turned into a million Python strings first
        sample = (col.take(idx) if idx is not None else col).to_numpy()
        if pd.api.types.is_bool_dtype(dtype) or not pd.api.types.is_numeric_dtype(dtype):
            if pd.api.types.is_datetime64_any_dtype(dtype):
                features[str(name)] = {
                    "kind": "datetime",
                    "count": n,
                    "missing": float(col.isna().mean()) if n else 0.0,
                }
                continue
            features[str(name)] = categorical_summary(col, sample)
        else:
            features[str(name)] = numeric_summary(
                col.to_numpy(dtype=float, na_value=np.nan), sample
            )
    return {
        "version": SUMMARY_VERSION,
        "rows": int(n),
        "sample_rows": int(n if idx is None else len(idx)),
        "features": features,
    }


def score_summary(model: Any, frame: Any, seed: int = 0, rows: int = 10_000) -> dict[str, Any]:
    """Summary of the model's scores on (a sample of) its reference data.

    Prediction drift is measured against it. The positive-class probability is
    used for classifiers with ``predict_proba``, else ``predict``. Returns
    ``{"skipped": reason}`` when the model cannot score the data as given.
    """
    import numpy as np
    from threadpoolctl import threadpool_limits

    try:
        # one OpenMP thread: this runs beside the parquet encoder, and oversubscribed
        # OpenMP threads on a small machine turn milliseconds into seconds
        with threadpool_limits(limits=1, user_api="openmp"):
            columns = getattr(model, "feature_names_in_", None)
            X = frame[list(columns)] if columns is not None else frame
            if len(X) > rows:
                idx = np.sort(np.random.default_rng(seed).choice(len(X), rows, replace=False))
                X = X.iloc[idx]
            if hasattr(model, "predict_proba"):
                proba = np.asarray(model.predict_proba(X))
                scores = proba[:, -1] if proba.ndim == 2 else proba
                kind = "probability"
            else:
                scores = np.asarray(model.predict(X), dtype=float).ravel()
                kind = "prediction"
    except Exception as exc:  # any model, any data: record why and move on
        return {"skipped": f"{type(exc).__name__}: {exc}"[:300]}
    summary = numeric_summary(scores, scores)
    summary["score_kind"] = kind
    summary["rows_scored"] = len(scores)
    return summary
