"""The live feedback dashboard in the notebook (a surface over ``opx.feedback``).

``%opx feedback churn`` (or ``display(FeedbackDashboard("churn"))``) shows KPI
tiles, charts over time, the drift table and the alerts of a model, and keeps
them current without re-running the cell: a background thread reads the
store's change sequence every ``interval`` seconds (one small query) and, when
it has moved, recomputes the :class:`~jupyter_opx.monitoring.compute.Feedback`
and sets the widgets' values, which the kernel sends to the page. New events
therefore show within ``interval`` plus one computation, well under a second.

The figures and their HTML come from :mod:`jupyter_opx.monitoring.panels`, the
same code as the offline report, so the two never disagree. Errors while
updating are shown in the status line, never raised from the thread. The
thread stops when the dashboard is closed (:meth:`FeedbackDashboard.close`, or
the front end closing the widget's comm) or on :meth:`FeedbackDashboard.stop`;
while every view of it has been removed from the page (cleared output) it
skips the recomputation and catches up when a view comes back.
"""

from __future__ import annotations

import html
import os
import threading
import time
import weakref
from datetime import datetime, timezone
from typing import Any

import ipywidgets as widgets

from .exceptions import OpxError, ValidationError
from .workspace import Workspace, get_workspace

TILES = ("predictions", "auc", "drift", "uplift", "alerts")
CHARTS = ("volume", "auc", "psi_features", "psi_over_time", "uplift", "arms")

_live: weakref.WeakSet[FeedbackDashboard] = weakref.WeakSet()


def live_dashboards() -> list[FeedbackDashboard]:
    """The dashboards whose update thread is running (e.g. to stop them all)."""
    return [d for d in list(_live) if d.running]


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OpxError):
        return exc.message
    return f"{type(exc).__name__}: {exc}"


