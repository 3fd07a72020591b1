"""How busy the machine is with other work (Linux ``/proc/stat``); stdlib only.

A neighbour process skews any timing on a 2-core machine, and OpenMP code
(scikit-learn's ``predict``, run inside ``opx.snapshot``) dramatically so: its
barriers wait for a thread the scheduler gave away (a 10k-row predict measured
0.03 s idle and 0.6 s beside a test run). Both benchmark scripts therefore wait
for a quiet machine before each repetition and report what others used.
"""

from __future__ import annotations

import os
import sys
import time


class OtherLoad:
    """CPU used by other processes since ``start()``, in cores.

    The machine-wide busy time less this process's and its waited-for
    children's (``os.times``). ``cores()`` is None where ``/proc/stat`` is absent.
    """

    def __init__(self) -> None:
        self.tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self.start()

    def _busy(self) -> float | None:
        try:
            with open("/proc/stat") as fh:
                fields = [int(x) for x in fh.readline().split()[1:9]]
        except (OSError, ValueError):
            return None
        user, nice, system, _idle, _iowait, irq, softirq, steal = fields
        return (user + nice + system + irq + softirq + steal) / self.tick

    @staticmethod
    def _own() -> float:
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    def start(self) -> None:
        self.t0, self.busy0, self.own0 = time.perf_counter(), self._busy(), self._own()

    def cores(self) -> float | None:
        busy = self._busy()
        if busy is None or self.busy0 is None:
            return None
        wall = time.perf_counter() - self.t0
        other = (busy - self.busy0) - (self._own() - self.own0)
        return max(0.0, other / wall) if wall > 0 else None


def proc_stat(pid: int) -> list[str] | None:
    """Fields 3.. of /proc/PID/stat (after the command name), or None."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            text = fh.read()
    except OSError:
        return None
    return text[text.rfind(")") + 2 :].split()


def descendants(root: int) -> list[int]:
    """Live (or not yet reaped) descendants of ``root``."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            fields = proc_stat(int(name))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(name))
    out, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def cpu_ticks(pid: int, children: bool = True) -> int:
    """CPU ticks of ``pid`` (utime + stime), plus its reaped children's by default."""
    fields = proc_stat(pid)
    if fields is None:
        return 0
    own = int(fields[11]) + int(fields[12])  # utime, stime
    return own + (int(fields[13]) + int(fields[14]) if children else 0)  # cutime, cstime


class TreeLoad(OtherLoad):
    """:class:`OtherLoad`, not counting this process's descendants as "other"
    (servers, schedulers and kernels a benchmark starts are part of what it measures)."""

    def _own(self) -> float:  # type: ignore[override]
        t = os.times()
        own = t.user + t.system + t.children_user + t.children_system
        return own + sum(cpu_ticks(p) for p in descendants(os.getpid())) / self.tick


def wait_idle(
    limit: float = 0.1,
    timeout: float = 120.0,
    label: str = "bench",
    load: type[OtherLoad] = OtherLoad,
) -> float | None:
    """Wait until other processes use less than ``limit`` cores over one second.

    Gives up after ``timeout`` seconds (0 disables waiting) and returns the last
    load seen (None when it cannot be measured). ``load``: what counts as other
    (:class:`TreeLoad` leaves out this process's descendants).
    """
    if timeout <= 0:
        return None
    deadline = time.monotonic() + timeout
    told = False
    while True:
        probe = load()
        time.sleep(1.0)
        cores = probe.cores()
        if cores is None or cores < limit or time.monotonic() >= deadline:
            if told or (cores is not None and cores >= limit):
                state = "idle" if cores is not None and cores < limit else "still busy"
                print(f"{label}: machine {state} ({cores:.2f} cores)", file=sys.stderr)
            return cores
        if not told:
            print(
                f"{label}: other processes use {cores:.2f} cores; waiting (≤ {timeout:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
            told = True
