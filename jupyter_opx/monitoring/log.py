"""Logging feedback events: resolve the model, validate, store, evaluate alerts.

One entry point, :func:`log_events`, serves the Python API (``opx.log_*``),
the HTTP API and the jobs: everything arrives as a validated DataFrame.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from ..snapshots.catalog import resolve_version
from ..workspace import Workspace
from . import store
from .ingest import EventKeys, check_kind


@dataclass
class Logged:
    """What a call stored."""

    model: str
    version: int | None
    kind: str
    rows: int
    segment: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        ref = f"{self.model}/{self.version}" if self.version else self.model
        return f"stored {self.rows:,} {self.kind} for {ref} (segment {self.segment})"


def log_events(
    ws: Workspace,
    model: str,
    kind: str,
    frame: pd.DataFrame | Any,
    keys: EventKeys | None = None,
    resolved: tuple[str, int] | None = None,
) -> Logged:
    """Store a validated batch for ``model`` (a name or a ref).

    ``frame``: a DataFrame from :func:`.ingest.normalize`, or what
    :func:`.ingest.parse_events` returns (an Arrow table for a plain NDJSON batch).

    ``keys``: with a frame from :func:`.ingest.normalize_deferred`, what computes
    its event keys (the store computes them while it writes).

    Predictions are attributed to the snapshot version the ref resolves to
    now (``churn@production`` → its current version), in a ``model_version``
    column; ``resolved``: that ``(name, version)`` when the caller has just
    looked it up (the HTTP handler, which answers 404 before reading a body).
    Inside a job run, ``OPX_RUN_ID`` links the batch to the run.

    Raises
    ------
    NotFoundError
        The model (snapshot name) does not exist.
    """
    check_kind(kind)
    name, number = resolved if resolved is not None else resolve_version(ws, model)
    version = number if kind == "predictions" else None
    if version is not None:
        if isinstance(frame, pd.DataFrame):
            frame = frame.assign(model_version=version)
        else:
            import numpy as np
            import pyarrow as pa

            frame = frame.append_column(
                "model_version", pa.array(np.full(len(frame), version, dtype=np.int64))
            )
    rid = os.environ.get("OPX_RUN_ID")
    segment = store.append(
        ws, name, kind, frame, run_id=int(rid) if rid and rid.isdigit() else None, keys=keys
    )
    with contextlib.suppress(ImportError):
        from .alerts import evaluate_after_ingest

        evaluate_after_ingest(ws, name)
    return Logged(name, version, kind, len(frame), segment)
