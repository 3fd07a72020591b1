"""Where the time of ``opx.snapshot`` and ``opx.load_model``/``load_data`` goes.

    .venv/bin/python bench/profile_snapshot.py              # stage timings, 1M rows
    .venv/bin/python bench/profile_snapshot.py --cprofile   # plus cProfile listings

Stage timings call, one after the other, the pieces ``create_snapshot`` and
``catalog.load_*`` are made of (medians of ``--reps``), beside the end-to-end
calls. ``create_snapshot`` runs the encoding stages in a thread pool, so they
overlap there: the stage sum is the work, the end-to-end time its critical path.

``--cprofile`` profiles one snapshot with the thread pool replaced by an
inline executor (cProfile sees only the thread it runs in; this reads
jupyter_opx's modules but changes none of their files), then one load.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import json
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any
from unittest import mock

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import churnlike  # noqa: E402
from idle import wait_idle  # noqa: E402


class InlineExecutor:
    """A stand-in for ThreadPoolExecutor that runs each task at submit time."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __enter__(self) -> InlineExecutor:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future[Any]:
        fut: Future[Any] = Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            fut.set_exception(exc)
        return fut


def med(fn: Callable[[], Any], reps: int) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def snapshot_stages(frame: Any, model: Any, base: Path, reps: int) -> list[tuple[str, float]]:
    import pyarrow as pa
    import pyarrow.parquet as pq
    import skops.io as sio

    import jupyter_opx as opx
    from jupyter_opx.snapshots import capture, codecs, provenance, summaries
    from jupyter_opx.workspace import Workspace

    ws = Workspace(base / "stages")
    opx.snapshot("warmup", data={"x": frame.iloc[:3]}, workspace=ws)
    meta = {"kind": "dataframe"}
    table = pa.Table.from_pandas(frame, preserve_index=None)
    buf = io.BytesIO()
    pq.write_table(table, buf)
    encoded = buf.getvalue()
    quick = codecs.quick_key(frame, meta)

    def fresh() -> Workspace:
        shutil.rmtree(base / "stages" / "blobs", ignore_errors=True)
        return ws

    stages: list[tuple[str, Callable[[], Any]]] = [
        ("fingerprint (sha256 of the frame's memory)", lambda: codecs.fingerprint(frame, meta)),
        ("quick key (names, dtypes, shape, 512 rows)", lambda: codecs.quick_key(frame, meta)),
        ("data_cache lookup by quick key", lambda: capture._candidates(ws, quick)),
        ("parquet: pa.Table.from_pandas", lambda: pa.Table.from_pandas(frame)),
        ("parquet: pq.write_table to memory", lambda: pq.write_table(table, io.BytesIO())),
        ("sha256 of the parquet bytes", lambda: hashlib.sha256(encoded).hexdigest()),
        ("_store_frame (encode + hash + write blob)", lambda: capture._store_frame(fresh(), frame)),
        ("summaries.summarize (20 columns)", lambda: summaries.summarize(frame)),
        ("summaries.score_summary (10k rows)", lambda: summaries.score_summary(model, frame)),
        ("_store_model (skops dumps + blob)", lambda: capture._store_model(ws, model, False)),
        ("skops.io.dumps alone", lambda: sio.dumps(model)),
        ("provenance.environment (cached dist map)", provenance.environment),
        ("provenance.git_info (git subprocesses)", provenance.git_info),
        ("codecs.frame_schema", lambda: codecs.frame_schema(frame)),
    ]
    rows = [(name, med(fn, reps)) for name, fn in stages]
    snap_root = base / "e2e"

    def end_to_end() -> None:
        shutil.rmtree(snap_root, ignore_errors=True)
        opx.snapshot("warmup", data={"x": frame.iloc[:3]}, workspace=snap_root)
        t0 = time.perf_counter()
        opx.snapshot("churn", model=model, data={"train": frame}, workspace=snap_root)
        e2e.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        opx.snapshot("churn", model=model, data={"train": frame}, workspace=snap_root)
        again.append(time.perf_counter() - t0)
        from jupyter_opx.workspace import get_workspace

        get_workspace(snap_root).close()

    e2e: list[float] = []
    again: list[float] = []
    for _ in range(reps):
        end_to_end()
    rows.append(("END TO END: opx.snapshot, first", statistics.median(e2e)))
    rows.append(("END TO END: opx.snapshot, unchanged again", statistics.median(again)))
    return rows


