"""``opx serve --workers N``: N server processes sharing one listening socket.

One ``opx serve`` process runs the Python parts of a request (validation,
event keys, the catalog, tornado itself) on one core at a time, the GIL being
one; pyarrow's parsing and encoding spread over the others. With ``--workers
N`` the parent forks N workers, each a complete server (its own event loop,
thread pool, database connections and change-stream poller), so concurrent
clients are served on every core.

On Linux each worker listens on the port with ``SO_REUSEPORT`` and the kernel
spreads new connections evenly over them; the parent only holds the port
(bound, not listening, so it is never handed a connection). Elsewhere the
workers share one listening socket bound by the parent, and whichever wakes
first accepts: a burst of new connections may all land on one worker.
Measured on 2 cores with 8 clients posting 10,000-event NDJSON batches: see
``bench/README.md`` (one process against ``--workers 2``).

The parent only supervises:

* SIGINT and SIGTERM are passed on to the workers, which drain like a single
  server (requests in flight are answered, so a 2xx still means durable);
  the parent returns once all of them have exited.
* A worker that dies on its own (killed, crashed: a signal or a non-zero exit)
  is replaced, up to :data:`MAX_RESTARTS` times in a row without a minute of
  quiet in between; past that the parent stops the others and fails. A
  worker that exits cleanly (it was stopped) is not replaced, and when every
  worker has, the parent returns too.

Everything shared lives in the store, as with several notebooks or job runs
writing at once: writes are transactions, the change sequence is read from
the database, alert state changes are recorded once. POSIX only (``fork``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from ..exceptions import OpxError, ValidationError

#: replacements of dead workers in a row (without a quiet minute) before giving up
MAX_RESTARTS = 10
QUIET = 60.0  # seconds without a death that reset the count


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(sig).name}"
        return f"killed by signal {sig}"
    return f"exit code {os.waitstatus_to_exitcode(status)}"


def _clean_exit(status: int) -> bool:
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def reserve_port(host: str, port: int) -> Any:
    """A socket bound to ``host:port`` with ``SO_REUSEPORT``, not listening.

    It holds the port (``port=0``: picks one) for the workers, which listen on
    it with ``SO_REUSEPORT`` too; not listening, it is handed no connection.

    Raises
    ------
    ConflictError
        The address cannot be bound.
    """
    import socket

    from .app import cannot_listen

    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host or None, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(address)
        except BaseException:
            sock.close()
            raise
    except OSError as exc:
        raise cannot_listen(host, port, exc) from None
    return sock


def per_worker_sockets() -> bool:
    """Whether each worker listens itself (``SO_REUSEPORT`` balancing: Linux).

    ``OPX_SERVE_REUSEPORT=0`` makes the workers share the parent's socket
    instead (where ``SO_REUSEPORT`` misbehaves, e.g. some sandboxes).
    """
    import socket

    if os.environ.get("OPX_SERVE_REUSEPORT", "1") == "0":
        return False
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def serve_workers(
    make_app: Callable[[], Any],
    sockets: list[Any],
    host: str,
    port: int,
    workers: int,
    on_ready: Callable[[str], None] | None = None,
    say: Callable[[str], None] = print,
    own_sockets: bool = False,
) -> int:
    """Run ``workers`` forked server processes on ``sockets`` until stopped.

    Parameters
    ----------
    make_app : callable
        Builds the tornado application in a worker (after the fork: no thread,
        connection or event loop crosses it).
    sockets : list of socket
        Bound and listening (:func:`.app.listen`), shared by the workers; or,
        with ``own_sockets``, the port's reservation (:func:`reserve_port`).
        Closed when this returns.
    host, port : str, int
        What the sockets are bound to (``port`` as bound, not 0).
    workers : int
        How many processes (2 or more makes sense; 1 works).
    on_ready : callable, optional
        Called with the API's URL once the workers are started.
    say : callable
        Where the supervisor's messages go.
    own_sockets : bool
        Each worker listens on ``host:port`` itself with ``SO_REUSEPORT``.

    Returns
    -------
    int
        0 after a requested stop, 1 when workers kept dying.
    """
    if not hasattr(os, "fork"):
        raise ValidationError(
            "--workers needs fork (Linux, macOS); on this system run one opx serve per "
            "port behind a load balancer"
        )
    if workers < 1:
        raise ValidationError("--workers must be 1 or more")
    from .app import api_url, listen, serve_until_stopped

    children: dict[int, int] = {}  # pid -> worker number
    state = {"stopping": False}
    # each worker writes a byte here once it listens: the URL is announced only
    # then (a client told too early would find nobody listening on the port)
    ready_r, ready_w = os.pipe()

    def start(number: int) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid:
            children[pid] = number
            return
        # the worker: a whole server of its own
        code = 0
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, signal.SIG_DFL)
            os.close(ready_r)
            mine = sockets
            if own_sockets:
                mine = listen(host, port, reuse_port=True)
                for sock in sockets:
                    sock.close()  # the parent's reservation
            with contextlib.suppress(OSError):
                os.write(ready_w, b"1")
            os.close(ready_w)
            asyncio.run(serve_until_stopped(make_app(), host=host, port=port, sockets=mine))
        except BaseException as exc:  # reported, then the supervisor replaces this worker
            if isinstance(exc, OpxError):
                print(f"opx serve: worker {os.getpid()}: {exc}", file=sys.stderr)
            else:
                traceback.print_exc()
            code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)

    def stop(signum: int = signal.SIGTERM, frame: Any = None) -> None:
        state["stopping"] = True
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    failed = False
    try:
        for number in range(workers):
            start(number)
        _await_ready(ready_r, workers, state, say)
        if on_ready is not None:
            on_ready(api_url(host, port))
        say(f"opx serve: {workers} worker processes ({', '.join(map(str, children))})")
        deaths, last_death = 0, 0.0
        while children:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            if pid not in children:
                continue
            number = children.pop(pid)
            if state["stopping"] or _clean_exit(status):
                continue
            now = time.monotonic()
            deaths = deaths + 1 if now - last_death < QUIET else 1
            last_death = now
            if deaths > MAX_RESTARTS:
                say(
                    f"opx serve: worker {pid} {_describe(status)}; {MAX_RESTARTS} workers died "
                    "within a minute of each other: stopping (see the errors above)"
                )
                failed = True
                stop()
                continue
            say(f"opx serve: worker {pid} {_describe(status)}; starting another")
            start(number)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sock in sockets:
            sock.close()
        os.close(ready_r)
        os.close(ready_w)
    return 1 if failed else 0


def _await_ready(
    fd: int, workers: int, state: dict[str, bool], say: Callable[[str], None], timeout: float = 30
) -> None:
    """Wait until ``workers`` bytes arrived on ``fd`` (each worker listens), or a stop."""
    import select

    got, deadline = 0, time.monotonic() + timeout
    while got < workers and not state["stopping"]:
        if time.monotonic() > deadline:
            late = workers - got
            say(f"opx serve: {late} of {workers} workers not listening after {timeout:g} s")
            return
        readable, _, _ = select.select([fd], [], [], 0.2)
        if readable:
            got += len(os.read(fd, workers - got))


__all__ = ["MAX_RESTARTS", "per_worker_sockets", "reserve_port", "serve_workers"]
