"""The demo behind ``opx demo``: a snapshot round trip on generated churn data.

Until the full churn example lands (simulated days of scoring jobs, feedback
and retraining), the demo shows the foundation end to end: train a
scikit-learn pipeline, snapshot it with its data, promote it, snapshot a
retrained version after a price change, diff the two, reload the production
model from the store and check it predicts exactly as the one in memory, and
verify every stored blob.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .workspace import STORE_DIRNAME, Workspace

CONTRACTS = ("month-to-month", "one-year", "two-year")
PAYMENTS = ("card", "bank-transfer", "electronic-check", "mailed-check")


def churn_customers(n: int = 5000, seed: int = 7, price_change: float = 0.0) -> Any:
    """A deterministic table of customers with a ``churned`` label.

    Churn is driven by tenure, monthly charges, contract type, payment method,
    support calls and the usage trend; ``price_change`` (e.g. 0.15) raises the
    monthly charges, which shifts the data and the churn rate.
    """
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    tenure = rng.gamma(2.0, 12.0, n).round().clip(0, 72)
    contract = rng.choice(CONTRACTS, n, p=[0.55, 0.25, 0.20])
    payment = rng.choice(PAYMENTS, n, p=[0.3, 0.25, 0.3, 0.15])
    charges = (rng.normal(65, 20, n).clip(18, 120) * (1 + price_change)).round(2)
    calls = rng.poisson(1.2, n)
    usage = rng.normal(0, 1, n).round(3)
    logit = (
        -1.2
        - 0.045 * tenure
        + 0.025 * (charges - 65)
        + 0.35 * calls
        - 0.6 * usage
        + np.where(contract == "month-to-month", 1.1, np.where(contract == "one-year", 0.0, -1.0))
        + np.where(payment == "electronic-check", 0.5, 0.0)
    )
    churned = rng.random(n) < 1 / (1 + np.exp(-logit))
    return pd.DataFrame(
        {
            "customer_id": [f"cust-{seed}-{i}" for i in range(n)],
            "tenure": tenure.astype(int),
            "monthly_charges": charges,
            "contract": pd.Categorical(contract, categories=CONTRACTS),
            "payment_method": pd.Categorical(payment, categories=PAYMENTS),
            "support_calls": calls.astype(int),
            "usage_trend": usage,
            "churned": churned.astype(int),
        }
    )


FEATURES = [
    "tenure",
    "monthly_charges",
    "contract",
    "payment_method",
    "support_calls",
    "usage_trend",
]


def train_model(frame: Any, seed: int = 0, max_iter: int = 100) -> Any:
    """A scikit-learn pipeline: one-hot categories + histogram gradient boosting."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    pre = ColumnTransformer(
        [("cat", OneHotEncoder(handle_unknown="ignore"), ["contract", "payment_method"])],
        remainder="passthrough",
        verbose_feature_names_out=False,
    )
    model = Pipeline(
        [
            ("pre", pre),
            ("clf", HistGradientBoostingClassifier(max_iter=max_iter, random_state=seed)),
        ]
    )
    return model.fit(frame[FEATURES], frame["churned"])


def run_demo(
    workdir: str | Path, rows: int = 5000, say: Callable[[str], None] = print
) -> dict[str, Any]:
    """Run the snapshot round trip in ``workdir`` (its store is ``workdir/.opx``).

    Returns the figures it printed, for tests and callers.
    """
    import numpy as np
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split

    from .snapshots import catalog
    from .snapshots.capture import create_snapshot
    from .snapshots.diff import diff

    workdir = Path(workdir).resolve()
    ws = Workspace(workdir / STORE_DIRNAME)
    start = time.perf_counter()

    def step(text: str) -> None:
        say(f"[{time.perf_counter() - start:6.2f}s] {text}")

    step(f"store: {ws.root}")
    customers = churn_customers(rows, seed=7)
    train, test = train_test_split(customers, test_size=0.25, random_state=0)
    model = train_model(train)
    auc1 = float(roc_auc_score(test["churned"], model.predict_proba(test[FEATURES])[:, 1]))
    step(f"trained a churn pipeline on {len(train):,} customers: test AUC {auc1:.3f}")

    v1 = create_snapshot(
        ws,
        "churn",
        model=model,
        data={"train": train, "test": test},
        metrics={"auc": auc1},
        params={"max_iter": 100},
        message="baseline model",
    )
    step(f"snapshot {v1.ref}: model + train/test data + reference summaries")
    catalog.promote(ws, v1.ref, "production")
    step(f"promoted {v1.ref} to churn@production")

    shifted = churn_customers(rows, seed=8, price_change=0.15)
    train2, test2 = train_test_split(shifted, test_size=0.25, random_state=0)
    model2 = train_model(train2, max_iter=150)
    auc2 = float(roc_auc_score(test2["churned"], model2.predict_proba(test2[FEATURES])[:, 1]))
    v2 = create_snapshot(
        ws,
        "churn",
        model=model2,
        data={"train": train2, "test": test2},
        metrics={"auc": auc2},
        params={"max_iter": 150},
        message="retrained after a 15% price change",
    )
    step(f"snapshot {v2.ref}: retrained after a 15% price change, test AUC {auc2:.3f}")

    blobs_before = _folder_bytes(ws.root / "blobs")
    v3 = create_snapshot(
        ws,
        "churn",
        model=model2,
        data={"train": train2, "test": test2},
        metrics={"auc": auc2},
        params={"max_iter": 150},
        message="same model and data again",
    )
    grown = _folder_bytes(ws.root / "blobs") - blobs_before
    step(
        f"snapshot {v3.ref} of unchanged model and data: reused from "
        f"{v3.data['train'].reused_from}, store grew by {grown} bytes"
    )

    d = diff(ws, v1.ref, v2.ref)
    step(f"diff {v1.ref} -> {v2.ref}:")
    for line in str(d).splitlines():
        say("           " + line)

    loaded = catalog.load_model(ws, "churn@production")
    same = bool(
        np.array_equal(loaded.predict_proba(test[FEATURES]), model.predict_proba(test[FEATURES]))
    )
    step(f"loaded churn@production from the store (hash verified): predictions identical={same}")
    data = catalog.load_data(ws, v1.ref, "train")
    step(f"loaded {v1.ref} train data: {data.shape[0]:,} rows, equal={data.equals(train)}")

    summary = catalog.reference_summary(ws, v1)
    assert summary is not None
    charges = summary["features"]["monthly_charges"]
    step(
        "reference summary of monthly_charges: "
        f"mean {charges['mean']:.2f}, deciles {[round(e, 1) for e in charges['bins']['edges']]}"
    )
    report = catalog.verify_store(ws)
    step(f"verified {report['checked']} blobs: {len(report['corrupt'])} corrupt")
    say("")
    say(f"Done. Explore it with:  opx --workspace {workdir} snapshots")
    say(f"                        opx --workspace {workdir} show churn@production")
    say(f"                        opx --workspace {workdir} diff churn/1 churn/2")
    return {
        "auc": [auc1, auc2],
        "versions": [v1.version, v2.version, v3.version],
        "reused_from": v3.data["train"].reused_from,
        "store_growth": grown,
        "identical_predictions": same,
        "corrupt": report["corrupt"],
    }


def _folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
