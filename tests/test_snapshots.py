"""Taking snapshots: what is recorded (metadata, schema, provenance, lineage) and diff."""

from __future__ import annotations

import platform
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sklearn
from conftest import NUMERIC

import jupyter_opx as opx
from jupyter_opx.exceptions import ValidationError
from jupyter_opx.snapshots import capture, catalog, provenance

#: these tests run on SQLite and on PostgreSQL (see conftest.py)
pytestmark = pytest.mark.backends("sqlite", "postgresql")


# -- what a snapshot records ----------------------------------------------------------------------
def test_snapshot_records_its_metadata(store: Path, logreg: Any, frame: pd.DataFrame) -> None:
    before = datetime.now(timezone.utc) - timedelta(seconds=5)
    snap = opx.snapshot(
        "churn",
        model=logreg,
        data={"train": frame, "test": frame.iloc[:50]},
        metrics={"auc": np.float64(0.91), "n_trees": np.int64(3), "loss": 1},
        params={
            "C": 1.0,
            "features": np.array(["tenure", "charges"]),
            "seed": np.int32(7),
            "weights": pd.Series([0.25, 0.75]),
        },
        tags={"owner": "ds-team", "stage": ["dev", 2]},
        message="first cut",
    )
    assert (snap.name, snap.version, snap.ref) == ("churn", 1, "churn/1")
    assert snap.created_by == "tester"
    assert before <= snap.created_at <= datetime.now(timezone.utc)
    assert snap.message == "first cut"
    assert snap.metrics == {"auc": 0.91, "n_trees": 3, "loss": 1}
    assert isinstance(snap.metrics["n_trees"], int)
    assert snap.params == {
        "C": 1.0,
        "features": ["tenure", "charges"],
        "seed": 7,
        "weights": [0.25, 0.75],
    }
    assert snap.tags == {"owner": "ds-team", "stage": ["dev", 2]}
    assert snap.model is not None
    assert snap.model["class"] == "sklearn.linear_model._logistic.LogisticRegression"
    assert snap.model["size"] > 0
    assert snap.data["train"].rows == 200
    assert snap.data["test"].rows == 50
    assert snap.data["train"].schema == [
        {"name": "tenure", "dtype": "int64"},
        {"name": "charges", "dtype": "float64"},
        {"name": "plan", "dtype": "category"},
        {"name": "region", "dtype": str(frame["region"].dtype)},
        {"name": "churned", "dtype": "int64"},
    ]
    # what show() reads back is what snapshot() returned
    assert opx.show("churn/1").to_dict() == snap.to_dict()
    text = str(snap)
    assert "churn/1" in text
    assert "auc=0.91" in text
    assert "<table" in snap._repr_html_()


@pytest.mark.parametrize(
    ("metrics", "message"),
    [
        ({"auc": "0.9"}, "metric 'auc' must be a number, got str"),
        ({"auc": None}, "must be a number, got NoneType"),
        ({"auc": True}, "must be a number, got bool"),
        ({"auc": [0.9]}, "must be a number, got list"),
        ({"auc": float("nan")}, "metric 'auc' is nan"),
        ({"auc": np.float32("nan")}, "metric 'auc' is nan"),
        ({"auc": float("inf")}, "must be finite"),
        ({"": 1.0}, "metric names must be non-empty strings"),
        ({3: 1.0}, "metric names must be non-empty strings"),
    ],
)
def test_bad_metrics_are_validation_errors(
    store: Path, frame: pd.DataFrame, metrics: dict[Any, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        opx.snapshot("m", data=frame, metrics=metrics)
    assert list(opx.list_snapshots()) == []


def test_bad_params_tags_and_message(store: Path, frame: pd.DataFrame) -> None:
    with pytest.raises(ValidationError, match="params must hold JSON values"):
        opx.snapshot("m", data=frame, params={"fn": object()})
    with pytest.raises(ValidationError, match="tags must be a dict"):
        opx.snapshot("m", data=frame, tags=["a"])  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="message must be a string"):
        opx.snapshot("m", data=frame, message=3)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="nothing to snapshot"):
        opx.snapshot("m")
    with pytest.raises(ValidationError, match="nothing to snapshot"):
        opx.snapshot("m", data={})


