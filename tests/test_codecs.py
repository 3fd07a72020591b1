"""Model codec (skops, trusted types) and data codec (parquet) round trips."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import FEATURES, NUMERIC

import jupyter_opx as opx
from jupyter_opx.exceptions import NotFoundError, SerializationError, ValidationError
from jupyter_opx.snapshots import codecs


# -- models --------------------------------------------------------------------------------
def test_pipeline_with_column_transformer_and_hgb_round_trips(
    store: Path, pipeline_model: Any, frame: pd.DataFrame
) -> None:
    snap = opx.snapshot("churn", model=pipeline_model, data={"train": frame})
    assert snap.model is not None
    assert snap.model["codec"] == "skops"
    assert snap.model["class"] == "sklearn.pipeline.Pipeline"
    loaded = opx.load_model("churn")  # no trusted=: sklearn types are trusted by default
    assert type(loaded) is type(pipeline_model)
    assert loaded is not pipeline_model
    X = frame[FEATURES]
    np.testing.assert_array_equal(loaded.predict_proba(X), pipeline_model.predict_proba(X))
    np.testing.assert_array_equal(loaded.predict(X), pipeline_model.predict(X))
    assert list(loaded.named_steps) == ["pre", "clf"]


def test_random_forest_round_trips(store: Path, forest: Any, frame: pd.DataFrame) -> None:
    snap = opx.snapshot("rf", model=forest)
    loaded = snap.load_model()
    X = frame[NUMERIC]
    np.testing.assert_array_equal(loaded.predict_proba(X), forest.predict_proba(X))
    assert len(loaded.estimators_) == 4


def test_plain_skops_would_ask_for_tree_types(pipeline_model: Any, forest: Any) -> None:
    """The default trust list is what makes these load without ceremony."""
    import skops.io as sio

    for model in (pipeline_model, forest):
        data = sio.dumps(model)
        assert sio.get_untrusted_types(data=data) != []  # skops alone would refuse
        assert codecs.untrusted_types(data) == []


def test_same_model_gives_same_artifact(store: Path, logreg: Any) -> None:
    a = opx.snapshot("m", model=logreg)
    b = opx.snapshot("m", model=logreg)
    assert a.model is not None and b.model is not None
    assert a.model["digest"] == b.model["digest"]
    assert opx.diff("m/1", "m/2").model["changed"] is False


def test_changed_model_gives_new_artifact(store: Path, frame: pd.DataFrame) -> None:
    from sklearn.linear_model import LogisticRegression

    opx.snapshot("m", model=LogisticRegression(C=1.0).fit(frame[NUMERIC], frame["churned"]))
    opx.snapshot("m", model=LogisticRegression(C=0.01).fit(frame[NUMERIC], frame["churned"]))
    d = opx.diff("m/1", "m/2")
    assert d.model["changed"] is True
    assert d.model["a_digest"] != d.model["b_digest"]


@pytest.mark.parametrize(
    ("name", "trusted"),
    [
        ("sklearn.linear_model._logistic.LogisticRegression", True),
        ("numpy.ndarray", True),
        ("numpy.dtype", True),
        ("scipy.sparse._csr.csr_matrix", True),
        ("functools.partial", True),
        ("numpy.load", False),
        ("numpy.lib.npyio.load", False),
        ("numpy.fromfile", False),
        ("scipy.io.loadmat", False),
        ("sklearn.datasets.fetch_openml", False),
        ("sklearnx.Model", False),
        ("numpyro.Model", False),
        ("builtins.eval", False),
        ("os.system", False),
        ("mypkg.sklearn.Model", False),
    ],
)
def test_default_trust(name: str, trusted: bool) -> None:
    assert codecs.is_trusted_by_default(name) is trusted


def test_unknown_codec_is_refused() -> None:
    with pytest.raises(SerializationError, match="unknown model codec"):
        codecs.load_model_bytes(b"", "joblib")


def test_model_only_and_data_only_snapshots(store: Path, logreg: Any, frame: pd.DataFrame) -> None:
    opx.snapshot("model-only", model=logreg)
    opx.snapshot("data-only", data={"train": frame})
    with pytest.raises(NotFoundError, match="has no model"):
        opx.load_model("data-only")
    with pytest.raises(NotFoundError, match="has no data"):
        opx.load_data("model-only")


def test_trusted_must_be_a_list(store: Path, logreg: Any) -> None:
    opx.snapshot("m", model=logreg)
    with pytest.raises(ValidationError, match="list of type names"):
        opx.load_model("m", trusted="mypkg.Model")  # type: ignore[arg-type]


# -- data ----------------------------------------------------------------------------------
def _rich_frame() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    n = 50
    return pd.DataFrame(
        {
            "f64": rng.normal(size=n),
            "f32": rng.normal(size=n).astype(np.float32),
            "i64": rng.integers(-5, 5, n),
            "u8": rng.integers(0, 255, n).astype(np.uint8),
            "flag": rng.random(n) > 0.5,
            "cat": pd.Categorical(rng.choice(["a", "b", "c"], n), categories=["c", "b", "a"]),
            "ordered": pd.Categorical(
                rng.choice(["lo", "hi"], n), categories=["lo", "hi"], ordered=True
            ),
            "text": rng.choice(["x", "yy", "zzz"], n).astype(object),
            "string": pd.array(rng.choice(["p", "q", None], n), dtype="string"),
            "nullable": pd.array(rng.choice([1, 2, None], n), dtype="Int64"),
            "when": pd.date_range("2024-01-01", periods=n, freq="h"),
            "when_tz": pd.date_range("2024-01-01", periods=n, freq="D", tz="Europe/Paris"),
            "delta": pd.to_timedelta(rng.integers(0, 1000, n), unit="s"),
        },
        index=pd.Index([f"cust-{i}" for i in range(n)], name="customer"),
    ).astype({"text": "str"})


def test_dataframe_round_trips_exactly(store: Path) -> None:
    df = _rich_frame()
    snap = opx.snapshot("d", data={"train": df})
    back = opx.load_data(snap.ref, "train")
    pd.testing.assert_frame_equal(back, df, check_exact=True)
    assert back.index.name == "customer"
    assert str(back["cat"].dtype) == "category"
    assert list(back["cat"].cat.categories) == ["c", "b", "a"]
    assert back["ordered"].cat.ordered is True
    assert [c["dtype"] for c in snap.data["train"].schema] == [str(t) for t in df.dtypes]


@pytest.mark.parametrize(
    "index",
    [
        pd.Index([10, 20, 35], name="id"),
        pd.Index(["b", "a", "c"]),
        pd.MultiIndex.from_tuples([("x", 1), ("x", 2), ("y", 1)], names=["grp", "n"]),
        pd.date_range("2024-03-01", periods=3, name="day"),
        pd.RangeIndex(5, 11, 2),
    ],
    ids=["int", "str", "multi", "datetime", "range-step"],
)
def test_non_range_indexes_round_trip(store: Path, index: pd.Index) -> None:
    df = pd.DataFrame({"v": [1.5, 2.5, 3.5]}, index=index)
    snap = opx.snapshot("idx", data=df)
    # parquet keeps a DatetimeIndex's values and name, not its inferred ``freq``
    pd.testing.assert_frame_equal(opx.load_data(snap.ref), df, check_exact=True, check_freq=False)


def test_integer_column_names_round_trip(store: Path) -> None:
    df = pd.DataFrame(np.arange(6.0).reshape(3, 2))
    snap = opx.snapshot("intcols", data=df)
    pd.testing.assert_frame_equal(opx.load_data(snap.ref), df, check_exact=True)


@pytest.mark.parametrize(
    "series",
    [
        pd.Series([1.5, 2.5, np.nan], name="score"),
        pd.Series([1, 2, 3]),
        pd.Series(["a", "b"], name=0, index=pd.Index(["k1", "k2"], name="key")),
        pd.Series(pd.Categorical(["u", "v", "u"]), name="c"),
    ],
    ids=["named-float", "unnamed-int", "int-name-str-index", "categorical"],
)
def test_series_round_trip(store: Path, series: pd.Series) -> None:
    snap = opx.snapshot("s", data={"y": series})
    assert snap.data["y"].kind == "series"
    back = opx.load_data(snap.ref, "y")
    assert isinstance(back, pd.Series)
    pd.testing.assert_series_equal(back, series, check_exact=True)


@pytest.mark.parametrize(
    "array",
    [
        np.arange(7, dtype=np.int32),
        np.linspace(0, 1, 12).reshape(4, 3),
        np.array([[True, False], [False, True]]),
        np.arange(24, dtype=np.int16).reshape(2, 3, 4),
        np.array(["ab", "c"]),
        np.zeros((0, 3)),
        np.array(2.5),
    ],
    ids=["1d-int32", "2d-float", "2d-bool", "3d-int16", "1d-str", "empty-2d", "0d"],
)
def test_numpy_arrays_round_trip(store: Path, array: np.ndarray) -> None:
    snap = opx.snapshot("a", data={"X": array})
    assert snap.data["X"].kind == "ndarray"
    back = opx.load_data(snap.ref, "X")
    assert isinstance(back, np.ndarray)
    assert back.dtype == array.dtype
    assert back.shape == array.shape
    np.testing.assert_array_equal(back, array)


def test_bare_dataframe_is_stored_under_data(store: Path, frame: pd.DataFrame) -> None:
    snap = opx.snapshot("bare", data=frame)
    assert list(snap.data) == ["data"]
    assert snap.data["data"].rows == 200
    assert snap.data["data"].columns == 5
    pd.testing.assert_frame_equal(opx.load_data("bare", "data"), frame)
    pd.testing.assert_frame_equal(opx.load_data("bare"), frame)  # the only dataset


def test_several_datasets_need_a_key(store: Path, frame: pd.DataFrame) -> None:
    opx.snapshot("two", data={"train": frame.iloc[:150], "test": frame.iloc[150:]})
    with pytest.raises(ValidationError, match="several datasets"):
        opx.load_data("two")
    with pytest.raises(NotFoundError, match="has no dataset 'valid'"):
        opx.load_data("two", "valid")
    pd.testing.assert_frame_equal(opx.load_data("two", "test"), frame.iloc[150:])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([1, 2, 3], "cannot store a builtins.list as data"),
        ({"train": "text"}, "cannot store a builtins.str as data"),
        (np.array([object(), object()]), "numpy array of Python objects"),
        (pd.DataFrame([[1, 2]], columns=["a", "a"]), "cannot store this DataFrame as parquet"),
        (pd.DataFrame({"mixed": [1, "a"]}, dtype=object), "cannot store this DataFrame as parquet"),
    ],
    ids=["list", "str", "object-array", "duplicate-columns", "mixed-objects"],
)
def test_unstorable_data_is_a_serialization_error(store: Path, data: Any, message: str) -> None:
    with pytest.raises(SerializationError, match=message):
        opx.snapshot("bad", data=data)
    assert list(opx.list_snapshots()) == []


def test_data_keys_must_be_strings(store: Path, frame: pd.DataFrame) -> None:
    with pytest.raises(ValidationError, match="data keys must be strings"):
        opx.snapshot("bad", data={1: frame})


def test_parquet_blob_is_plain_parquet(store: Path, frame: pd.DataFrame) -> None:
    """Stored data is readable by any parquet reader, not only by jupyter_opx."""
    snap = opx.snapshot("p", data={"train": frame})
    digest = snap.data["train"].digest
    raw = (store / "blobs" / "sha256" / digest[:2] / digest[2:]).read_bytes()
    assert raw[:4] == b"PAR1"
    pd.testing.assert_frame_equal(pd.read_parquet(io.BytesIO(raw)), frame)


def test_fingerprint_tells_content_apart(frame: pd.DataFrame) -> None:
    meta = {"kind": "dataframe"}
    base = codecs.fingerprint(frame, meta)
    assert codecs.fingerprint(frame.copy(), meta) == base
    changed = frame.copy()
    changed.loc[3, "charges"] += 0.01
    assert codecs.fingerprint(changed, meta) != base
    renamed = frame.rename(columns={"charges": "charge"})
    assert codecs.fingerprint(renamed, meta) != base
    reindexed = frame.set_axis(range(1, len(frame) + 1))
    assert codecs.fingerprint(reindexed, meta) != base
    recat = frame.assign(plan=frame["plan"].cat.reorder_categories(["pro", "plus", "basic"]))
    assert codecs.fingerprint(recat, meta) != base
    retext = frame.copy()
    retext.loc[0, "region"] = "nowhere"
    assert codecs.fingerprint(retext, meta) != base
    assert codecs.fingerprint(frame, {"kind": "series", "name": "x"}) != base
    as_float = frame.astype({"tenure": "float64"})
    assert codecs.fingerprint(as_float, meta) != base
