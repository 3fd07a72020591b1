"""The churn example: the model recipe and store helpers its notebooks share.

The notebooks in ``notebooks/`` (train, score, monitor, retrain) and
``opx demo`` (:mod:`jupyter_opx.demo_loop`) build on these:

- :func:`train_model`: the scikit-learn pipeline every churn model uses;
- :func:`baseline_if_missing`: a tiny, clearly labelled baseline model when a
  notebook runs on a store with no ``churn`` model yet (a fresh store, as in
  the test suite), so that every notebook runs on its own;
- :func:`labelled_feedback`: production predictions joined to the outcomes
  that arrived later, with the features the model saw and the arm each
  customer was in — the training data of a retrained challenger;
- :func:`simulate_feedback`: a few simulated production days logged in this
  process (what the scoring job does), for the monitoring notebook on a store
  without feedback;
- :func:`churn_customers`: one static labelled table (the quickstart's data).

The data come from the simulator, :mod:`jupyter_opx.simulate`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .simulate import CONTRACTS, FEATURES, PAYMENTS
from .workspace import Workspace, get_workspace

__all__ = [
    "CONTRACTS",
    "FEATURES",
    "PAYMENTS",
    "baseline_if_missing",
    "churn_customers",
    "labelled_feedback",
    "notebooks_dir",
    "run_demo",
    "simulate_feedback",
    "train_model",
]

MODEL = "churn"


def _ws(workspace: str | os.PathLike[str] | Workspace | None) -> Workspace:
    return workspace if isinstance(workspace, Workspace) else get_workspace(workspace)


def churn_customers(n: int = 5000, seed: int = 7, price_change: float = 0.0) -> Any:
    """A deterministic table of customers with a ``churned`` label.

    Churn is driven by tenure, monthly charges, contract type, payment method,
    support calls and the usage trend; ``price_change`` (e.g. 0.15) raises the
    monthly charges, which shifts the data and the churn rate. (One static
    table; the day-by-day world with delayed outcomes and an email campaign is
    :mod:`jupyter_opx.simulate`.)
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