def timeline(frame: Any, model: Any, base: Path, reps: int) -> list[tuple[str, float]]:
    """Start and end of each stage inside real (threaded) snapshots; the median run."""
    import threading

    import jupyter_opx as opx
    from jupyter_opx.snapshots import capture, codecs, provenance, summaries
    from jupyter_opx.workspace import get_workspace

    spans: list[tuple[str, str, float, float]] = []

    def wrap(owner: Any, attr: str, label: str) -> Any:
        orig = getattr(owner, attr)

        def inner(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return orig(*args, **kwargs)
            finally:
                spans.append((label, threading.current_thread().name, t0, time.perf_counter()))

        return mock.patch.object(owner, attr, inner)

    patches = [
        wrap(codecs, "fingerprint", "fingerprint"),
        wrap(codecs, "quick_key", "quick key"),
        wrap(codecs, "as_frame", "as_frame"),
        wrap(provenance, "module_distributions", "module_distributions"),
        wrap(capture, "_candidates", "data_cache lookup"),
        wrap(capture, "_store_frame", "parquet blob (_store_frame)"),
        wrap(codecs, "write_parquet", "  write_parquet"),
        wrap(capture, "_store_summary", "summaries (_store_summary)"),
        wrap(summaries, "summarize", "  summarize"),
        wrap(summaries, "score_summary", "  score_summary"),
        wrap(capture, "_store_model", "model blob (_store_model)"),
        wrap(provenance, "environment", "environment"),
        wrap(provenance, "git_info", "git_info"),
        wrap(capture.Database, "run_write", "publish (db write)"),
        wrap(capture.Database, "__init__", "open database"),
    ]
    Run = tuple[float, list[tuple[str, str, float, float]]]
    runs: dict[str, list[Run]] = {"first": [], "unchanged again": []}

    def traced(kind: str, root: Path) -> None:
        spans.clear()
        for p in patches:
            p.start()
        try:
            t0 = time.perf_counter()
            opx.snapshot("churn", model=model, data={"train": frame}, workspace=root)
            total = time.perf_counter() - t0
        finally:
            for p in patches:
                p.stop()
        runs[kind].append((total, [(n, th, a - t0, b - t0) for n, th, a, b in spans]))

    for rep in range(reps):
        root = base / f"timeline{rep}"
        opx.snapshot("warmup", data={"x": frame.iloc[:3]}, workspace=root)
        traced("first", root)
        traced("unchanged again", root)
        get_workspace(root).close()
    out: list[tuple[str, float]] = []
    for kind, kind_runs in runs.items():
        kind_runs.sort(key=lambda r: r[0])
        total, chosen = kind_runs[len(kind_runs) // 2]
        print(f"\n== opx.snapshot timeline, {kind} (median of {reps} runs: {total:.3f} s) ==")
        print("  stage                          thread               start     end   secs")
        for name, thread, a, b in sorted(chosen, key=lambda s: s[2]):
            print(f"  {name:<30} {thread[:18]:<18} {a:7.3f} {b:7.3f} {b - a:6.3f}")
        out += [(f"{kind}: {n} [{th}]", b - a) for n, th, a, b in chosen]
        out.append((f"{kind}: total", total))
    return out


def load_stages(frame: Any, model: Any, base: Path, reps: int) -> list[tuple[str, float]]:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq
    import skops.io as sio

    import jupyter_opx as opx
    from jupyter_opx.snapshots import catalog, codecs
    from jupyter_opx.workspace import get_workspace

    root = base / "load"
    snap = opx.snapshot("churn", model=model, data={"train": frame}, workspace=root)
    ws = get_workspace(root)
    ref = snap.ref
    model_digest = snap.model["digest"]
    data_digest = snap.data["train"].digest
    blob = model_bytes = ws.blobs.get(model_digest)
    buffer = ws.blobs.get_buffer(data_digest)
    path = ws.blobs.path(data_digest)
    trusted = sio.get_untrusted_types(data=model_bytes)
    pybuf = pa.py_buffer(buffer)
    table = pq.read_table(pa.BufferReader(pybuf))
    stages: list[tuple[str, Callable[[], Any]]] = [
        ("get_snapshot (metadata queries)", lambda: catalog.get_snapshot(ws, ref)),
        ("blobs.get(model) (read + sha256)", lambda: ws.blobs.get(model_digest)),
        ("skops get_untrusted_types (2 in load_model)", lambda: sio.get_untrusted_types(data=blob)),
        ("skops.io.loads", lambda: sio.loads(model_bytes, trusted=trusted)),
        ("blobs.get_buffer(parquet) (mmap + sha256)", lambda: ws.blobs.get_buffer(data_digest)),
        ("pq.read_table from the mmap buffer", lambda: pq.read_table(pa.BufferReader(pybuf))),
        ("pq.read_table(path) (what pd.read_parquet uses)", lambda: pq.read_table(path)),
        ("Table.to_pandas", table.to_pandas),
        ("codecs.read_parquet (read_table + to_pandas)", lambda: codecs.read_parquet(buffer, {})),
        ("END TO END: opx.load_model", lambda: opx.load_model(ref, workspace=root)),
        ("END TO END: opx.load_data", lambda: opx.load_data(ref, "train", workspace=root)),
        ("raw: pd.read_parquet(path)", lambda: pd.read_parquet(path)),
    ]
    rows = [(name, med(fn, reps)) for name, fn in stages]
    ws.close()
    return rows


def cprofile(frame: Any, model: Any, base: Path, top: int) -> None:
    import jupyter_opx as opx
    from jupyter_opx.snapshots import capture

    root = base / "cprofile"
    opx.snapshot("warmup", data={"x": frame.iloc[:3]}, workspace=root)
    prof = cProfile.Profile()
    with mock.patch.object(capture, "ThreadPoolExecutor", InlineExecutor):
        prof.enable()
        snap = opx.snapshot("churn", model=model, data={"train": frame}, workspace=root)
        prof.disable()
    print("\n== cProfile: opx.snapshot (first; thread pool run inline) ==")
    pstats.Stats(prof).sort_stats("cumulative").print_stats(top)
    prof = cProfile.Profile()
    prof.enable()
    opx.load_model(snap.ref, workspace=root)
    opx.load_data(snap.ref, "train", workspace=root)
    prof.disable()
    print("\n== cProfile: opx.load_model + opx.load_data ==")
    pstats.Stats(prof).sort_stats("cumulative").print_stats(top)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=churnlike.ROWS)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--cprofile", action="store_true")
    parser.add_argument(
        "--timeline-only", action="store_true", help="only the threaded snapshot timeline"
    )
    parser.add_argument("--top", type=int, default=35, help="lines of each cProfile listing")
    parser.add_argument("--json", default=None, help="also write the stage timings here")
    args = parser.parse_args(argv)

    frame = churnlike.make_frame(args.rows)
    model = churnlike.train_model(frame)
    base = Path(tempfile.mkdtemp(prefix="opx-profile-"))
    wait_idle(label="profile")
    try:
        if args.timeline_only:
            timeline(frame, model, base, args.reps)
            return 0
        snap = snapshot_stages(frame, model, base, args.reps)
        load = load_stages(frame, model, base, args.reps)
        for title, rows in (("opx.snapshot", snap), ("opx.load_model + load_data", load)):
            print(f"\n== {title}: stage timings, {args.rows:,} rows (median s) ==")
            width = max(len(name) for name, _ in rows)
            for name, secs in rows:
                print(f"  {name.ljust(width)}  {secs:8.3f}")
        spans = timeline(frame, model, base, args.reps)
        if args.json:
            result = {"snapshot": snap, "load": load, "timeline": spans}
            Path(args.json).write_text(json.dumps(result, indent=2))
        if args.cprofile:
            cprofile(frame, model, base, args.top)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
