"""The Python API, used in notebooks as ``import jupyter_opx as opx``.

Every function works on the current workspace (see :mod:`jupyter_opx.workspace`)
unless ``workspace=`` names another store folder.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

from .snapshots import catalog
from .snapshots.capture import create_snapshot
from .snapshots.diff import diff as _diff
from .snapshots.provenance import notebook_path_from_env, read_notebook
from .snapshots.records import AliasEvent, Snapshot, SnapshotDiff, SnapshotList
from .workspace import Workspace, get_workspace

if TYPE_CHECKING:
    from .jobs.definitions import Job
    from .jobs.runs import Run
    from .monitoring.alerts import ChangeList, Rule, RuleList


def current_workspace(path: str | os.PathLike[str] | None = None) -> Workspace:
    """The workspace (store) operations use: ``path``, else the resolved one.

    (Named so because ``jupyter_opx.workspace`` is the module.)
    """
    return get_workspace(path)


def _ws(path: str | os.PathLike[str] | Workspace | None) -> Workspace:
    return path if isinstance(path, Workspace) else get_workspace(path)


def kernel_source() -> dict[str, Any]:
    """The executed cells (``In``) and notebook of the running IPython kernel, if any.

    Reads IPython only when it is already imported (the core never imports it).
    """
    ipython_mod = sys.modules.get("IPython")
    shell = ipython_mod.get_ipython() if ipython_mod is not None else None
    user_ns: dict[str, Any] = getattr(shell, "user_ns", None) or {}
    cells = [c for c in user_ns.get("In", []) if c]
    path = notebook_path_from_env(user_ns)
    source: dict[str, Any] = {"cells": cells, "notebook_path": path}
    notebook = read_notebook(path)
    if notebook is not None:
        source["notebook"] = notebook
    return source


def snapshot(
    name: str,
    model: Any = None,
    data: Any = None,
    metrics: dict[str, Any] | None = None,
    params: dict[str, Any] | None = None,
    tags: dict[str, Any] | None = None,
    message: str = "",
    *,
    allow_pickle: bool = False,
    reference: str | None = None,
    workspace: str | os.PathLike[str] | Workspace | None = None,
) -> Snapshot:
    """Store a new immutable version of a model and its data.

    Parameters
    ----------
    name : str
        Snapshot name, e.g. ``"churn"``; versions are numbered 1, 2, … per name.
    model : object, optional
        A fitted scikit-learn-compatible model, stored with skops.
    data : DataFrame, Series, ndarray or dict of them, optional
        Stored as parquet. A dict maps keys (``"train"``, ``"test"``) to data;
        a bare object is stored under ``"data"``.
    metrics, params, tags : dict, optional
        Numbers (metrics) and JSON values (params, tags) recorded with it.
    message : str
        A note, like a commit message.
    allow_pickle : bool
        Store with pickle an object that skops cannot store. Loading it will
        need ``allow_pickle=True`` again.
    reference : str, optional
        Which dataset drift is later measured against (default ``"train"``
        if present, else the first).
    workspace : path or Workspace, optional
        Another store than the current one.

    Returns
    -------
    Snapshot
        With ``.name``, ``.version`` and ``.ref`` (``"churn/3"``).

    Raises
    ------
    ValidationError
        Bad name, metrics or parameters, or nothing to store.
    SerializationError
        The model or data cannot be stored safely.
    StoreError
        The store cannot be written.
    """
    return create_snapshot(
        _ws(workspace),
        name,
        model=model,
        data=data,
        metrics=metrics,
        params=params,
        tags=tags,
        message=message,
        allow_pickle=allow_pickle,
        reference=reference,
        source=kernel_source(),
    )


def show(ref: str, *, workspace: str | os.PathLike[str] | Workspace | None = None) -> Snapshot:
    """The snapshot a reference (``"churn"``, ``"churn/3"``, ``"churn@production"``) points at.

    Raises
    ------
    NotFoundError
        Unknown name, version or alias.
    """
    return catalog.get_snapshot(_ws(workspace), ref)


def list_snapshots(
    name: str | None = None, *, workspace: str | os.PathLike[str] | Workspace | None = None
) -> SnapshotList:
    """All snapshots (or those of ``name``), newest first."""
    return catalog.list_snapshots(_ws(workspace), name)


def load_model(
    ref: str,
    *,
    trusted: list[str] | None = None,
    allow_pickle: bool = False,
    workspace: str | os.PathLike[str] | Workspace | None = None,
) -> Any:
    """Load a snapshot's model, verified by hash, with trust decided now.

    Types defined by scikit-learn, numpy and scipy are trusted by default;
    others must be listed in ``trusted`` or in ``trusted_types`` of
    ``.opx/config.toml``.

    Parameters
    ----------
    ref : str
        ``"churn"``, ``"churn/3"`` or ``"churn@production"``.
    trusted : list of str, optional
        Further type names to trust, e.g. ``["xgboost.sklearn.XGBClassifier"]``.
    allow_pickle : bool
        Required to load a model that was stored with pickle.

    Raises
    ------
    UntrustedModelError
        The model holds types not trusted; ``.types`` lists them.
    CorruptBlobError
        The artifact does not match its hash (it is never deserialized).
    SerializationError
        A pickled model without ``allow_pickle=True``.
    """
    return catalog.load_model(_ws(workspace), ref, trusted=trusted, allow_pickle=allow_pickle)


def load_data(
    ref: str, key: str | None = None, *, workspace: str | os.PathLike[str] | Workspace | None = None
) -> Any:
    """Load a dataset of a snapshot, verified by hash.

    ``key`` may be omitted when the snapshot holds one dataset.
    """
    return catalog.load_data(_ws(workspace), ref, key)


def promote(
    ref: str,
    alias: str = "production",
    *,
    workspace: str | os.PathLike[str] | Workspace | None = None,
) -> AliasEvent:
    """Point ``name@alias`` at the version ``ref`` resolves to (rollback = promote an older one).

    Every move is kept: who, when, and the version it replaced
    (see :func:`alias_history`).
    """
    return catalog.promote(_ws(workspace), ref, alias)


def alias_history(
    name: str,
    alias: str | None = None,
    *,
    workspace: str | os.PathLike[str] | Workspace | None = None,
) -> list[AliasEvent]:
    """The history of the aliases of ``name`` (newest first)."""
    return catalog.alias_history(_ws(workspace), name, alias)


def diff(
    ref_a: str, ref_b: str, *, workspace: str | os.PathLike[str] | Workspace | None = None
) -> SnapshotDiff:
    """What differs between two snapshots: model, data (rows, hash, schema), metrics,
    params, tags, input schema and package versions."""
    return _diff(_ws(workspace), ref_a, ref_b)


def verify(*, workspace: str | os.PathLike[str] | Workspace | None = None) -> dict[str, Any]:
    """Re-hash every stored blob; returns ``{"checked", "corrupt", "missing"}``."""
    return catalog.verify_store(_ws(workspace))


# -- jobs ------------------------------------------------------------------------------
def create_job(
    name: str,
    notebook: str | os.PathLike[str],
    *,
    params: dict[str, Any] | None = None,
    workspace: str | os.PathLike[str] | Workspace | None = None,
    **settings: Any,
) -> Job:
    """Create a job from a notebook: an immutable copy plus how to run it.

    Parameters
    ----------
    name : str
        Job name.
    notebook : path
        The notebook; its ``%%opx params`` cell (or a cell tagged
        ``parameters``) declares typed parameters.
    params : dict, optional
        Default parameter values, validated against those types.
    **settings
        ``schedule`` (cron), ``timezone``, ``timeout`` (seconds, whole run),
        ``retries``, ``retry_backoff``, ``output`` (``["html"]``), ``keep``,
        ``env`` (``{"KEY": "value"}``, or ``None`` as value to pass the
        runner's own value through), ``notify`` (URL), ``notify_on_success``,
        ``kernel``, ``catchup`` (``"latest"`` or ``"none"``), ``executor``
        (``"local"`` or ``"dask://HOST:PORT"``).
    """
    from .jobs.definitions import create_job as _create

    return _create(_ws(workspace), name, notebook, params=params, **settings)


def update_job(
    name: str,
    notebook: str | os.PathLike[str] | None = None,
    *,
    params: dict[str, Any] | None = None,
    workspace: str | os.PathLike[str] | Workspace | None = None,
    **settings: Any,
) -> Job:
    """Make version N+1 of a job (see :func:`create_job` for the settings)."""
    from .jobs.definitions import update_job as _update

    return _update(_ws(workspace), name, notebook, params=params, **settings)


def get_job(name: str, *, workspace: str | os.PathLike[str] | Workspace | None = None) -> Job:
    """A job's latest version, with its state (enabled, next run, last status)."""
    from .jobs.definitions import get_job as _get

    return _get(_ws(workspace), name)


def list_jobs(*, workspace: str | os.PathLike[str] | Workspace | None = None) -> Any:
    """All jobs (latest versions)."""
    from .jobs.definitions import list_jobs as _list

    return _list(_ws(workspace))


def run_job(
    name: str,
    params: dict[str, Any] | None = None,
    *,
    wait: bool = False,
    trigger: str = "api",
    workspace: str | os.PathLike[str] | Workspace | None = None,
) -> Run:
    """Start a run of a job; with ``wait=True`` execute it here and return when done.

    Parameter values are validated against the notebook's typed parameters
    before anything starts. Without ``wait`` the run is queued for an active
    scheduler, or started in a background process when none is running.
    """
    from .jobs.launch import start_run

    return start_run(_ws(workspace), name, params, wait=wait, trigger=trigger)


def list_runs(
    job: str | None = None,
    *,
    status: str | None = None,
    limit: int | None = 50,
    workspace: str | os.PathLike[str] | Workspace | None = None,
) -> Any:
    """Runs, newest first."""
    from .jobs.runs import list_runs as _list

    return _list(_ws(workspace), job, status=status, limit=limit)


def get_run(run_id: int, *, workspace: str | os.PathLike[str] | Workspace | None = None) -> Run:
    """A run by id."""
    from .jobs.runs import get_run as _get

    return _get(_ws(workspace), run_id)


def cancel_run(run_id: int, *, workspace: str | os.PathLike[str] | Workspace | None = None) -> Run:
    """Cancel a queued or running run (its kernel is stopped)."""
    from .jobs.runs import request_cancel

    return request_cancel(_ws(workspace), run_id)


def run_logs(run_id: int, *, workspace: str | os.PathLike[str] | Workspace | None = None) -> str:
    """A run's log so far (cell stdout/stderr and lifecycle lines)."""
    from .jobs.runs import read_logs

    return "".join(text for _, _, text in read_logs(_ws(workspace), int(run_id)))


def current_run(*, workspace: str | os.PathLike[str] | Workspace | None = None) -> Run | None:
    """The run this code executes in (from ``OPX_RUN_ID``), or None outside a job."""
    from .jobs.runs import get_run as _get

    rid = os.environ.get("OPX_RUN_ID")
    return _get(_ws(workspace), int(rid)) if rid and rid.isdigit() else None


def log_metric(
    name: str, value: Any, *, workspace: str | os.PathLike[str] | Workspace | None = None
) -> None:
    """Record a named value, attached to the current run when inside a job."""
    from .jobs.runs import log_metric as _log

    rid = os.environ.get("OPX_RUN_ID")
    _log(_ws(workspace), int(rid) if rid and rid.isdigit() else None, name, value)


# -- feedback --------------------------------------------------------------------------
def log_predictions(
    model_ref: str,
    ids: Any,
    scores: Any = None,
    *,
    features: Any = None,
    labels: Any = None,
    ts: Any = None,
    event_ids: Any = None,
    workspace: str | os.PathLike[str] | Workspace | None = None,
) -> Any:
    """Record predictions: entity ids, scores (and/or predicted labels), features.

    Parameters
    ----------
    model_ref : str
        ``"churn"``, ``"churn@production"`` …: the predictions are attributed
        to the version it resolves to now.
    ids : array-like
        Entity ids (customer ids): outcomes and treatments join on them.
    scores : array-like, optional
        Scores (probability of the positive class, or predicted values).
    features : DataFrame or list of dicts, optional
        The features the model saw; drift is measured on them.
    labels : array-like, optional
        Predicted classes, when there are no scores or beside them.
    ts : datetime, str, number or array-like, optional
        Event times (ISO 8601 or epoch seconds); default now.
    event_ids : array-like, optional
        Ids that make re-sending idempotent; derived from the content if omitted.

    Raises
    ------
    ValidationError
        A bad row (missing id, NaN score …): nothing of the batch is stored.
    NotFoundError
        Unknown model.
    """
    from .monitoring.ingest import normalize_deferred
    from .monitoring.log import log_events

    frame, keys = normalize_deferred(
        "predictions",
        ids=ids,
        score=scores,
        label=labels,
        features=features,
        ts=ts,
        event_ids=event_ids,
    )
    return log_events(_ws(workspace), model_ref, "predictions", frame, keys)


def log_treatments(
    model: str,
    ids: Any,
    arm: Any,
    *,
    ts: Any = None,
    event_ids: Any = None,
    workspace: str | os.PathLike[str] | Workspace | None = None,
) -> Any:
    """Record the actions taken on predictions: each entity's arm (``"email"``,
    ``"control"`` …); one arm for all, or one per id."""
    from .monitoring.ingest import normalize_deferred
    from .monitoring.log import log_events

    frame, keys = normalize_deferred("treatments", ids=ids, arm=arm, ts=ts, event_ids=event_ids)
    return log_events(_ws(workspace), model, "treatments", frame, keys)


def log_outcomes(
    model: str,
    ids: Any,
    values: Any,
    *,
    ts: Any = None,
    event_ids: Any = None,
    workspace: str | os.PathLike[str] | Workspace | None = None,
) -> Any:
    """Record outcomes as they arrive (e.g. 1 = churned), joined later to the
    latest earlier prediction of the same entity."""
    from .monitoring.ingest import normalize_deferred
    from .monitoring.log import log_events

    frame, keys = normalize_deferred("outcomes", ids=ids, value=values, ts=ts, event_ids=event_ids)
    return log_events(_ws(workspace), model, "outcomes", frame, keys)


def feedback(
    model: str,
    window: str | int = "1d",
    *,
    horizon: str = "30D",
    threshold: float = 0.5,
    control_arm: str = "control",
    workspace: str | os.PathLike[str] | Workspace | None = None,
) -> Any:
    """Production feedback of a model per window (``"1h"``, ``"1d"``, ``"1w"`` or N events).

    Returns a ``Feedback`` with DataFrames ``.volume``, ``.performance``,
    ``.drift``, ``.prediction_drift``, ``.uplift``, ``.uplift_total``,
    ``.alerts``, and ``.kpis()``.
    """
    from .monitoring.compute import compute

    return compute(
        _ws(workspace), model, window, horizon=horizon, threshold=threshold, control_arm=control_arm
    )


# -- alerts ----------------------------------------------------------------------------
def add_alert(
    model: str,
    expr: str,
    *,
    min_n: int = 0,
    window: str = "1d",
    webhook: str | None = None,
    trigger_job: str | None = None,
    workspace: str | os.PathLike[str] | Workspace | None = None,
) -> Rule:
    """Add an alert rule on a model's production feedback.

    Parameters
    ----------
    model : str
        A snapshot name or ref (rules belong to the name).
    expr : str
        ``METRIC OP NUMBER`` with OP one of ``< <= > >= == !=``, e.g.
        ``"auc < 0.7"``, ``"drifted_share > 0.3"``,
        ``"psi:monthly_charges > 0.25"``, ``"freshness_hours > 26"``,
        ``"uplift > 0"``, ``"predictions < 100"``. The metrics are listed in
        :mod:`jupyter_opx.monitoring.alerts` (and by ``opx alert add -h``).
    min_n : int
        The rule is only judged once the sample behind its metric (labelled
        predictions for performance, the window's predictions for drift and
        volume, treated entities for uplift) reaches this size.
    window : str
        The window the metric is read from (``"1h"``, ``"1d"``, ``"1w"`` or N
        events); the latest window with data is judged.
    webhook : str, optional
        URL POSTed (JSON: model, rule_id, expr, state, value, n, window, at …)
        once per state change, with retries.
    trigger_job : str, optional
        A job to run (trigger ``"alert"``) each time the rule starts firing,
        e.g. a retraining notebook.

    Returns
    -------
    Rule
        With its ``state``: ``"ok"`` until it first fires, then ``"firing"``
        / ``"resolved"``. Adding an identical rule again returns the existing one.

    Raises
    ------
    ValidationError
        An expression outside the grammar, an unknown metric or feature (the
        message lists them), a bad window, ``min_n`` or webhook.
    NotFoundError
        Unknown model or job.
    """
    from .monitoring.alerts import add_rule

    return add_rule(
        _ws(workspace),
        model,
        expr,
        min_n=min_n,
        window=window,
        webhook=webhook,
        trigger_job=trigger_job,
    )


def alerts(
    model: str | None = None, *, workspace: str | os.PathLike[str] | Workspace | None = None
) -> RuleList:
    """Alert rules (of ``model`` if given) with their state, value and since when."""
    from .monitoring.alerts import list_rules

    return list_rules(_ws(workspace), model)


def remove_alert(
    rule_id: int, *, workspace: str | os.PathLike[str] | Workspace | None = None
) -> Rule:
    """Delete an alert rule (and its history of state changes); returns it.

    Raises
    ------
    NotFoundError
        No rule with that id.
    """
    from .monitoring.alerts import remove_rule

    return remove_rule(_ws(workspace), rule_id)


def evaluate_alerts(
    model: str | None = None, *, workspace: str | os.PathLike[str] | Workspace | None = None
) -> ChangeList:
    """Evaluate the alert rules (of ``model``) now, notifying on each state change.

    Rules are also evaluated after every ingested batch and on the
    scheduler's timer; this is for checking at once.

    Returns
    -------
    ChangeList
        The changes (empty when no rule changed state); ``.errors`` names the
        models whose feedback could not be computed.
    """
    from .monitoring.alerts import evaluate

    return evaluate(_ws(workspace), model)