# -- input schema ---------------------------------------------------------------------------------
def test_input_schema_comes_from_feature_names_in(
    store: Path, logreg: Any, frame: pd.DataFrame
) -> None:
    snap = opx.snapshot("m", model=logreg, data={"train": frame})
    assert list(logreg.feature_names_in_) == NUMERIC
    assert snap.input_schema == [
        {"name": "tenure", "dtype": "int64"},
        {"name": "charges", "dtype": "float64"},
    ]
    # without data the names are known, the dtypes not
    model_only = opx.snapshot("m", model=logreg)
    assert model_only.input_schema == [
        {"name": "tenure", "dtype": "unknown"},
        {"name": "charges", "dtype": "unknown"},
    ]


def test_input_schema_without_feature_names(store: Path, frame: pd.DataFrame) -> None:
    from sklearn.linear_model import LinearRegression

    unnamed = LinearRegression().fit(frame[NUMERIC].to_numpy(), frame["churned"])
    snap = opx.snapshot("m", model=unnamed)
    assert snap.input_schema == [
        {"name": "x0", "dtype": "unknown"},
        {"name": "x1", "dtype": "unknown"},
    ]
    data_only = opx.snapshot("d", data={"train": frame[["tenure", "plan"]]})
    assert data_only.input_schema == [
        {"name": "tenure", "dtype": "int64"},
        {"name": "plan", "dtype": "category"},
    ]


# -- provenance -----------------------------------------------------------------------------------
def test_environment_lists_imported_packages(store: Path, logreg: Any) -> None:
    snap = opx.snapshot("m", model=logreg)
    env = snap.environment
    assert env["python"] == platform.python_version()
    assert env["implementation"] == platform.python_implementation()
    assert env["platform"] == platform.platform()
    packages = env["packages"]
    assert packages["scikit-learn"] == sklearn.__version__
    assert packages["pandas"] == pd.__version__
    assert packages["numpy"] == np.__version__
    import skops

    assert packages["skops"] == skops.__version__
    # only imported distributions, no stdlib
    assert "pip" not in packages
    assert "os" not in packages


