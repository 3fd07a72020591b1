"""Keeping ``opx.feedback`` up to date batch by batch instead of from scratch.

A live dashboard recomputes a model's feedback after every batch, and most of
a full computation re-does work on rows that did not change: sorting every
feature of every prediction for KS, joining every outcome to its prediction.
This module keeps, per (store, model, reference, window and options), what
those computations need, and brings it up to date from the rows the store
added since (:func:`.store.read_delta`):

- drift: per feature and window, the sorted non-missing values (numeric) or
  the counts per reference category, and the statistics of each window; a new
  batch merges its sorted values into the windows it falls in, and only those
  windows' statistics are recomputed (the same functions on the same values,
  so the same numbers as a cold computation);
- performance: when a batch only adds predictions that cannot take any
  stored outcome (no outcome of the same entity at or after them), the
  labelled pairs and their metrics stay as they were and only the windows'
  prediction counts and label coverage move; anything else (new outcomes or
  treatments, a new window, a score that changes the task) recomputes the
  table from scratch;
- uplift and the cumulative campaign figures are reused while neither
  treatments nor outcomes changed.

Count windows (chunks of N predictions) move every chunk boundary with each
batch: they are always computed from scratch. The drift state holds, per
numeric value, the value and the reference CDF there (16–24 bytes): a model
whose state would pass :data:`MAX_BYTES` is computed from scratch each time
(:func:`fits`), and only the :data:`MAX_STATES` most recently used states are
kept.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .drift import _cdf_both, categorical_stats_counts, category_counts, numeric_stats_sorted
from .drift_table import _kind, assemble
from .ingest import FEATURE_PREFIX
from .joins import attach_arms, latest_before
from .windows import assign_windows, parse_window, to_utc

MAX_BYTES = 1 << 30  # per state: e.g. 2.2M predictions of 20 features
MAX_STATES = 4


def fits(rows: int, columns: int) -> bool:
    """Whether a drift state of ``rows`` × ``columns`` values stays within :data:`MAX_BYTES`."""
    return rows * max(columns, 1) * 24 <= MAX_BYTES


_STAT_KEYS_INT = ("rows", "n")


def _labels_ns(ts: Any, window: Any) -> np.ndarray:
    """Window start (epoch ns) of each timestamp, for time windows."""
    labels = assign_windows(ts, window)
    return np.asarray(labels.array.asi8 if hasattr(labels.array, "asi8") else labels, np.int64)


@dataclass
class _Feature:
    """One feature's drift state: per window (start ns) its values and statistics."""

    name: str
    kind: str
    ref: Mapping[str, Any]
    sorted: dict[int, np.ndarray] = field(default_factory=dict)  # numeric, discrete
    # F_ref(x) and F_ref(x−) at each sorted value (the KS pass needs them all)
    cdf: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    counts: dict[int, np.ndarray] = field(default_factory=dict)  # categorical
    rows: dict[int, int] = field(default_factory=dict)
    stats: dict[int, dict[str, float]] = field(default_factory=dict)

    @property
    def testable(self) -> bool:
        """Whether the reference has values to test against (else no KS, no CDF)."""
        ref = self.ref
        return ref.get("min") is not None and ("values" in ref or "quantiles" in ref)

    def add(self, values: Any, labels: np.ndarray, eps: float) -> None:
        """Merge new rows (values with their window starts) and refresh those windows."""
        touched = np.unique(labels)
        if self.kind == "categorical":
            codes = np.searchsorted(touched, labels)
            table, rows = category_counts(values, self.ref, codes, len(touched))
            for i, lab in enumerate(touched.tolist()):
                old = self.counts.get(lab)
                self.counts[lab] = table[i] if old is None else old + table[i]
                self.rows[lab] = self.rows.get(lab, 0) + int(rows[i])
        else:
            x = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(float, na_value=np.nan)
            order = np.argsort(labels, kind="stable")
            x, lab_sorted = x[order], labels[order]
            cuts = np.searchsorted(lab_sorted, touched, side="left")
            ends = np.r_[cuts[1:], len(x)]
            for lab, a, b in zip(touched.tolist(), cuts.tolist(), ends.tolist(), strict=True):
                part = x[a:b]
                self.rows[lab] = self.rows.get(lab, 0) + len(part)
                part = np.sort(part[~np.isnan(part)])
                right, left = _cdf_both(self.ref, part) if self.testable else (part, part)
                old = self.sorted.get(lab)
                if old is None or not len(old):
                    self.sorted[lab], self.cdf[lab] = part, (right, left)
                elif len(part):
                    at = np.searchsorted(old, part)
                    self.sorted[lab] = np.insert(old, at, part)
                    o_right, o_left = self.cdf[lab]
                    n_right = np.insert(o_right, at, right)
                    shared = left is right and o_left is o_right  # a continuous reference CDF
                    self.cdf[lab] = (n_right, n_right if shared else np.insert(o_left, at, left))
        self._refresh(touched.tolist(), eps)

    def _refresh(self, labels: list[int], eps: float) -> None:
        """Recompute the statistics of ``labels`` (one vectorised call for all of them)."""
        rows = np.array([self.rows[lab] for lab in labels], dtype=np.int64)
        if self.kind == "categorical":
            table = np.stack([self.counts[lab] for lab in labels])
            stats = categorical_stats_counts(table, rows, self.ref)
        else:
            arrays = [self.sorted[lab] for lab in labels]
            bounds = np.r_[0, np.cumsum([len(a) for a in arrays])].astype(np.int64)
            one = len(labels) == 1
            sv = arrays[0] if one else np.concatenate(arrays)
            cdf = None
            if self.testable:
                pairs = [self.cdf[lab] for lab in labels]
                cdf = (
                    pairs[0]
                    if one
                    else (
                        np.concatenate([p[0] for p in pairs]),
                        np.concatenate([p[1] for p in pairs]),
                    )
                )
            stats = numeric_stats_sorted(sv, bounds, rows, self.ref, eps, cdf=cdf)
        for i, lab in enumerate(labels):
            self.stats[lab] = {k: np.asarray(v)[i] for k, v in stats.items()}

    def table(self, labels: np.ndarray) -> dict[str, np.ndarray]:
        """Statistics per window of ``labels`` (empty windows: 0 rows, NaN statistics)."""
        keys: list[str] = next((list(st) for st in self.stats.values()), [])
        empty = {k: (0 if k in _STAT_KEYS_INT else np.nan) for k in keys}
        found = [self.stats.get(lab, empty) for lab in labels.tolist()]
        return {
            k: np.array([st[k] for st in found], dtype=np.int64 if k in _STAT_KEYS_INT else float)
            for k in keys
        }


