"""Realized model performance per window, from late labels.

Each window (of prediction time) reports its predictions, how many got an
outcome (label coverage), and the metrics on those labelled pairs. Every
metric is a sum per window (:func:`numpy.bincount` with weights), and AUC a
rank sum per window (one grouped rank for all windows), so any number of
windows costs one pass over the pairs.

Treating a customer changes her outcome: a predicted churner kept by an
email looks like a false positive. When treatments exist the table has two
rows per window, ``arm="all"`` and ``arm="control"``; the latter keeps only
untreated predictions (the control arm and entities never targeted), the
honest measure of the model.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..exceptions import ValidationError
from .joins import attach_arms, join_outcomes, require_columns
from .windows import Window, window_codes

CLASSIFICATION = (
    "auc",
    "accuracy",
    "precision",
    "recall",
    "brier",
    "log_loss",
    "mean_score",
    "outcome_rate",
)
REGRESSION = ("mae", "rmse")


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)


def auc_by_group(codes: Any, scores: Any, y: Any, n_groups: int) -> np.ndarray:
    """ROC AUC per group by the rank-sum (Mann-Whitney) formula, ties averaged.

    Equals :func:`sklearn.metrics.roc_auc_score` on each group's pairs; NaN
    for a group with only one class.

    Parameters
    ----------
    codes : array-like of int
        Group (window) of each pair, 0 … n_groups−1.
    scores : array-like of float
        Predicted scores.
    y : array-like of {0, 1}
        Outcomes.
    n_groups : int

    Returns
    -------
    numpy.ndarray
    """
    c = np.asarray(codes, dtype=np.int64)
    yy = np.asarray(y, dtype=float)
    ranks = pd.Series(np.asarray(scores, dtype=float)).groupby(c).rank(method="average")
    pos = np.bincount(c, yy, minlength=n_groups)
    neg = np.bincount(c, minlength=n_groups) - pos
    rank_sum = np.bincount(c, ranks.to_numpy() * yy, minlength=n_groups)
    return _ratio(rank_sum - pos * (pos + 1) / 2, pos * neg)


def classification_by_group(
    codes: Any,
    scores: Any,
    y: Any,
    n_groups: int,
    *,
    predicted: Any = None,
    threshold: float = 0.5,
    clip: float = 1e-15,
) -> dict[str, np.ndarray]:
    """Classification metrics of labelled pairs per group.

    Parameters
    ----------
    codes, scores, y, n_groups
        See :func:`auc_by_group`; ``scores`` are positive-class probabilities.
    predicted : array-like of {0, 1}, optional
        Predicted classes (default: ``scores >= threshold``).
    threshold : float
        The model's decision threshold.
    clip : float
        Probabilities are clipped to [clip, 1 − clip] for the log loss, so a
        confident mistake costs a large finite amount.

    Returns
    -------
    dict
        Arrays of length ``n_groups``: ``auc``, ``accuracy``, ``precision``
        (NaN without predicted positives), ``recall`` (NaN without actual
        positives), ``brier``, ``log_loss``, ``mean_score``, ``outcome_rate``.
    """
    c = np.asarray(codes, dtype=np.int64)
    s = np.asarray(scores, dtype=float)
    yy = np.asarray(y, dtype=float)
    yhat = (s >= threshold) if predicted is None else np.asarray(predicted, dtype=float) > 0.5
    yhat = yhat.astype(float)
    n = np.bincount(c, minlength=n_groups)
    pos = np.bincount(c, yy, minlength=n_groups)
    tp = np.bincount(c, yhat * yy, minlength=n_groups)
    p = np.clip(s, clip, 1 - clip)
    loss = -(yy * np.log(p) + (1 - yy) * np.log1p(-p))
    return {
        "auc": auc_by_group(c, s, yy, n_groups),
        "accuracy": _ratio(np.bincount(c, (yhat == yy).astype(float), minlength=n_groups), n),
        "precision": _ratio(tp, np.bincount(c, yhat, minlength=n_groups)),
        "recall": _ratio(tp, pos),
        "brier": _ratio(np.bincount(c, (s - yy) ** 2, minlength=n_groups), n),
        "log_loss": _ratio(np.bincount(c, loss, minlength=n_groups), n),
        "mean_score": _ratio(np.bincount(c, s, minlength=n_groups), n),
        "outcome_rate": _ratio(pos, n),
    }


def regression_by_group(codes: Any, predicted: Any, y: Any, n_groups: int) -> dict[str, np.ndarray]:
    """MAE and RMSE of labelled pairs per group (arrays of length ``n_groups``)."""
    c = np.asarray(codes, dtype=np.int64)
    err = np.asarray(predicted, dtype=float) - np.asarray(y, dtype=float)
    n = np.bincount(c, minlength=n_groups)
    return {
        "mae": _ratio(np.bincount(c, np.abs(err), minlength=n_groups), n),
        "rmse": np.sqrt(_ratio(np.bincount(c, err**2, minlength=n_groups), n)),
    }


def _is_binary(values: np.ndarray) -> bool:
    finite = values[~np.isnan(values)]
    return bool(np.isin(finite, (0.0, 1.0)).all())


def performance_table(
    predictions: pd.DataFrame,
    outcomes: pd.DataFrame,
    treatments: pd.DataFrame | None = None,
    *,
    window: str | int | Window = "1d",
    windows: pd.Index | None = None,
    horizon: Any = "30D",
    threshold: float = 0.5,
    task: str = "auto",
    control_arm: str = "control",
    clip: float = 1e-15,
    allow_exact_matches: bool = True,
) -> pd.DataFrame:
    """Realized performance per window of prediction time.

    Parameters
    ----------
    predictions : pandas.DataFrame
        Columns ``id, ts`` and ``score`` (probability of the positive class,
        or the predicted value of a regressor) and/or ``label`` (predicted
        class, used for accuracy/precision/recall when present).
    outcomes : pandas.DataFrame
        Columns ``id, ts, value`` (0/1 for classifiers).
    treatments : pandas.DataFrame, optional
        Columns ``id, ts, arm``; see :func:`.joins.attach_arms`.
    window : str or int
        See :func:`.windows.parse_window`; count windows are chunks of predictions.
    windows : pandas.Index, optional
        Window labels to report (default: first to last prediction, empty kept).
    horizon : str or timedelta
        How long after a prediction an outcome still labels it.
    threshold : float
        Decision threshold on ``score`` (predicted positive when ``>=``).
    task : {"auto", "classification", "regression"}
        ``"auto"``: classification when every outcome is 0/1 and every score
        lies in [0, 1].
    control_arm : str
        The arm name of the untreated control group.
    clip : float
        Log-loss probability clipping (see :func:`classification_by_group`).
    allow_exact_matches : bool
        See :func:`.joins.latest_before`.

    Returns
    -------
    pandas.DataFrame
        One row per window and arm (``"all"``, and ``"control"`` when there
        are treatments): ``window, arm, predictions, n_labelled, coverage``
        then :data:`CLASSIFICATION` or :data:`REGRESSION` metrics (NaN where
        a window has no labelled pair).

    Raises
    ------
    ValidationError
        Missing columns, or non-binary outcomes for a classification task.
    """
    require_columns(predictions, "predictions", ("id", "ts"))
    if "score" not in predictions and "label" not in predictions:
        raise ValidationError("predictions need a score or a label column")
    # only the columns needed: a prediction table may carry every feature
    needed = [c for c in ("id", "ts", "score", "label") if c in predictions]
    joined = join_outcomes(
        predictions[needed], outcomes, horizon, allow_exact_matches=allow_exact_matches
    )
    raw = joined["score"] if "score" in joined else joined["label"]
    score = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    predicted = None  # the predicted class, when the model logged one
    if "label" in joined:
        given = pd.to_numeric(joined["label"], errors="coerce").to_numpy(float, na_value=np.nan)
        score = np.where(np.isnan(score), given, score)
        predicted = np.where(np.isnan(given), score >= threshold, given)
    y = joined["outcome"].to_numpy(dtype=float)
    labelled = ~np.isnan(y)
    if task == "auto":
        in_unit = bool(np.all((score[~np.isnan(score)] >= 0) & (score[~np.isnan(score)] <= 1)))
        task = "classification" if in_unit and _is_binary(y) else "regression"
    if task not in ("classification", "regression"):
        raise ValidationError(f"task {task!r}: use 'auto', 'classification' or 'regression'")
    if task == "classification" and not _is_binary(y):
        raise ValidationError("classification outcomes must be 0 or 1: pass task='regression'")

    codes, labels = window_codes(joined["ts"], window, windows)
    w = len(labels)
    inside = codes >= 0
    arms = attach_arms(joined, treatments, horizon)
    subsets = [("all", inside)]
    if treatments is not None and len(treatments):
        untreated = (arms.isna() | (arms == control_arm)).to_numpy(dtype=bool)
        subsets.append(("control", inside & untreated))
    parts = []
    for arm, rows in subsets:
        total = np.bincount(codes[rows], minlength=w)
        pick = rows & labelled
        c = codes[pick]
        if task == "classification":
            metrics = classification_by_group(
                c,
                score[pick],
                y[pick],
                w,
                predicted=None if predicted is None else predicted[pick],
                threshold=threshold,
                clip=clip,
            )
        else:
            metrics = regression_by_group(c, score[pick], y[pick], w)
        n = np.bincount(c, minlength=w)
        parts.append(
            pd.DataFrame(
                {
                    "window": labels,
                    "arm": arm,
                    "predictions": total,
                    "n_labelled": n,
                    "coverage": _ratio(n, total),
                    **metrics,
                }
            )
        )
    table = pd.concat(parts, ignore_index=True)
    return table.sort_values("window", kind="stable").reset_index(drop=True)
