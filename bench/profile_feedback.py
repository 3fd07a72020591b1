"""Where the time of feedback ingestion and drift goes (for ``bench_feedback.py``).

    .venv/bin/python bench/profile_feedback.py                  # stage timings
    .venv/bin/python bench/profile_feedback.py --cprofile       # plus cProfile listings
    .venv/bin/python bench/profile_feedback.py --parts log      # log, ingest, drift

Stage timings call, one after the other, the pieces the measured operations
are made of (medians of ``--reps``), beside the end-to-end calls; it reads
jupyter_opx's internals but changes none of its files.

* ``log``: ``opx.log_predictions`` of ``--rows`` rows: ``ingest.normalize``
  (ids, timestamps, scores, features, event keys) and ``store.append``
  (``pa.Table.from_pandas``, parquet encoding, sha256, file write + fsync,
  catalog row), against the floor's own stages on the caller's columns.
* ``ingest``: one 10,000-event NDJSON batch as a server worker thread handles it
  (``handlers.ingest_body``: Arrow's JSON reader, features flattened,
  ``normalize``, ``log_events``), and the throughput of ``ingest_body`` alone,
  in-process, from one thread and from four (``opx serve``'s worker pool).
* ``drift``: ``drift_table`` per feature kind and ``performance_table``'s
  pieces (late-label join, windows, metrics) at ``--rows`` rows.
* ``live``: ``opx.feedback`` right after each new batch, as the latency
  benchmark's poller calls it: the incremental ``store.read`` of the new
  segment, then the metrics over every event.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import os
import pstats
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import feedbackdata as fd  # noqa: E402
from bench_feedback import ndjson_batches  # noqa: E402
from idle import wait_idle  # noqa: E402


def med(fn: Callable[[], Any], reps: int) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def show(title: str, stages: list[tuple[str, float]], unit: str = "s") -> None:
    print(f"\n{title}")
    width = max(len(name) for name, _ in stages)
    for name, value in stages:
        if value != value:  # NaN: a heading
            print(f"  {name}")
            continue
        text = f"{value:.4f}" if unit == "s" else f"{value:,.0f}"
        print(f"  {name.ljust(width)}  {text} {unit}")


def profile(fn: Callable[[], Any], top: int, title: str) -> None:
    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(top)
    print(f"\n--- cProfile: {title} ---")
    print(out.getvalue())


def new_store(base: Path, name: str, rows: int = 1000) -> Path:
    import jupyter_opx as opx

    folder = Path(tempfile.mkdtemp(dir=base))
    opx.snapshot(name, data={"train": fd.reference(rows)}, workspace=folder)
    return folder


def close(folder: Path) -> None:
    from jupyter_opx.workspace import get_workspace

    get_workspace(folder).close()
    shutil.rmtree(folder)


# -- log ------------------------------------------------------------------------------------
def part_log(base: Path, args: argparse.Namespace) -> None:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    import jupyter_opx as opx
    from jupyter_opx.monitoring import ingest, store

    n = args.rows
    cur = fd.current(n, args.seed)
    score, _ = fd.scores_outcomes(cur, args.seed)
    ev = fd.events(n, args.seed)
    ids = ev["ids"]
    ts = pd.DatetimeIndex(pd.to_datetime(ev["pred_ts"], utc=True))
    caller = pd.concat([pd.DataFrame({"id": ids, "ts": ts, "score": score}), cur], axis=1)
    now = pd.Timestamp.now(tz="UTC")
    reps = args.reps

    def dict_cols(table: Any) -> list[str]:
        return [
            f.name
            for f in table.schema
            if not (pa.types.is_floating(f.type) or pa.types.is_integer(f.type))
            and not pa.types.is_timestamp(f.type)
        ]

    def encode(frame: Any) -> Any:
        table = pa.Table.from_pandas(frame, preserve_index=False)
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="lz4", use_dictionary=dict_cols(table) or False)
        return sink.getvalue()

    def write_sync(buf: Any) -> None:
        path = base / "seg.bin"
        with open(path, "wb") as fh:
            fh.write(memoryview(buf))
            fh.flush()
            os.fsync(fh.fileno())
        path.unlink()

    frame = ingest.normalize("predictions", ids=ids, score=score, features=cur, ts=ts, now=now)
    frame = frame.assign(model_version=1)
    built = frame.drop(columns=["eid_hi", "eid_lo", "model_version"])
    opx_bytes, floor_bytes = encode(frame), encode(caller)
    caller_table = pa.Table.from_pandas(caller, preserve_index=False)
    opx_table = pa.Table.from_pandas(frame, preserve_index=False)
    from jupyter_opx.workspace import get_workspace

    seg_folder = new_store(base, "churn")
    seg_ws = get_workspace(seg_folder)

    stages = [
        (
            "normalize (all)",
            med(
                lambda: ingest.normalize(
                    "predictions", ids=ids, score=score, features=cur, ts=ts, now=now
                ),
                reps,
            ),
        ),
        ("  _ids (Arrow strings, blank check)", med(lambda: ingest._ids("predictions", ids), reps)),
        ("  _timestamps", med(lambda: ingest._timestamps("predictions", ts, n, now), reps)),
        ("  _numbers (score)", med(lambda: ingest._numbers("predictions", "score", score), reps)),
        (
            "  _features + concat",
            med(
                lambda: pd.concat(
                    [built[["id", "ts", "score"]], ingest._features("predictions", cur, n)], axis=1
                ),
                reps,
            ),
        ),
        (
            "  _event_keys (hash of the ids' Arrow buffers + mixing)",
            med(lambda: ingest._event_keys("predictions", built, None), reps),
        ),
        (
            "    of which _hash_strings(ids)",
            med(lambda: ingest._hash_strings(ids, "opx-event-id-k01"), reps),
        ),
        (
            "assign(model_version)",
            med(lambda: frame.drop(columns=["model_version"]).assign(model_version=1), reps),
        ),
        (
            "store._write_segment (all, durable)",
            med(lambda: store._write_segment(seg_ws, frame), reps),
        ),
        (
            "  pa.Table.from_pandas (opx frame)",
            med(lambda: pa.Table.from_pandas(frame, preserve_index=False), reps),
        ),
        (
            "  pq.write_table lz4 to memory (opx table)",
            med(
                lambda: pq.write_table(
                    opx_table,
                    pa.BufferOutputStream(),
                    compression="lz4",
                    use_dictionary=dict_cols(opx_table),
                ),
                reps,
            ),
        ),
        (
            "  sha256 of the segment",
            med(lambda: hashlib.sha256(memoryview(opx_bytes)).hexdigest(), reps),
        ),
        ("  write file + fsync", med(lambda: write_sync(opx_bytes), reps)),
        (
            "floor: pa.Table.from_pandas (caller's columns)",
            med(lambda: pa.Table.from_pandas(caller, preserve_index=False), reps),
        ),
        (
            "floor: pq.write_table lz4 to memory",
            med(
                lambda: pq.write_table(
                    caller_table,
                    pa.BufferOutputStream(),
                    compression="lz4",
                    use_dictionary=dict_cols(caller_table),
                ),
                reps,
            ),
        ),
        ("floor: write file + fsync", med(lambda: write_sync(floor_bytes), reps)),
    ]
    close(seg_folder)

    def end_to_end() -> None:
        folder = new_store(base, "churn")
        t0 = time.perf_counter()
        opx.log_predictions("churn", ids, score, features=cur, ts=ts, workspace=folder)
        times.append(time.perf_counter() - t0)
        close(folder)

    times: list[float] = []
    for _ in range(reps):
        end_to_end()
    stages.insert(0, ("opx.log_predictions end to end (new store)", statistics.median(times)))
    show(f"opx.log_predictions, {n:,} rows × 20 features (medians of {reps})", stages)
    print(
        f"  segment {opx_bytes.size / 1e6:.1f} MB ({opx_table.num_columns} columns: "
        f"+ eid_hi, eid_lo, model_version; id {opx_table.schema.field('id').type}) "
        f"vs floor {floor_bytes.size / 1e6:.1f} MB ({caller_table.num_columns} columns)"
    )
    for extra in ("eid_hi", "eid_lo", "model_version"):
        one = pa.table({extra: opx_table.column(extra)})
        # a new sink each time: a closed BufferOutputStream cannot be written again
        secs = med(
            lambda one=one: pq.write_table(one, pa.BufferOutputStream(), compression="lz4"), reps
        )
        print(f"  column {extra}: encoded alone in {secs:.4f} s")
    if args.cprofile:
        folder = new_store(base, "churn")
        profile(
            lambda: opx.log_predictions("churn", ids, score, features=cur, ts=ts, workspace=folder),
            args.top,
            f"opx.log_predictions of {n:,} rows",
        )
        close(folder)


# -- ingest ---------------------------------------------------------------------------------
def part_ingest(base: Path, args: argparse.Namespace) -> None:
    import pyarrow as pa
    import pyarrow.json as pj

    from jupyter_opx.monitoring import ingest
    from jupyter_opx.monitoring.log import log_events

    try:
        from jupyter_opx.server.feedback import ingest_body
    except ImportError:  # before the server's routes were split into modules
        from jupyter_opx.server.handlers import ingest_body  # type: ignore[attr-defined,no-redef]
    from jupyter_opx.workspace import get_workspace

    bodies = ndjson_batches(40, 10_000, args.seed)
    body = bodies[0]
    folder = new_store(base, "churn")
    ws = get_workspace(folder)
    ctype = "application/x-ndjson"
    reps = max(args.reps, 5)

    def read() -> Any:
        return pj.read_json(io.BytesIO(body), read_options=pj.ReadOptions(use_threads=False))

    table = read()
    feats = table.column("features")

    def flatten() -> Any:
        flat = pa.Table.from_arrays(
            feats.combine_chunks().flatten(), names=[f.name for f in feats.type]
        )
        return flat.to_pandas()

    parsed = ingest.parse_body("predictions", body, ctype)
    stages = [
        (
            "ingest_body (parse + validate + store)",
            med(lambda: ingest_body(ws, "churn", "predictions", body, ctype, "", 64 << 20), reps),
        ),
        ("  parse_body (all)", med(lambda: ingest.parse_body("predictions", body, ctype), reps)),
        (
            "    body.decode('utf-8') (text kept for the slow path)",
            med(lambda: body.decode("utf-8"), reps),
        ),
        ("    pyarrow.json.read_json (one thread)", med(read, reps)),
        ("    pyarrow.json.read_json (threads)", med(lambda: pj.read_json(io.BytesIO(body)), reps)),
        ("    features flatten + to_pandas", med(flatten, reps)),
        (
            "    other columns to_pandas",
            med(lambda: [table.column(c).to_pandas() for c in ("id", "score", "ts")], reps),
        ),
        (
            "  log_events (get_snapshot + store.append)",
            med(lambda: log_events(ws, "churn", "predictions", parsed), reps),
        ),
    ]
    show("one NDJSON batch of 10,000 events, in-process (medians)", stages)

    def throughput(threads: int, batches: list[bytes]) -> float:
        chunks = [batches[i::threads] for i in range(threads)]

        def work(chunk: list[bytes]) -> None:
            for b in chunk:
                ingest_body(ws, "churn", "predictions", b, ctype, "", 64 << 20)

        pool = [threading.Thread(target=work, args=(c,)) for c in chunks]
        t0 = time.perf_counter()
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        return len(batches) * 10_000 / (time.perf_counter() - t0)

    rates = [
        (
            "ingest_body, 1 thread, 20 batches",
            statistics.median(throughput(1, bodies[:20]) for _ in range(3)),
        ),
        (
            "ingest_body, 4 threads, 40 batches",
            statistics.median(throughput(4, bodies) for _ in range(3)),
        ),
    ]
    show("in-process throughput, no HTTP (events/s, median of 3)", rates, unit="events/s")
    # CPU time is what bounds concurrent clients on a small machine, and it is far
    # less disturbed by other processes than wall time
    c0 = time.process_time()
    for b in bodies[:20]:
        ingest_body(ws, "churn", "predictions", b, ctype, "", 64 << 20)
    cpu = (time.process_time() - c0) / 20
    show("CPU time of this process per batch (all threads)", [("ingest_body, 1 thread", cpu)])
    if args.cprofile:
        profile(
            lambda: [
                ingest_body(ws, "churn", "predictions", b, ctype, "", 64 << 20) for b in bodies[:20]
            ],
            args.top,
            "ingest_body × 20 batches of 10,000 events, one thread",
        )
    close(folder)


# -- drift ----------------------------------------------------------------------------------
def part_drift(base: Path, args: argparse.Namespace) -> None:
    import pandas as pd

    import jupyter_opx as opx
    from jupyter_opx.monitoring import store
    from jupyter_opx.monitoring.drift_table import drift_table
    from jupyter_opx.monitoring.joins import attach_arms, join_outcomes
    from jupyter_opx.monitoring.performance import classification_by_group, performance_table
    from jupyter_opx.monitoring.windows import window_codes
    from jupyter_opx.snapshots.catalog import get_snapshot, reference_summary
    from jupyter_opx.workspace import get_workspace

    n = args.rows
    ref, cur = fd.reference(n, args.seed), fd.current(n, args.seed)
    score, outcome = fd.scores_outcomes(cur, args.seed)
    ev = fd.events(n, args.seed)
    folder = Path(tempfile.mkdtemp(dir=base))
    opx.snapshot("churn", data={"train": ref}, workspace=folder)
    opx.log_predictions(
        "churn",
        ev["ids"],
        score,
        features=cur,
        ts=pd.to_datetime(ev["pred_ts"], utc=True),
        workspace=folder,
    )
    opx.log_outcomes(
        "churn", ev["ids"], outcome, ts=pd.to_datetime(ev["out_ts"], utc=True), workspace=folder
    )
    ws = get_workspace(folder)
    preds = store.read(ws, "churn", "predictions")
    outs = store.read(ws, "churn", "outcomes")
    summary = reference_summary(ws, get_snapshot(ws, "churn"))
    assert summary is not None
    feats = preds[[c for c in preds.columns if c.startswith("f:")]].rename(columns=lambda c: c[2:])
    reps = args.reps
    kinds: dict[str, list[str]] = {}
    for name, ref_summary in summary["features"].items():
        kind = ref_summary.get("kind")
        if kind == "numeric" and ref_summary.get("categories"):
            kind = "discrete"
        kinds.setdefault(str(kind), []).append(name)
    stages = [
        (
            "get_snapshot + reference_summary",
            med(lambda: reference_summary(ws, get_snapshot(ws, "churn")), reps),
        ),
        (
            "feature columns + rename",
            med(
                lambda: preds[[c for c in preds.columns if c.startswith("f:")]].rename(
                    columns=lambda c: c[2:]
                ),
                reps,
            ),
        ),
        (
            "drift_table, 20 features, window 1d",
            med(lambda: drift_table(feats, summary, ts=preds["ts"], window="1d"), reps),
        ),
        ("drift_table, 20 features, no window", med(lambda: drift_table(feats, summary), reps)),
    ]
    for kind, names in kinds.items():
        stages.append(
            (
                f"  {len(names)} {kind} features, no window",
                med(lambda names=names: drift_table(feats, summary, features=names), reps),
            )
        )
    joined = join_outcomes(preds[["id", "ts", "score"]], outs, "30D")
    codes, labels = window_codes(joined["ts"], "1d")
    pick = ~joined["outcome"].isna().to_numpy()
    stages += [
        (
            "performance_table, window 1d",
            med(lambda: performance_table(preds, outs, None, window="1d"), reps),
        ),
        (
            "  join_outcomes (merge_asof by id)",
            med(lambda: join_outcomes(preds[["id", "ts", "score"]], outs, "30D"), reps),
        ),
        ("  window_codes", med(lambda: window_codes(joined["ts"], "1d"), reps)),
        ("  attach_arms (no treatments)", med(lambda: attach_arms(joined, None), reps)),
        (
            "  classification_by_group (AUC rank, sums)",
            med(
                lambda: classification_by_group(
                    codes[pick],
                    joined["score"].to_numpy()[pick],
                    joined["outcome"].to_numpy()[pick],
                    len(labels),
                ),
                reps,
            ),
        ),
        (
            "opx.feedback end to end (events cached)",
            med(lambda: opx.feedback("churn", workspace=folder), reps),
        ),
    ]
    show(f"drift and performance, {n:,} current rows (medians of {reps})", stages)
    if args.cprofile:
        profile(
            lambda: (
                drift_table(feats, summary, ts=preds["ts"], window="1d"),
                performance_table(preds, outs, None, window="1d"),
            ),
            args.top,
            f"drift_table + performance_table, {n:,} rows",
        )
    ws.close()
    shutil.rmtree(folder)


# -- live: opx.feedback right after a new batch ----------------------------------------------
def part_live(base: Path, args: argparse.Namespace) -> None:
    """``opx.feedback`` as the latency benchmark's poller runs it: after each new batch."""
    import numpy as np
    import pandas as pd

    import jupyter_opx as opx
    from jupyter_opx.monitoring import store
    from jupyter_opx.monitoring.drift_table import drift_table, prediction_drift
    from jupyter_opx.monitoring.performance import performance_table
    from jupyter_opx.monitoring.windows import volume
    from jupyter_opx.snapshots.catalog import get_snapshot, reference_summary
    from jupyter_opx.workspace import get_workspace

    batch, history, posts = 10_000, args.live_history, args.live_posts
    n = history + posts * batch
    cur = fd.current(n, args.seed + 1000)
    score, outcome = fd.scores_outcomes(cur, args.seed)
    ev = fd.events(n, args.seed + 1000)
    pred_ts = pd.to_datetime(ev["pred_ts"], utc=True)
    folder = new_store(base, "live", 100_000)
    ws = get_workspace(folder)

    def log(lo: int, hi: int) -> None:
        opx.log_predictions(
            "live",
            ev["ids"][lo:hi],
            score[lo:hi],
            features=cur.iloc[lo:hi],
            ts=pred_ts[lo:hi],
            workspace=folder,
        )

    for lo in range(0, history, batch):  # one segment per batch, as over HTTP
        log(lo, lo + batch)
    opx.log_outcomes(
        "live",
        ev["ids"][:history],
        outcome[:history],
        ts=pd.to_datetime(ev["out_ts"][:history], utc=True),
        workspace=folder,
    )
    opx.feedback("live", workspace=folder)  # the poller's first state: everything cached
    samples: list[dict[str, float]] = []
    for k in range(posts):
        lo = history + k * batch
        log(lo, lo + batch)
        t0 = time.perf_counter()
        preds = store.read(ws, "live", "predictions")  # reads the new segment only
        t1 = time.perf_counter()
        fb = opx.feedback("live", workspace=folder)  # now with every read cached
        t2 = time.perf_counter()
        assert fb.kpis()["predictions"] == lo + batch
        samples.append({"rows": float(len(preds)), "read": t1 - t0, "compute": t2 - t1})
    summary = reference_summary(ws, get_snapshot(ws, "live"))
    assert summary is not None
    preds = store.read(ws, "live", "predictions")
    outs = store.read(ws, "live", "outcomes")
    feats = preds[[c for c in preds.columns if c.startswith("f:")]].rename(columns=lambda c: c[2:])
    vol = volume("1d", predictions=preds["ts"], outcomes=outs["ts"])
    labels = vol["window"]
    reps = args.reps
    first, last = samples[0], samples[-1]
    stages = [
        (f"store.read after one new segment, first ({first['rows']:,.0f} rows)", first["read"]),
        (f"store.read after one new segment, last ({last['rows']:,.0f} rows)", last["read"]),
        ("opx.feedback with every read cached, first", first["compute"]),
        ("opx.feedback with every read cached, last", last["compute"]),
        (f"pieces at {len(preds):,} predictions (medians of {reps}):", float("nan")),
        (
            "  store.read × 3, cached (catalog queries)",
            med(
                lambda: [
                    store.read(ws, "live", k) for k in ("predictions", "treatments", "outcomes")
                ],
                reps,
            ),
        ),
        ("  volume", med(lambda: volume("1d", predictions=preds["ts"], outcomes=outs["ts"]), reps)),
        (
            "  performance_table",
            med(lambda: performance_table(preds, outs, None, window="1d", windows=labels), reps),
        ),
        (
            "  drift_table (20 features)",
            med(
                lambda: drift_table(feats, summary, ts=preds["ts"], window="1d", windows=labels),
                reps,
            ),
        ),
        (
            "  prediction_drift",
            med(
                lambda: prediction_drift(
                    preds["score"], summary, ts=preds["ts"], window="1d", windows=labels
                ),
                reps,
            ),
        ),
        (
            "  feature columns + rename",
            med(
                lambda: preds[[c for c in preds.columns if c.startswith("f:")]].rename(
                    columns=lambda c: c[2:]
                ),
                reps,
            ),
        ),
    ]
    show(
        f"opx.feedback after each new batch of {batch:,} ({history:,} history, {posts} batches)",
        stages,
    )
    reads = np.array([x["read"] for x in samples])
    computes = np.array([x["compute"] for x in samples])
    print(
        f"  over the {posts} batches: store.read of the new segment median "
        f"{np.median(reads):.3f} s, "
        f"opx.feedback (cached) median {np.median(computes):.3f} s, "
        f"sum median {np.median(reads + computes):.3f} s, max {np.max(reads + computes):.3f} s"
    )
    if args.cprofile:
        log(0, batch)  # a re-sent batch: a new segment all the same
        profile(
            lambda: opx.feedback("live", workspace=folder),
            args.top,
            f"opx.feedback after one new segment ({len(preds):,} predictions)",
        )
    ws.close()
    shutil.rmtree(folder)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", default="log,ingest,drift,live")
    parser.add_argument("--rows", type=int, default=fd.ROWS)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--seed", type=int, default=fd.SEED)
    parser.add_argument("--live-history", type=int, default=100_000)
    parser.add_argument("--live-posts", type=int, default=25)
    parser.add_argument("--cprofile", action="store_true")
    parser.add_argument("--top", type=int, default=30, help="cProfile lines shown")
    parser.add_argument("--idle-timeout", type=float, default=300.0)
    args = parser.parse_args(argv)
    parts = {"log": part_log, "ingest": part_ingest, "drift": part_drift, "live": part_live}
    base = Path(tempfile.mkdtemp(prefix="opx-profile-feedback-"))
    try:
        for name in args.parts.split(","):
            wait_idle(0.15, timeout=args.idle_timeout, label="profile")
            parts[name](base, args)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
