"""MLflow's equivalent of one ``opx.snapshot(model + DataFrame)``, timed.

Runs in its own virtual environment (``bench/.venv-mlflow``, made by
``bench/setup_anchors.sh``) so that MLflow never enters the project's venv;
``bench_snapshot.py`` starts it as a subprocess and reads the JSON it prints on
its last line of stdout.

It rebuilds the same DataFrame and model from the same seed (``churnlike.py``;
not timed), then, per repetition and in a fresh local tracking store (SQLite
in a temporary folder, created and migrated before the clock starts), times::

    with mlflow.start_run():
        df.to_parquet(path)                          # the file log_artifact needs
        signature = infer_signature(sample, proba)   # categories cast to str first
        info = mlflow.sklearn.log_model(model, name="model", signature=signature,
                                        serialization_format="skops",
                                        skops_trusted_types=[...])
        mlflow.log_artifact(path, "data")
        mlflow.log_input(mlflow.data.from_pandas(df, source=path, targets=...), "training")
    mlflow.register_model(info.model_uri, "churn")

Why the workarounds: MLflow's signature inference fails on pandas ``category``
columns, and its skops loader needs the tree types listed as trusted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import churnlike
from idle import OtherLoad, wait_idle

BUSY_LIMIT = 0.15  # cores used by other processes that make a repetition suspect
STEPS = (
    "start_run",
    "to_parquet",
    "infer_signature",
    "log_model",
    "log_artifact",
    "from_pandas",
    "log_input",
    "end_run",
    "register_model",
)


def signature_frame(frame):
    """The features with category columns as str: MLflow cannot infer a schema on them."""
    X = churnlike.features(frame)
    cats = [c for c, t in X.dtypes.items() if str(t) == "category"]
    return X.astype({c: str for c in cats})


def one_run(mlflow, frame, model, trusted, root: Path) -> dict[str, float]:
    """Log model + data + input + registration once; return the seconds of each step."""
    from mlflow.models import infer_signature

    times: dict[str, float] = {}
    parquet = root / "train.parquet"

    def step(name, fn):
        t0 = time.perf_counter()
        out = fn()
        times[name] = time.perf_counter() - t0
        return out

    step("start_run", lambda: mlflow.start_run(run_name="churn"))
    step("to_parquet", lambda: frame.to_parquet(parquet))

    def signature():
        sample = frame.iloc[:1000]
        return infer_signature(signature_frame(sample), model.predict_proba(sample.iloc[:, :-1]))

    sig = step("infer_signature", signature)
    info = step(
        "log_model",
        lambda: mlflow.sklearn.log_model(
            model,
            name="model",
            signature=sig,
            serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_SKOPS,
            skops_trusted_types=trusted,
        ),
    )
    step("log_artifact", lambda: mlflow.log_artifact(str(parquet), artifact_path="data"))
    dataset = step(
        "from_pandas",
        lambda: mlflow.data.from_pandas(
            frame, source=str(parquet), targets=churnlike.LABEL, name="train"
        ),
    )
    step("log_input", lambda: mlflow.log_input(dataset, context="training"))
    step("end_run", mlflow.end_run)
    step("register_model", lambda: mlflow.register_model(info.model_uri, "churn"))
    times["total"] = sum(times[s] for s in STEPS)
    return times


def fresh_store(mlflow, root: Path) -> None:
    """Point MLflow at a new SQLite store under ``root``; create and migrate it (untimed)."""
    root.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    mlflow.set_registry_uri(f"sqlite:///{root / 'mlflow.db'}")
    exp = mlflow.create_experiment("bench", artifact_location=(root / "artifacts").as_uri())
    mlflow.set_experiment(experiment_id=exp)
    with mlflow.start_run(run_name="warm"):
        mlflow.log_param("warm", 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=churnlike.ROWS)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--seed", type=int, default=churnlike.SEED)
    parser.add_argument("--tmp", default=None, help="parent of the temporary folders")
    parser.add_argument("--idle-timeout", type=float, default=120.0)
    parser.add_argument("--retries", type=int, default=3, help="re-runs of a disturbed rep")
    args = parser.parse_args(argv)

    warnings.filterwarnings("ignore")
    import logging

    logging.getLogger("mlflow").setLevel(logging.ERROR)
    logging.getLogger("alembic").setLevel(logging.ERROR)
    import mlflow
    import mlflow.data
    import mlflow.sklearn
    import skops.io as sio

    frame = churnlike.make_frame(args.rows, args.seed)
    model = churnlike.train_model(frame, seed=args.seed)
    trusted = sorted(sio.get_untrusted_types(data=sio.dumps(model)))

    runs: list[dict[str, float]] = []
    base = Path(tempfile.mkdtemp(prefix="opx-bench-mlflow-", dir=args.tmp))
    try:
        for rep in range(args.reps + 1):  # rep 0 warms imports and caches; not reported
            for attempt in range(1 + (args.retries if rep > 0 else 0)):
                root = base / f"rep{rep}-{attempt}"
                fresh_store(mlflow, root)
                if rep > 0:
                    wait_idle(BUSY_LIMIT, timeout=args.idle_timeout, label="mlflow")
                load = OtherLoad()
                times = one_run(mlflow, frame, model, trusted, root)
                other = times["other_load"] = load.cores()
                shutil.rmtree(root, ignore_errors=True)
                note = f"; other processes {other:.2f} cores" if other is not None else ""
                line = f"mlflow rep {rep}: {times['total']:.2f} s{note}"
                print(line, file=sys.stderr, flush=True)
                if other is None or other <= BUSY_LIMIT:
                    break
            if rep > 0:
                times["attempt"] = attempt + 1
                runs.append(times)
    finally:
        shutil.rmtree(base, ignore_errors=True)

    result = {
        "mlflow_version": mlflow.__version__,
        "python": sys.version.split()[0],
        "packages": {m: sys.modules[m].__version__ for m in ("pandas", "sklearn", "pyarrow")},
        "frame_digest": churnlike.frame_digest(frame),
        "model_digest": churnlike.model_digest(model, frame),
        "reps": args.reps,
        "runs": runs,
        "median": {k: statistics.median(r[k] for r in runs) for k in (*STEPS, "total")},
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
