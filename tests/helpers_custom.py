"""Model types from outside scikit-learn, numpy and scipy, for the trust tests.

They live in an importable module (not in a test function) so that skops can
find them again when loading.
"""

from __future__ import annotations

import array
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

#: how many times a :class:`Tripwire` has been unpickled in this process
UNPICKLED = {"count": 0}


class ThresholdClassifier(ClassifierMixin, BaseEstimator):
    """Predicts 1 when the first feature exceeds a learned threshold."""

    def __init__(self, quantile: float = 0.5) -> None:
        self.quantile = quantile

    def fit(self, X: Any, y: Any) -> ThresholdClassifier:
        values = np.asarray(X, dtype=float)[:, 0]
        self.threshold_ = float(np.quantile(values, self.quantile))
        self.classes_ = np.unique(y)
        self.n_features_in_ = np.asarray(X).shape[1]
        return self

    def predict(self, X: Any) -> Any:
        return (np.asarray(X, dtype=float)[:, 0] > self.threshold_).astype(int)


class Tripwire(BaseEstimator):
    """An estimator skops cannot store (it holds an ``array.array``), so it needs pickle.

    Unpickling it is observable through :data:`UNPICKLED`.
    """

    def __init__(self, weights: Any = None) -> None:
        self.weights = weights

    def fit(self, X: Any = None, y: Any = None) -> Tripwire:
        self.buffer_ = array.array("d", [1.0, 2.0, 3.0])
        return self

    def __setstate__(self, state: dict[str, Any]) -> None:
        UNPICKLED["count"] += 1
        super().__setstate__(state)