@dataclass
class _Drift:
    features: list[_Feature]
    prediction: _Feature | None
    eps: float

    def add(self, preds: pd.DataFrame, window: Any) -> None:
        if not len(preds):
            return
        labels = _labels_ns(preds["ts"], window)
        for feat in self.features:
            col = FEATURE_PREFIX + feat.name
            values = preds[col] if col in preds else pd.Series(np.nan, index=preds.index)
            feat.add(values, labels, self.eps)
        if self.prediction is not None:
            feat = self.prediction
            feat.add(preds["score"].to_numpy(dtype=float), labels, self.eps)

    def tables(self, labels: pd.Index) -> tuple[pd.DataFrame, pd.DataFrame]:
        ns = np.asarray(pd.DatetimeIndex(labels).asi8, dtype=np.int64)
        w = len(ns)
        feats = assemble([(f.name, f.kind, f.table(ns)) for f in self.features], labels, w)
        pred = pd.DataFrame()
        if self.prediction is not None:
            p = self.prediction
            pred = assemble([(p.name, p.kind, p.table(ns))], labels, w)
        return feats, pred


def new_drift(
    preds: pd.DataFrame, summary: Mapping[str, Any] | None, window: Any, eps: float
) -> _Drift | None:
    """Drift state as :func:`.compute.compute` tests it (None: no drift to compute)."""
    if summary is None:
        return None
    refs = summary.get("features", summary)
    names = [
        c[len(FEATURE_PREFIX) :]
        for c in preds.columns
        if c.startswith(FEATURE_PREFIX) and c[len(FEATURE_PREFIX) :] in refs
    ]
    features = [_Feature(n, k, refs[n]) for n in names if (k := _kind(refs[n])) is not None]
    prediction = None
    pref = summary.get("prediction") or {}
    if "score" in preds and pref and "skipped" not in pref:
        ref = dict(summary.get("prediction", summary))
        ref.pop("categories", None)
        if ref.get("kind") != "numeric":
            ref = {"kind": "numeric", "count": 0, "missing": 0.0}
        prediction = _Feature("prediction", "numeric", ref)
    state = _Drift(features, prediction, eps)
    state.add(preds, window)
    return state


@dataclass
class State:
    """What the next :func:`.compute.compute` of one model and window starts from."""

    since: dict[str, tuple[int, ...]] = field(default_factory=dict)
    columns: tuple[str, ...] = ()
    labels: pd.Index | None = None
    tables: dict[str, Any] = field(default_factory=dict)
    drift: _Drift | None = None
    outcome_ids: frozenset[str] | None = None
    summary: dict[str, Any] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


