"""opx.feedback kept up to date batch by batch equals opx.feedback computed from scratch.

Each step stores a batch and computes the model's feedback twice: with the
state the previous calls left (:mod:`jupyter_opx.monitoring.incremental` and
the store's read cache), and cold, with both forgotten. Every table must be
equal, whatever the batch: predictions in the current window, in a new
window, late (earlier than what is held), re-sent, for entities that already
have outcomes; new outcomes and treatments; a new snapshot version.
"""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest

import jupyter_opx as opx
from jupyter_opx.monitoring import incremental, store
from jupyter_opx.monitoring.compute import compute

DAY0 = pd.Timestamp("2026-11-02T00:00:00Z")
TABLES = ("volume", "performance", "drift", "prediction_drift", "uplift", "uplift_total")


@pytest.fixture
def ws(tmp_path, monkeypatch):
    from jupyter_opx.demo import FEATURES, churn_customers, train_model

    monkeypatch.setenv("OPX_HOME", str(tmp_path / ".opx"))
    incremental.clear()
    train = churn_customers(1500, seed=3)
    model = train_model(train, max_iter=20)
    opx.snapshot("churn", model=model, data={"train": train[FEATURES]})
    w = opx.current_workspace()
    yield w
    incremental.clear()
    store._cache.clear()


def _batch(n: int, seed: int, start: int, day: float, hours: float = 20.0):
    from jupyter_opx.demo import FEATURES, churn_customers

    rng = np.random.default_rng(seed)
    feats = churn_customers(n, seed=seed)[FEATURES].reset_index(drop=True)
    # a few missing values, and a category the reference never saw
    feats["monthly_charges"] = feats["monthly_charges"].mask(rng.random(n) < 0.05)
    feats["contract"] = feats["contract"].astype(object)
    feats.loc[rng.random(n) < 0.02, "contract"] = "never-seen"
    ids = np.array([f"c{i}" for i in range(start, start + n)], dtype=object)
    ts = DAY0 + pd.to_timedelta(day * 24 + rng.uniform(0, hours, n), unit="h")
    scores = rng.uniform(0, 1, n)
    return ids, scores, feats, ts


def _cold(ws, window):
    """Feedback from scratch, leaving the live state as it was."""
    states, cache = dict(incremental._states), dict(store._cache)
    incremental.clear()
    store._cache.clear()
    try:
        return compute(ws, "churn", window)
    finally:
        incremental.clear()
        incremental._states.update(states)
        store._cache.clear()
        store._cache.update(cache)


def _same(live, cold, step):
    for name in TABLES:
        a, b = getattr(live, name), getattr(cold, name)
        try:
            pd.testing.assert_frame_equal(
                a.reset_index(drop=True), b.reset_index(drop=True), check_exact=False, rtol=1e-12
            )
        except AssertionError as exc:
            raise AssertionError(f"step {step!r}: table {name} differs: {exc}") from None
    assert live.last_prediction == cold.last_prediction
    assert live.kpis() == {**cold.kpis(), "freshness_seconds": live.kpis()["freshness_seconds"]}


@pytest.mark.parametrize("window", ["1d", "1w"])
def test_live_updates_equal_cold_computation(ws, window):
    steps = []

    def predictions(n, seed, start, day, hours=20.0):
        ids, scores, feats, ts = _batch(n, seed, start, day, hours)
        return lambda: opx.log_predictions("churn", ids, scores, features=feats, ts=ts)

    def outcomes(lo, hi, seed, day):
        rng = np.random.default_rng(seed)
        ids = np.array([f"c{i}" for i in range(lo, hi)], dtype=object)
        ts = DAY0 + pd.to_timedelta(day * 24 + rng.uniform(0, 4, len(ids)), unit="h")
        values = (rng.random(len(ids)) < 0.3).astype(int)
        return lambda: opx.log_outcomes("churn", ids, values, ts=ts)

    def treatments(lo, hi, day):
        ids = np.array([f"c{i}" for i in range(lo, hi)], dtype=object)
        arm = np.where(np.arange(len(ids)) % 2 == 0, "email", "control")
        ts = DAY0 + pd.to_timedelta(day * 24 + 21, unit="h")
        return lambda: opx.log_treatments("churn", ids, arm, ts=[ts] * len(ids))

    resend = predictions(300, 2, 1000, 0)
    steps += [
        ("history", predictions(2000, 1, 0, 0)),
        ("outcomes", outcomes(0, 1500, 11, 3)),
        ("same window", resend),
        ("next batch, same window", predictions(300, 3, 1300, 0.5, 6)),
        ("re-sent batch", resend),
        ("new window", predictions(400, 4, 2000, 1)),
        ("late predictions", predictions(200, 5, 2400, 0, 2)),
        ("treatments", treatments(0, 800, 1)),
        ("predictions after treatments", predictions(300, 6, 2600, 1, 10)),
        ("entities that have outcomes", predictions(100, 7, 0, 2)),
        ("more outcomes", outcomes(2000, 2300, 12, 4)),
        ("predictions only again", predictions(250, 8, 3000, 1, 12)),
    ]
    for step, log in steps:
        log()
        live = compute(ws, "churn", window)
        _same(live, _cold(ws, window), step)
        # and an unchanged store gives the same tables again, without recomputing
        again = compute(ws, "churn", window)
        _same(again, live, f"{step} (unchanged)")
    assert incremental._states, "the live path kept no state"


