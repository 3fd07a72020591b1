"""Production-feedback data for ``bench_feedback.py``, the same in every environment.

Imported by ``bench_feedback.py`` (main venv) and by ``anchor_evidently.py``
(``bench/.venv-evidently``, pandas 2), so it needs only numpy and pandas
(through ``churnlike.py``). With a given seed and row count it produces the
same values in both; :func:`digest` checks that.

Features (20): ``churnlike``'s 15 float64 columns (two with about 1-2 % missing
values), 3 integers (``tenure_months`` int64, ``support_calls`` int32,
``products`` int64) and 2 categoricals (``plan``, ``region``; pandas
``category`` in a DataFrame, strings on the wire).

* :func:`reference` — the training-time data a snapshot summarises;
* :func:`current` — production data from another seed, with drift in a few
  features (higher charges, less recent logins, lower satisfaction, more
  ``metro`` customers) and the rest unchanged;
* :func:`scores_outcomes` — a model's churn probability for each row (the true
  probability seen through noise) and the outcome that later arrives (drawn
  from the true probability): an imperfect but useful model, AUC about 0.72;
* :func:`events` — ids and timestamps: one prediction per customer within one
  day, its outcome 1 to 20 days later.
"""

from __future__ import annotations

import hashlib

import churnlike
import numpy as np
import pandas as pd

SEED = churnlike.SEED
ROWS = 1_000_000
FLOATS = list(churnlike.FLOATS)
INTS = ["tenure_months", "support_calls", "products"]
CATS = ["plan", "region"]
FEATURES = INTS[:2] + FLOATS + ["products", *CATS]
DAY = pd.Timestamp("2026-11-30T00:00:00Z")


def _frame(n: int, seed: int) -> pd.DataFrame:
    frame = churnlike.make_frame(n, seed).drop(columns=[churnlike.LABEL])
    rng = np.random.default_rng(seed + 7)
    frame.insert(len(frame.columns) - 2, "products", rng.integers(1, 6, n).astype(np.int64))
    assert list(frame.columns) == FEATURES, list(frame.columns)
    return frame


def reference(n: int = ROWS, seed: int = SEED) -> pd.DataFrame:
    """The reference (training) features: ``n`` × 20."""
    return _frame(n, seed)


def current(n: int = ROWS, seed: int = SEED) -> pd.DataFrame:
    """Production features: ``n`` × 20 from another seed, four of them drifted."""
    frame = _frame(n, seed + 1)
    rng = np.random.default_rng(seed + 11)
    frame["monthly_charges"] = np.round(frame["monthly_charges"] * 1.2, 2)
    frame["total_charges"] = np.round(frame["total_charges"] * 1.2, 2)
    frame["days_since_login"] = frame["days_since_login"] * 1.5
    frame["satisfaction"] = np.clip(frame["satisfaction"] - 0.25, 1, 5)
    codes = frame["region"].cat.codes.to_numpy().copy()
    codes[rng.random(n) < 0.10] = churnlike.REGIONS.index("metro")
    frame["region"] = pd.Categorical.from_codes(codes, categories=churnlike.REGIONS)
    return frame


def scores_outcomes(frame: pd.DataFrame, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """The model's scores (float64 in (0, 1)) and the outcomes (int8 0/1) of ``frame``."""
    rng = np.random.default_rng(seed + 23)
    n = len(frame)
    sat = frame["satisfaction"].to_numpy(dtype=float, na_value=np.nan)
    logit = (
        -0.3
        - 0.04 * frame["tenure_months"].to_numpy(dtype=float)
        + 0.35 * frame["support_calls"].to_numpy(dtype=float)
        + 0.012 * (frame["monthly_charges"].to_numpy(dtype=float) - 60)
        + 2.5 * frame["late_payments_ratio"].to_numpy(dtype=float)
        - 0.45 * np.nan_to_num(sat, nan=3.6)
        + 0.05 * frame["days_since_login"].to_numpy(dtype=float)
        - 0.3 * (frame["plan"].cat.codes.to_numpy() == 4)
    )
    outcome = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    score = 1 / (1 + np.exp(-(logit + rng.normal(0.0, 0.9, n))))
    return score, outcome


def events(n: int, seed: int = SEED, start: int = 0) -> dict[str, np.ndarray]:
    """Ids (``c0000000`` …, from ``start``), prediction times within :data:`DAY` and
    outcome times 1 to 20 days later (epoch nanoseconds, int64)."""
    rng = np.random.default_rng(seed + 31)
    ids = np.char.add("c", np.char.zfill(np.arange(start, start + n).astype(str), 7))
    base = DAY.value
    pred_ts = base + np.sort(rng.integers(0, 86_400, n)) * 1_000_000_000
    out_ts = pred_ts + rng.integers(86_400, 20 * 86_400, n) * 1_000_000_000
    return {"ids": ids.astype(object), "pred_ts": pred_ts, "out_ts": out_ts}


def digest(*frames: pd.DataFrame, arrays: tuple[np.ndarray, ...] = ()) -> str:
    """A short hash of the values (category codes, not strings; pandas 2 and 3 agree)."""
    h = hashlib.sha256()
    for frame in frames:
        for name in frame.columns:
            col = frame[name]
            values = (
                col.cat.codes.to_numpy()
                if isinstance(col.dtype, pd.CategoricalDtype)
                else col.to_numpy(dtype=float, na_value=np.nan)
            )
            h.update(name.encode())
            h.update(np.ascontiguousarray(values).tobytes())
    for arr in arrays:
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()[:16]