class FeedbackDashboard(widgets.VBox):
    """A live ipywidgets dashboard of a model's production feedback.

    Parameters
    ----------
    model : str
        A name or reference (``"churn"``, ``"churn@production"``); drift is
        measured against the snapshot it resolves to.
    window : str or int
        ``"1h"``, ``"1d"``, ``"1w"`` or a number of predictions per window.
    workspace : Workspace or path, optional
        The store (default: the current one).
    interval : float
        Seconds between two looks at the store's change sequence.
    start : bool
        Start following the store at once (default); else call :meth:`start`.

    Attributes
    ----------
    feedback : Feedback or None
        The figures shown.
    last_seq : int or None
        The change sequence they were computed at.
    updates : int
        How many times the widgets were refreshed.
    error : str or None
        The last update error (also shown in the status line), None after a success.

    Raises
    ------
    NotFoundError
        No snapshot of ``model``.
    ValidationError
        A bad window or interval.
    """

    def __init__(
        self,
        model: str,
        window: str | int = "1d",
        workspace: Workspace | str | os.PathLike[str] | None = None,
        interval: float = 0.25,
        *,
        start: bool = True,
    ) -> None:
        from .monitoring.windows import parse_window
        from .snapshots.catalog import get_snapshot

        # first, so that close() (also called by Widget.__del__) works whatever fails next
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._had_view = False
        if not interval > 0:
            raise ValidationError(f"interval {interval!r}: use a positive number of seconds")
        ws = workspace if isinstance(workspace, Workspace) else get_workspace(workspace)
        parse_window(window)
        get_snapshot(ws, model)  # a mistyped name fails here, not in the status line
        self.model, self.window, self.interval = model, window, float(interval)
        self.feedback: Any = None
        self.last_seq: int | None = None
        self.updates = 0
        self.error: str | None = None
        self._ws = ws

        self.header = widgets.HTML()
        self.tiles = {key: widgets.HTML(layout=widgets.Layout(flex="1 1 190px")) for key in TILES}
        self.charts = {key: widgets.HTML() for key in CHARTS}
        self.drift_table = widgets.HTML()
        self.alerts = widgets.HTML()
        self.status = widgets.HTML()
        grid = widgets.GridBox(
            list(self.charts.values()),
            layout=widgets.Layout(
                grid_template_columns="repeat(auto-fit, minmax(420px, 1fr))", grid_gap="8px"
            ),
        )
        super().__init__(
            [
                self.header,
                widgets.HBox(
                    list(self.tiles.values()),
                    layout=widgets.Layout(flex_flow="row wrap", grid_gap="8px"),
                ),
                grid,
                widgets.HTML("<h4>Drift per feature</h4>"),
                self.drift_table,
                widgets.HTML("<h4>Alerts</h4>"),
                self.alerts,
                self.status,
            ]
        )
        self._watch_comm(self.comm)
        self.observe(self._on_comm_change, names="comm")
        self.observe(self._on_view_count, names="_view_count")
        self._view_count = 0  # ask the front end to report its views (see module docstring)
        self.refresh()
        if start:
            self.start()

    # -- following the store ---------------------------------------------------------
    @property
    def running(self) -> bool:
        """Whether the update thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Follow the store: refresh whenever its change sequence moves."""
        if self.running:
            return
        self._stop_event.clear()
        self._thread = threading.Thread(
            target=self._follow, name=f"opx-dashboard-{self.model}", daemon=True
        )
        self._thread.start()
        _live.add(self)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop following the store (the widgets keep their last figures)."""
        self._stop_event.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        _live.discard(self)
        if hasattr(self, "status"):
            self._set_status("stopped: run the cell again to follow new events")

    def close(self) -> None:
        """Stop the updates and close the dashboard and its parts in the front end."""
        self.stop()
        for child in self._parts():
            child.close()
        super().close()

    def _parts(self) -> list[widgets.Widget]:
        out: list[widgets.Widget] = []
        stack = list(self.children)
        while stack:
            w = stack.pop()
            out.append(w)
            stack.extend(getattr(w, "children", ()))
            out.extend(
                part
                for part in (getattr(w, "layout", None), getattr(w, "style", None))
                if isinstance(part, widgets.Widget)
            )
        return out

    def _follow(self) -> None:
        cost = 0.0
        # waiting at least as long as the last update took keeps a busy store (a
        # stream of batches, a large history) from holding the kernel's CPU
        while not self._stop_event.wait(max(self.interval, cost)):
            try:
                seq = self._ws.change_seq()
                if seq != self.last_seq and not self._hidden():
                    start = time.perf_counter()
                    self.refresh(seq)
                    cost = time.perf_counter() - start
            except Exception as exc:  # never raise in the thread: say it
                self._report_error(exc)

    def _hidden(self) -> bool:
        count = self._view_count
        return self._had_view and count is not None and count == 0

    def refresh(self, seq: int | None = None) -> bool:
        """Recompute the feedback and update the widgets now.

        Returns
        -------
        bool
            True when the widgets were updated; False when the computation
            failed (the error is in the status line and :attr:`error`).
        """
        from .monitoring.compute import compute

        with self._lock:
            if self._stop_event.is_set() and threading.current_thread() is self._thread:
                return False
            try:
                seq = self._ws.change_seq() if seq is None else seq
                fb = compute(self._ws, self.model, self.window)
                self._render(fb)
            except Exception as exc:
                self.last_seq = seq  # retried when the store changes again
                self._report_error(exc)
                return False
            self.feedback, self.last_seq, self.error = fb, seq, None
            self.updates += 1
            now = datetime.now(timezone.utc).strftime("%H:%M:%S")
            following = (
                f"live, checking every {self.interval:g} s"
                if not self._stop_event.is_set()
                else "not following"
            )
            self._set_status(f"updated {now} UTC (change {seq}) · {following}")
            return True

    def _render(self, fb: Any) -> None:
        from .monitoring import panels

        header = (
            f"<style>{panels.CSS}</style><div class='opx-report' style='max-width:none;padding:0'>"
            f"<b style='font-size:1.15rem'>Production feedback: {html.escape(fb.model)}</b>"
            f"<div class='opx-meta'>reference {html.escape(fb.reference or 'none')} · "
            f"{html.escape(panels.period(fb))}</div></div>"
        )
        tiles = {t.key: panels.tile_html(t) for t in panels.kpi_tiles(fb)}
        svg = panels.feedback_charts(fb, width=560)
        drift, alerts = panels.drift_table_html(fb), panels.alerts_html(fb)
        # set values only after everything was computed, so a failure changes nothing
        self.header.value = header
        for key, tile in tiles.items():
            if key in self.tiles:
                self.tiles[key].value = tile
        for key, widget in self.charts.items():
            widget.value = svg[key]
        self.drift_table.value = drift
        self.alerts.value = alerts

    def _report_error(self, exc: BaseException) -> None:
        self.error = _describe(exc)
        self._set_status(f"could not update: {self.error}", error=True)

    def _set_status(self, text: str, error: bool = False) -> None:
        color = "#dc2626" if error else "inherit"
        self.status.value = (
            f"<div style='font-size:0.8rem;opacity:0.8;color:{color}'>{html.escape(text)}</div>"
        )

    # -- front end -----------------------------------------------------------------
    def _watch_comm(self, comm: Any) -> None:
        if comm is not None and hasattr(comm, "on_close"):
            comm.on_close(lambda _msg: self.stop())

    def _on_comm_change(self, change: dict[str, Any]) -> None:
        if change["new"] is None:
            self.stop()  # closed
        else:
            self._watch_comm(change["new"])

    def _on_view_count(self, change: dict[str, Any]) -> None:
        if change["new"]:
            self._had_view = True

    def text(self) -> str:
        """The dashboard as plain text: the feedback summary and the state."""
        lines = [str(self.feedback) if self.feedback is not None else f"feedback of {self.model}"]
        lines.append("  (live: following the store)" if self.running else "  (not following)")
        if self.error:
            lines.append(f"  last update failed: {self.error}")
        return "\n".join(lines)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        data = super()._repr_mimebundle_(**kwargs)
        if data:
            data["text/plain"] = self.text()  # what a terminal without widgets shows
        return data