def test_a_new_snapshot_version_is_measured_against_its_own_reference(ws):
    from jupyter_opx.demo import FEATURES, churn_customers, train_model

    ids, scores, feats, ts = _batch(500, 1, 0, 0)
    opx.log_predictions("churn", ids, scores, features=feats, ts=ts)
    first = compute(ws, "churn", "1d")
    shifted = churn_customers(1500, seed=9, price_change=0.4)
    opx.snapshot(
        "churn", model=train_model(shifted, max_iter=20), data={"train": shifted[FEATURES]}
    )
    # later the same day, from the new version (the bare name logs as the latest)
    ids, scores, feats, ts = _batch(100, 2, 500, 0.9, hours=2.0)
    opx.log_predictions("churn", ids, scores, features=feats, ts=ts)
    live = compute(ws, "churn", "1d")
    assert live.reference != first.reference
    _same(live, _cold(ws, "1d"), "new version")


def test_drift_of_a_bare_name_is_measured_against_the_serving_version(ws):
    """A challenger snapshotted since the predictions were made (churn/2, trained on
    shifted data, not serving) is not the reference of ``opx.feedback("churn")``:
    the version that made the newest predictions is; a ref with a version still
    chooses its own."""
    from jupyter_opx.demo import FEATURES, churn_customers, train_model

    ids, scores, feats, ts = _batch(500, 1, 0, 0)
    opx.log_predictions("churn", ids, scores, features=feats, ts=ts)
    shifted = churn_customers(1500, seed=9, price_change=0.4)
    opx.snapshot(
        "churn", model=train_model(shifted, max_iter=20), data={"train": shifted[FEATURES]}
    )
    assert compute(ws, "churn", "1d").reference == "churn/1"
    assert compute(ws, "churn/2", "1d").reference == "churn/2"
    opx.promote("churn/2", "production")
    ids, scores, feats, ts = _batch(100, 2, 500, 0.9, hours=2.0)  # newer than the first
    opx.log_predictions("churn@production", ids, scores, features=feats, ts=ts)
    assert compute(ws, "churn", "1d").reference == "churn/2"


def test_read_delta_reports_only_new_rows(ws):
    ids, scores, feats, ts = _batch(200, 1, 0, 0)
    opx.log_predictions("churn", ids, scores, features=feats, ts=ts)
    frame, since, delta = store.read_delta(ws, "churn", "predictions")
    assert delta is None and len(frame) == 200
    # a re-sent batch adds a segment but no rows
    opx.log_predictions("churn", ids, scores, features=feats, ts=ts)
    frame, since2, delta = store.read_delta(ws, "churn", "predictions", since)
    assert len(frame) == 200 and delta is not None and len(delta) == 0 and since2 != since
    # half old, half new events, some of them earlier than everything held
    ids2, scores2, feats2, ts2 = _batch(100, 2, 150, 0)
    ts2 = ts2 - pd.Timedelta(hours=2)
    opx.log_predictions("churn", ids2, scores2, features=feats2, ts=ts2)
    frame, since3, delta = store.read_delta(ws, "churn", "predictions", since2)
    assert delta is not None and len(delta) == 100 and len(frame) == 300
    assert frame["ts"].is_monotonic_increasing
    # the same as a cold read, row for row
    store._cache.clear()
    cold = store.read(ws, "churn", "predictions")
    pd.testing.assert_frame_equal(frame, cold)
    # unknown or stale `since`: None, start again
    assert store.read_delta(ws, "churn", "predictions", (999,))[2] is None
    assert len(store.read_delta(ws, "churn", "predictions", since3)[2]) == 0


