"""Loading is safe: trust decided at load time from the artifact, pickle only when asked
twice, and every blob checked against its hash before anything decodes it."""

from __future__ import annotations

import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import helpers_custom
import numpy as np
import pandas as pd
import pytest
from helpers_custom import ThresholdClassifier, Tripwire
from sqlalchemy import update

import jupyter_opx as opx
from jupyter_opx.exceptions import (
    CorruptBlobError,
    SerializationError,
    UntrustedModelError,
)
from jupyter_opx.snapshots import codecs
from jupyter_opx.store import schema

CUSTOM = f"{ThresholdClassifier.__module__}.{ThresholdClassifier.__qualname__}"


@pytest.fixture
def custom_model(frame: pd.DataFrame) -> ThresholdClassifier:
    return ThresholdClassifier(quantile=0.7).fit(frame[["charges", "tenure"]], frame["churned"])


def _blob(store: Path, digest: str) -> Path:
    return store / "blobs" / "sha256" / digest[:2] / digest[2:]


def _tamper(path: Path, offset: int | None = None) -> None:
    """Flip one byte in a stored blob (blobs are read-only on disk: chmod first)."""
    path.chmod(0o644)
    raw = bytearray(path.read_bytes())
    at = len(raw) // 2 if offset is None else offset
    raw[at] ^= 0xFF
    path.write_bytes(bytes(raw))


def _set_model_column(ref: str, **values: Any) -> None:
    snap = opx.show(ref)
    with opx.current_workspace().db.transaction(write=True) as conn:
        conn.execute(
            update(schema.snapshots).where(schema.snapshots.c.id == snap.id).values(**values)
        )


# -- trust ---------------------------------------------------------------------------------------
def test_untrusted_type_is_refused_and_says_how_to_trust_it(
    store: Path, custom_model: ThresholdClassifier
) -> None:
    snap = opx.snapshot("custom", model=custom_model)
    assert snap.model is not None
    assert snap.model["codec"] == "skops"
    with pytest.raises(UntrustedModelError) as info:
        opx.load_model("custom")
    err = info.value
    assert err.types == [CUSTOM]
    assert err.fields["types"] == [CUSTOM]
    assert err.status == 403
    assert CUSTOM in err.message
    assert f"trusted=['{CUSTOM}']" in err.message
    assert "trusted_types in .opx/config.toml" in err.message


def test_untrusted_type_loads_once_trusted_at_load(
    store: Path, custom_model: ThresholdClassifier, frame: pd.DataFrame
) -> None:
    opx.snapshot("custom", model=custom_model)
    loaded = opx.load_model("custom", trusted=[CUSTOM])
    assert isinstance(loaded, ThresholdClassifier)
    assert loaded.threshold_ == custom_model.threshold_
    X = frame[["charges", "tenure"]]
    np.testing.assert_array_equal(loaded.predict(X), custom_model.predict(X))
    # trust given for one load is not remembered
    with pytest.raises(UntrustedModelError):
        opx.load_model("custom")
    # trusting something else does not help
    with pytest.raises(UntrustedModelError):
        opx.load_model("custom", trusted=["helpers_custom.Other"])


def test_untrusted_type_loads_once_trusted_in_config(
    store: Path, custom_model: ThresholdClassifier, new_session: Callable[[], None]
) -> None:
    opx.snapshot("custom", model=custom_model)
    with pytest.raises(UntrustedModelError):
        opx.load_model("custom")
    # following the advice of the error, in the same session
    (store / "config.toml").write_text(f'trusted_types = ["{CUSTOM}"]\n', encoding="utf-8")
    assert isinstance(opx.load_model("custom"), ThresholdClassifier)
    # and in a new one
    new_session()
    assert isinstance(opx.load_model("custom"), ThresholdClassifier)
    (store / "config.toml").write_text("trusted_types = []\n", encoding="utf-8")
    with pytest.raises(UntrustedModelError):
        opx.load_model("custom")


