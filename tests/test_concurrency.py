"""Several writers at once, and writers killed half-way: the store stays consistent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import text

import jupyter_opx as opx

#: every writer race runs on SQLite and on PostgreSQL (see conftest.py)
pytestmark = pytest.mark.backends("sqlite", "postgresql")

WORKERS = 8

RACER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import numpy as np, pandas as pd
    import jupyter_opx as opx

    i, sync = int(sys.argv[1]), Path(sys.argv[2])
    own = pd.DataFrame({"worker": np.full(500, i), "x": np.random.default_rng(i).normal(size=500)})
    shared = pd.DataFrame({"y": np.arange(3000.0)})
    (sync / f"ready-{i}").touch()
    deadline = time.monotonic() + 60
    while not (sync / "go").exists():
        if time.monotonic() > deadline:
            sys.exit("no start signal")
        time.sleep(0.002)
    snap = opx.snapshot("race", data={"train": own, "shared": shared}, tags={"worker": i})
    print(snap.version, flush=True)
    """
)


def _env(store: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["OPX_HOME"] = str(store)
    env["OPX_USER"] = "worker"
    env.pop("OPX_RUN_ID", None)
    return env


def _wait_for(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.002)


def _own_frame(i: int) -> pd.DataFrame:
    rng = np.random.default_rng(i)
    return pd.DataFrame({"worker": np.full(500, i), "x": rng.normal(size=500)})


def test_eight_processes_snapshot_the_same_name(store: Path, tmp_path: Path) -> None:
    sync = tmp_path / "sync"
    sync.mkdir()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, str(i), str(sync)],
            env=_env(store),
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(WORKERS)
    ]
    try:
        _wait_for(
            lambda: (
                len(list(sync.glob("ready-*"))) == WORKERS
                or any(p.poll() is not None for p in procs)
            ),
            timeout=90,
            what="the workers to start",
        )
        (sync / "go").touch()  # all of them snapshot into the fresh store at once
        outputs = [p.communicate(timeout=90) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (_out, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err
        assert "Traceback" not in err, err
    versions = sorted(int(out.strip()) for out, _ in outputs)
    assert versions == list(range(1, WORKERS + 1))

    snaps = opx.list_snapshots("race")
    assert sorted(s.version for s in snaps) == list(range(1, WORKERS + 1))
    shared_digests = {s.data["shared"].digest for s in snaps}
    assert len(shared_digests) == 1  # identical data written concurrently, stored once
    for snap in snaps:
        worker = snap.tags["worker"]
        pd.testing.assert_frame_equal(opx.load_data(snap.ref, "train"), _own_frame(worker))
        pd.testing.assert_frame_equal(
            opx.load_data(snap.ref, "shared"), pd.DataFrame({"y": np.arange(3000.0)})
        )
        # lineage is consistent: each version's parent is the one before
        assert snap.parent == (None if snap.version == 1 else f"race/{snap.version - 1}")
    assert sorted(s.tags["worker"] for s in snaps) == list(range(WORKERS))
    report = opx.verify()
    assert report["corrupt"] == [] and report["missing"] == []
    assert opx.current_workspace().change_seq() == WORKERS
    assert list((store / "blobs" / "tmp").iterdir()) == []


def test_threads_snapshot_the_same_name(store: Path) -> None:
    frames = [pd.DataFrame({"v": np.arange(100) * i}) for i in range(4)]
    with ThreadPoolExecutor(4) as pool:
        snaps = list(pool.map(lambda f: opx.snapshot("t", data=f), frames))
    assert sorted(s.version for s in snaps) == [1, 2, 3, 4]
    for snap, f in zip(snaps, frames, strict=True):
        pd.testing.assert_frame_equal(opx.load_data(snap.ref), f)


# -- killed mid-snapshot --------------------------------------------------------------------------
STALLER = textwrap.dedent(
    """
    import sys, time
    import numpy as np, pandas as pd
    import jupyter_opx as opx
    from jupyter_opx.snapshots import codecs
    from jupyter_opx.store.db import Database

    stage = sys.argv[1]
    if stage == "blob":
        original = codecs.write_parquet
        def stalled(frame, sink):
            original(frame, sink)        # the temporary file is written ...
            print("stalled", flush=True)
            time.sleep(120)              # ... and never committed: killed here
        codecs.write_parquet = stalled
    else:
        def stalled_change(conn, kind, subject):
            print("stalled", flush=True)  # inside the write transaction, rows inserted
            time.sleep(120)
        Database.record_change = staticmethod(stalled_change)
    df = pd.DataFrame({"a": np.arange(50_000.0), "b": np.arange(50_000) % 7})
    opx.snapshot("m", data={"train": df}, message="killed")
    print("finished", flush=True)
    """
)

BIG_WRITER = textwrap.dedent(
    """
    import numpy as np, pandas as pd
    import jupyter_opx as opx

    n = 2_000_000
    rng = np.random.default_rng(0)
    df = pd.DataFrame({
        "a": rng.normal(size=n),
        "b": rng.integers(0, 1000, n),
        "c": rng.normal(size=n),
        "d": rng.normal(size=n),
    })
    opx.snapshot("m", data={"train": df}, message="killed")
    print("finished", flush=True)
    """
)


def _first_snapshot() -> pd.DataFrame:
    df = pd.DataFrame({"a": [1.0, 2.0], "b": [3, 4]})
    assert opx.snapshot("m", data={"train": df}).version == 1
    return df


def _assert_store_recovered(store: Path, first: pd.DataFrame) -> None:
    """Nothing of the killed snapshot is visible and the store works on."""
    ws = opx.current_workspace()
    assert [s.ref for s in opx.list_snapshots()] == ["m/1"]
    assert ws.change_seq() == 1
    with ws.db.engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            assert conn.execute(text("PRAGMA integrity_check")).scalar() == "ok"
        assert conn.execute(text("SELECT count(*) FROM snapshot_data")).scalar() == 1
    report = opx.verify()
    assert report["corrupt"] == [] and report["missing"] == []

    df = pd.DataFrame({"a": [5.0, 6.0, 7.0], "b": [1, 2, 3]})
    snap = opx.snapshot("m", data={"train": df})
    assert snap.version == 2
    assert snap.parent == "m/1"
    assert ws.change_seq() == 2
    pd.testing.assert_frame_equal(opx.load_data("m/2", "train"), df)
    pd.testing.assert_frame_equal(opx.load_data("m/1", "train"), first)
    report = opx.verify()
    assert report["corrupt"] == [] and report["missing"] == []

    # a fresh process sees the same
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import jupyter_opx as o; print([s.ref for s in o.list_snapshots()])",
        ],
        env=_env(store),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.strip() == "['m/2', 'm/1']"


def _kill(proc: subprocess.Popen[str]) -> None:
    assert proc.poll() is None, "the writer finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.parametrize("stage", ["blob", "publish"])
def test_kill_at_a_given_stage_leaves_no_half_snapshot(
    store: Path, tmp_path: Path, stage: str
) -> None:
    first = _first_snapshot()
    proc = subprocess.Popen(
        [sys.executable, "-c", STALLER, stage],
        env=_env(store),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until the writer stalls (or dies)
        assert line.strip() == "stalled", proc.stderr.read() if proc.stderr else ""
        if stage == "blob":
            assert list((store / "blobs" / "tmp").iterdir()), "no temporary file mid-write"
        _kill(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    _assert_store_recovered(store, first)


@pytest.mark.backends("sqlite")  # the kill lands in blob encoding, before any SQL
def test_kill_while_encoding_a_large_frame(store: Path, tmp_path: Path) -> None:
    first = _first_snapshot()
    tmp_dir = store / "blobs" / "tmp"
    proc = subprocess.Popen(
        [sys.executable, "-c", BIG_WRITER],
        env=_env(store),
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for(
            lambda: any(tmp_dir.iterdir()) or proc.poll() is not None,
            timeout=60,
            what="the writer to start writing",
        )
        _kill(proc)  # type: ignore[arg-type]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # killed mid-write: the temporary file stays behind, and is not a blob
    assert list(tmp_dir.iterdir())
    _assert_store_recovered(store, first)
