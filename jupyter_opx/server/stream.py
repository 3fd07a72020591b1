"""``GET …/stream``: server-sent events of the store's change sequence, and the one
change feed per server that every open stream shares.

The store's change sequence (:meth:`Workspace.change_seq`) grows with every
visible write, whichever process made it (a notebook, a job, another server),
so reading it is the one way to learn about all of them. One task reads it
every :attr:`ChangeFeed.interval` seconds on a worker thread while at least one
stream is waiting, and wakes the waiting streams when it moved: a hundred open
dashboards cost one cheap query five times a second, not a hundred.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from typing import TYPE_CHECKING

from tornado.ioloop import IOLoop
from tornado.iostream import StreamClosedError

from .handlers import OpxHandler

if TYPE_CHECKING:
    from .app import ServerContext

log = logging.getLogger("jupyter_opx.server")


class ChangeFeed:
    """The latest change sequence, with waiting for the next one.

    Parameters
    ----------
    read_seq : callable
        Returns the store's change sequence (a blocking database read).
    executor : Executor
        Where ``read_seq`` runs.
    interval : float
        Seconds between reads while someone waits.
    """

    def __init__(
        self, read_seq: Callable[[], int], executor: Executor, interval: float = 0.2
    ) -> None:
        self.read_seq = read_seq
        self.executor = executor
        self.interval = interval
        self.seq: int | None = None
        self._waiters: set[asyncio.Future[None]] = set()
        self._task: asyncio.Task[None] | None = None

    async def _read(self) -> int:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, self.read_seq)

    async def current(self) -> int:
        """The change sequence now (read afresh)."""
        self._set(await self._read())
        assert self.seq is not None
        return self.seq

    async def wait(self, after: int, timeout: float) -> int:
        """The sequence as soon as it differs from ``after``, or after ``timeout`` seconds."""
        if self.seq is not None and self.seq != after:
            return self.seq
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.add(fut)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._poll())
        try:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(fut, timeout)
        finally:
            self._waiters.discard(fut)
        return self.seq if self.seq is not None else after

    def _set(self, seq: int) -> None:
        if seq != self.seq:
            self.seq = seq
            for fut in self._waiters:
                if not fut.done():
                    fut.set_result(None)

    async def _poll(self) -> None:
        while self._waiters:
            try:
                self._set(await self._read())
            except Exception as exc:  # a busy or restarting database: try again
                log.warning("change feed: cannot read the change sequence: %s", exc)
            await asyncio.sleep(self.interval)

    def close(self) -> None:
        """Stop polling and release the waiting streams."""
        if self._task is not None:
            self._task.cancel()
        for fut in self._waiters:
            if not fut.done():
                fut.set_result(None)


class StreamHandler(OpxHandler):
    """``GET /stream``: server-sent events carrying the store's change sequence.

    Sends ``event: change`` with ``data: {"seq": N}`` at once (the current
    sequence) and then whenever it moves, and a comment line every
    :attr:`heartbeat` seconds so proxies keep the connection open. It carries
    no model's data, so any ``dashboard`` token may follow it.
    """

    scope = "dashboard"
    allow_query_token = True
    heartbeat = 15.0

    def initialize(self, ctx: ServerContext) -> None:
        super().initialize(ctx)
        self._gone = False

    async def get(self) -> None:
        self.set_header("Content-Type", "text/event-stream; charset=UTF-8")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")  # no buffering in nginx
        feed = self.ctx.feed
        loop = IOLoop.current()
        try:
            seq = await feed.current()
            await self._send(f"retry: 1000\n{self._event(seq)}")
            beat = loop.time() + self.heartbeat
            while not self._gone:
                left = beat - loop.time()
                if left <= 0:
                    await self._send(": heartbeat\n\n")
                    beat = loop.time() + self.heartbeat
                    continue
                # wake at least once a second to notice a closed connection
                new = await feed.wait(seq, min(left, 1.0))
                if new != seq:
                    seq = new
                    await self._send(self._event(seq))
        except StreamClosedError:
            pass

    @staticmethod
    def _event(seq: int) -> str:
        return f"id: {seq}\nevent: change\ndata: {json.dumps({'seq': seq})}\n\n"

    async def _send(self, text: str) -> None:
        self.write(text)
        await self.flush()

    def on_connection_close(self) -> None:
        self._gone = True


__all__ = ["ChangeFeed", "StreamHandler"]
