"""A/B of ``opx job run --wait`` between two versions of jupyter_opx, with papermill.

Development aid (not part of ``make bench``): the bare ``papermill`` CLI, ``opx job
run bench -p x=1 --wait`` with an older ``jupyter_opx`` (a copy of its package
folder put first on ``PYTHONPATH``) and with the working tree, in rotated order on
the 3-cell notebook of ``bench_jobs.py``; prints medians and ratios to papermill::

    mkdir -p /tmp/before && git archive 523706f jupyter_opx | tar -x -C /tmp/before
    .venv/bin/python bench/ab_jobs_cli.py --before /tmp/before --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_jobs import BIN, JOB, Store  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", required=True, help="folder holding the old jupyter_opx/")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="opx-ab-") as tmp:
        base = Path(tmp)
        store = Store(base, "ab")
        store.create_job()
        env = {**store.env, "PYTHONPYCACHEPREFIX": str(base / "pycache")}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env.pop("PYTHONPATH", None)
        opx = [str(BIN / "opx"), "job", "run", JOB, "-p", "x=1", "--wait"]
        cmds = {
            "papermill": ([str(BIN / "papermill"), "in.ipynb", "out.ipynb", "-p", "x", "1"], env),
            "opx before": (opx, {**env, "PYTHONPATH": str(Path(args.before).resolve())}),
            "opx after": (opx, env),
        }
        names = list(cmds)
        times: dict[str, list[float]] = {name: [] for name in names}
        for i in range(args.rounds + 1):  # round 0: warm-up (bytecode, page cache)
            for name in names[i % 3 :] + names[: i % 3]:
                cmd, cmd_env = cmds[name]
                t0 = time.perf_counter()
                proc = subprocess.run(cmd, cwd=store.dir, env=cmd_env, capture_output=True)
                if proc.returncode != 0:
                    raise SystemExit(f"{name} failed:\n{proc.stderr.decode()[-2000:]}")
                if i:
                    times[name].append(time.perf_counter() - t0)
        store.close()
    anchor = statistics.median(times["papermill"])
    for name in names:
        med = statistics.median(times[name])
        runs = " ".join(f"{t:.2f}" for t in times[name])
        print(f"{name:10s} median {med:.3f} s  {med / anchor:.3f}× papermill  [{runs}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
