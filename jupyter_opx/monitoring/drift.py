"""Drift statistics of one feature against its reference summary.

The reference is never re-read: everything comes from the summary stored at
snapshot time (:mod:`jupyter_opx.snapshots.summaries`) — decile bins for PSI,
the 1001-point quantile grid (or exact sorted values) for the KS reference
CDF, top-category counts for chi-square and Jensen-Shannon.

Every statistic is computed for many windows in one pass: ``groups`` gives
each value's window code (0 … W−1, −1 to skip) and the results are arrays of
length W. Counts come from :func:`numpy.bincount` on ``code * bins + bin``;
the KS supremum from values sorted within each window and
:func:`numpy.maximum.reduceat` over the window segments. No per-row Python.
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import pairwise
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import special, stats
from scipy.spatial import distance

EPS = 1e-4
_SEARCH_WINDOWS = 32  # up to this many windows, counts by binary search per window


def reference_cdf(
    reference: Mapping[str, Any], x: Any, side: Literal["left", "right"] = "right"
) -> np.ndarray:
    """The reference CDF F_ref at ``x``, or its left limit F_ref(x−).

    Parameters
    ----------
    reference : mapping
        A numeric summary with ``values`` (exact sorted reference values: the
        exact ECDF) or ``quantiles`` (a grid at probabilities
        ``linspace(0, 1, len)``: the CDF interpolated linearly between grid
        points, 0 below the first and 1 above the last).
    x : array-like
        Points to evaluate at.
    side : {"right", "left"}
        ``"right"``: F(x) = P(X ≤ x). ``"left"``: F(x−) = P(X < x). They
        differ only where the reference has an atom (a tied value).

    Returns
    -------
    numpy.ndarray
    """
    x = np.asarray(x, dtype=float)
    if "values" in reference:
        v = np.asarray(reference["values"], dtype=float)
        if len(v) == 0:
            return np.full(x.shape, np.nan)
        return np.searchsorted(v, x, side=side) / len(v)
    q = np.asarray(reference["quantiles"], dtype=float)
    p = np.linspace(0.0, 1.0, len(q))
    if np.all(np.diff(q) > 0):
        # Strictly increasing grid: the interpolated CDF is continuous, so
        # F(x−) = F(x) and one np.interp gives both.
        return np.interp(x, q, p)
    # Tied quantiles are an atom of the reference (a value held by more than
    # 1/1000 of the rows): the CDF jumps there from the first to the last
    # probability of the tie, and is linear between distinct grid values.
    u, first = np.unique(q, return_index=True)
    last = np.r_[first[1:] - 1, len(q) - 1]
    lo_p, hi_p = p[first], p[last]
    i = np.searchsorted(u, x, side="right") - 1
    ic = np.clip(i, 0, len(u) - 1)
    nxt = np.clip(i + 1, 0, len(u) - 1)
    span = u[nxt] - u[ic]
    with np.errstate(invalid="ignore", divide="ignore"):
        between = hi_p[ic] + (lo_p[nxt] - hi_p[ic]) * (x - u[ic]) / span
    out = np.where(i < 0, 0.0, np.where(i >= len(u) - 1, 1.0, between))
    at_atom = (i >= 0) & (u[ic] == x)
    return np.where(at_atom, hi_p[ic] if side == "right" else lo_p[ic], out)


def _cdf_both(reference: Mapping[str, Any], x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """F_ref(x) and F_ref(x−), computing the left limit only where it can differ."""
    right = reference_cdf(reference, x, "right")
    if "values" not in reference and np.all(np.diff(reference["quantiles"]) > 0):
        return right, right
    return right, reference_cdf(reference, x, "left")


def reference_count(reference: Mapping[str, Any]) -> int:
    """Number of non-missing reference values (the n of the KS n_eff)."""
    if "count" in reference:
        return round(float(reference["count"]) * (1.0 - float(reference.get("missing") or 0.0)))
    return len(reference.get("values") or reference.get("quantiles") or [])


def ks_pvalue(d: Any, n: Any, m: Any) -> np.ndarray:
    """Asymptotic Kolmogorov p-value of D with n_eff = n·m/(n+m) (NaN when n or m is 0)."""
    d, n, m = (np.asarray(a, dtype=float) for a in (d, n, m))
    with np.errstate(invalid="ignore", divide="ignore"):
        n_eff = n * m / (n + m)
        out = special.kolmogorov(np.sqrt(n_eff) * d)
    return np.where((n > 0) & (m > 0), out, np.nan)


def psi(ref_counts: Any, cur_counts: Any, eps: float = EPS) -> np.ndarray:
    """Population stability index Σ (q − p)·ln((q + ε)/(p + ε)).

    Parameters
    ----------
    ref_counts : array-like, shape (B,)
        Reference counts per bin.
    cur_counts : array-like, shape (B,) or (W, B)
        Current counts per bin (one row per window).
    eps : float
        Added to both shares, so an empty bin on either side gives a large
        but finite term and the two sides are treated alike.

    Returns
    -------
    numpy.ndarray
        One PSI per row (NaN for a row without values).
    """
    ref = np.asarray(ref_counts, dtype=float)
    cur = np.atleast_2d(np.asarray(cur_counts, dtype=float))
    p = ref / ref.sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        q = cur / cur.sum(axis=1, keepdims=True)
        return ((q - p) * np.log((q + eps) / (p + eps))).sum(axis=1)


def _groups(n: int, groups: Any, n_groups: int | None) -> tuple[np.ndarray, int]:
    if groups is None:
        return np.zeros(n, dtype=np.int64), 1
    g = np.asarray(groups, dtype=np.int64)
    return g, int(n_groups if n_groups is not None else (g.max() + 1 if len(g) else 0))


def _sorted_within(x: np.ndarray, g: np.ndarray, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Values sorted by (group, value), and where each group starts (W + 1 bounds)."""
    if w > 1 and len(g) and np.any(g[1:] < g[:-1]):
        order = np.argsort(g, kind="stable")
        x, g = x[order], g[order]
    bounds = np.searchsorted(g, np.arange(w + 1), side="left")
    if w == 1:
        return np.sort(x), bounds
    out = np.empty_like(x)
    # One sort per window (a Python loop over windows, not rows): the same
    # total work as one global sort, and no combined sort key to build.
    for a, b in pairwise(bounds):
        out[a:b] = np.sort(x[a:b])
    return out, bounds


