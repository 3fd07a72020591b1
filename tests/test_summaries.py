"""Reference summaries: what drift is later measured against, without the data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import NUMERIC

import jupyter_opx as opx
from jupyter_opx.snapshots import summaries


def _in_bin(values: np.ndarray, edges: list[float], i: int) -> int:
    """Count of values in bin i of (-inf, e1], (e1, e2], ..., (ek, +inf), computed directly."""
    lo = -np.inf if i == 0 else edges[i - 1]
    hi = np.inf if i == len(edges) else edges[i]
    return int(((values > lo) & (values <= hi)).sum())


def test_numeric_summary_against_numpy() -> None:
    rng = np.random.default_rng(11)
    x = rng.normal(50.0, 10.0, 5000)
    x[rng.choice(5000, 250, replace=False)] = np.nan
    s = summaries.summarize(pd.DataFrame({"x": x}))
    assert (s["rows"], s["sample_rows"], s["version"]) == (5000, 5000, summaries.SUMMARY_VERSION)
    f = s["features"]["x"]
    finite = np.sort(x[~np.isnan(x)])
    assert f["kind"] == "numeric"
    assert f["count"] == 5000
    assert f["missing"] == pytest.approx(250 / 5000)
    assert f["mean"] == pytest.approx(np.nanmean(x), rel=1e-12)
    assert f["std"] == pytest.approx(np.nanstd(x, ddof=1), rel=1e-12)
    assert f["min"] == np.nanmin(x)
    assert f["max"] == np.nanmax(x)

    # 1001-point quantile grid, exact at both ends
    q = f["quantiles"]
    assert len(q) == summaries.GRID
    assert q[0] == finite[0]
    assert q[-1] == finite[-1]
    np.testing.assert_allclose(q, np.quantile(finite, np.linspace(0, 1, 1001)), rtol=1e-12)
    assert "values" not in f

    # decile bins: inner edges at the deciles, counts sum to the values sampled
    edges = f["bins"]["edges"]
    counts = f["bins"]["counts"]
    np.testing.assert_allclose(edges, np.quantile(finite, np.arange(1, 10) / 10), rtol=1e-12)
    assert len(counts) == len(edges) + 1 == 10
    assert sum(counts) == len(finite) == 4750
    assert counts == [_in_bin(finite, edges, i) for i in range(len(counts))]
    assert all(470 <= c <= 480 for c in counts)
    assert "categories" not in f  # many distinct values: no frequency table


def test_small_numeric_keeps_exact_values_and_frequencies() -> None:
    s = summaries.summarize(pd.DataFrame({"k": [3, 1, 2, 2, 5, 2], "h": [0.5, 1.5, 0.5, 1, 1, 1]}))
    k = s["features"]["k"]
    assert k["values"] == [1.0, 2.0, 2.0, 2.0, 3.0, 5.0]
    assert k["categories"] == {"1": 1, "2": 3, "3": 1, "5": 1}
    assert (k["min"], k["max"], k["mean"]) == (1.0, 5.0, 2.5)
    assert sum(k["bins"]["counts"]) == 6
    edges = k["bins"]["edges"]
    assert edges == sorted(set(edges))  # ties merged
    values = np.array(k["values"])
    assert k["bins"]["counts"] == [_in_bin(values, edges, i) for i in range(len(edges) + 1)]
    assert s["features"]["h"]["categories"] == {"0.5": 2, "1": 3, "1.5": 1}


def test_bin_index_is_right_closed_with_open_outer_bins() -> None:
    edges = [1.0, 2.0, 4.0]
    got = summaries.bin_index(edges, np.array([-10.0, 1.0, 1.0001, 2.0, 3.0, 4.0, 4.5, 1e9]))
    assert list(got) == [0, 0, 1, 1, 2, 2, 3, 3]


def test_categorical_summary_top_and_other() -> None:
    # category k appears k + 1 times, so the 50 most frequent are k = 10 ... 59
    values = [f"c{k:02d}" for k in range(60) for _ in range(k + 1)]
    values += [None] * 30
    frame = pd.DataFrame({"c": pd.Series(values, dtype="str")})
    s = summaries.summarize(frame)["features"]["c"]
    n = len(values)
    assert s["kind"] == "categorical"
    assert s["count"] == n
    assert s["missing"] == pytest.approx(30 / n)
    assert s["distinct"] == 60
    assert len(s["categories"]) == summaries.TOP_CATEGORIES
    assert s["categories"] == {f"c{k:02d}": k + 1 for k in range(59, 9, -1)}
    assert s["other"] == sum(range(1, 11))
    assert sum(s["categories"].values()) + s["other"] + 30 == n


def test_category_bool_and_datetime_columns(frame: pd.DataFrame) -> None:
    frame["flag"] = frame["tenure"] > 36
    frame["when"] = pd.date_range("2024-01-01", periods=len(frame), freq="h")
    s = summaries.summarize(frame)["features"]
    assert s["plan"]["kind"] == "categorical"
    assert s["plan"]["categories"] == {
        str(k): int(v) for k, v in frame["plan"].value_counts().items() if v
    }
    assert s["region"]["categories"] == frame["region"].value_counts().to_dict()
    assert s["flag"]["categories"] == {
        "True": int(frame["flag"].sum()),
        "False": int((~frame["flag"]).sum()),
    }
    assert s["when"] == {"kind": "datetime", "count": 200, "missing": 0.0}
    assert s["tenure"]["kind"] == "numeric"


def test_all_missing_and_empty_columns() -> None:
    s = summaries.summarize(pd.DataFrame({"x": [np.nan, np.nan], "c": [None, None]}))
    assert s["features"]["x"] == {"kind": "numeric", "count": 2, "missing": 1.0}
    assert s["features"]["c"]["missing"] == 1.0
    assert s["features"]["c"]["categories"] == {}
    empty = summaries.summarize(pd.DataFrame({"x": pd.Series([], dtype=float)}))
    assert empty["features"]["x"] == {"kind": "numeric", "count": 0, "missing": 0.0}


def test_large_data_is_summarised_from_a_reproducible_sample(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(summaries, "MAX_SAMPLE", 1000)
    rng = np.random.default_rng(5)
    x = rng.exponential(2.0, 5000)
    frame = pd.DataFrame({"x": x, "c": rng.choice(["a", "b"], 5000)})
    s = summaries.summarize(frame)
    assert (s["rows"], s["sample_rows"]) == (5000, 1000)
    f = s["features"]["x"]
    # moments and counts are exact over every row ...
    assert f["count"] == 5000
    assert f["mean"] == pytest.approx(x.mean(), rel=1e-12)
    assert (f["min"], f["max"]) == (x.min(), x.max())
    # ... bins and category counts come from the sample
    assert sum(f["bins"]["counts"]) == 1000
    assert len(f["values"]) == 1000
    assert sum(s["features"]["c"]["categories"].values()) == 1000
    assert summaries.summarize(frame) == s
    assert summaries.summarize(frame, seed=1) != s


def test_snapshot_stores_reference_summaries(store: Path, frame: pd.DataFrame) -> None:
    snap = opx.snapshot("d", data={"train": frame, "test": frame.iloc[:20]})
    assert snap.reference_key == "train"
    ref = snap.reference_summary()
    assert ref is not None
    assert ref["dataset"] == "train"
    assert ref["rows"] == 200
    assert set(ref["features"]) == set(frame.columns)
    assert ref["features"]["charges"] == summaries.summarize(frame)["features"]["charges"]
    assert "prediction" not in ref
    assert snap.data["test"].summary_digest is None

    other = opx.snapshot("d", data={"train": frame, "test": frame.iloc[:20]}, reference="test")
    assert other.reference_key == "test"
    summary = other.reference_summary()
    assert summary is not None
    assert (summary["dataset"], summary["rows"]) == ("test", 20)


def test_reference_must_name_a_dataset(store: Path, frame: pd.DataFrame) -> None:
    with pytest.raises(opx.ValidationError, match="reference='valid' is not one of"):
        opx.snapshot("d", data={"train": frame}, reference="valid")


def test_model_only_snapshot_has_no_reference(store: Path, logreg: Any) -> None:
    assert opx.snapshot("m", model=logreg).reference_summary() is None


def test_prediction_summary_of_a_classifier(store: Path, logreg: Any, frame: pd.DataFrame) -> None:
    # the training frame holds more columns than the model uses: feature_names_in_ selects
    snap = opx.snapshot("m", model=logreg, data={"train": frame})
    ref = snap.reference_summary()
    assert ref is not None
    pred = ref["prediction"]
    scores = logreg.predict_proba(frame[NUMERIC])[:, 1]
    assert pred["score_kind"] == "probability"
    assert pred["rows_scored"] == 200
    np.testing.assert_allclose(pred["values"], np.sort(scores), rtol=1e-12)
    assert pred["mean"] == pytest.approx(scores.mean(), rel=1e-12)
    assert sum(pred["bins"]["counts"]) == 200


@pytest.mark.filterwarnings("ignore:X has feature names:UserWarning")
def test_prediction_summary_of_a_regressor_and_of_an_unusable_model(
    store: Path, frame: pd.DataFrame
) -> None:
    from sklearn.linear_model import LinearRegression

    reg = LinearRegression().fit(frame[NUMERIC], frame["charges"] * 2)
    pred = opx.snapshot("r", model=reg, data={"train": frame}).reference_summary()["prediction"]  # type: ignore[index]
    assert pred["score_kind"] == "prediction"
    np.testing.assert_allclose(pred["mean"], reg.predict(frame[NUMERIC]).mean(), rtol=1e-12)

    narrow = LinearRegression().fit(frame[["tenure"]].to_numpy(), frame["charges"])  # no names
    pred = opx.snapshot("r", model=narrow, data={"train": frame}).reference_summary()["prediction"]  # type: ignore[index]
    assert set(pred) == {"skipped"}
    assert pred["skipped"].startswith("ValueError")


def test_unchanged_data_with_a_new_model_gets_that_models_prediction_summary(
    store: Path, frame: pd.DataFrame
) -> None:
    from sklearn.linear_model import LogisticRegression

    X, y = frame[NUMERIC], frame["churned"]
    sharp = LogisticRegression(C=100.0).fit(X, y)
    flat = LogisticRegression(C=1e-4).fit(X, y)

    data_only = opx.snapshot("d", data={"train": frame})
    first = opx.snapshot("m", model=sharp, data={"train": frame})
    second = opx.snapshot("m", model=flat, data={"train": frame})
    again = opx.snapshot("d", data={"train": frame})

    # the data itself is reused every time ...
    assert second.data["train"].reused_from == "d/1"
    assert second.data["train"].digest == data_only.data["train"].digest
    # ... but each model's reference scores are its own
    for snap, model in ((first, sharp), (second, flat)):
        pred = snap.reference_summary()["prediction"]  # type: ignore[index]
        np.testing.assert_allclose(pred["values"], np.sort(model.predict_proba(X)[:, 1]))
    assert "prediction" not in data_only.reference_summary()  # type: ignore[operator]
    assert "prediction" not in again.reference_summary()  # type: ignore[operator]
    assert again.data["train"].summary_digest == data_only.data["train"].summary_digest
    assert (
        first.reference_summary()["features"]  # type: ignore[index]
        == second.reference_summary()["features"]  # type: ignore[index]
    )
