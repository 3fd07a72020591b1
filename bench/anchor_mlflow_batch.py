"""Clients of an MLflow tracking server, timed: ``MlflowClient.log_batch`` throughput.

Runs in ``bench/.venv-mlflow`` (see ``setup_anchors.sh``); ``bench_feedback.py``
starts the server (``mlflow server --backend-store-uri sqlite:///…``) and runs
this script once per measurement, reading the JSON it prints on its last line.

``--clients`` threads, each with its own ``MlflowClient`` and its own run
(created before the clock starts), each send ``--calls`` ``log_batch`` calls of
``--metrics`` metrics (1,000: MLflow's maximum per call), one after another.
The metrics are built before the clock starts too (``--keys`` keys, steps
counting up, so no two are alike). The clock runs from the moment all threads
are released together to the last answer; the figure is metrics acknowledged
per second of that wall time. ``--single N`` instead times N ``log_metric``
calls (one metric each) from one client.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import warnings

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", required=True, help="the tracking server, http://host:port")
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--calls", type=int, default=10, help="log_batch calls per client")
    parser.add_argument("--metrics", type=int, default=1000, help="metrics per call")
    parser.add_argument("--keys", type=int, default=20, help="distinct metric keys")
    parser.add_argument("--single", type=int, default=0, help="time N log_metric calls instead")
    args = parser.parse_args(argv)

    warnings.filterwarnings("ignore")
    import logging

    logging.getLogger("mlflow").setLevel(logging.ERROR)
    import mlflow
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    setup = MlflowClient(tracking_uri=args.url)
    exp_name = "bench-feedback"
    exp = setup.get_experiment_by_name(exp_name)
    exp_id = exp.experiment_id if exp is not None else setup.create_experiment(exp_name)
    n_clients = 1 if args.single else args.clients
    runs = [setup.create_run(exp_id).info.run_id for _ in range(n_clients)]
    clients = [MlflowClient(tracking_uri=args.url) for _ in range(n_clients)]
    stamp = int(time.time() * 1000)

    if args.single:
        client, run_id = clients[0], runs[0]
        client.log_metric(run_id, "warm", 0.0, timestamp=stamp, step=0)  # connection up
        t0 = time.perf_counter()
        for i in range(args.single):
            client.log_metric(run_id, "single", float(i), timestamp=stamp, step=i)
        seconds = time.perf_counter() - t0
        setup.set_terminated(run_id)
        out = {"mode": "log_metric", "calls": args.single, "seconds": seconds}
        out["per_s"] = args.single / seconds
        out["mlflow_version"] = mlflow.__version__
        print(json.dumps(out))
        return 0

    def batches(client_no: int) -> list[list[Metric]]:
        out = []
        for call in range(args.calls):
            base = call * args.metrics
            out.append(
                [
                    Metric(
                        f"feature_{(base + j) % args.keys}",
                        float(client_no * 1e6 + base + j) * 1e-3,
                        stamp,
                        (base + j) // args.keys,
                    )
                    for j in range(args.metrics)
                ]
            )
        return out

    work = [batches(i) for i in range(n_clients)]
    for client, run_id in zip(clients, runs, strict=True):  # connections up, not timed
        client.log_metric(run_id, "warm", 0.0, timestamp=stamp, step=0)
    starts: list[float] = []
    barrier = threading.Barrier(n_clients, action=lambda: starts.append(time.perf_counter()))
    ends: list[float] = [0.0] * n_clients
    acked = [0] * n_clients
    errors: list[str] = []

    def client_thread(i: int) -> None:
        try:
            barrier.wait()
            for batch in work[i]:
                clients[i].log_batch(runs[i], metrics=batch)
                acked[i] += len(batch)
        except Exception as exc:  # reported, and the measurement fails
            errors.append(f"client {i}: {exc!r}"[:500])
        ends[i] = time.perf_counter()

    threads = [threading.Thread(target=client_thread, args=(i,)) for i in range(n_clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        print("\n".join(errors), file=sys.stderr)
        return 1
    seconds = max(ends) - starts[0]
    for run_id in runs:
        setup.set_terminated(run_id)
    out = {
        "mode": "log_batch",
        "clients": n_clients,
        "calls": args.calls,
        "metrics": sum(acked),
        "seconds": seconds,
        "per_s": sum(acked) / seconds,
        "mlflow_version": mlflow.__version__,
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