@pytest.mark.parametrize("kind", ["continuous", "discrete"])
def test_counts_by_search_and_by_bincount_agree(monkeypatch, kind):
    """Few windows count by binary search in sorted values, many by one bincount."""
    from jupyter_opx.monitoring import drift
    from jupyter_opx.snapshots.summaries import summarize

    rng = np.random.default_rng(0)
    ref = pd.DataFrame({"x": rng.normal(size=5000), "d": rng.integers(0, 5, 5000).astype(float)})
    summary = summarize(ref)["features"]
    n = 20_000
    if kind == "continuous":
        values, ref_of = np.r_[rng.normal(0.3, size=n), [np.nan] * 10, [9.0] * 5], summary["x"]
    else:  # unseen values 5, 6; ties everywhere
        values, ref_of = rng.integers(0, 7, n + 15).astype(float), summary["d"]
    groups = rng.integers(0, 50, len(values))
    results = []
    for limit in (1000, 0):
        monkeypatch.setattr(drift, "_SEARCH_WINDOWS", limit)
        results.append(drift.numeric_drift(values, ref_of, groups=groups, n_groups=50))
    assert set(results[0]) == set(results[1])
    for key in results[0]:
        np.testing.assert_allclose(results[0][key], results[1][key], rtol=1e-12, equal_nan=True)


def test_large_segments_hash_and_write_on_a_thread(ws, monkeypatch):
    """The offloaded writer stores the same bytes under the same digest as the direct one."""
    from jupyter_opx.monitoring.ingest import normalize

    ids, scores, feats, ts = _batch(3000, 1, 0, 0)

    import os

    from jupyter_opx.store import blobs

    synced = []
    real_sync = os.fdatasync

    def fdatasync(fd):
        synced.append(threading.current_thread().name)
        real_sync(fd)

    monkeypatch.setattr(blobs.os, "fdatasync", fdatasync)
    batch = normalize("predictions", ids=ids, score=scores, features=feats, ts=ts)
    direct = store._write_segment(ws, batch)
    assert synced == []  # a small segment is synced once, when complete (os.fsync)
    monkeypatch.setattr(store, "_OFFLOAD_ROWS", 1)
    monkeypatch.setattr(store, "_spare_core", lambda: True)
    used = []

    class Counted(store._Offload):
        def finish(self):
            used.append(self.size)
            super().finish()

    monkeypatch.setattr(store, "_Offload", Counted)
    offloaded = store._write_segment(ws, batch)
    assert offloaded == direct and used == [direct[1]]
    assert ws.blobs.get(direct[0])  # hash-verified on read
    # the writer thread sends what it wrote to the disk while pyarrow encodes on
    assert synced and set(synced) == {"opx-blob-writer"}


@pytest.mark.parametrize(
    ("readings", "spare"), [([2, 1, 2], True), ([2, 2, 2], False), ([1, 1, 1], True)]
)
def test_a_core_is_spare_unless_every_reading_finds_it_taken(monkeypatch, readings, spare):
    """A task runnable for a moment (one reading of /proc/loadavg in three) does not
    send a large batch down the serial path; one that stays runnable does."""
    import io
    import os

    left = list(readings)

    def fake_open(path, *args, **kwargs):
        assert path == "/proc/loadavg"
        return io.StringIO(f"0.50 0.40 0.30 {left.pop(0)}/80 1234\n")

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(store, "open", fake_open, raising=False)
    assert store._spare_core(pause=0) is spare
    assert left == []


def test_an_offloaded_write_error_reaches_the_caller(ws, monkeypatch):
    class Broken:
        def write(self, data):
            raise OSError("disk full")

    sink = store._Offload(Broken())
    sink.write(b"x" * 10)  # accepted: the thread meets the error
    with pytest.raises(OSError, match="disk full"):
        sink.finish()


def test_event_keys_are_pinned():
    """The keys of known events are fixed numbers, whatever path computes them (one
    thread or two halves, in one piece or by chunks), so events stored earlier still
    deduplicate against re-sent ones. They changed once, before the first release,
    when string hashing moved from pandas' siphash on Python objects to Arrow's
    buffers (5x faster on a million ids)."""
    from jupyter_opx.monitoring.ingest import normalize

    ts = pd.Timestamp("2026-11-30T06:00:00Z")
    frame = normalize(
        "predictions", ids=["cust-17", "cust-18"], score=[0.83, 0.5], ts=ts, event_ids=[None, "e-1"]
    )
    assert [int(x) for x in frame["eid_hi"]] == [10238145726836924076, 10456287332928117292]
    assert [int(x) for x in frame["eid_lo"]] == [11518972839275996296, 14277255456499570051]
    many = normalize(
        "outcomes", ids=np.array(["cust-17"] * 300_000, dtype=object), value=[1] * 300_000, ts=ts
    )  # large: the two halves on two threads
    assert (many["eid_hi"] == 7306065314636815175).all()
    assert (many["eid_lo"] == 5551465669792049277).all()