def test_environment_is_read_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_subprocess(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("environment() must not start a process (pip, conda ...)")

    monkeypatch.setattr(subprocess, "run", no_subprocess)
    monkeypatch.setattr(subprocess, "Popen", no_subprocess)
    assert "numpy" in provenance.environment()["packages"]


def _git(repo: Path, *args: str) -> str:
    out = subprocess.run(
        ["git", "-c", "user.name=Test", "-c", "user.email=test@example.com", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


def test_git_commit_and_dirty_flag(
    store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, frame: pd.DataFrame
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "train.py").write_text("print('train')\n")
    _git(repo, "add", "train.py")
    _git(repo, "commit", "-q", "-m", "initial")
    head = _git(repo, "rev-parse", "HEAD")
    (repo / "notebooks").mkdir()
    monkeypatch.chdir(repo / "notebooks")

    clean = opx.snapshot("m", data=frame)
    git = clean.provenance["git"]
    assert git["commit"] == head
    assert git["dirty"] is False
    assert git["branch"] == _git(repo, "rev-parse", "--abbrev-ref", "HEAD")

    (repo / "train.py").write_text("print('changed')\n")
    dirty = opx.snapshot("m", data=frame)
    assert dirty.provenance["git"] == {**git, "dirty": True}
    assert "(dirty)" in str(dirty)
    assert clean.provenance["cwd"] == str(repo / "notebooks")


def test_no_git_outside_a_repository(store: Path, workdir: Path, frame: pd.DataFrame) -> None:
    if any((p / ".git").exists() for p in (workdir, *workdir.parents)):
        pytest.skip("the temporary folder is inside a git repository")
    assert opx.snapshot("m", data=frame).provenance["git"] is None


def test_parent_is_the_previous_version(store: Path, frame: pd.DataFrame) -> None:
    v1 = opx.snapshot("m", data=frame)
    opx.snapshot("other", data=frame)
    v2 = opx.snapshot("m", data=frame.iloc[:10])
    v3 = opx.snapshot("m", data=frame.iloc[:20])
    assert v1.parent is None
    assert v2.parent == "m/1"
    assert v3.parent == "m/2"
    assert opx.show("other").parent is None


def test_executed_cells_and_notebook_are_kept(
    store: Path, tmp_path: Path, frame: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    nb = tmp_path / "train.ipynb"
    nb.write_text('{"cells": [{"cell_type": "code", "source": "x = 1"}], "nbformat": 4}')
    source = {
        "cells": ["import pandas as pd", "df = load()"],
        "notebook_path": str(nb),
        "notebook": provenance.read_notebook(str(nb)),
    }
    snap = capture.create_snapshot(opx.current_workspace(), "m", data=frame, source=source)
    assert snap.provenance["notebook_path"] == str(nb)
    assert snap.provenance["cells"] == 2
    kept = catalog.source(opx.current_workspace(), snap.ref)
    assert kept is not None
    assert kept["cells"] == ["import pandas as pd", "df = load()"]
    assert kept["notebook"]["cells"][0]["source"] == "x = 1"
    # outside IPython there is nothing to keep (another test may have started a shell)
    monkeypatch.delitem(sys.modules, "IPython", raising=False)
    plain = opx.snapshot("m", data=frame)
    assert plain.source_digest is None
    assert catalog.source(opx.current_workspace(), plain.ref) is None


def test_notebook_path_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert provenance.notebook_path_from_env({}) is None
    assert provenance.notebook_path_from_env({"__session__": "/w/a.ipynb"}) == "/w/a.ipynb"
    monkeypatch.setenv("JPY_SESSION_NAME", "/w/b.ipynb")
    assert provenance.notebook_path_from_env({}) == "/w/b.ipynb"
    assert provenance.notebook_path_from_env({"__session__": "console-1"}) == "/w/b.ipynb"
    assert provenance.read_notebook("/nonexistent.ipynb") is None


def test_run_id_is_recorded(
    store: Path, frame: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPX_RUN_ID", "run-42")
    assert opx.snapshot("m", data=frame).provenance["run_id"] == "run-42"


# -- lineage of data ------------------------------------------------------------------------------
def test_resnapshot_of_unchanged_data_reuses_the_blob(store: Path, frame: pd.DataFrame) -> None:
    first = opx.snapshot("m", data={"train": frame})
    size_after_first = sum(p.stat().st_size for p in (store / "blobs").rglob("*") if p.is_file())
    second = opx.snapshot("m", data={"train": frame.copy()}, message="same data")
    size_after_second = sum(p.stat().st_size for p in (store / "blobs").rglob("*") if p.is_file())
    assert first.data["train"].reused_from is None
    assert second.data["train"].reused_from == "m/1"
    assert second.data["train"].digest == first.data["train"].digest
    assert second.data["train"].summary_digest == first.data["train"].summary_digest
    assert size_after_second == size_after_first
    assert "reused from m/1" in str(second)
    pd.testing.assert_frame_equal(opx.load_data("m/2", "train"), frame)

    changed = frame.copy()
    changed.loc[0, "charges"] = -1.0
    third = opx.snapshot("m", data={"train": changed})
    assert third.data["train"].reused_from is None
    assert third.data["train"].digest != first.data["train"].digest
    pd.testing.assert_frame_equal(opx.load_data("m/3", "train"), changed)


def test_reused_blob_is_written_again_if_it_disappeared(store: Path, frame: pd.DataFrame) -> None:
    first = opx.snapshot("m", data={"train": frame})
    digest = first.data["train"].digest
    blob = store / "blobs" / "sha256" / digest[:2] / digest[2:]
    blob.unlink()
    second = opx.snapshot("m", data={"train": frame})
    assert second.data["train"].digest == digest
    assert blob.is_file()
    pd.testing.assert_frame_equal(opx.load_data("m/1", "train"), frame)


# -- diff -----------------------------------------------------------------------------------------
def test_diff_reports_every_difference(
    store: Path, frame: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_environment = provenance.environment

    def environment_v1() -> dict[str, Any]:
        env = real_environment()
        env["python"] = "3.11.0"
        env["packages"] = {"numpy": "2.0.0", "pandas": "2.2.0", "scikit-learn": "1.5.0"}
        return env

    def environment_v2() -> dict[str, Any]:
        env = real_environment()
        env["python"] = "3.12.1"
        env["packages"] = {"numpy": "2.0.0", "pandas": "3.0.0", "xgboost": "2.1.0"}
        return env

    old = frame[["tenure", "charges", "plan"]]
    new = frame.iloc[:150][["tenure", "charges", "region"]].astype({"tenure": "float64"})

    monkeypatch.setattr(provenance, "environment", environment_v1)
    a = opx.snapshot(
        "m",
        data={"train": old, "holdout": old.iloc[:10]},
        metrics={"auc": 0.80, "f1": 0.5, "gone": 1},
        params={"C": 1.0, "penalty": "l2"},
        tags={"owner": "ana"},
    )
    monkeypatch.setattr(provenance, "environment", environment_v2)
    b = opx.snapshot(
        "m",
        data={"train": new, "test": new.iloc[:5]},
        metrics={"auc": 0.85, "f1": 0.5, "new": 2},
        params={"C": 0.5, "penalty": "l2", "solver": "saga"},
        tags={"owner": "ana"},
    )
    d = opx.diff(a.ref, b.ref)
    assert (d.a, d.b) == ("m/1", "m/2")
    assert d.identical is False

    train = d.data["train"]
    assert train["status"] == "changed"
    assert (train["a_rows"], train["b_rows"]) == (200, 150)
    assert train["a_digest"] == a.data["train"].digest
    assert train["b_digest"] == b.data["train"].digest
    assert train["a_digest"] != train["b_digest"]
    assert train["schema"] == {
        "added": ["region"],
        "removed": ["plan"],
        "changed": [{"column": "tenure", "a": "int64", "b": "float64"}],
    }
    assert d.data["holdout"]["status"] == "removed"
    assert d.data["holdout"]["a_rows"] == 10
    assert d.data["test"]["status"] == "added"
    assert d.data["test"]["b_rows"] == 5

    assert d.metrics["auc"]["a"] == 0.80
    assert d.metrics["auc"]["b"] == 0.85
    assert d.metrics["auc"]["delta"] == pytest.approx(0.05)
    assert d.metrics["gone"] == {"a": 1, "b": None, "delta": None}
    assert d.metrics["new"] == {"a": None, "b": 2, "delta": None}
    assert "f1" not in d.metrics

    assert d.params == {"C": {"a": 1.0, "b": 0.5}, "solver": {"a": None, "b": "saga"}}
    assert d.tags == {}
    assert d.input_schema["added"] == ["region"]
    assert d.input_schema["removed"] == ["plan"]
    assert d.environment == {
        "python": {"a": "3.11.0", "b": "3.12.1"},
        "pandas": {"a": "2.2.0", "b": "3.0.0"},
        "scikit-learn": {"a": "1.5.0", "b": None},
        "xgboost": {"a": None, "b": "2.1.0"},
    }
    assert d.model["changed"] is False

    as_dict = d.to_dict()
    assert as_dict["identical"] is False
    assert as_dict["metrics"]["auc"]["delta"] == pytest.approx(0.05)
    text = str(d)
    assert "metric auc" in text
    assert "+0.05" in text
    assert "env pandas" in text
    assert "+region" in text
    assert "<table" in d._repr_html_()


def test_diff_of_equal_snapshots_is_identical(
    store: Path, logreg: Any, frame: pd.DataFrame
) -> None:
    opx.snapshot("m", model=logreg, data={"train": frame}, metrics={"auc": 0.9})
    opx.snapshot("m", model=logreg, data={"train": frame.copy()}, metrics={"auc": 0.9})
    d = opx.diff("m/1", "m/2")
    assert d.data["train"]["status"] == "same"
    assert d.metrics == {}
    assert d.params == {}
    assert d.identical is True
    assert "are identical" in str(d)
    assert opx.diff("m/1", "m/1").identical is True


def test_data_sharing_the_quick_key_but_not_the_content_is_stored_anew(tmp_path, monkeypatch):
    import numpy as np
    import pandas as pd

    import jupyter_opx as opx
    from jupyter_opx.snapshots import codecs

    monkeypatch.setenv("OPX_HOME", str(tmp_path / ".opx"))
    df = pd.DataFrame({"x": np.arange(10_000, dtype=float), "y": np.ones(10_000)})
    changed = df.copy()
    changed.loc[1, "x"] = -5.0  # row 1 is not among the rows the quick key samples
    meta = {"kind": "dataframe"}
    assert codecs.quick_key(df, meta) == codecs.quick_key(changed, meta)
    assert codecs.fingerprint(df, meta) != codecs.fingerprint(changed, meta)
    first = opx.snapshot("q", data=df)
    second = opx.snapshot("q", data=changed)
    assert second.data["data"].digest != first.data["data"].digest
    assert second.data["data"].reused_from is None
    assert opx.load_data("q/2").loc[1, "x"] == -5.0
    third = opx.snapshot("q", data=df.copy())  # equal content, another object
    assert third.data["data"].digest == first.data["data"].digest
    assert third.data["data"].reused_from == "q/1"


# -- large frames: hashed and written beside their encoding ---------------------------------------
def test_offloaded_encoding_stores_the_same_blob(
    store: Path, frame: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The offload path (frames over ``_OFFLOAD_BYTES``) gives the bytes the direct path gives."""
    direct = opx.snapshot("direct", data={"train": frame})
    calls = []
    real = capture.OffloadWriter

    class Counted(real):  # type: ignore[misc,valid-type]
        def write(self, data: Any) -> int:
            calls.append(len(memoryview(data)))
            return super().write(data)

    monkeypatch.setattr(capture, "OffloadWriter", Counted)
    monkeypatch.setattr(capture, "_OFFLOAD_BYTES", 0)
    other = frame.copy()
    other["extra"] = 1.0  # another quick key: encoded, not reused
    offloaded = opx.snapshot("offloaded", data={"train": other})
    assert calls, "the offload path was not taken"
    info = offloaded.data["train"]
    blob = store / "blobs" / "sha256" / info.digest[:2] / info.digest[2:]
    assert sum(calls) == blob.stat().st_size == info.size
    pd.testing.assert_frame_equal(opx.load_data(offloaded.ref, "train"), other)
    # the same frame through both paths: the same content address
    again = opx.snapshot("offloaded2", data={"train": frame.assign(z=0)})
    monkeypatch.setattr(capture, "_OFFLOAD_BYTES", 1 << 60)
    same = opx.snapshot("direct2", data={"train": frame.assign(z=0)})
    assert same.data["train"].digest == again.data["train"].digest
    assert direct.data["train"].digest != again.data["train"].digest
    import hashlib

    assert hashlib.sha256(blob.read_bytes()).hexdigest() == info.digest


def test_offloaded_encoding_error_leaves_nothing(
    store: Path, frame: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An encoding that fails half way reports its own error and leaves no partial blob.

    (The summaries, computed beside the encoding, may already be stored: an
    unreferenced, complete blob, as after a process killed mid-snapshot.)
    """
    from jupyter_opx.snapshots import codecs

    opx.snapshot("m", data={"train": frame})
    before = sorted(p.relative_to(store) for p in (store / "blobs").rglob("*") if p.is_file())
    real = codecs.write_parquet

    def half(data: Any, sink: Any) -> None:
        sink.write(b"PAR1" + b"x" * 1000)
        raise RuntimeError("encoder crashed")

    monkeypatch.setattr(capture, "_OFFLOAD_BYTES", 0)
    monkeypatch.setattr(codecs, "write_parquet", half)
    with pytest.raises(RuntimeError, match="encoder crashed"):
        opx.snapshot("m", data={"train": frame.assign(extra=2.0)})
    monkeypatch.setattr(codecs, "write_parquet", real)
    after = sorted(p.relative_to(store) for p in (store / "blobs").rglob("*") if p.is_file())
    new = [store / p for p in after if p not in before]
    assert all(p.parent.name != "tmp" for p in new), new
    assert all(p.read_bytes().startswith(b"{") for p in new), new  # summaries only
    assert [s.version for s in opx.list_snapshots("m")] == [1]
