"""What changed between two snapshots: model, data, schema, metrics, params, environment."""

from __future__ import annotations

from typing import Any

from ..workspace import Workspace
from .catalog import get_snapshot
from .records import Snapshot, SnapshotDiff
from .refs import Ref


def _schema_diff(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> dict[str, Any]:
    da = {c["name"]: c["dtype"] for c in a}
    db = {c["name"]: c["dtype"] for c in b}
    return {
        "added": [c for c in db if c not in da],
        "removed": [c for c in da if c not in db],
        "changed": [
            {"column": c, "a": da[c], "b": db[c]} for c in da if c in db and da[c] != db[c]
        ],
    }


def _mapping_diff(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    return {
        k: {"a": a.get(k), "b": b.get(k)} for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)
    }


def snapshot_diff(a: Snapshot, b: Snapshot) -> SnapshotDiff:
    """Compare two loaded snapshots (pure: reads nothing from the store)."""
    ma, mb = a.model or {}, b.model or {}
    model = {
        "changed": ma.get("digest") != mb.get("digest"),
        "a_class": ma.get("class"),
        "b_class": mb.get("class"),
        "a_digest": ma.get("digest"),
        "b_digest": mb.get("digest"),
    }
    data: dict[str, Any] = {}
    for key in sorted(set(a.data) | set(b.data)):
        da, db = a.data.get(key), b.data.get(key)
        if da is None or db is None:
            present = db if da is None else da
            assert present is not None
            data[key] = {
                "status": "added" if da is None else "removed",
                "a_rows": da.rows if da else None,
                "b_rows": db.rows if db else None,
                "columns": [c["name"] for c in present.schema],
            }
            continue
        data[key] = {
            "status": "same" if da.digest == db.digest else "changed",
            "a_rows": da.rows,
            "b_rows": db.rows,
            "a_digest": da.digest,
            "b_digest": db.digest,
            "schema": _schema_diff(da.schema, db.schema),
        }
    metrics: dict[str, Any] = {}
    for k in sorted(set(a.metrics) | set(b.metrics)):
        va, vb = a.metrics.get(k), b.metrics.get(k)
        if va != vb:
            delta = (
                vb - va if isinstance(va, (int, float)) and isinstance(vb, (int, float)) else None
            )
            metrics[k] = {"a": va, "b": vb, "delta": delta}
    env: dict[str, Any] = {}
    if a.environment.get("python") != b.environment.get("python"):
        env["python"] = {"a": a.environment.get("python"), "b": b.environment.get("python")}
    env.update(_mapping_diff(a.environment.get("packages", {}), b.environment.get("packages", {})))
    return SnapshotDiff(
        a=a.ref,
        b=b.ref,
        model=model,
        data=data,
        metrics=metrics,
        params=_mapping_diff(a.params, b.params),
        tags=_mapping_diff(a.tags, b.tags),
        input_schema=_schema_diff(a.input_schema, b.input_schema),
        environment=env,
    )


def diff(ws: Workspace, ref_a: str | Ref, ref_b: str | Ref) -> SnapshotDiff:
    """Compare the snapshots two references resolve to."""
    return snapshot_diff(get_snapshot(ws, ref_a), get_snapshot(ws, ref_b))