def train_model(frame: Any, seed: int = 0, max_iter: int = 100) -> Any:
    """A scikit-learn pipeline: one-hot categories + histogram gradient boosting.

    Parameters
    ----------
    frame : pandas.DataFrame
        The :data:`~jupyter_opx.simulate.FEATURES` and a 0/1 ``churned`` column.
    seed : int
        The booster's random state.
    max_iter : int
        Boosting rounds.

    Returns
    -------
    sklearn.pipeline.Pipeline
        Fitted; ``predict_proba(X)[:, 1]`` is the churn score.
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder
    from threadpoolctl import threadpool_limits

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
    # thousands of rows: one thread beats an OpenMP team, which on a busy
    # 2-core machine spins and waits (measured 10x slower)
    with threadpool_limits(limits=1, user_api="openmp"):
        return model.fit(frame[FEATURES], frame["churned"])


def baseline_if_missing(
    ref: str = "churn@production",
    *,
    rows: int = 1500,
    seed: int = 0,
    workspace: str | os.PathLike[str] | Workspace | None = None,
) -> str | None:
    """Make sure ``ref`` resolves: if it does not, snapshot and promote a tiny baseline.

    For notebooks that need a production model but may run on a store that
    has none (a fresh store). The baseline is trained on ``rows`` customers
    of the simulated history and its snapshot message and tags say it is one.

    Returns
    -------
    str or None
        The baseline's ref when one was made, else None (``ref`` resolved).
    """
    from .exceptions import NotFoundError
    from .snapshots import catalog

    ws = _ws(workspace)
    try:
        catalog.get_snapshot(ws, ref)
        return None
    except NotFoundError:
        pass
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split

    from .simulate import customer_history
    from .snapshots.capture import create_snapshot
    from .snapshots.refs import parse_ref

    parsed = parse_ref(ref)
    history = customer_history(rows, seed=seed)
    train, test = train_test_split(history, test_size=0.25, random_state=seed)
    model = train_model(train, seed=seed, max_iter=30)
    auc = float(roc_auc_score(test["churned"], model.predict_proba(test[FEATURES])[:, 1]))
    snap = create_snapshot(
        ws,
        parsed.name,
        model=model,
        data={"train": train, "test": test},
        metrics={"auc": auc},
        params={"rows": rows, "max_iter": 30},
        tags={"baseline": True},
        message=f"tiny baseline: this store had no {ref}",
    )
    catalog.promote(ws, snap.ref, parsed.alias or "production")
    return snap.ref


def labelled_feedback(
    model: str = MODEL,
    days: float | None = None,
    *,
    untreated: bool = True,
    treated_arm: str = "email",
    horizon: str = "30D",
    workspace: str | os.PathLike[str] | Workspace | None = None,
) -> Any:
    """Production predictions that have an outcome by now, with their features.

    Each outcome is joined to the latest earlier prediction of the same
    customer (within ``horizon``), the same join the feedback metrics use
    (:func:`jupyter_opx.monitoring.joins.join_outcomes`).

    Parameters
    ----------
    model : str
        A model name or ref (its name's events are read).
    days : float, optional
        Only predictions of the last ``days`` days before the newest
        prediction (simulated time works as well as real time).
    untreated : bool
        Drop customers who got the treatment (``treated_arm``): their outcome
        was changed by it, so they would teach a model the wrong lesson.
    treated_arm : str
        The arm that acts on the outcome.

    Returns
    -------
    pandas.DataFrame
        ``customer_id, ts, model_version, score, arm`` (None when not
        targeted), the features the model saw (same names as at scoring) and
        ``churned`` (the outcome, int), oldest first.
    """
    import pandas as pd

    from .monitoring import store
    from .monitoring.ingest import FEATURE_PREFIX
    from .monitoring.joins import attach_arms, join_outcomes
    from .snapshots.catalog import get_snapshot

    ws = _ws(workspace)
    name = get_snapshot(ws, model).name
    preds = store.read(ws, name, "predictions")
    outs = store.read(ws, name, "outcomes")
    treats = store.read(ws, name, "treatments")
    if days is not None and len(preds):
        preds = preds[preds["ts"] > preds["ts"].max() - pd.Timedelta(days=days)]
    features = [c for c in preds.columns if c.startswith(FEATURE_PREFIX)]
    if len(preds) == 0 or len(outs) == 0:
        cols = ["customer_id", "ts", "model_version", "score", "arm"]
        cols += [c[len(FEATURE_PREFIX) :] for c in features] + ["churned"]
        return pd.DataFrame(columns=cols)
    joined = join_outcomes(preds, outs, horizon)
    joined["arm"] = attach_arms(joined, treats if len(treats) else None, horizon)
    joined = joined[joined["outcome"].notna()]
    if untreated:
        joined = joined[joined["arm"] != treated_arm]
    out = pd.DataFrame(
        {
            "customer_id": joined["id"].to_numpy(),
            "ts": joined["ts"].to_numpy(),
            "model_version": joined["model_version"].to_numpy()
            if "model_version" in joined
            else None,
            "score": joined["score"].to_numpy() if "score" in joined else None,
            "arm": joined["arm"].to_numpy(),
        }
    )
    for c in features:
        out[c[len(FEATURE_PREFIX) :]] = joined[c].to_numpy()
    out["churned"] = joined["outcome"].to_numpy().astype(int)
    return out.reset_index(drop=True)


def simulate_feedback(
    model: str = "churn@production",
    days: int = 6,
    customers: int = 400,
    *,
    seed: int = 7,
    price_change_day: int | None = 3,
    threshold: float = 0.5,
    holdout_share: float = 0.2,
    delay: tuple[int, int] = (1, 2),
    workspace: str | os.PathLike[str] | Workspace | None = None,
) -> dict[str, int]:
    """Log ``days`` simulated production days in this process (no job runs).

    Each day: score the day's customers with ``model``, log the predictions
    with their features, email the customers scoring at least ``threshold``
    but a random ``holdout_share`` of them (the control group), log the
    treatments, and log the outcomes known by then. It is what the scoring job
    (``02_score_customers``) does, condensed, for a store with no feedback yet.

    Returns
    -------
    dict
        Counts of the events logged.
    """
    import numpy as np
    import pandas as pd

    from . import api
    from .simulate import daily_customers, date_of, outcomes_for

    ws = _ws(workspace)
    clf = api.load_model(model, workspace=ws)
    counts = {"predictions": 0, "treatments": 0, "outcomes": 0}
    pending = []
    for day in range(days):
        ts = pd.Timestamp(date_of(day), tz="UTC") + pd.Timedelta(hours=6)
        people = daily_customers(day, customers, seed, price_change_day=price_change_day)
        scores = clf.predict_proba(people[FEATURES])[:, 1]
        api.log_predictions(
            model, people["customer_id"], scores, features=people[FEATURES], ts=ts, workspace=ws
        )
        targeted = scores >= threshold
        rng = np.random.default_rng([seed, day])
        arm = np.where(rng.random(int(targeted.sum())) < holdout_share, "control", "email")
        if len(arm):
            api.log_treatments(model, people.loc[targeted, "customer_id"], arm, ts=ts, workspace=ws)
        arms = np.full(len(people), None, dtype=object)
        arms[targeted] = arm
        pending.append(outcomes_for(people, arms, seed, delay=delay))
        known = pd.concat(pending, ignore_index=True)
        due = known[known["known_day"] == day]
        if len(due):
            api.log_outcomes(
                model,
                due["customer_id"],
                due["churned"],
                ts=ts + pd.Timedelta(hours=12),
                workspace=ws,
            )
        counts["predictions"] += len(people)
        counts["treatments"] += len(arm)
        counts["outcomes"] += len(due)
    return counts


def notebooks_dir() -> Path:
    """The folder holding the example notebooks (``01_train_churn.ipynb`` …).

    ``$OPX_NOTEBOOKS`` if set, else the copy shipped inside the package, else
    the repository's ``notebooks/`` (an editable install).

    Raises
    ------
    NotFoundError
        None of them holds the notebooks.
    """
    from .exceptions import NotFoundError

    here = Path(__file__).resolve().parent
    candidates = [Path(os.environ["OPX_NOTEBOOKS"])] if os.environ.get("OPX_NOTEBOOKS") else []
    candidates += [here / "notebooks", here.parent / "notebooks"]
    for folder in candidates:
        if (folder / "02_score_customers.ipynb").is_file():
            return folder
    raise NotFoundError(
        "the example notebooks were not found (looked in "
        + ", ".join(str(c) for c in candidates)
        + "); set OPX_NOTEBOOKS to the folder holding 01_train_churn.ipynb …"
    )


def run_demo(workdir: str | Path, **options: Any) -> dict[str, Any]:
    """Run ``opx demo`` in ``workdir`` (see :func:`jupyter_opx.demo_loop.run_demo`)."""
    from .demo_loop import run_demo as _run

    return _run(workdir, **options)
