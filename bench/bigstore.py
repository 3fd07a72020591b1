"""A store with many snapshots and runs, built in seconds (for the API and panel benchmarks).

A few records are made through the real code paths (``opx.snapshot`` with a
fitted scikit-learn model and a DataFrame, ``create_job`` from a notebook with
a typed parameters cell, ``promote``); the bulk is then cloned from them with
one multi-row ``INSERT`` per table, so every row has the shape the real code
writes (the same JSON columns, parents, reused data, digests of stored blobs):

- snapshots: ``names`` models of ``snapshots // names`` versions each, each
  version's parent the previous one, its data entry reusing version 1's
  (identical data is stored once); ``@production`` on a recent version of
  each model, ``@staging`` on the latest of some, with their alias history;
- jobs: ``jobs`` jobs (a third of them with a daily schedule, some with a
  second version) and ``runs`` runs spread over them and over the last 60
  days, newest ids newest: mostly succeeded (with their output notebook blob),
  some failed (with the error and its cell), timed out and cancelled, and the
  newest few queued or running.

``python bench/bigstore.py DIR`` builds one in ``DIR`` (its ``.opx`` folder).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

#: the parameters cell of the jobs' notebook (typed, as the job form reads it)
PARAMS = 'batch_date: str = "2026-11-30"  # the day to score\nthreshold: float = 0.5  # cut-off'


def _notebook(path: Path) -> Path:
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    nb = new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.cells = [
        new_code_cell("import time"),
        new_code_cell(PARAMS),
        new_code_cell("print(batch_date, threshold)"),
    ]
    nb.cells[1].metadata["tags"] = ["parameters"]
    nbformat.write(nb, str(path))
    return path


def _seed_snapshot(store: Path, name: str) -> None:
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    import jupyter_opx as opx

    rng = np.random.default_rng(len(name))
    frame = pd.DataFrame(
        {
            "tenure": rng.integers(1, 72, 400),
            "monthly": rng.normal(60, 20, 400).round(2),
            "calls": rng.poisson(1.5, 400),
        }
    )
    frame["churned"] = (rng.uniform(size=400) < 0.2).astype(int)
    model = LogisticRegression(max_iter=200).fit(
        frame[["tenure", "monthly", "calls"]], frame["churned"]
    )
    opx.snapshot(
        name,
        model=model,
        data={"train": frame},
        metrics={"auc": 0.71},
        params={"C": 1.0},
        tags={"team": "retention"},
        message="version 1",
        workspace=store,
    )


def build(
    store: Path,
    snapshots: int = 1000,
    runs: int = 10_000,
    names: int = 20,
    jobs: int = 10,
    seed: int = 0,
) -> dict[str, Any]:
    """Fill the store at ``store`` (an ``.opx`` folder); returns what it made and how fast.

    The store must be new (or hold no snapshots named ``model-NN`` nor jobs ``job-NN``).
    """
    from sqlalchemy import insert, select

    from jupyter_opx.jobs import definitions as D
    from jupyter_opx.store import schema
    from jupyter_opx.store.db import Database
    from jupyter_opx.workspace import Workspace

    t0 = time.perf_counter()
    rnd = random.Random(seed)
    store = Path(store)
    store.mkdir(parents=True, exist_ok=True)
    per_name = max(1, snapshots // names)
    model_names = [f"model-{i:02d}" for i in range(names)]
    _seed_snapshot(store, model_names[0])  # the first one through the real path
    ws = Workspace(store)
    S, A, H = schema.snapshots, schema.aliases, schema.alias_history
    now = datetime.now(timezone.utc)
    with ws.db.transaction(write=True) as conn:
        seed = conn.execute(select(S).where(S.c.name == model_names[0])).one()
        seed_data = conn.execute(
            select(schema.snapshot_data).where(schema.snapshot_data.c.snapshot_id == seed.id)
        ).one()
        next_id = int(conn.execute(select(S.c.id).order_by(S.c.id.desc()).limit(1)).scalar() or 0)
        snap_rows: list[dict[str, Any]] = []
        data_rows: list[dict[str, Any]] = []
        # version 1 of the other names: the same data and model under other names
        seed_row = {c.name: getattr(seed, c.name) for c in S.columns}
        firsts: dict[str, dict[str, Any]] = {model_names[0]: seed_row}
        for i, name in enumerate(model_names[1:], 1):
            next_id += 1
            row = {**seed_row, "id": next_id, "name": name}
            row["created_at"] = seed.created_at - timedelta(days=200 - i)
            snap_rows.append(row)
            firsts[name] = row
            drow = {c.name: getattr(seed_data, c.name) for c in schema.snapshot_data.columns}
            drow.update(snapshot_id=next_id, reused_from=seed.id)
            data_rows.append(drow)
        alias_rows: list[dict[str, Any]] = []
        history_rows: list[dict[str, Any]] = []
        made = len(model_names)
        # versions 2.. of every name, interleaved in time as teams retrain
        versions = [(v, name) for v in range(2, per_name + 1) for name in model_names]
        versions = versions[: max(0, snapshots - made)]
        span = timedelta(days=120)
        parents = {name: firsts[name]["id"] for name in model_names}
        for k, (version, name) in enumerate(versions):
            next_id += 1
            row = dict(firsts[name])
            row.update(
                id=next_id,
                version=version,
                parent_id=parents[name],
                created_at=now - span + span * (k + 1) / (len(versions) + 1),
                message=f"retrained on week {version}",
                metrics={"auc": round(0.65 + 0.1 * rnd.random(), 4)},
            )
            snap_rows.append(row)
            parents[name] = next_id
            drow = {c.name: getattr(seed_data, c.name) for c in schema.snapshot_data.columns}
            drow.update(snapshot_id=next_id, reused_from=seed.id)
            data_rows.append(drow)
        last_version = {name: 1 for name in model_names}
        for _, name in versions:
            last_version[name] += 1
        for i, name in enumerate(model_names):
            top = last_version[name]
            prod = max(1, top - 1)
            aliases = {"production": prod} | ({"staging": top} if i % 3 == 0 else {})
            for alias, version in aliases.items():
                at = now - timedelta(hours=i + 1)
                alias_rows.append(
                    dict(name=name, alias=alias, version=version, updated_at=at, updated_by="bench")
                )
                history_rows.append(
                    dict(
                        name=name,
                        alias=alias,
                        version=version,
                        previous_version=max(1, version - 1) if version > 1 else None,
                        at=at,
                        by="bench",
                    )
                )
        for table, rows in (
            (S, snap_rows),
            (schema.snapshot_data, data_rows),
            (A, alias_rows),
            (H, history_rows),
        ):
            for i in range(0, len(rows), 500):
                conn.execute(insert(table), rows[i : i + 500])
        Database.record_change(conn, "snapshot", f"bulk {len(snap_rows)}")
    t_snap = time.perf_counter() - t0

    # jobs through the real path, then their runs in bulk
    nb = _notebook(store.parent / "bench_job.ipynb")
    job_objs = []
    for j in range(jobs):
        settings: dict[str, Any] = {"schedule": "0 6 * * *"} if j % 3 == 0 else {}
        job = D.create_job(ws, f"job-{j:02d}", nb, params={"threshold": 0.4}, **settings)
        if j % 4 == 1:
            job = D.update_job(ws, job.name, nb, params={"threshold": 0.6})
        job_objs.append(job)
    output = nb.read_bytes()
    out_digest, out_size, _ = ws.blobs.put(output)
    ws.db.register_blobs({out_digest: out_size})
    run_rows: list[dict[str, Any]] = []
    span = timedelta(days=60)
    for k in range(runs):
        job = job_objs[rnd.randrange(len(job_objs))]
        created = now - span + span * (k + 1) / (runs + 1)
        newest = runs - k
        roll = rnd.random()
        status = (
            "queued"
            if newest <= 2
            else "running"
            if newest <= 4
            else "failed"
            if roll < 0.06
            else "timed_out"
            if roll < 0.07
            else "cancelled"
            if roll < 0.08
            else "succeeded"
        )
        started = created + timedelta(seconds=rnd.uniform(0.1, 2)) if status != "queued" else None
        final = status not in ("queued", "running")
        finished = started + timedelta(seconds=rnd.uniform(2, 30)) if final and started else None
        scheduled = bool(job.schedule) and rnd.random() < 0.7
        error = None
        if status == "failed":
            error = {
                "ename": "ValueError",
                "evalue": "no customers for this day",
                "cell_index": 2,
                "traceback": ["ValueError: no customers for this day"],
            }
        run_rows.append(
            dict(
                job_name=job.name,
                job_version=job.version,
                status=status,
                trigger="schedule" if scheduled else rnd.choice(["manual", "api"]),
                # unique per job: a scheduled fire time yields one run
                scheduled_for=created.replace(microsecond=0) + timedelta(microseconds=k)
                if scheduled
                else None,
                params={**job.defaults, "batch_date": f"{created:%Y-%m-%d}"},
                resolved={},
                created_at=created,
                created_by="bench",
                started_at=started,
                finished_at=finished,
                heartbeat_at=finished or started,
                attempt=1 if started else 0,
                cells_done=3 if status == "succeeded" else 2 if started else 0,
                cells_total=3 if started else 0,
                error=error,
                output_digest=out_digest if status in ("succeeded", "failed") else None,
                html_digest=None,
                executor="local",
                worker="bench-host:1234" if started else None,
                cancel_requested=1 if status == "cancelled" else 0,
            )
        )
    with ws.db.transaction(write=True) as conn:
        for i in range(0, len(run_rows), 1000):
            conn.execute(insert(schema.runs), run_rows[i : i + 1000])
        Database.record_change(conn, "run", f"bulk {len(run_rows)}")
    ws.close()
    return {
        "snapshots": len(snap_rows) + 1,
        "names": len(model_names),
        "jobs": len(job_objs),
        "runs": len(run_rows),
        "seconds_snapshots": round(t_snap, 2),
        "seconds": round(time.perf_counter() - t0, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", help="a new folder: the store goes to FOLDER/.opx")
    parser.add_argument("--snapshots", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=10_000)
    args = parser.parse_args(argv)
    print(build(Path(args.folder) / ".opx", args.snapshots, args.runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
