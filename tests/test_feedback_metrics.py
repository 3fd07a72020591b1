"""Feedback metrics: windows, drift, late-label performance and uplift (pure functions).

Each metric is checked against values computed by hand on tiny inputs and,
where one exists, against scipy / scikit-learn on the same data.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import special, stats
from scipy.spatial import distance
from sklearn import metrics as skm

from jupyter_opx.exceptions import ValidationError
from jupyter_opx.monitoring import drift, drift_table, joins, performance, uplift, windows
from jupyter_opx.snapshots.summaries import summarize

T0 = pd.Timestamp("2026-03-02T00:00:00Z")  # a Monday


def at(*hours: float) -> pd.Series:
    """UTC timestamps ``hours`` after T0."""
    return pd.Series([T0 + pd.Timedelta(hours=h) for h in hours])


def day(d: int, h: float = 0.0) -> pd.Timestamp:
    return T0 + pd.Timedelta(days=d, hours=h)


# --- windows -----------------------------------------------------------------


def test_parse_window_accepts_spans_and_counts() -> None:
    hour = windows.parse_window("1h")
    assert (hour.kind, hour.size) == ("time", 3600 * 10**9)
    assert windows.parse_window("day").size == 86_400 * 10**9
    assert windows.parse_window("6h").size == 6 * 3600 * 10**9
    assert windows.parse_window("1w").size == 7 * 86_400 * 10**9
    assert windows.parse_window("1000") == windows.Window("count", 1000)
    assert windows.parse_window(250) == windows.Window("count", 250)
    for bad in ("1y", "0h", "", "-5", 0):
        with pytest.raises(ValidationError, match="window"):
            windows.parse_window(bad)


def test_time_windows_are_utc_floors_and_weeks_start_on_monday() -> None:
    ts = pd.Series(
        [
            "2026-03-04T13:45:10Z",  # Wednesday
            "2026-03-01T23:30:00-05:00",  # = Monday 2026-03-02 04:30 UTC
            "2026-03-08T23:59:59Z",  # Sunday: still the week of 2 March
        ]
    )
    hours = windows.assign_windows(ts, "1h")
    assert list(hours) == [
        pd.Timestamp("2026-03-04T13:00Z"),
        pd.Timestamp("2026-03-02T04:00Z"),
        pd.Timestamp("2026-03-08T23:00Z"),
    ]
    days = windows.assign_windows(ts, "1d")
    assert list(days) == [
        pd.Timestamp("2026-03-04T00:00Z"),
        pd.Timestamp("2026-03-02T00:00Z"),
        pd.Timestamp("2026-03-08T00:00Z"),
    ]
    assert set(windows.assign_windows(ts, "1w")) == {pd.Timestamp("2026-03-02T00:00Z")}
    six = windows.assign_windows(ts, "6h")
    assert six.iloc[0] == pd.Timestamp("2026-03-04T12:00Z")
    # epoch seconds and naive datetimes are UTC too
    epoch = windows.assign_windows([T0.timestamp() + 5400], "1h")
    naive = windows.assign_windows(pd.Series([pd.Timestamp("2026-03-02T01:30")]), "1h")
    assert epoch.iloc[0] == naive.iloc[0] == pd.Timestamp("2026-03-02T01:00Z")


def test_empty_windows_are_kept() -> None:
    vol = windows.volume(
        "1d",
        predictions=[day(0, 1), day(0, 2), day(3, 5)],
        outcomes=[day(2, 1)],
    )
    assert list(vol["window"]) == [day(i) for i in range(4)]
    assert list(vol["predictions"]) == [2, 0, 0, 1]
    assert list(vol["outcomes"]) == [0, 0, 1, 0]
    assert list(vol["treatments"]) == [0, 0, 0, 0]


def test_count_windows_follow_time_order() -> None:
    ts = at(5, 1, 3, 0, 2, 4, 6)  # out of order
    chunks = windows.assign_windows(ts, "3")
    # time order 0,1,2 | 3,4,5 | 6
    assert list(chunks) == [1, 0, 1, 0, 0, 1, 2]
    vol = windows.volume(3, predictions=ts, outcomes=at(-1, 2.5, 3.5, 9))
    assert list(vol["window"]) == [0, 1, 2]
    assert list(vol["predictions"]) == [3, 3, 1]
    # outcomes fall in the prediction chunk open at their time (before the first: chunk 0)
    assert list(vol["outcomes"]) == [2, 1, 1]
    # a batch logged at one instant still splits into chunks of N
    batch = windows.volume("4", predictions=[T0] * 10)
    assert list(batch["predictions"]) == [4, 4, 2]


def test_window_codes_with_given_labels() -> None:
    labels = pd.date_range(day(0), periods=3, freq="D", tz="UTC")
    codes, index = windows.window_codes([day(1, 3), day(5), day(0, 23)], "1d", labels)
    assert list(codes) == [1, -1, 0]
    assert list(index) == list(labels)


def test_freshness_is_time_since_the_last_prediction() -> None:
    assert windows.freshness(at(1, 7, 3), now=day(1)) == pd.Timedelta(hours=17)
    assert pd.isna(windows.freshness([]))
    assert windows.freshness(at(0)) > pd.Timedelta(0)


def test_timestamps_must_be_present_and_parseable() -> None:
    with pytest.raises(ValidationError, match="missing"):
        windows.to_utc(pd.Series([T0, None]))
    with pytest.raises(ValidationError, match="ISO 8601"):
        windows.to_utc(["yesterday"])


# --- drift: numeric ------------------------------------------------------------

SMALL_REF = {
    "kind": "numeric",
    "count": 4,
    "missing": 0.0,
    "min": 0.0,
    "max": 3.0,
    "values": [0.0, 1.0, 2.0, 3.0],
    "bins": {"edges": [0.5, 1.5, 2.5], "counts": [1, 1, 1, 1]},
}


def test_psi_by_hand() -> None:
    eps = 1e-4
    want = (0.8 - 0.5) * math.log((0.8 + eps) / (0.5 + eps)) + (0.2 - 0.5) * math.log(
        (0.2 + eps) / (0.5 + eps)
    )
    assert drift.psi([50, 50], [80, 20])[0] == pytest.approx(want, rel=1e-12)
    assert drift.psi([1, 1], [[3, 3], [5, 5]]).tolist() == [0.0, 0.0]
    # an empty bin stays finite thanks to the one symmetric epsilon
    empty = drift.psi([1, 0], [1, 1])[0]
    # p = (1, 0), q = (.5, .5)
    want = 0.5 * math.log((0.5 + eps) / eps) - 0.5 * math.log((0.5 + eps) / (1 + eps))
    assert empty == pytest.approx(want)


def test_numeric_drift_by_hand() -> None:
    got = drift.numeric_drift([0, 0, 3, 3, 5, np.nan], SMALL_REF)
    assert got["rows"] == 6 and got["n"] == 5
    assert got["missing_share"] == pytest.approx(1 / 6)
    assert got["out_of_range_share"] == pytest.approx(1 / 5)  # 5 > max 3
    # bins (-inf, .5], (.5, 1.5], (1.5, 2.5], (2.5, inf): current 2, 0, 0, 3 of 5
    eps = 1e-4
    q, p = np.array([0.4, 0, 0, 0.6]), np.full(4, 0.25)
    assert got["psi"] == pytest.approx(float(((q - p) * np.log((q + eps) / (p + eps))).sum()))
    # F_ref(2) = .75 while F_cur stays .4 on [0, 3): D = .35
    assert got["ks"] == pytest.approx(0.35)
    assert got["ks"] == pytest.approx(stats.ks_2samp([0, 1, 2, 3], [0, 0, 3, 3, 5]).statistic)
    n_eff = 4 * 5 / 9
    assert got["ks_p_value"] == pytest.approx(stats.kstwobign.sf(math.sqrt(n_eff) * 0.35))
    assert got["ks_p_value"] == pytest.approx(special.kolmogorov(math.sqrt(n_eff) * 0.35))


def test_values_on_inner_edges_fall_in_the_lower_bin() -> None:
    got = drift.numeric_drift([0.5, 1.5, 2.5, 2.5], SMALL_REF)
    q, p = np.array([0.25, 0.25, 0.5, 0.0]), np.full(4, 0.25)
    assert got["psi"] == pytest.approx(float(((q - p) * np.log((q + 1e-4) / (p + 1e-4))).sum()))


def test_reference_cdf_from_quantiles_handles_atoms() -> None:
    ref = {"quantiles": [0.0, 1.0, 1.0, 1.0, 2.0]}  # probabilities 0, .25, .5, .75, 1
    x = [-1.0, 0.5, 1.0, 1.5, 2.0, 3.0]
    assert drift.reference_cdf(ref, x, "right").tolist() == [0, 0.125, 0.75, 0.875, 1, 1]
    assert drift.reference_cdf(ref, x, "left").tolist() == [0, 0.125, 0.25, 0.875, 1, 1]
    smooth = {"quantiles": [0.0, 1.0, 3.0]}
    assert drift.reference_cdf(smooth, [0.5, 2.0]).tolist() == [0.25, 0.75]


def _ks_reference(n: int, seed: int) -> tuple[dict, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "normal": rng.normal(10, 3, n),
            "skewed": rng.lognormal(0, 1, n),
            "ints": rng.integers(0, 300, n),  # atoms of ~0.3%: tied quantiles
        }
    )
    return summarize(frame), frame


@pytest.mark.parametrize("shift", [0.0, 0.3])
def test_ks_matches_scipy_within_the_grid_resolution(shift: float) -> None:
    summary, ref = _ks_reference(50_000, 1)
    assert "quantiles" in summary["features"]["normal"]
    rng = np.random.default_rng(2)
    cur = pd.DataFrame(
        {
            "normal": rng.normal(10 + 3 * shift, 3, 20_000),
            "skewed": rng.lognormal(shift, 1, 20_000),
            "ints": rng.integers(0, 300 + int(100 * shift), 20_000),
        }
    )
    for col in cur:
        got = drift.numeric_drift(cur[col], summary["features"][col])
        want = stats.ks_2samp(ref[col], cur[col]).statistic
        assert abs(got["ks"] - want) <= 1 / 1000 + 2 / 50_000, col


def test_ks_is_exact_with_a_small_reference() -> None:
    rng = np.random.default_rng(3)
    ref = np.round(rng.normal(0, 1, 600), 1)  # ties on both sides
    cur = np.round(rng.normal(0.2, 1, 900), 1)
    summary = summarize(pd.DataFrame({"x": ref}))["features"]["x"]
    assert "values" in summary
    got = drift.numeric_drift(cur, summary)
    assert got["ks"] == pytest.approx(stats.ks_2samp(ref, cur).statistic, abs=1e-12)
    # the asymptotic p-value is close to scipy's for these sizes
    assert got["ks_p_value"] == pytest.approx(stats.ks_2samp(ref, cur).pvalue, rel=0.3)


# --- drift: categorical --------------------------------------------------------


def _cat_ref(categories: dict[str, int], other: int = 0) -> dict:
    return {
        "kind": "categorical",
        "count": 1,
        "missing": 0.0,
        "categories": categories,
        "other": other,
    }


def test_chi_square_and_js_match_scipy() -> None:
    ref = _cat_ref({"a": 50, "b": 30, "c": 20})
    values = ["a"] * 40 + ["b"] * 40 + ["c"] * 20
    got = drift.categorical_drift(values, ref)
    want = stats.chisquare([40, 40, 20], [50, 30, 20])
    assert got["chi2"] == pytest.approx(want.statistic)
    assert got["chi2_p_value"] == pytest.approx(want.pvalue)
    assert got["js"] == pytest.approx(distance.jensenshannon([5, 3, 2], [4, 4, 2], base=2))
    assert got["unseen_share"] == 0.0
    assert got["n"] == 100


def test_js_by_hand() -> None:
    # p = (.5, .5), q = (1, 0), m = (.75, .25):
    # JS² = ½·KL(p‖m) + ½·KL(q‖m) in bits
    kl_p = 0.5 * math.log2(0.5 / 0.75) + 0.5 * math.log2(0.5 / 0.25)
    kl_q = math.log2(1 / 0.75)
    got = drift.categorical_drift(["a", "a"], _cat_ref({"a": 1, "b": 1}))
    assert got["js"] == pytest.approx(math.sqrt((kl_p + kl_q) / 2))
    disjoint = drift.categorical_drift(["b"], _cat_ref({"a": 1}))
    assert disjoint["js"] == pytest.approx(1.0)
    same = drift.categorical_drift(["a", "b"] * 7, _cat_ref({"a": 3, "b": 3}))
    assert same["js"] == 0.0 and same["psi"] == 0.0 and same["chi2_p_value"] == pytest.approx(1)


def test_unseen_categories_and_the_other_bucket() -> None:
    eps = 1e-4
    # no "other" in the reference: unseen values get an expected share of epsilon
    got = drift.categorical_drift(["a", "b", "z", "y", None], _cat_ref({"a": 5, "b": 5}))
    assert got["unseen_share"] == pytest.approx(0.5)
    assert got["missing_share"] == pytest.approx(0.2)
    shares = np.array([0.5, 0.5, eps]) / (1 + eps)
    want = stats.chisquare([1, 1, 2], shares * 4)
    assert got["chi2"] == pytest.approx(want.statistic)
    assert got["chi2_p_value"] == pytest.approx(want.pvalue)
    # with an "other" count, values beyond the top categories are compared with it
    other = drift.categorical_drift(["a"] * 6 + ["q"] * 4, _cat_ref({"a": 8}, other=2))
    want = stats.chisquare([6, 4], [8, 2])
    assert other["chi2_p_value"] == pytest.approx(want.pvalue)
    assert other["unseen_share"] == pytest.approx(0.4)


def test_categorical_values_are_compared_as_the_summary_stored_them(frame: pd.DataFrame) -> None:
    frame["flag"] = frame["tenure"] > 36
    summary = summarize(frame)["features"]
    for col in ("plan", "region", "flag"):
        got = drift.categorical_drift(frame[col], summary[col])
        assert got["unseen_share"] == 0.0
        assert got["js"] == pytest.approx(0.0, abs=1e-12)
        assert got["chi2_p_value"] == pytest.approx(1.0)


# --- drift table ---------------------------------------------------------------


def _population(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "charges": rng.normal(70 + 20 * shift, 20, n),
            "tenure": rng.integers(0, 72, n),
            "products": rng.integers(1, 5 + int(3 * shift), n),  # few values: "discrete"
            "region": rng.choice(
                ["north", "south", "east", "west"],
                n,
                p=[0.4 - 0.3 * shift, 0.3, 0.2, 0.1 + 0.3 * shift],
            ),
        }
    )


def test_drift_table_same_distribution_does_not_drift() -> None:
    summary = summarize(_population(100_000, 1))
    table = drift_table.drift_table(_population(200_000, 2), summary)
    assert list(table["feature"]) == ["charges", "tenure", "products", "region"]
    assert list(table["kind"]) == ["numeric", "numeric", "discrete", "categorical"]
    assert list(table["test"]) == ["ks", "ks", "chi2", "chi2"]
    assert not table["drifted"].any()
    assert (table["psi"] < 0.01).all()
    assert (table.loc[table["kind"] == "numeric", "ks"] < 0.01).all()
    assert (table.loc[table["kind"] != "numeric", "js"] < 0.01).all()
    assert drift_table.drifted_share(table) == 0.0
    assert (table["n"] == 200_000).all()


def test_drift_table_flags_clear_drift() -> None:
    summary = summarize(_population(100_000, 1))
    table = drift_table.drift_table(_population(5_000, 3, shift=1.0), summary).set_index("feature")
    assert table.loc["charges", "psi"] > 0.2 and table.loc["charges", "ks"] > 0.1
    assert table.loc["charges", "out_of_range_share"] > 0.0
    assert table.loc["products", "unseen_share"] > 0.3  # values 5..7 never seen
    assert table.loc["region", "js"] > 0.1
    assert table["drifted"].to_dict() == {
        "charges": True,
        "tenure": False,
        "products": True,
        "region": True,
    }
    assert drift_table.drifted_share(table) == pytest.approx(3 / 4)


def test_large_windows_need_an_effect_not_just_a_small_p() -> None:
    summary = summarize(pd.DataFrame({"x": np.random.default_rng(1).normal(0, 1, 100_000)}))
    cur = pd.DataFrame({"x": np.random.default_rng(2).normal(0.05, 1, 300_000)})
    row = drift_table.drift_table(cur, summary).iloc[0]
    assert row["p_value"] < 1e-10  # "significant" ...
    assert row["psi"] < 0.2 and row["ks"] < 0.1  # ... but harmless
    assert not row["drifted"]
    loose = drift_table.drift_table(cur, summary, psi_threshold=0.001).iloc[0]
    assert loose["drifted"]


def test_bonferroni_divides_alpha_by_the_features_tested() -> None:
    summary = summarize(_population(20_000, 1))
    cur = _population(1_500, 4, shift=0.08)
    kw = {"psi_threshold": 0.0, "ks_threshold": 0.0, "js_threshold": 0.0}
    table = drift_table.drift_table(cur, summary, **kw)
    k = table["p_value"].notna().sum()
    assert k == 4
    assert (table["drifted"] == (table["p_value"] < 0.05 / k)).all()
    for alpha in (1e-12, 0.5):
        again = drift_table.drift_table(cur, summary, alpha=alpha, **kw)
        assert (again["drifted"] == (again["p_value"] < alpha / k)).all()


def test_drift_per_window_matches_each_window_alone_and_keeps_empty_windows() -> None:
    summary = summarize(_population(50_000, 1))
    first, third = _population(3_000, 5), _population(2_000, 6, shift=1.0)
    cur = pd.concat([first, third], ignore_index=True)
    ts = pd.Series([day(0, 1)] * 3_000 + [day(2, 5)] * 2_000)
    order = np.random.default_rng(0).permutation(len(cur))  # rows out of time order
    cur, ts = cur.iloc[order].reset_index(drop=True), ts.iloc[order].reset_index(drop=True)
    table = drift_table.drift_table(cur, summary, ts=ts, window="1d")
    assert list(table["window"].unique()) == [day(0), day(1), day(2)]
    empty = table[table["window"] == day(1)]
    assert (empty["n"] == 0).all() and empty["p_value"].isna().all()
    assert not empty["drifted"].any()
    stats_cols = ["n", "psi", "ks", "js", "p_value", "drifted", "unseen_share"]
    for label, part in ((day(0), first), (day(2), third)):
        alone = drift_table.drift_table(part, summary)
        got = table[table["window"] == label].reset_index(drop=True)
        pd.testing.assert_frame_equal(got[stats_cols], alone[stats_cols], rtol=1e-9)
    share = drift_table.drift_summary(table)
    assert list(share["tested"]) == [4, 0, 4]
    assert share["drifted_share"].iloc[0] == 0.0 and share["drifted_share"].iloc[2] == 0.75
    assert np.isnan(share["drifted_share"].iloc[1])


def test_drift_table_skips_columns_without_a_numeric_or_categorical_reference() -> None:
    ref = pd.DataFrame({"x": [1.0, 2.0, 3.0], "when": pd.date_range("2026", periods=3)})
    cur = pd.DataFrame({"x": [2.0, np.nan], "when": [T0, T0], "new": [1, 2]})
    table = drift_table.drift_table(cur, summarize(ref))
    assert list(table["feature"]) == ["x"]
    assert table["missing_share"].iloc[0] == 0.5


def test_prediction_drift(logreg: object, frame: pd.DataFrame) -> None:
    from jupyter_opx.snapshots.summaries import score_summary

    summary = {"prediction": score_summary(logreg, frame)}
    scores = logreg.predict_proba(frame[["tenure", "charges"]])[:, 1]  # type: ignore[attr-defined]
    same = drift_table.prediction_drift(scores, summary).iloc[0]
    assert same["feature"] == "prediction" and same["kind"] == "numeric"
    assert same["ks"] == pytest.approx(0.0, abs=1e-9) and not same["drifted"]
    moved = drift_table.prediction_drift(np.clip(scores + 0.3, 0, 1), summary).iloc[0]
    assert moved["drifted"] and moved["out_of_range_share"] > 0
    skipped = drift_table.prediction_drift(scores, {"prediction": {"skipped": "no model"}})
    assert skipped["p_value"].isna().all() and not skipped["drifted"].any()


# --- late labels and performance ------------------------------------------------


def test_outcomes_join_the_latest_earlier_prediction_within_the_horizon() -> None:
    preds = pd.DataFrame(
        {
            "id": ["a", "a", "b", "c", "d", "e"],
            "ts": [day(0), day(5), day(1), day(10), day(0), day(2)],
            "score": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
        }
    )
    outs = pd.DataFrame(  # out of order on purpose
        {
            "id": ["b", "a", "c", "d", "e", "e", "zz"],
            "ts": [day(3), day(7), day(9), day(40), day(4), day(6), day(1)],
            "value": [1, 0, 1, 1, 0, 1, 1],
        }
    )
    joined = joins.join_outcomes(preds, outs, horizon="30D")
    # a: the day-7 outcome labels the day-5 prediction, not the day-0 one
    # c: outcome before any prediction of c -> unlabelled
    # d: outcome 40 days later, beyond the horizon -> unlabelled
    # e: two outcomes for one prediction -> the later one wins
    assert joined["outcome"].tolist()[:2] == [pytest.approx(np.nan, nan_ok=True), 0.0]
    assert joined["outcome"].fillna(-1).tolist() == [-1, 0, 1, -1, -1, 1]
    assert joined["outcome_ts"].iloc[5] == day(6)
    assert list(joined.index) == list(preds.index)
    longer = joins.join_outcomes(preds, outs, horizon="60D")
    assert longer["outcome"].iloc[4] == 1.0


def test_an_outcome_at_the_prediction_instant_labels_it() -> None:
    preds = pd.DataFrame({"id": [1], "ts": [day(0)], "score": [0.9]})
    outs = pd.DataFrame({"id": ["1"], "ts": [day(0)], "value": [1]})  # ids as text
    assert joins.join_outcomes(preds, outs)["outcome"].iloc[0] == 1.0
    strict = joins.join_outcomes(preds, outs, allow_exact_matches=False)
    assert np.isnan(strict["outcome"].iloc[0])


def _scored(n: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    score = np.clip(np.round(0.3 * y + rng.uniform(0, 0.7, n), 1), 0.01, 0.99)  # many ties
    ts = [day(int(d), 1) for d in rng.integers(0, 3, n)]
    preds = pd.DataFrame({"id": np.arange(n), "ts": ts, "score": score})
    outs = pd.DataFrame(
        {"id": np.arange(n), "ts": [t + pd.Timedelta(days=2) for t in ts], "value": y}
    )
    return preds, outs


def test_classification_metrics_match_sklearn_per_window() -> None:
    preds, outs = _scored(600, 7)
    outs = outs.iloc[::2]  # half the labels arrive
    table = performance.performance_table(preds, outs, window="1d", threshold=0.5)
    assert list(table["arm"].unique()) == ["all"]
    joined = joins.join_outcomes(preds, outs)
    for _, row in table.iterrows():
        mine = joined[windows.assign_windows(joined["ts"], "1d") == row["window"]]
        pairs = mine.dropna(subset=["outcome"])
        y, s = pairs["outcome"].to_numpy(), pairs["score"].to_numpy()
        assert row["predictions"] == len(mine)
        assert row["n_labelled"] == len(pairs)
        assert row["coverage"] == pytest.approx(len(pairs) / len(mine))
        assert row["auc"] == pytest.approx(skm.roc_auc_score(y, s), rel=1e-12)
        yhat = s >= 0.5
        assert row["accuracy"] == pytest.approx(skm.accuracy_score(y, yhat))
        assert row["precision"] == pytest.approx(skm.precision_score(y, yhat))
        assert row["recall"] == pytest.approx(skm.recall_score(y, yhat))
        assert row["brier"] == pytest.approx(skm.brier_score_loss(y, s))
        assert row["log_loss"] == pytest.approx(skm.log_loss(y, s))
        assert row["outcome_rate"] == pytest.approx(y.mean())


def test_performance_by_hand_with_empty_window_and_one_class() -> None:
    preds = pd.DataFrame(
        {
            "id": ["a", "b", "c", "d", "e"],
            "ts": [day(0, 1), day(0, 2), day(0, 3), day(2, 1), day(2, 2)],
            "score": [0.9, 0.2, 0.6, 0.8, 0.7],
        }
    )
    outs = pd.DataFrame({"id": ["a", "b", "c", "d"], "ts": [day(4)] * 4, "value": [1, 0, 0, 1]})
    table = performance.performance_table(preds, outs, window="1d").set_index("window")
    assert list(table.index) == [day(0), day(1), day(2)]
    d0, d1, d2 = table.loc[day(0)], table.loc[day(1)], table.loc[day(2)]
    assert (d0["predictions"], d0["n_labelled"], d0["coverage"]) == (3, 3, 1.0)
    # scores .9 (y=1) .2 (y=0) .6 (y=0): the positive outranks both negatives
    assert d0["auc"] == 1.0
    assert d0["accuracy"] == pytest.approx(2 / 3)  # .6 is a false positive
    assert d0["precision"] == 0.5 and d0["recall"] == 1.0
    assert d0["brier"] == pytest.approx((0.1**2 + 0.2**2 + 0.6**2) / 3)
    assert d0["log_loss"] == pytest.approx(-(math.log(0.9) + math.log(0.8) + math.log(0.4)) / 3)
    assert (d1["predictions"], d1["n_labelled"]) == (0, 0) and np.isnan(d1["coverage"])
    assert (d2["n_labelled"], d2["coverage"]) == (1, 0.5)
    assert np.isnan(d2["auc"])  # one class only
    assert d2["precision"] == 1.0


def test_a_logged_label_is_the_predicted_class() -> None:
    outs = pd.DataFrame({"id": [1, 2, 3], "ts": [day(1)] * 3, "value": [1, 0, 1]})
    both = pd.DataFrame(
        {"id": [1, 2, 3], "ts": [day(0)] * 3, "score": [0.4, 0.3, 0.9], "label": [1, 0, 1]}
    )
    row = performance.performance_table(both, outs).iloc[0]
    assert row["accuracy"] == 1.0  # the model's own threshold put 0.4 in class 1
    assert row["auc"] == 1.0
    only = performance.performance_table(both.drop(columns="score"), outs).iloc[0]
    assert only["accuracy"] == 1.0 and only["auc"] == 1.0


def test_log_loss_clips_confident_mistakes() -> None:
    preds = pd.DataFrame({"id": [1, 2], "ts": [day(0)] * 2, "score": [1.0, 0.0]})
    outs = pd.DataFrame({"id": [1, 2], "ts": [day(1)] * 2, "value": [0, 0]})
    row = performance.performance_table(preds, outs, clip=1e-6).iloc[0]
    assert row["log_loss"] == pytest.approx(-(math.log(1e-6) + math.log(1 - 1e-6)) / 2)


def test_regression_metrics() -> None:
    preds = pd.DataFrame({"id": [1, 2, 3], "ts": [day(0)] * 3, "score": [10.0, 20.0, 35.0]})
    outs = pd.DataFrame({"id": [1, 2, 3], "ts": [day(1)] * 3, "value": [12.0, 20.0, 30.0]})
    row = performance.performance_table(preds, outs).iloc[0]
    assert row["mae"] == pytest.approx(skm.mean_absolute_error([12, 20, 30], [10, 20, 35]))
    assert row["rmse"] == pytest.approx(math.sqrt((4 + 0 + 25) / 3))
    assert "auc" not in row


def test_performance_on_the_untreated_and_on_all() -> None:
    preds = pd.DataFrame(
        {"id": list("abcdef"), "ts": [day(0)] * 6, "score": [0.9, 0.8, 0.7, 0.2, 0.1, 0.6]}
    )
    outs = pd.DataFrame({"id": list("abcdef"), "ts": [day(10)] * 6, "value": [0, 1, 1, 0, 0, 1]})
    # a was emailed (and stayed); b is in the control arm; c..f were never targeted;
    # f's email came after its outcome, so it changed nothing
    treats = pd.DataFrame(
        {
            "id": ["a", "b", "f"],
            "ts": [day(1), day(1), day(11)],
            "arm": ["email", "control", "email"],
        }
    )
    table = performance.performance_table(preds, outs, treats).set_index("arm")
    assert table.loc["all", "n_labelled"] == 6 and table.loc["control", "n_labelled"] == 5
    assert table.loc["control", "predictions"] == 5
    assert table.loc["control", "auc"] == pytest.approx(
        skm.roc_auc_score([1, 1, 0, 0, 1], [0.8, 0.7, 0.2, 0.1, 0.6])
    )
    assert table.loc["all", "auc"] == pytest.approx(
        skm.roc_auc_score([0, 1, 1, 0, 0, 1], [0.9, 0.8, 0.7, 0.2, 0.1, 0.6])
    )


def test_performance_rejects_bad_input() -> None:
    preds = pd.DataFrame({"id": [1], "ts": [day(0)], "score": [0.5]})
    with pytest.raises(ValidationError, match="value"):
        performance.performance_table(preds, pd.DataFrame({"id": [1], "ts": [day(1)]}))
    outs = pd.DataFrame({"id": [1], "ts": [day(1)], "value": [3]})
    with pytest.raises(ValidationError, match="0 or 1"):
        performance.performance_table(preds, outs, task="classification")
    with pytest.raises(ValidationError, match="score or a label"):
        performance.performance_table(preds.drop(columns="score"), outs)


# --- uplift --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("x", "n", "low", "high"),
    [  # Newcombe (1998a), Statistics in Medicine 17:857-872, Table I (method 3)
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
    ],
)
def test_wilson_interval(x: int, n: int, low: float, high: float) -> None:
    got = uplift.wilson_interval(x, n)
    assert got == (pytest.approx(low, abs=5e-5), pytest.approx(high, abs=5e-5))


@pytest.mark.parametrize(
    ("x1", "n1", "x2", "n2", "low", "high"),
    [  # Newcombe (1998b), Statistics in Medicine 17:873-890, Table II, method 10
        (56, 70, 48, 80, 0.0524, 0.3339),
        (9, 10, 3, 10, 0.1705, 0.8090),
        (5, 56, 0, 29, -0.0381, 0.1926),
        (0, 10, 0, 20, -0.1611, 0.2775),
        (10, 10, 0, 20, 0.6791, 1.0),
    ],
)
def test_newcombe_interval(x1: int, n1: int, x2: int, n2: int, low: float, high: float) -> None:
    d, lo, hi = uplift.newcombe_interval(x1, n1, x2, n2)
    assert d == pytest.approx(x1 / n1 - x2 / n2)
    assert (lo, hi) == (pytest.approx(low, abs=5e-5), pytest.approx(high, abs=5e-5))


def test_two_proportion_pvalue_matches_the_chi_square_test() -> None:
    p = uplift.two_proportion_pvalue(56, 70, 48, 80)
    table = [[56, 14], [48, 32]]
    assert p == pytest.approx(stats.chi2_contingency(table, correction=False).pvalue)
    assert uplift.two_proportion_pvalue(0, 10, 0, 12) == 1.0
    assert np.isnan(uplift.two_proportion_pvalue(1, 10, 0, 0))


def _campaign() -> tuple[pd.DataFrame, pd.DataFrame]:
    # day 0: email 10 (2 churn), control 10 (5 churn); day 2: email 4 (1), control 4 (2)
    rows = []
    for d, arm, n, churn in (
        (0, "email", 10, 2),
        (0, "control", 10, 5),
        (2, "email", 4, 1),
        (2, "control", 4, 2),
    ):
        rows += [(f"{arm}{d}-{i}", day(d, 1), arm, int(i < churn)) for i in range(n)]
    t = pd.DataFrame(rows, columns=["id", "ts", "arm", "y"])
    outcomes = t[t["y"] == 1].assign(ts=t["ts"] + pd.Timedelta(days=5), value=1)
    stayed = t[t["y"] == 0].assign(ts=t["ts"] + pd.Timedelta(days=29), value=0)
    return t[["id", "ts", "arm"]], pd.concat([outcomes, stayed])[["id", "ts", "value"]]


def test_uplift_per_window_by_hand() -> None:
    treats, outs = _campaign()
    table = uplift.uplift_table(treats, outs, window="1d")
    assert list(table["window"].unique()) == [day(0), day(1), day(2)]
    assert list(table["arm"])[:2] == ["control", "email"]  # control first
    d0 = table[table["window"] == day(0)].set_index("arm")
    assert d0.loc["email", "n"] == 10 and d0.loc["email", "outcomes"] == 2
    assert d0.loc["control", "outcome_rate"] == 0.5
    assert d0.loc["email", "uplift"] == pytest.approx(0.2 - 0.5)
    _, lo, hi = uplift.newcombe_interval(2, 10, 5, 10)
    assert (d0.loc["email", "ci_low"], d0.loc["email", "ci_high"]) == (
        pytest.approx(lo),
        pytest.approx(hi),
    )
    assert d0.loc["email", "p_value"] == pytest.approx(uplift.two_proportion_pvalue(2, 10, 5, 10))
    assert d0.loc["email", "kept"] == pytest.approx(3.0)  # 0.3 fewer churners x 10 emailed
    assert d0.loc["email", "kept_low"] == pytest.approx(-hi * 10)
    assert np.isnan(d0.loc["control", "uplift"])
    lo_rate, hi_rate = uplift.wilson_interval(5, 10)
    assert d0.loc["control", "rate_low"] == pytest.approx(lo_rate)
    assert d0.loc["control", "rate_high"] == pytest.approx(hi_rate)
    empty = table[table["window"] == day(1)]
    assert (empty["n"] == 0).all() and empty["uplift"].isna().all()


def test_uplift_cumulative() -> None:
    treats, outs = _campaign()
    table = uplift.uplift_table(treats, outs, window="1d", cumulative=True)
    last = table[table["window"] == day(2)].set_index("arm")
    assert (last.loc["email", "n"], last.loc["email", "outcomes"]) == (14, 3)
    assert (last.loc["control", "n"], last.loc["control", "outcomes"]) == (14, 7)
    assert last.loc["email", "uplift"] == pytest.approx(3 / 14 - 7 / 14)
    middle = table[table["window"] == day(1)].set_index("arm")
    assert middle.loc["email", "n"] == 10  # carried over the empty day


def test_uplift_counts_only_outcomes_after_the_treatment() -> None:
    treats = pd.DataFrame(
        {
            "id": ["a", "b", "c", "d"],
            "ts": [day(1)] * 4,
            "arm": ["email", "email", "control", "control"],
        }
    )
    outs = pd.DataFrame(
        {
            "id": ["a", "b", "c", "d", "x"],
            "ts": [day(0), day(3), day(3), day(60), day(3)],
            "value": [1, 0, 1, 1, 1],
        }
    )
    table = uplift.uplift_table(treats, outs, window="1w").set_index("arm")
    # a's outcome predates its email, d's comes after the horizon, x was never targeted
    assert table.loc["email", "n_targeted"] == 2 and table.loc["email", "n"] == 1
    assert table.loc["control", "n"] == 1
    # "no outcome" can mean 0 once the horizon has passed (e.g. only churn is logged)
    zero = uplift.uplift_table(treats, outs, window="1w", missing_outcome=0, now=day(60))
    zero = zero.set_index("arm")
    assert zero.loc["email", "n"] == 2 and zero.loc["email", "outcomes"] == 0
    assert zero.loc["control", "n"] == 2 and zero.loc["control", "outcomes"] == 1
    early = uplift.uplift_table(treats, outs, window="1w", missing_outcome=0, now=day(5))
    assert early.set_index("arm").loc["email", "n"] == 1  # horizon still open: unknown


def test_uplift_rejects_non_binary_outcomes() -> None:
    treats = pd.DataFrame({"id": ["a"], "ts": [day(0)], "arm": ["email"]})
    outs = pd.DataFrame({"id": ["a"], "ts": [day(1)], "value": [2.5]})
    with pytest.raises(ValidationError, match="0/1"):
        uplift.uplift_table(treats, outs)