def _finish(result: dict[str, np.ndarray], scalar: bool) -> dict[str, Any]:
    if scalar:
        return {k: (int(v[0]) if k in ("n", "rows") else float(v[0])) for k, v in result.items()}
    return result


def numeric_drift(
    values: Any,
    reference: Mapping[str, Any],
    *,
    groups: Any = None,
    n_groups: int | None = None,
    eps: float = EPS,
) -> dict[str, Any]:
    """PSI, KS, out-of-range and missing shares of numeric values vs their reference.

    Parameters
    ----------
    values : array-like
        Current values (NaN or None = missing; non-numbers count as missing).
    reference : mapping
        The feature's numeric summary (``bins``, ``quantiles`` or ``values``,
        ``count``, ``missing``, ``min``, ``max``; ``categories`` when the
        reference has few distinct values).
    groups : array-like of int, optional
        Window code of each value (0 … W−1; −1 skips the value). Without it
        all values form one window and the result holds floats.
    n_groups : int, optional
        W (default: the largest code + 1).
    eps : float
        The PSI epsilon (see :func:`psi`).

    Returns
    -------
    dict
        ``rows`` (values given), ``n`` (non-missing values tested),
        ``missing_share``, ``out_of_range_share`` (outside the reference
        [min, max], among non-missing), ``psi``, ``ks`` (D), ``ks_p_value``;
        when the reference has ``categories`` also the categorical statistics
        of :func:`category_stats` over those values (``unseen_share`` = share
        of values the reference never had). Arrays of length W with
        ``groups``, floats without; NaN where a window has no values.
    """
    if isinstance(values, np.ndarray) and values.dtype == np.float64:
        x = values
    else:
        x = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(float, na_value=np.nan)
    g, w = _groups(len(x), groups, n_groups)
    keep = g >= 0
    if not keep.all():
        x, g = x[keep], g[keep]
    rows = np.bincount(g, minlength=w)
    finite = ~np.isnan(x)
    if not finite.all():
        x, g = x[finite], g[finite]
    sv, bounds = _sorted_within(x, g, w)
    return _finish(numeric_stats_sorted(sv, bounds, rows, reference, eps), groups is None)


