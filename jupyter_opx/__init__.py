"""jupyter_opx: notebook models to production, and production back to the notebook.

Use it as ``import jupyter_opx as opx``::

    snap = opx.snapshot("churn", model=clf, data={"train": df}, metrics={"auc": 0.91})
    opx.promote(snap.ref, "production")
    model = opx.load_model("churn@production")

In IPython/Jupyter, ``%load_ext jupyter_opx`` adds the ``%opx`` magics.

The public functions are imported lazily so that ``import jupyter_opx`` stays
fast; they live in :mod:`jupyter_opx.api`.
"""

from __future__ import annotations

from typing import Any

from ._version import __version__ as __version__

_API = {
    "add_alert",
    "alerts",
    "evaluate_alerts",
    "remove_alert",
    "alias_history",
    "feedback",
    "log_outcomes",
    "log_predictions",
    "log_treatments",
    "cancel_run",
    "create_job",
    "current_run",
    "get_job",
    "get_run",
    "list_jobs",
    "list_runs",
    "log_metric",
    "run_job",
    "run_logs",
    "update_job",
    "diff",
    "kernel_source",
    "list_snapshots",
    "load_data",
    "load_model",
    "promote",
    "show",
    "snapshot",
    "verify",
    "current_workspace",
}
_TYPES = {
    "Snapshot": "jupyter_opx.snapshots.records",
    "SnapshotDiff": "jupyter_opx.snapshots.records",
    "AliasEvent": "jupyter_opx.snapshots.records",
    "Workspace": "jupyter_opx.workspace",
}
_ERRORS = {
    "AuthError",
    "ForbiddenError",
    "OpxError",
    "ValidationError",
    "NotFoundError",
    "ConflictError",
    "SerializationError",
    "UntrustedModelError",
    "CorruptBlobError",
    "StoreError",
}

__all__ = sorted({"__version__", *_API, *_TYPES, *_ERRORS, "load_ipython_extension"})


def __getattr__(name: str) -> Any:
    import importlib

    if name in _API:
        return getattr(importlib.import_module("jupyter_opx.api"), name)
    if name in _TYPES:
        return getattr(importlib.import_module(_TYPES[name]), name)
    if name in _ERRORS:
        return getattr(importlib.import_module("jupyter_opx.exceptions"), name)
    raise AttributeError(f"module 'jupyter_opx' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__


def load_ipython_extension(ipython: Any) -> None:
    """Register the ``%opx`` / ``%%opx`` magics (``%load_ext jupyter_opx``)."""
    from .magics import register

    register(ipython)


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    return [{"src": "labextension", "dest": "jupyter-opx"}]


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "jupyter_opx.server.extension"}]
