"""Kernels for runs: started early, ready quickly, and pre-started ahead of runs.

Starting a Python kernel costs about half a second. Three things cut what a
run waits for:

* :func:`new_kernel_manager` gives managers whose clients are ready as soon as
  the kernel answered ``kernel_info`` on the shell channel and its IOPub
  channel is shown to be connected (:class:`ReadyClient`); jupyter_client's own
  check then waits for 0.2 s of IOPub silence on top, for every run.
* :func:`start_kernel` launches a kernel without waiting for it: a runner
  starts its run's kernel first and imports papermill while the kernel boots.
* A :class:`KernelPool` (``opx scheduler --prestart N``) keeps a few kernels
  started and ready ahead of time. A run takes one, receives its own
  environment and working directory through a silent set-up snippet before
  its first cell, and the kernel is discarded after that run: no state ever
  leaks from one run to the next. The pool refills in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import subprocess
import threading
import time
from collections import defaultdict, deque
from queue import Empty
from typing import Any

#: how long IOPub may stay silent after a ``kernel_info`` reply before asking again
IOPUB_WAIT = 0.2


@functools.cache
def _ready_client_class() -> type:
    from jupyter_client.asynchronous import AsyncKernelClient

    class ReadyClient(AsyncKernelClient):
        """An async kernel client whose ``wait_for_ready`` returns without idling.

        jupyter_client's check asks for ``kernel_info``, waits for the reply and
        one IOPub message (proof that IOPub is connected), then drains IOPub
        until it stays silent for 0.2 s. Here the kernel's ``idle`` status for
        that very request proves IOPub connected and drained up to it, so no
        silence is waited for. A kernel that sends IOPub messages but no such
        status is accepted after :data:`IOPUB_WAIT` of silence, as upstream.
        """

        async def wait_for_ready(self, timeout: float | None = None) -> None:
            deadline = time.monotonic() + (float("inf") if timeout is None else timeout)
            while True:
                msg_id = self.kernel_info()
                reply = await self._reply_to(msg_id, deadline)
                if reply is not None and await self._iopub_connected(msg_id):
                    self._handle_kernel_info_reply(reply)
                    return
                if not await self._async_is_alive():
                    raise RuntimeError("Kernel died before replying to kernel_info")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"Kernel didn't respond in {timeout:g} seconds")

        async def _reply_to(self, msg_id: str, deadline: float) -> dict[str, Any] | None:
            end = min(deadline, time.monotonic() + 1.0)
            while True:
                try:
                    msg: dict[str, Any] = await self.shell_channel.get_msg(
                        timeout=max(0.0, end - time.monotonic())
                    )
                except Empty:
                    return None
                if msg["msg_type"] == "kernel_info_reply":
                    return msg

        async def _iopub_connected(self, msg_id: str) -> bool:
            seen = False
            end = time.monotonic() + 2.0  # a kernel that never falls silent: enough seen
            while time.monotonic() < end:
                try:
                    msg = await self.iopub_channel.get_msg(timeout=IOPUB_WAIT)
                except Empty:
                    return seen  # silence: connected if anything came through
                seen = True
                if (
                    msg["msg_type"] == "status"
                    and msg["parent_header"].get("msg_id") == msg_id
                    and msg["content"].get("execution_state") == "idle"
                ):
                    return True
            return seen

    return ReadyClient


def new_kernel_manager(kernel_name: str) -> Any:
    """An ``AsyncKernelManager`` for ``kernel_name`` whose clients use :class:`ReadyClient`.

    nbclient needs the async manager: with a blocking client its wait for a
    reply would block the loop that notices a dead kernel.
    """
    from jupyter_client.manager import AsyncKernelManager

    km = AsyncKernelManager(kernel_name=kernel_name)
    km.client_factory = _ready_client_class()
    return km


def start_kernel(kernel_name: str, **kwargs: Any) -> Any:
    """Launch a kernel (its process only: not waiting until it answers); returns its manager.

    ``kwargs`` go to ``AsyncKernelManager.start_kernel`` (``env``, ``cwd``,
    ``stdout``, ``stderr``). IPython kernels keep their history in memory, as
    nbclient starts them: no history database to open, no lock between kernels.
    """
    from jupyter_core.utils import run_sync

    km = new_kernel_manager(kernel_name)
    extra = ["--HistoryManager.hist_file=:memory:"] if km.ipykernel else []
    run_sync(km.start_kernel)(extra_arguments=extra, **kwargs)
    return km


def wait_ready(km: Any, timeout: float = 60) -> None:
    """Wait until the kernel of ``km`` answers (its client is then closed again)."""
    from jupyter_core.utils import run_sync

    async def ready() -> None:
        kc = km.client()
        kc.start_channels()
        try:
            await kc.wait_for_ready(timeout=timeout)
        finally:
            kc.stop_channels()

    run_sync(ready)()


def _start(kernel_name: str) -> Any:
    km = start_kernel(kernel_name, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(km)
    except Exception:
        discard(km)
        raise
    return km


def discard(km: Any) -> None:
    """Stop a kernel for good (after its one run, or when the pool closes)."""

    async def stop() -> None:
        await km.shutdown_kernel(now=True)

    with contextlib.suppress(Exception):
        asyncio.run(stop())


class KernelPool:
    """Keeps ``size`` started kernels ready for each kernel name asked for.

    Parameters
    ----------
    size : int
        Kernels kept ready per kernel name.
    kernel_names : iterable of str
        Kernel names to warm from the start (others are warmed once asked for).
    """

    def __init__(self, size: int, kernel_names: tuple[str, ...] = ("python3",)) -> None:
        self.size = size
        self._ready: dict[str, deque[Any]] = defaultdict(deque)
        self._wanted: set[str] = set(kernel_names)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._refill, name="opx-kernel-pool", daemon=True)
        self._thread.start()
        self._wake.set()

    def take(self, kernel_name: str) -> Any | None:
        """A started kernel for ``kernel_name``, or None when none is ready yet."""
        with self._lock:
            self._wanted.add(kernel_name)
            ready = self._ready[kernel_name]
            km = ready.popleft() if ready else None
        self._wake.set()
        if km is not None and not _alive(km):
            discard(km)
            return None
        return km

    def ready(self, kernel_name: str = "python3") -> int:
        with self._lock:
            return len(self._ready[kernel_name])

    def _refill(self) -> None:
        while not self._closed.is_set():
            self._wake.wait(1.0)
            self._wake.clear()
            for name in list(self._wanted):
                while not self._closed.is_set():
                    with self._lock:
                        if len(self._ready[name]) >= self.size:
                            break
                    try:
                        km = _start(name)
                    except Exception:  # unknown kernel name: a run will report it itself
                        self._wanted.discard(name)
                        break
                    with self._lock:
                        self._ready[name].append(km)

    def close(self) -> None:
        """Stop refilling and shut every ready kernel down."""
        self._closed.set()
        self._wake.set()
        self._thread.join(timeout=30)
        with self._lock:
            kernels = [km for ready in self._ready.values() for km in ready]
            self._ready.clear()
        for km in kernels:
            discard(km)


def _alive(km: Any) -> bool:
    provisioner = getattr(km, "provisioner", None)
    process = getattr(provisioner, "process", None)
    return process is not None and process.poll() is None