def numeric_stats_sorted(
    sv: np.ndarray,
    bounds: np.ndarray,
    rows: np.ndarray,
    reference: Mapping[str, Any],
    eps: float = EPS,
    cdf: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """The statistics of :func:`numeric_drift` from values already sorted per window.

    Parameters
    ----------
    sv : numpy.ndarray of float64
        The non-missing values, sorted within each window, windows in order.
    bounds : numpy.ndarray of int
        Where each of the W windows starts in ``sv`` (W + 1 bounds).
    rows : numpy.ndarray of int
        Values given per window, missing ones included.
    reference, eps
        See :func:`numeric_drift`.
    cdf : (numpy.ndarray, numpy.ndarray), optional
        F_ref(x) and F_ref(x−) at each value of ``sv`` (:func:`reference_cdf`),
        when the caller keeps them (see :mod:`.incremental`).

    Returns
    -------
    dict
        Arrays of length W (see :func:`numeric_drift`).
    """
    w = len(bounds) - 1
    m = np.diff(bounds)
    nan = np.full(w, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        out: dict[str, np.ndarray] = {
            "rows": rows,
            "n": m,
            "missing_share": (rows - m) / rows,
            "out_of_range_share": nan.copy(),
            "psi": nan.copy(),
            "ks": nan.copy(),
            "ks_p_value": nan.copy(),
        }
        if reference.get("min") is None or not ("values" in reference or "quantiles" in reference):
            return out  # reference had no values: nothing to test
        # Counts (bins, out of range, categories) come from binary searches in
        # each window's sorted values: a few per window, none per row.
        filled = m > 0
        lo_edge, hi_edge = float(reference["min"]), float(reference["max"])
        edges = np.asarray(reference["bins"]["edges"], dtype=float)
        nb = len(edges) + 1
        cats = reference.get("categories") or {}
        keys = np.sort(np.array([float(k) for k in cats], dtype=float))
        k = len(keys)
        repeated = np.r_[False, keys[1:] == keys[:-1]]  # "1" and "1.0": counted once
        outside: Any = np.zeros(w)
        cur: Any = np.zeros((w, nb))
        table: Any = np.zeros((w, k + 1))
        if w > _SEARCH_WINDOWS:  # many windows: one vectorised pass over the values
            gv = np.repeat(np.arange(w), m)
            outside = np.bincount(gv[(sv < lo_edge) | (sv > hi_edge)], minlength=w).astype(float)
            idx = np.searchsorted(edges, sv, side="left")  # bin_index
            cur = np.bincount(gv * nb + idx, minlength=w * nb).reshape(w, nb).astype(float)
            if k:
                pos = np.clip(np.searchsorted(keys, sv), 0, k - 1)
                code = np.where(keys[pos] == sv, pos, k)
                hits = np.bincount(gv * (k + 1) + code, minlength=w * (k + 1))
                table = hits.reshape(w, k + 1).astype(float)
        for j in np.flatnonzero(filled).tolist() if w <= _SEARCH_WINDOWS else []:
            seg = sv[bounds[j] : bounds[j + 1]]
            size = len(seg)
            below = np.searchsorted(seg, lo_edge, side="left")
            outside[j] = below + size - np.searchsorted(seg, hi_edge, side="right")
            # bin b holds edges[b-1] < v <= edges[b] (see bin_index)
            upto = np.searchsorted(seg, edges, side="right")
            cur[j] = np.diff(np.r_[0, upto, size])
            if k:
                hits = np.searchsorted(seg, keys, side="right") - np.searchsorted(
                    seg, keys, side="left"
                )
                hits[repeated] = 0
                table[j, :k] = hits
                table[j, k] = size - hits.sum()
        out["out_of_range_share"] = outside / m
        out["psi"] = np.where(filled, psi(reference["bins"]["counts"], cur, eps), np.nan)

        # D = sup |F_ref − F_cur|. F_cur is a step function and F_ref is
        # non-decreasing, so the supremum is reached at a current value x:
        # either at x (F_cur(x) − F_ref(x)) or just before it
        # (F_ref(x−) − F_cur(x−)). Over the i-th sorted value of a window of
        # size n, (i + 1)/n − F_ref(x_i) is largest at the last of a run of ties
        # (where it is F_cur(x) − F_ref(x)) and F_ref(x_i−) − i/n at the first,
        # so the maximum over every value is the supremum. Runs of ties are
        # taken once when there are few of them (integer-valued features).
        if len(sv):
            new = np.ones(len(sv), dtype=bool)
            np.not_equal(sv[1:], sv[:-1], out=new[1:])
            new[bounds[:-1][filled]] = True
            runs = int(np.count_nonzero(new))
            if runs * 4 < len(sv):
                first = np.flatnonzero(new)
                stop = np.r_[first[1:], len(sv)]
                u = sv[first]
            else:
                first = np.arange(len(sv))
                stop = first + 1
                u = sv
            gu = np.searchsorted(bounds, first, side="right") - 1 if w > 1 else None
            # window start and size of each run (scalars for a single window)
            base: Any = bounds[gu] if gu is not None else 0
            span: Any = m[gu] if gu is not None else m[0]
            if cdf is None:
                f_right, f_left = _cdf_both(reference, u)
            elif u is sv:
                f_right, f_left = cdf
            else:
                f_right, f_left = cdf[0][first], cdf[1][first]
            gap = np.maximum((stop - base) / span - f_right, f_left - (first - base) / span)
            out["ks"][filled] = np.maximum.reduceat(
                gap, np.searchsorted(first, bounds[:-1][filled])
            )
        out["ks_p_value"] = ks_pvalue(out["ks"], reference_count(reference), m)

        if k:
            order = np.argsort(np.array([float(c) for c in cats], dtype=float))
            counts = np.asarray(list(cats.values()), dtype=float)[order]
            cat = category_stats(table, np.r_[counts, 0.0], eps)
            out.update({key: cat[key] for key in ("js", "chi2_p_value", "unseen_share")})
    return out


def categorical_drift(
    values: Any,
    reference: Mapping[str, Any],
    *,
    groups: Any = None,
    n_groups: int | None = None,
    eps: float = EPS,
) -> dict[str, Any]:
    """Chi-square, Jensen-Shannon, PSI, unseen and missing shares of categories.

    Parameters
    ----------
    values : array-like
        Current values; compared as strings, as the summary stored them.
    reference : mapping
        The feature's categorical summary (``categories`` {value: count}
        of the top categories, ``other``).
    groups, n_groups, eps
        See :func:`numeric_drift`.

    Returns
    -------
    dict
        ``rows``, ``n``, ``missing_share`` and the keys of
        :func:`category_stats`; arrays of length W with ``groups``, floats
        without.
    """
    g, w = _groups(len(values), groups, n_groups)
    table, rows = category_counts(values, reference, g, w)
    return _finish(categorical_stats_counts(table, rows, reference, eps), groups is None)


def category_counts(
    values: Any, reference: Mapping[str, Any], g: np.ndarray, w: int
) -> tuple[np.ndarray, np.ndarray]:
    """Counts per window of the reference's top categories (then everything else).

    Returns ``table`` (W, K+1) and ``rows`` (values per window, missing ones
    included) for :func:`categorical_stats_counts`; ``g`` holds each value's
    window code (−1 skips it).
    """
    s = pd.Series(values)
    codes, uniques = pd.factorize(s, use_na_sentinel=True)
    keys = list(reference.get("categories") or {})
    lookup = {key: i for i, key in enumerate(keys)}
    k = len(keys)
    # Map each distinct value (few) rather than each row (many) to its
    # reference bucket; values outside the top categories share bucket k.
    names = pd.Index(uniques).astype(str) if len(uniques) else []
    to_bucket = np.array([lookup.get(str(u), k) for u in names] + [-1], dtype=np.int64)
    bucket = to_bucket[codes]
    keep = g >= 0
    rows = np.bincount(g[keep], minlength=w)
    valid = keep & (bucket >= 0)
    table = np.bincount(g[valid] * (k + 1) + bucket[valid], minlength=w * (k + 1))
    return table.reshape(w, k + 1), rows


def categorical_stats_counts(
    table: np.ndarray, rows: np.ndarray, reference: Mapping[str, Any], eps: float = EPS
) -> dict[str, np.ndarray]:
    """The statistics of :func:`categorical_drift` from :func:`category_counts`."""
    ref = np.r_[
        np.asarray(list((reference.get("categories") or {}).values()), dtype=float),
        float(reference.get("other") or 0),
    ]
    out = category_stats(table, ref, eps)
    m = table.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = {"rows": rows, "n": m, "missing_share": (rows - m) / rows, **out}
    return out


def category_stats(counts: Any, ref_counts: Any, eps: float = EPS) -> dict[str, np.ndarray]:
    """Categorical drift statistics from count tables.

    Parameters
    ----------
    counts : array-like, shape (W, K+1)
        Current counts per window: the K reference categories, then one
        bucket for everything else (values unseen in the top categories).
    ref_counts : array-like, shape (K+1,)
        Reference counts: the K categories, then ``other``.
    eps : float
        Expected share given to the extra bucket when the reference has no
        ``other`` but the window has unseen values, so chi-square stays
        finite (and very large) instead of dividing by zero.

    Returns
    -------
    dict
        ``chi2`` and ``chi2_p_value`` (``scipy.stats.chisquare`` of the counts
        against the reference shares; the extra bucket is dropped when it is
        empty on both sides), ``js`` (Jensen-Shannon distance, base 2, in
        [0, 1]), ``psi`` over the buckets, ``unseen_share``.
    """
    obs = np.atleast_2d(np.asarray(counts, dtype=float))
    ref = np.asarray(ref_counts, dtype=float)
    w, k1 = obs.shape
    m = obs.sum(axis=1)
    nan = np.full(w, np.nan)
    out = {"chi2": nan.copy(), "chi2_p_value": nan.copy(), "js": nan.copy(), "psi": nan.copy()}
    with np.errstate(invalid="ignore", divide="ignore"):
        out["unseen_share"] = obs[:, -1] / m
    if ref.sum() <= 0:
        return out
    p = ref / ref.sum()
    filled = m > 0
    if not filled.any():
        return out
    q = obs[filled] / m[filled, None]
    with np.errstate(invalid="ignore"):
        # Identical shares can sum to −1e-17 under the square root: that is 0.
        js = distance.jensenshannon(np.broadcast_to(p, q.shape), q, base=2, axis=1)
    out["js"][filled] = np.nan_to_num(js, nan=0.0)
    out["psi"][filled] = psi(ref, obs[filled], eps)

    share = p.copy()
    if share[-1] == 0:
        share[-1] = eps
        share /= share.sum()
    unseen = obs[:, -1] > 0
    for rows, cols, shares in (
        (filled & unseen, slice(None), share),
        # with no "other" and nothing unseen the extra bucket carries no
        # information: dropping it keeps the degrees of freedom honest
        (filled & ~unseen, slice(None) if p[-1] > 0 else slice(0, k1 - 1), p),
    ):
        if not rows.any():
            continue
        sh = shares[cols] / shares[cols].sum()
        if len(sh) < 2:
            out["chi2"][rows], out["chi2_p_value"][rows] = 0.0, 1.0  # one category: no test
            continue
        res = stats.chisquare(obs[rows][:, cols], sh * m[rows, None], axis=1)
        out["chi2"][rows], out["chi2_p_value"][rows] = res.statistic, res.pvalue
    return out
