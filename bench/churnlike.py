"""A churn-like table and model for the benchmarks, the same in every environment.

Imported both by ``bench_snapshot.py`` (main venv) and by ``anchor_mlflow.py``
(``bench/.venv-mlflow``), so it needs only numpy, pandas and scikit-learn. With a
given seed and row count it produces the same DataFrame (values, dtypes,
categories) and, with the same scikit-learn version, the same fitted model.

Columns (20): 15 float64 features, 3 integer columns (``tenure_months`` int64,
``support_calls`` int32 and the label ``churned`` int8) and 2 pandas
``category`` columns (``plan``, ``region``). The model is a
``HistGradientBoostingClassifier`` fitted on the first ``train_rows`` rows, with
the 19 non-label columns as features (the categoricals used natively).
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

SEED = 20240611
ROWS = 1_000_000
TRAIN_ROWS = 100_000
LABEL = "churned"
PLANS = ["basic", "standard", "premium", "family", "business"]
REGIONS = [
    "north",
    "south",
    "east",
    "west",
    "central",
    "coastal",
    "mountain",
    "islands",
    "metro",
    "rural",
    "overseas",
    "unknown",
]
FLOATS = [
    "monthly_charges",
    "total_charges",
    "avg_session_min",
    "sessions_per_week",
    "data_gb",
    "calls_min",
    "sms_count",
    "late_payments_ratio",
    "discount_pct",
    "satisfaction",
    "nps",
    "days_since_login",
    "devices",
    "referrals_score",
    "credit_score",
]


def make_frame(rows: int = ROWS, seed: int = SEED) -> pd.DataFrame:
    """The churn-like DataFrame: ``rows`` × 20, deterministic for ``seed``."""
    rng = np.random.default_rng(seed)
    n = rows
    tenure = rng.integers(0, 73, n).astype(np.int64)
    plan_codes = rng.choice(len(PLANS), n, p=[0.35, 0.3, 0.15, 0.12, 0.08]).astype(np.int8)
    region_codes = rng.integers(0, len(REGIONS), n).astype(np.int8)
    support_calls = rng.poisson(1.5, n).astype(np.int32)

    monthly = np.round(20 + 15 * plan_codes + rng.gamma(2.0, 12.0, n), 2)
    cols: dict[str, np.ndarray] = {
        "monthly_charges": monthly,
        "total_charges": np.round(monthly * np.maximum(tenure, 1) * rng.uniform(0.9, 1.1, n), 2),
        "avg_session_min": rng.lognormal(2.5, 0.6, n),
        "sessions_per_week": rng.gamma(3.0, 2.0, n),
        "data_gb": rng.exponential(8.0, n),
        "calls_min": rng.gamma(2.0, 60.0, n),
        "sms_count": rng.poisson(40, n).astype(np.float64),
        "late_payments_ratio": rng.beta(1.2, 8.0, n),
        "discount_pct": rng.choice([0.0, 5.0, 10.0, 15.0, 20.0], n),
        "satisfaction": np.clip(rng.normal(3.6, 0.9, n), 1, 5),
        "nps": np.round(np.clip(rng.normal(7.0, 2.2, n), 0, 10)),
        "days_since_login": rng.exponential(6.0, n),
        "devices": rng.integers(1, 6, n).astype(np.float64),
        "referrals_score": rng.normal(0.0, 1.0, n),
        "credit_score": np.round(rng.normal(680, 60, n)),
    }
    # about 1% missing values in two columns, as real exports have
    cols["total_charges"][rng.random(n) < 0.01] = np.nan
    cols["satisfaction"][rng.random(n) < 0.02] = np.nan

    logit = (
        -0.3
        - 0.04 * tenure
        + 0.35 * support_calls
        + 0.012 * (monthly - 60)
        + 2.5 * cols["late_payments_ratio"]
        - 0.45 * np.nan_to_num(cols["satisfaction"], nan=3.6)
        + 0.05 * cols["days_since_login"]
        - 0.3 * (plan_codes == 4)
        + 0.2 * (region_codes == 10)
    )
    churned = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int8)

    frame = pd.DataFrame(cols)
    frame.insert(0, "tenure_months", tenure)
    frame.insert(1, "support_calls", support_calls)
    frame["plan"] = pd.Categorical.from_codes(plan_codes, categories=PLANS)
    frame["region"] = pd.Categorical.from_codes(region_codes, categories=REGIONS)
    frame[LABEL] = churned
    assert frame.shape == (n, 20)
    return frame


def features(frame: pd.DataFrame) -> pd.DataFrame:
    """The model's input columns (all but the label)."""
    return frame.drop(columns=[LABEL])


def train_model(frame: pd.DataFrame, train_rows: int = TRAIN_ROWS, seed: int = SEED):
    """A HistGradientBoostingClassifier fitted on the first ``train_rows`` rows."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    part = frame.iloc[: min(train_rows, len(frame))]
    model = HistGradientBoostingClassifier(
        max_iter=100, categorical_features="from_dtype", random_state=seed % (2**31)
    )
    model.fit(features(part), part[LABEL])
    return model


def frame_digest(frame: pd.DataFrame) -> str:
    """A short hash of the frame's values and dtypes (to check both venvs built the same)."""
    h = hashlib.sha256(repr([(str(c), str(t)) for c, t in frame.dtypes.items()]).encode())
    h.update(pd.util.hash_pandas_object(frame, index=True).to_numpy().tobytes())
    return h.hexdigest()[:16]


def model_digest(model, frame: pd.DataFrame, rows: int = 10_000) -> str:
    """A short hash of the model's probabilities on the first rows (same model check)."""
    proba = model.predict_proba(features(frame.iloc[:rows]))
    return hashlib.sha256(np.round(proba, 10).tobytes()).hexdigest()[:16]
