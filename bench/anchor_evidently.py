"""Evidently's drift (and classification) report on the benchmark data, timed.

Runs in its own virtual environment (``bench/.venv-evidently``, made by
``bash bench/setup_anchors.sh --evidently``): Evidently 0.7.23 does not import
with pandas 3. ``bench_feedback.py`` starts it as a subprocess and reads the
JSON it prints on its last line of stdout.

It builds the same data as the main script from the same seed
(``feedbackdata.py``; not timed): the reference and the current features,
``--rows`` rows each, with the model's score (``prediction``) and the outcome
(``target``) beside them (already joined: Evidently has no late-label join).
Then, per repetition, in alternating order, it times from the DataFrames to a
computed report::

    definition = DataDefinition(numerical_columns=[18], categorical_columns=[2],
                                classification=[BinaryClassification(target, prediction_probas)])
    ref, cur = Dataset.from_pandas(reference, definition), Dataset.from_pandas(current, ...)
    Report([DataDriftPreset()]).run(cur, ref)                          # "drift"
    Report([DataDriftPreset(), ClassificationPreset()]).run(cur, ref)  # "drift+classification"

One untimed warm-up run at 2,000 rows comes first (imports, caches).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import feedbackdata as fd
from idle import OtherLoad, wait_idle

BUSY_LIMIT = 0.15  # cores used by other processes that make a repetition suspect
KINDS = ("drift", "drift+classification")


def frames(rows: int, seed: int):
    ref, cur = fd.reference(rows, seed), fd.current(rows, seed)
    digest = fd.digest(ref, cur)
    for frame in (ref, cur):
        score, outcome = fd.scores_outcomes(frame, seed)
        frame["prediction"] = score
        frame["target"] = outcome
    return ref, cur, digest


def run_report(ref, cur, kind: str):
    from evidently import BinaryClassification, DataDefinition, Dataset, Report
    from evidently.presets import ClassificationPreset, DataDriftPreset

    definition = DataDefinition(
        numerical_columns=fd.INTS + fd.FLOATS,
        categorical_columns=fd.CATS,
        classification=[BinaryClassification(target="target", prediction_probas="prediction")],
    )
    r = Dataset.from_pandas(ref, data_definition=definition)
    c = Dataset.from_pandas(cur, data_definition=definition)
    presets = [DataDriftPreset(columns=fd.FEATURES)]
    if kind == "drift+classification":
        presets.append(ClassificationPreset())
    return Report(presets).run(c, r)


def drifted(snapshot) -> list[str]:
    """Columns whose drift statistic reached its threshold (Evidently's verdict)."""
    out = []
    for metric in snapshot.dict()["metrics"]:
        config = metric.get("config") or {}
        if config.get("type", "").endswith(":ValueDrift"):
            value, threshold = metric.get("value"), config.get("threshold")
            method = str(config.get("method", ""))
            if value is None or threshold is None:
                continue
            # p-value tests drift below the threshold, distances at or above it
            is_p = "p_value" in method or "test" in method.lower()
            if (value < threshold) if is_p else (value >= threshold):
                out.append(config["column"])
    return sorted(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=fd.ROWS)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--seed", type=int, default=fd.SEED)
    parser.add_argument("--kinds", default=",".join(KINDS), help="drift,drift+classification")
    parser.add_argument("--idle-timeout", type=float, default=120.0)
    parser.add_argument("--retries", type=int, default=3, help="re-runs of a disturbed rep")
    args = parser.parse_args(argv)
    kinds = [k for k in args.kinds.split(",") if k]
    if any(k not in KINDS for k in kinds):
        parser.error(f"--kinds: use {', '.join(KINDS)}")

    warnings.filterwarnings("ignore")
    import evidently
    import numpy
    import pandas

    small_ref, small_cur, _ = frames(2000, args.seed)
    for kind in kinds:
        run_report(small_ref, small_cur, kind)
    ref, cur, digest = frames(args.rows, args.seed)

    runs: list[dict[str, float]] = []
    verdicts: dict[str, list[str]] = {}
    for rep in range(args.reps):
        for attempt in range(1 + args.retries):
            wait_idle(BUSY_LIMIT, timeout=args.idle_timeout, label="evidently")
            load = OtherLoad()
            times: dict[str, float] = {}
            for kind in kinds if rep % 2 == 0 else kinds[::-1]:
                t0 = time.perf_counter()
                snapshot = run_report(ref, cur, kind)
                times[kind] = time.perf_counter() - t0
                if rep == 0:
                    verdicts[kind] = drifted(snapshot)
                del snapshot
            other = load.cores()
            times["other_load"] = other if other is not None else 0.0
            times["attempt"] = attempt + 1
            shown = ", ".join(f"{k} {times[k]:.2f} s" for k in kinds)
            print(
                f"evidently rep {rep + 1}/{args.reps} ({args.rows:,} rows): {shown}; "
                f"other processes {times['other_load']:.2f} cores",
                file=sys.stderr,
                flush=True,
            )
            if other is None or other <= BUSY_LIMIT:
                break
        runs.append(times)

    result = {
        "evidently_version": evidently.__version__,
        "python": sys.version.split()[0],
        "packages": {"pandas": pandas.__version__, "numpy": numpy.__version__},
        "rows": args.rows,
        "digest": digest,
        "reps": args.reps,
        "runs": runs,
        "median": {k: statistics.median(r[k] for r in runs) for k in kinds},
        "drifted": verdicts,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