_states: OrderedDict[tuple[Any, ...], State] = OrderedDict()
_states_lock = threading.Lock()


def state_for(key: tuple[Any, ...]) -> State:
    """The state of ``key`` (a new one the first time), most recently used last."""
    with _states_lock:
        st = _states.pop(key, None) or State()
        _states[key] = st
        while len(_states) > MAX_STATES:
            _states.popitem(last=False)
        return st


def drop(key: tuple[Any, ...]) -> None:
    with _states_lock:
        _states.pop(key, None)


def clear() -> None:
    """Forget every state (tests; a store that was rewritten)."""
    with _states_lock:
        _states.clear()


def time_window(window: Any) -> bool:
    return parse_window(window).kind == "time"


def volume_update(vol: pd.DataFrame, delta: pd.DataFrame, window: Any) -> pd.DataFrame | None:
    """The volume table after ``delta`` added predictions only (None: a new window)."""
    if not len(vol):
        return None
    labels = assign_windows(delta["ts"], window)
    counts = labels.value_counts()
    if not counts.index.isin(vol["window"]).all():
        return None
    out = vol.copy()
    add = out["window"].map(counts).fillna(0).to_numpy(np.int64)
    out["predictions"] = out["predictions"].to_numpy(np.int64) + add
    return out


def predictions_only_update(
    st: State,
    perf: pd.DataFrame,
    delta: pd.DataFrame,
    outs: pd.DataFrame,
    treats: pd.DataFrame,
    labels: pd.Index,
    window: Any,
    horizon: Any,
    control_arm: str,
) -> pd.DataFrame | None:
    """The performance table after ``delta`` added predictions only, or None.

    None when the new predictions may change a labelled pair (an outcome of
    the same entity at or after one of them), bring a new window, or turn
    a classifier's task into a regression (a score outside [0, 1]): then the
    table must be recomputed.
    """
    if not len(perf) or not len(delta):
        return perf if len(perf) and not len(delta) else None
    if "window" not in perf or not perf["window"].isin(labels).all():
        return None
    known = pd.Index(perf["window"].unique())
    ids = delta["id"].astype(str)
    if st.outcome_ids is None:
        st.outcome_ids = frozenset(outs["id"].astype(str).tolist())
    candidates = np.fromiter(
        (i in st.outcome_ids for i in ids.tolist()), dtype=bool, count=len(delta)
    )
    if candidates.any():
        # a stored outcome of the same entity at or after a new prediction, within
        # the horizon, may now fall to it: the labelled pairs must be joined again
        cand = delta[candidates]
        mine = outs[outs["id"].astype(str).isin(ids[candidates])]
        back = latest_before(
            mine["id"], to_utc(mine["ts"]), cand["id"], to_utc(cand["ts"]), horizon
        )
        if (np.asarray(back) >= 0).any():
            return None
    if "auc" in perf:
        s = pd.to_numeric(delta.get("score"), errors="coerce") if "score" in delta else None
        if s is not None and ((s < 0) | (s > 1)).any():
            return None
    new_labels = assign_windows(delta["ts"], window)
    if not pd.Index(new_labels.unique()).isin(known).all():
        return None
    out = perf.copy()
    add_all = new_labels.value_counts()
    arms_of: dict[str, Callable[[], pd.Series]] = {"all": lambda: add_all}
    if (out["arm"] == "control").any():

        def control() -> pd.Series:
            joined = delta[["id", "ts"]].copy()
            joined["ts"] = to_utc(joined["ts"]).array
            joined["outcome"] = np.nan
            joined["outcome_ts"] = pd.NaT
            arms = attach_arms(joined, treats if len(treats) else None, horizon)
            untreated = (arms.isna() | (arms == control_arm)).to_numpy(dtype=bool)
            return new_labels[untreated].value_counts()

        arms_of["control"] = control
    for arm, counts_of in arms_of.items():
        mask = (out["arm"] == arm).to_numpy()
        counts = counts_of()
        add = out.loc[mask, "window"].map(counts).fillna(0).astype(np.int64)
        total = out.loc[mask, "predictions"].to_numpy(np.int64) + add.to_numpy(np.int64)
        out.loc[mask, "predictions"] = total
        n = out.loc[mask, "n_labelled"].to_numpy(dtype=float)
        with np.errstate(invalid="ignore", divide="ignore"):
            out.loc[mask, "coverage"] = np.where(total > 0, n / total, np.nan)
    return out


__all__ = ["MAX_BYTES", "MAX_STATES", "State", "clear", "fits", "new_drift", "state_for"]
