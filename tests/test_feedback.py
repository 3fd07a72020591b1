"""Feedback ingestion, segment storage and opx.feedback() assembly (no HTTP)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import jupyter_opx as opx
from jupyter_opx.exceptions import NotFoundError, ValidationError
from jupyter_opx.monitoring import store
from jupyter_opx.monitoring.ingest import normalize, parse_body

#: these tests run on SQLite and on PostgreSQL (see conftest.py)
pytestmark = pytest.mark.backends("sqlite", "postgresql")

NOW = pd.Timestamp("2026-11-30T12:00:00Z")


@pytest.fixture
def ws(store):
    from jupyter_opx.demo import FEATURES, churn_customers, train_model

    train = churn_customers(1500, seed=3)
    model = train_model(train, max_iter=20)
    opx.snapshot("churn", model=model, data={"train": train[FEATURES]})
    return opx.current_workspace()


def test_normalize_types_and_defaults():
    frame = normalize(
        "predictions",
        ids=[1, 2, 3],
        score=[0.1, 0.5, 0.9],
        features=[{"tenure": 1}, {"tenure": 2}, {"tenure": 3}],
        now=NOW,
    )
    assert list(frame["id"]) == ["1", "2", "3"]
    assert (frame["ts"] == NOW).all()
    assert list(frame["f:tenure"]) == [1, 2, 3]
    assert frame["eid_hi"].dtype == np.uint64 and frame["eid_hi"].nunique() == 3


def test_timestamps_iso_epoch_missing_and_mixed():
    frame = normalize(
        "outcomes",
        ids=["a", "b", "c", "d"],
        value=[1, 0, True, 0.0],
        ts=["2026-11-30T06:00:00Z", 1764482400, None, "2026-11-30T07:00:00+01:00"],
        now=NOW,
    )
    assert list(frame["ts"]) == [
        pd.Timestamp("2026-11-30T06:00:00Z"),
        pd.Timestamp(1764482400, unit="s", tz="UTC"),
        NOW,
        pd.Timestamp("2026-11-30T06:00:00Z"),
    ]
    assert list(frame["value"]) == [1.0, 0.0, 1.0, 0.0]


@pytest.mark.parametrize(
    ("kwargs", "message", "rows"),
    [
        (dict(ids=["a", None, "", " \t"], score=[0.1, 0.2, 0.3, 0.4]), "non-empty id", [1, 2, 3]),
        (dict(ids=["a", "b"], score=[0.1, float("nan")]), "score must be a finite number", [1]),
        (dict(ids=["a", "b"], score=[0.1, "x"]), "score must be a finite number", [1]),
        (dict(ids=["a", "b"], score=[0.1, 0.2], ts=["2026-11-30", "yesterday"]), "ts must be", [1]),
        (dict(ids=[1.5, 2.5], score=[0.1, 0.2]), "strings or integers", [0, 1]),
    ],
)
def test_bad_rows_are_named(kwargs, message, rows):
    with pytest.raises(ValidationError, match=message) as info:
        normalize("predictions", now=NOW, **kwargs)
    assert info.value.fields["rows"] == rows
    assert "nothing of this batch was stored" in info.value.message


def test_parse_body_json_ndjson_csv_agree():
    records = [
        {"id": "c1", "score": 0.8, "features": {"tenure": 4}, "ts": "2026-11-30T06:00:00Z"},
        {"id": "c2", "score": 0.1, "features": {"tenure": 9}, "ts": "2026-11-30T06:00:00Z"},
    ]
    as_json = parse_body("predictions", json.dumps(records).encode(), "application/json")
    ndjson = "\n".join(json.dumps(r) for r in records).encode()
    as_nd = parse_body("predictions", ndjson, "application/x-ndjson")
    csv = (
        b"id,score,features.tenure,ts\n"
        b"c1,0.8,4,2026-11-30T06:00:00Z\n"
        b"c2,0.1,9,2026-11-30T06:00:00Z\n"
    )
    as_csv = parse_body("predictions", csv, "text/csv")
    for frame in (as_nd, as_csv):
        assert list(frame["id"]) == list(as_json["id"])
        assert list(frame["score"]) == list(as_json["score"])
        assert list(frame["f:tenure"].astype(int)) == [4, 9]
        assert list(frame["eid_hi"]) == list(as_json["eid_hi"])  # same events, same keys


_PLAIN_NDJSON = {
    "features, offsets, naive times, gaps in features": (
        "predictions",
        [
            {
                "id": "c1",
                "score": 0.8,
                "ts": "2026-11-30T06:00:00Z",
                "features": {"tenure": 4, "plan": "basic", "x": 1.5},
            },
            {
                "id": "c2",
                "score": 0.1,
                "ts": "2026-11-30T07:00:00+01:00",
                "features": {"tenure": None, "plan": None, "x": 2},
            },
            {
                "id": "c3",
                "score": 1,
                "ts": "2026-11-30 08:00:00",
                "features": {"tenure": 3, "plan": "pro", "x": None, "flag": True},
            },
        ],
    ),
    "integer ids, event ids, no times": (
        "predictions",
        [{"id": 17, "score": 0.5, "event_id": "e1"}, {"id": 18, "score": 0.25, "event_id": "e2"}],
    ),
    "labels, epoch seconds": (
        "predictions",
        [{"id": "a", "label": 1, "ts": 1796018400}, {"id": "b", "label": 0, "ts": 1796018400.5}],
    ),
    "score and label, fractions of a second": (
        "predictions",
        [
            {"id": "a", "score": 0.3, "label": 1, "ts": "2026-11-30T06:00:00.250Z"},
            {"id": "b", "score": 0.2, "label": 0, "ts": "2026-11-30T06:00:01.5+02:00"},
        ],
    ),
    "text beyond ASCII (UTF-8)": (
        "predictions",
        [
            {"id": "café-1", "score": 0.3, "features": {"plan": "größer"}},
            {"id": "東京-2", "score": 0.2, "features": {"plan": "basic"}},
        ],
    ),
    "features on some rows only": (
        "predictions",
        [{"id": "a", "score": 0.3}, {"id": "b", "score": 0.2, "features": {"k": 1}}],
    ),
    "treatments": (
        "treatments",
        [
            {"id": "a", "arm": "email", "event_id": "t1", "ts": "2026-11-29T00:00:00Z"},
            {"id": "b", "arm": "control", "event_id": "t2"},
        ],
    ),
    "outcomes": (
        "outcomes",
        [{"id": "a", "value": 1, "ts": "2026-12-05T00:00:00Z"}, {"id": "b", "value": 0.5}],
    ),
}


def _values(series):
    return series.astype(object).where(series.notna(), None).tolist()


@pytest.mark.backends("sqlite")
@pytest.mark.parametrize("case", list(_PLAIN_NDJSON))
def test_ndjson_arrow_path_stores_what_the_general_path_stores(ws, case):
    """A plain NDJSON batch skips pandas (parse_events returns the Arrow table the
    store writes); its columns, keys and stored segment are those of the same
    events sent as a JSON array, which the general (pandas) path takes."""
    import pyarrow as pa

    from jupyter_opx.monitoring.ingest import parse_events

    kind, records = _PLAIN_NDJSON[case]
    ndjson = "\n".join(json.dumps(r, ensure_ascii=False) for r in records).encode()
    events = parse_events(kind, ndjson, "application/x-ndjson", NOW)
    assert isinstance(events, pa.Table)
    general = parse_events(kind, json.dumps(records).encode(), "application/json", NOW)
    assert isinstance(general, pd.DataFrame)
    fast = parse_body(kind, ndjson, "application/x-ndjson", NOW)
    assert list(fast.columns) == list(general.columns)
    for col in general.columns:
        assert _values(fast[col]) == _values(general[col]), col
    assert fast["id"].dtype == general["id"].dtype
    # what the store writes and reads back is the same, types included
    written = [store._read_segment(ws, store._write_segment(ws, e)[0]) for e in (events, general)]
    pd.testing.assert_frame_equal(written[0], written[1])


@pytest.mark.backends("sqlite")
def test_ndjson_batches_the_arrow_path_does_not_take(ws):
    from jupyter_opx.monitoring.ingest import parse_events

    def parsed(kind, *records):
        body = "\n".join(json.dumps(r) for r in records).encode()
        return parse_events(kind, body, "application/x-ndjson", NOW)

    # a missing event id, a gap in the scores, a boolean score: the general path
    # decides (and stores the same as for a JSON array)
    frame = parsed(
        "treatments", {"id": "a", "arm": "email", "event_id": "x"}, {"id": "b", "arm": "control"}
    )
    assert isinstance(frame, pd.DataFrame) and list(frame["arm"]) == ["email", "control"]
    assert isinstance(
        parsed("outcomes", {"id": "a", "value": True}, {"id": "b", "value": False}), pd.DataFrame
    )
    with pytest.raises(ValidationError, match="score must be a finite number") as info:
        parsed("predictions", {"id": "a", "score": 0.5}, {"id": "b", "score": None})
    assert info.value.fields["rows"] == [1]
    with pytest.raises(ValidationError, match="non-empty id") as info:
        parsed(
            "predictions",
            {"id": "a", "score": 0.5},
            {"id": " ", "score": 0.1},
            {"id": "", "score": 0.2},
        )
    assert info.value.fields["rows"] == [1, 2]
    with pytest.raises(ValidationError, match="arm must be a non-empty string") as info:
        parsed("treatments", {"id": "a", "arm": "email"}, {"id": "b", "arm": "  "})
    assert info.value.fields["rows"] == [1]
    with pytest.raises(ValidationError, match="must be UTF-8"):
        parse_events("outcomes", b'{"id": "a\xff", "value": 1}\n', "application/x-ndjson", NOW)
    with pytest.raises(ValidationError, match="ts must be ISO 8601") as info:
        parsed(
            "outcomes",
            {"id": "a", "value": 1, "ts": "2026-11-30T06:00:00.5Z"},
            {"id": "b", "value": 1, "ts": "soon"},
        )
    assert info.value.fields["rows"] == [1]


def test_parse_body_errors():
    with pytest.raises(ValidationError, match="not JSON"):
        parse_body("outcomes", b"[{", "application/json")
    with pytest.raises(ValidationError, match="line 2 is not JSON"):
        parse_body("outcomes", b'{"id": "a", "value": 1}\n{oops', "application/x-ndjson")
    with pytest.raises(ValidationError, match="unknown field"):
        parse_body("outcomes", b'[{"id": "a", "value": 1, "colour": 2}]', "application/json")
    with pytest.raises(ValidationError, match="Content-Type"):
        parse_body("outcomes", b"<xml/>", "application/xml")
    with pytest.raises(ValidationError, match="unknown event kind"):
        parse_body("clicks", b"[]", "application/json")


def test_log_store_read_idempotent_and_attributed(ws):
    opx.promote("churn/1", "production")
    ids = [f"c{i}" for i in range(50)]
    first = opx.log_predictions("churn@production", ids, np.linspace(0, 1, 50), ts=NOW)
    assert (first.model, first.version, first.rows) == ("churn", 1, 50)
    opx.log_predictions("churn@production", ids, np.linspace(0, 1, 50), ts=NOW)  # re-sent
    frame = store.read(ws, "churn", "predictions")
    assert len(frame) == 50
    assert (frame["model_version"] == 1).all()
    # given event ids make re-sending idempotent even when the content differs
    opx.log_outcomes("churn", ["c1", "c2"], [1, 0], ts=NOW, event_ids=["e1", "e2"])
    opx.log_outcomes("churn", ["c1", "c2"], [1, 1], ts=NOW, event_ids=["e1", "e2"])
    outs = store.read(ws, "churn", "outcomes")
    assert list(outs["value"]) == [1.0, 0.0]  # the first delivery wins
    assert len(store.segments(ws, "churn", "outcomes")) == 2


def test_unknown_model_and_rejected_batch_store_nothing(ws):
    with pytest.raises(NotFoundError, match="no snapshot named 'nope'"):
        opx.log_outcomes("nope", ["a"], [1])
    seq = ws.change_seq()
    with pytest.raises(ValidationError):
        opx.log_predictions("churn", ["a", "b"], [0.5, float("inf")])
    assert store.segments(ws, "churn", "predictions") == []
    assert ws.change_seq() == seq


def test_read_cache_adds_only_new_segments_and_compaction_keeps_events(ws, monkeypatch):
    for day in range(3):
        opx.log_outcomes("churn", [f"c{day}"], [1], ts=NOW + pd.Timedelta(days=day))
    assert len(store.read(ws, "churn", "outcomes")) == 3
    reads = []
    original = store._read_segment
    monkeypatch.setattr(store, "_read_segment", lambda w, d: reads.append(d) or original(w, d))
    opx.log_outcomes("churn", ["c9"], [0], ts=NOW)
    assert len(store.read(ws, "churn", "outcomes")) == 4
    assert len(reads) == 1  # only the new segment was read
    opx.log_outcomes("churn", ["c9"], [0], ts=NOW)  # a duplicate
    assert store.compact(ws, "churn", "outcomes", min_segments=2) == 5
    assert len(store.segments(ws, "churn", "outcomes")) == 1
    assert sorted(store.read(ws, "churn", "outcomes")["id"]) == ["c0", "c1", "c2", "c9"]
    assert opx.verify()["corrupt"] == []


def test_feedback_tables_on_a_small_campaign(ws):
    from jupyter_opx.demo import FEATURES, churn_customers

    model = opx.load_model("churn")
    rng = np.random.default_rng(5)
    for i, day in enumerate(pd.date_range("2026-11-01", periods=4, freq="D", tz="UTC")):
        cust = churn_customers(400, seed=50 + i, price_change=0.3 if i >= 2 else 0.0)
        scores = model.predict_proba(cust[FEATURES])[:, 1]
        opx.log_predictions("churn", cust.customer_id, scores, features=cust[FEATURES], ts=day)
        arm = np.where(rng.random(len(cust)) < 0.5, "email", "control")
        opx.log_treatments("churn", cust.customer_id, arm, ts=day + pd.Timedelta(hours=1))
        opx.log_outcomes("churn", cust.customer_id, cust.churned, ts=day + pd.Timedelta(days=2))
    fb = opx.feedback("churn", window="1d")
    assert list(fb.volume["predictions"])[:4] == [400, 400, 400, 400]
    assert set(fb.performance["arm"]) == {"all", "control"}
    first = fb.performance[(fb.performance["arm"] == "all")].iloc[0]
    assert first["n_labelled"] == 400 and 0.5 < first["auc"] < 1.0
    drifted = fb.drift[fb.drift["drifted"].astype(bool)]
    assert "monthly_charges" in set(drifted["feature"])
    assert not fb.drift[(fb.drift["window"] == fb.drift["window"].iloc[0])]["drifted"].any()
    assert set(fb.uplift_total["arm"]) == {"control", "email"}
    k = fb.kpis()
    assert k["predictions"] == 1600 and "monthly_charges" in k["drifted_features"]
    assert "uplift" in k and len(k["uplift_ci"]) == 2
    text = str(fb)
    assert "1,600 predictions" in text and "drifted features" in text
    json.dumps(fb.to_dict())  # JSON-ready