def test_string_hash_reads_every_byte_once_and_only_its_own():
    """Strings of every length around the 8-byte words hash alike wherever they stand
    in a batch (alone, among longer or empty ones, from Python, pandas or Arrow), and
    differ from each other, including strings that differ only by a trailing NUL."""
    import pyarrow as pa

    from jupyter_opx.monitoring.ingest import _hash_strings

    texts = ["", "a", "ab", "ab\x00", "abcdefg", "abcdefgh", "abcdefghi", "é" * 9, "x" * 100]
    together = _hash_strings(texts, "opx-event-id-k01")
    assert len(set(together.tolist())) == len(texts)
    for i, text in enumerate(texts):
        assert _hash_strings([text], "opx-event-id-k01")[0] == together[i]
        assert _hash_strings(["", text, "y" * 33], "opx-event-id-k01")[1] == together[i]
    sliced = pa.array(["zz", *texts]).slice(1)  # an Arrow array with an offset
    assert (_hash_strings(sliced, "opx-event-id-k01") == together).all()
    assert (_hash_strings(pd.Series(texts, dtype="str"), "opx-event-id-k01") == together).all()
    other = _hash_strings(texts, "opx-event-id-k02")
    assert not (other == together).any()


def test_callers_cannot_change_the_kept_tables(ws):
    ids, scores, feats, ts = _batch(300, 1, 0, 0)
    opx.log_predictions("churn", ids, scores, features=feats, ts=ts)
    first = compute(ws, "churn", "1d")
    first.drift["psi"] = -1.0
    first.volume.drop(first.volume.index, inplace=True)
    again = compute(ws, "churn", "1d")
    assert (again.drift["psi"] != -1.0).all() and len(again.volume)


def test_models_too_large_for_a_drift_state_are_computed_from_scratch(ws, monkeypatch):
    monkeypatch.setattr(incremental, "MAX_BYTES", 0)
    for k in range(3):
        ids, scores, feats, ts = _batch(200, k, 200 * k, 0)
        opx.log_predictions("churn", ids, scores, features=feats, ts=ts)
        live = compute(ws, "churn", "1d")
        _same(live, _cold(ws, "1d"), f"batch {k}")
    assert all(st.drift is None for st in incremental._states.values())


@pytest.mark.parametrize("pipelined", [False, True])
def test_keys_computed_while_writing_equal_keys_computed_first(ws, monkeypatch, pipelined):
    """opx.log_* leave the event keys to the store, which fills them chunk by chunk
    while row groups encode on another thread: the stored events are the same."""
    from jupyter_opx.monitoring.ingest import normalize

    if pipelined:
        monkeypatch.setattr(store, "_OFFLOAD_ROWS", 1)
        monkeypatch.setattr(store, "_CHUNK_ROWS", 700)
        monkeypatch.setattr(store, "_spare_core", lambda: True)
    calls = []
    chunks = store._write_chunks
    monkeypatch.setattr(store, "_write_chunks", lambda *a: calls.append(1) or chunks(*a))
    ids, scores, feats, ts = _batch(3000, 1, 0, 0)
    events = [f"e{i}" if i % 3 else None for i in range(3000)]
    opx.log_predictions("churn", ids, scores, features=feats, ts=ts, event_ids=events)
    opx.log_outcomes("churn", ids[:1000], (scores[:1000] > 0.5).astype(int), ts=ts[:1000])
    expected = normalize(
        "predictions", ids=ids, score=scores, features=feats, ts=ts, event_ids=events
    )
    got = store.read(ws, "churn", "predictions")
    want = expected.assign(model_version=got["model_version"].iloc[0])
    want = want.sort_values("ts", kind="stable").reset_index(drop=True)
    pd.testing.assert_frame_equal(got[want.columns], want, check_dtype=False)
    assert got["eid_hi"].nunique() == 3000
    outs = store.read(ws, "churn", "outcomes")
    keys = normalize(
        "outcomes", ids=ids[:1000], value=(scores[:1000] > 0.5).astype(int), ts=ts[:1000]
    )
    assert set(outs["eid_hi"]) == set(keys["eid_hi"])
    assert len(calls) == (2 if pipelined else 0)
    # re-sending is still idempotent
    opx.log_predictions("churn", ids, scores, features=feats, ts=ts, event_ids=events)
    assert len(store.read(ws, "churn", "predictions")) == 3000