def test_trust_is_decided_from_the_artifact_not_the_metadata(
    store: Path, custom_model: ThresholdClassifier, logreg: Any
) -> None:
    opx.snapshot("custom", model=custom_model)
    opx.snapshot("plain", model=logreg)
    # the recorded class claims to be scikit-learn: still refused
    _set_model_column("custom/1", model_class="sklearn.linear_model.LogisticRegression")
    assert opx.show("custom").model["class"] == "sklearn.linear_model.LogisticRegression"  # type: ignore[index]
    with pytest.raises(UntrustedModelError) as info:
        opx.load_model("custom")
    assert info.value.types == [CUSTOM]
    # the recorded class claims something exotic: a scikit-learn artifact still loads
    _set_model_column("plain/1", model_class="evil.Backdoor")
    assert type(opx.load_model("plain")).__name__ == "LogisticRegression"


def test_artifact_with_a_dangerous_type_is_refused() -> None:
    """Types that read files are not trusted even inside numpy/scipy/sklearn."""
    import skops.io as sio

    holder = ThresholdClassifier()
    holder.loader_ = np.load  # a function reference skops stores by name
    data = sio.dumps(holder)
    assert codecs.untrusted_types(data, trusted=[CUSTOM]) == ["numpy.load"]
    with pytest.raises(UntrustedModelError) as info:
        codecs.load_model_bytes(data, "skops", trusted=[CUSTOM])
    assert info.value.types == ["numpy.load"]
    # only an explicit trust lets it through
    assert codecs.untrusted_types(data, trusted=[CUSTOM, "numpy.load"]) == []


# -- what skops cannot store ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "make",
    [
        lambda: ThresholdClassifier(quantile=lambda x: x),  # type: ignore[arg-type]
        lambda: ThresholdClassifier(quantile=(i for i in range(3))),  # type: ignore[arg-type]
    ],
    ids=["lambda", "generator"],
)
def test_object_skops_cannot_store_is_refused(store: Path, make: Callable[[], Any]) -> None:
    with pytest.raises(SerializationError) as info:
        opx.snapshot("bad", model=make())
    assert "allow_pickle=True" in info.value.message
    assert list(opx.list_snapshots()) == []


def test_function_transformer_with_a_lambda_is_refused_at_snapshot(store: Path) -> None:
    """skops writes a reference to ``<lambda>`` that could never be loaded again."""
    from sklearn.preprocessing import FunctionTransformer

    model = FunctionTransformer(lambda x: x * 2).fit(np.ones((3, 2)))
    with pytest.raises(SerializationError, match="lambda"):
        opx.snapshot("ft", model=model)
    # a module-level function is fine
    ok = opx.snapshot("ft", model=FunctionTransformer(np.log1p).fit(np.ones((3, 2))))
    loaded = opx.load_model(ok.ref)
    np.testing.assert_array_equal(loaded.transform(np.ones((2, 2))), np.log1p(np.ones((2, 2))))


def test_pickle_needs_consent_at_snapshot_and_at_load(store: Path) -> None:
    model = Tripwire(weights=[1, 2]).fit()
    with pytest.raises(SerializationError, match="allow_pickle=True"):
        opx.snapshot("pk", model=model)

    snap = opx.snapshot("pk", model=model, allow_pickle=True)
    assert snap.model is not None
    assert snap.model["codec"] == "pickle"
    before = helpers_custom.UNPICKLED["count"]
    with pytest.raises(SerializationError) as info:
        opx.load_model("pk")
    assert "load_model('pk/1', allow_pickle=True)" in info.value.message
    # trusting the type is not consent to unpickle
    with pytest.raises(SerializationError):
        opx.load_model("pk", trusted=["helpers_custom.Tripwire"])
    assert helpers_custom.UNPICKLED["count"] == before

    loaded = opx.load_model("pk", allow_pickle=True)
    assert helpers_custom.UNPICKLED["count"] == before + 1
    assert isinstance(loaded, Tripwire)
    assert list(loaded.buffer_) == [1.0, 2.0, 3.0]
    assert loaded.weights == [1, 2]


def test_pickle_cannot_be_smuggled_through_the_codec_column(store: Path) -> None:
    opx.snapshot("pk", model=Tripwire().fit(), allow_pickle=True)
    _set_model_column("pk/1", model_codec="skops")
    before = helpers_custom.UNPICKLED["count"]
    with pytest.raises(SerializationError, match="cannot be read by skops"):
        opx.load_model("pk")
    assert helpers_custom.UNPICKLED["count"] == before


def test_allow_pickle_does_not_store_the_unpicklable(store: Path) -> None:
    with pytest.raises(SerializationError, match="cannot be pickled either"):
        opx.snapshot("bad", model=ThresholdClassifier(quantile=lambda x: x), allow_pickle=True)  # type: ignore[arg-type]
    gen = types.SimpleNamespace(g=(i for i in range(2)))
    with pytest.raises(SerializationError):
        opx.snapshot("bad", model=gen, allow_pickle=True)


# -- tampering -----------------------------------------------------------------------------------
def test_tampered_model_blob_is_refused_before_decoding(store: Path, logreg: Any) -> None:
    snap = opx.snapshot("m", model=logreg)
    assert snap.model is not None
    digest = snap.model["digest"]
    path = _blob(store, digest)
    assert path.stat().st_mode & 0o777 == 0o444
    _tamper(path)
    with pytest.raises(CorruptBlobError) as info:
        opx.load_model("m")
    assert info.value.digest == digest
    assert info.value.status == 409
    assert "opx verify" in info.value.message
    report = opx.verify()
    assert report["corrupt"] == [digest]
    assert report["missing"] == []


def test_tampered_pickle_is_refused_even_with_allow_pickle(store: Path) -> None:
    snap = opx.snapshot("pk", model=Tripwire().fit(), allow_pickle=True)
    assert snap.model is not None
    _tamper(_blob(store, snap.model["digest"]), offset=-2)
    before = helpers_custom.UNPICKLED["count"]
    with pytest.raises(CorruptBlobError):
        opx.load_model("pk", allow_pickle=True)
    assert helpers_custom.UNPICKLED["count"] == before


def test_tampered_data_blob_is_refused(store: Path, frame: pd.DataFrame) -> None:
    snap = opx.snapshot("d", data={"train": frame, "test": frame.iloc[:10]})
    train = snap.data["train"].digest
    _tamper(_blob(store, train))
    with pytest.raises(CorruptBlobError) as info:
        opx.load_data("d", "train")
    assert info.value.digest == train
    # other data of the same snapshot is intact
    pd.testing.assert_frame_equal(opx.load_data("d", "test"), frame.iloc[:10])
    report = opx.verify()
    assert report["corrupt"] == [train]
    assert report["checked"] >= 3


def test_tampered_summary_is_refused(store: Path, frame: pd.DataFrame) -> None:
    snap = opx.snapshot("d", data={"train": frame})
    summary = snap.data["train"].summary_digest
    assert summary is not None
    _tamper(_blob(store, summary))
    with pytest.raises(CorruptBlobError):
        snap.reference_summary()


def test_verify_reports_missing_blobs_and_ignores_temporaries(
    store: Path, frame: pd.DataFrame
) -> None:
    snap = opx.snapshot("d", data={"train": frame})
    report = opx.verify()
    assert report["corrupt"] == [] and report["missing"] == []
    checked = report["checked"]
    (store / "blobs" / "tmp" / "leftover-from-a-crash").write_bytes(b"partial")
    digest = snap.data["train"].digest
    stray = _blob(store, digest).parent / ".tmp-0123"
    stray.write_bytes(b"partial")
    assert opx.verify() == {"checked": checked, "corrupt": [], "missing": []}
    _blob(store, digest).unlink()
    report = opx.verify()
    assert report["missing"] == [digest]
    assert report["checked"] == checked - 1
