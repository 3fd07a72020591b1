"""Taking a snapshot: encode, hash and store artifacts, then publish atomically.

Order matters for crash safety. Every artifact is first written as a
content-addressed blob (atomically, each one on its own); only then does one
database transaction allocate the version and insert the snapshot with its
datasets. A process killed at any point before that commit leaves at most
unreferenced blobs behind — never a half snapshot that users can see.

The expensive parts run side by side (pyarrow's parquet writer, hashlib and
numpy's sorts release the GIL): encoding each dataset, fingerprinting it, its
reference summaries, the model, and reading the environment. An unchanged
DataFrame is recognised by its fingerprint (looked for only when a cheap
quick key says it may be stored): it is neither encoded nor stored again, and
its summaries are reused (the prediction summary too when the model is also
unchanged).
"""

from __future__ import annotations

import getpass
import json
import math
import os
import platform
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, insert, select, update

from ..exceptions import OpxError, SerializationError, ValidationError
from ..store import schema
from ..store.blobs import OffloadWriter
from ..store.db import Database, utcnow
from ..workspace import Workspace
from . import codecs, provenance, summaries
from .records import Snapshot
from .refs import check_name


def current_user() -> str:
    """Who is writing: ``$OPX_USER``, else the login name."""
    user = os.environ.get("OPX_USER")
    if user:
        return user[:128]
    try:
        return getpass.getuser()[:128]
    except (OSError, KeyError):  # pragma: no cover - no passwd entry in some containers
        return "unknown"


def _clean_metrics(metrics: dict[str, Any] | None) -> dict[str, float | int]:
    out: dict[str, float | int] = {}
    for key, value in (metrics or {}).items():
        if not isinstance(key, str) or not key:
            raise ValidationError(f"metric names must be non-empty strings, got {key!r}")
        if hasattr(value, "item") and callable(value.item):  # numpy scalar
            value = value.item()
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValidationError(
                f"metric {key!r} must be a number, got {type(value).__name__}; "
                "put other values in params= or tags="
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise ValidationError(f"metric {key!r} is {value}; metrics must be finite numbers")
        out[key] = value
    return out


def _jsonable(values: dict[str, Any] | None, what: str) -> dict[str, Any]:
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ValidationError(f"{what} must be a dict, got {type(values).__name__}")

    def default(obj: Any) -> Any:
        # tolist() first: arrays have item() too, but it fails unless they hold one value;
        # on numpy scalars tolist() gives the Python scalar
        if hasattr(obj, "tolist") and callable(obj.tolist):
            return obj.tolist()
        if hasattr(obj, "item") and callable(obj.item):
            return obj.item()
        raise TypeError(type(obj).__name__)

    try:
        return dict(json.loads(json.dumps({str(k): v for k, v in values.items()}, default=default)))
    except (TypeError, ValueError) as exc:
        raise ValidationError(
            f"{what} must hold JSON values (numbers, strings, lists, dicts): {exc}"
        ) from exc


def _normalize_data(data: Any) -> dict[str, Any]:
    if data is None:
        return {}
    if isinstance(data, dict):
        out = {}
        for key, value in data.items():
            if not isinstance(key, str):
                raise ValidationError(f"data keys must be strings, got {key!r}")
            check_name(key)
            out[key] = value
        return out
    return {"data": data}


def _input_schema(model: Any, frame: Any | None) -> list[dict[str, Any]]:
    dtypes = {str(c): str(t) for c, t in frame.dtypes.items()} if frame is not None else {}
    names = getattr(model, "feature_names_in_", None) if model is not None else None
    if names is not None:
        return [{"name": str(n), "dtype": dtypes.get(str(n), "unknown")} for n in names]
    if frame is not None:
        return [{"name": n, "dtype": t} for n, t in dtypes.items()]
    n_features = getattr(model, "n_features_in_", None)
    if isinstance(n_features, int):
        return [{"name": f"x{i}", "dtype": "unknown"} for i in range(n_features)]
    return []


def _store_model(ws: Workspace, model: Any, allow_pickle: bool) -> dict[str, Any]:
    with ws.blobs.writer() as sink:
        codec = codecs.dump_model(model, sink, allow_pickle=allow_pickle)
    cls = type(model)
    return {
        "digest": sink.digest,
        "size": sink.size,
        "codec": codec,
        "class": f"{cls.__module__}.{cls.__qualname__}",
    }


_OFFLOAD_BYTES = 16 << 20  # frames this large are hashed and written beside their encoding


def _store_frame(ws: Workspace, frame: Any) -> tuple[str, int]:
    """Encode a DataFrame as parquet into a blob.

    A large frame's encoded chunks are hashed and written by another thread
    (:class:`~jupyter_opx.store.blobs.OffloadWriter`) while pyarrow encodes the
    next ones: the encoding, the longest task of a first snapshot, no longer
    waits for sha256 and the file system.
    """
    with ws.blobs.writer() as sink:
        if int(frame.memory_usage(index=False, deep=False).sum()) < _OFFLOAD_BYTES:
            codecs.write_parquet(frame, sink)
        else:
            with OffloadWriter.around(sink) as target:
                codecs.write_parquet(frame, target)
    return sink.digest, sink.size


def _candidates(ws: Workspace, quick: str) -> list[dict[str, Any]]:
    """Stored datasets that share the quick key (equal data always does)."""
    with ws.db.transaction() as conn:
        rows = conn.execute(
            select(schema.data_cache).where(schema.data_cache.c.quick == quick)
        ).all()
    return [dict(r._mapping) for r in rows]


def _reusable_summary(ws: Workspace, data_digest: str, model_digest: str | None) -> str | None:
    """A stored summary of the same data *and* the same model (prediction summary included)."""
    D, S = schema.snapshot_data, schema.snapshots
    with ws.db.transaction() as conn:
        digest = conn.execute(
            select(D.c.summary_digest)
            .join(S, S.c.id == D.c.snapshot_id)
            .where(
                D.c.digest == data_digest,
                D.c.summary_digest.is_not(None),
                S.c.model_digest.is_(None)
                if model_digest is None
                else S.c.model_digest == model_digest,
            )
            .order_by(D.c.snapshot_id.desc())
            .limit(1)
        ).scalar()
    return digest if digest and ws.blobs.exists(digest) else None


def _store_summary(
    ws: Workspace, model: Any, frame: Any, cached: str | None = None
) -> tuple[str, int]:
    # Unchanged data reuses its feature summaries (``cached``), but the prediction
    # summary belongs to this snapshot's model, or to none: it is redone here.
    summary = None
    if cached is not None:
        try:
            summary = json.loads(ws.blobs.get(cached))
            summary.pop("prediction", None)
        except OpxError:  # damaged or missing: compute it again
            summary = None
    if summary is None:
        summary = summaries.summarize(frame)
    if model is not None:
        summary["prediction"] = summaries.score_summary(model, frame)
    digest, size, _ = ws.blobs.put(json.dumps(summary, separators=(",", ":")).encode())
    return digest, size


def create_snapshot(
    ws: Workspace,
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
    source: dict[str, Any] | None = None,
) -> Snapshot:
    """Store a new immutable version of snapshot ``name``; see :func:`jupyter_opx.snapshot`."""
    check_name(name)
    metrics = _clean_metrics(metrics)
    params = _jsonable(params, "params")
    tags = _jsonable(tags, "tags")
    if not isinstance(message, str):
        raise ValidationError("message must be a string")
    if "\x00" in message:  # PostgreSQL cannot store it in text
        raise ValidationError("message must not contain NUL characters")
    datasets = _normalize_data(data)
    if model is None and not datasets:
        raise ValidationError("nothing to snapshot: pass model=... and/or data=...")
    frames = {key: codecs.as_frame(obj) for key, obj in datasets.items()}
    if reference is not None and reference not in frames:
        raise ValidationError(
            f"reference={reference!r} is not one of the datasets ({', '.join(frames) or 'none'})"
        )
    ref_key = reference or ("train" if "train" in frames else next(iter(frames), None))
    source = source or {}
    nb_path = source.get("notebook_path")

    db: Database = ws.db  # creates and migrates the store on first write
    results: dict[str, dict[str, Any]] = {}
    fingerprints: dict[str, str] = {}
    summary_sizes: dict[str, int] = {}
    # one thread per task (model, git, environment, per dataset encoding and
    # fingerprint, summaries): none waits in the queue behind another
    with ThreadPoolExecutor(max_workers=6, thread_name_prefix="opx-snapshot") as pool:
        # The data goes first: encoding new data is the longest task, and the
        # quick keys and cache lookups before it take milliseconds when no other
        # thread (skops, git) competes for the GIL yet. New data is encoded at
        # once, its fingerprint computed beside it. Data whose quick key matches
        # stored data is fingerprinted (on two threads, beside the model) and,
        # when it is the same, neither encoded nor stored again.
        hits: dict[str, Any] = {key: None for key in frames}
        encoding: dict[str, Future[tuple[str, int]]] = {}
        printing: dict[str, Future[str]] = {}
        maybe: dict[str, list[dict[str, Any]]] = {}
        quick: dict[str, str] = {}
        for key, (frame, meta) in frames.items():
            quick[key] = codecs.quick_key(frame, meta)
            candidates = _candidates(ws, quick[key])
            if candidates:
                maybe[key] = candidates
            else:
                encoding[key] = pool.submit(_store_frame, ws, frame)
                printing[key] = pool.submit(codecs.fingerprint, frame, meta, 1)
        summary_f: Future[tuple[str, int]] | None = None
        if ref_key is not None and ref_key not in maybe:
            # new reference data: nothing to reuse, so its summaries start now,
            # beside the encoding, instead of after the model is stored
            summary_f = pool.submit(_store_summary, ws, model, frames[ref_key][0], None)
        model_f = pool.submit(_store_model, ws, model, allow_pickle) if model is not None else None
        git_f = pool.submit(provenance.git_info, Path(nb_path).parent if nb_path else None)
        # warm the module → distribution map while the heavy work runs
        env_f = pool.submit(provenance.module_distributions)
        for key, candidates in maybe.items():
            frame, meta = frames[key]
            fingerprints[key] = codecs.fingerprint(frame, meta)
            hits[key] = next(
                (
                    c
                    for c in candidates
                    if c["fingerprint"] == fingerprints[key] and ws.blobs.exists(c["digest"])
                ),
                None,
            )
            if hits[key] is None:
                encoding[key] = pool.submit(_store_frame, ws, frame)
        model_info = model_f.result() if model_f is not None else None
        reused_summary: str | None = None
        if ref_key is not None and summary_f is None:
            hit = hits[ref_key]
            if hit is not None:
                reused_summary = _reusable_summary(
                    ws, hit["digest"], model_info["digest"] if model_info else None
                )
            if reused_summary is None:
                cached = hit["summary_digest"] if hit is not None else None
                summary_f = pool.submit(_store_summary, ws, model, frames[ref_key][0], cached)
        source_blob = None
        if source.get("cells") or source.get("notebook"):
            source_blob = ws.blobs.put(json.dumps(source, default=str).encode())
        for key, (frame, meta) in frames.items():
            hit = hits[key]
            if hit is not None:
                digest, size = hit["digest"], hit["meta"]["size"]
            else:
                digest, size = encoding[key].result()
            if key in printing:
                fingerprints[key] = printing[key].result()
            summary_digest = None
            if key == ref_key:
                if summary_f is not None:
                    summary_digest, summary_sizes[summary_digest] = summary_f.result()
                else:
                    summary_digest = reused_summary
            results[key] = {
                "digest": digest,
                "size": size,
                "summary_digest": summary_digest,
                "meta": {**meta, "size": size},
                "rows": len(frame),
                "columns": frame.shape[1],
                "schema": codecs.frame_schema(frame),
            }
        env_f.result()
        # read after the model is encoded, so the codec's own imports are included
        environment = provenance.environment()
        git = git_f.result()

    ref_frame = frames[ref_key][0] if ref_key else None
    now = utcnow()
    row = {
        "name": name,
        "created_at": now,
        "created_by": current_user(),
        "message": message,
        "model_digest": model_info["digest"] if model_info else None,
        "model_codec": model_info["codec"] if model_info else None,
        "model_class": model_info["class"] if model_info else None,
        "model_size": model_info["size"] if model_info else None,
        "metrics": metrics,
        "params": params,
        "tags": tags,
        "input_schema": _input_schema(model, ref_frame),
        "environment": environment,
        "provenance": {
            "notebook_path": nb_path,
            "git": git,
            "run_id": os.environ.get("OPX_RUN_ID"),
            "host": platform.node(),
            "cwd": os.getcwd(),
            "cells": len(source.get("cells") or []),
        },
        "source_digest": source_blob[0] if source_blob else None,
        "reference_key": ref_key,
    }
    blob_sizes: dict[str, int] = {}
    if model_info:
        blob_sizes[model_info["digest"]] = model_info["size"]
    if source_blob:
        blob_sizes[source_blob[0]] = source_blob[1]
    for res in results.values():
        blob_sizes[res["digest"]] = res["size"]
    blob_sizes.update(summary_sizes)

    def publish(conn: Connection) -> int:
        snaps = schema.snapshots
        latest = conn.execute(
            select(snaps.c.id, snaps.c.version)
            .where(snaps.c.name == name)
            .order_by(snaps.c.version.desc())
            .limit(1)
        ).first()
        version = latest.version + 1 if latest else 1
        Database.record_blobs(conn, blob_sizes)
        inserted = conn.execute(
            insert(snaps).values(**row, version=version, parent_id=latest.id if latest else None)
        ).inserted_primary_key
        assert inserted is not None
        snap_id = inserted[0]
        for key, res in results.items():
            first = conn.execute(
                select(schema.snapshot_data.c.snapshot_id)
                .where(schema.snapshot_data.c.digest == res["digest"])
                .order_by(schema.snapshot_data.c.snapshot_id)
                .limit(1)
            ).scalar()
            conn.execute(
                insert(schema.snapshot_data).values(
                    snapshot_id=snap_id,
                    key=key,
                    digest=res["digest"],
                    kind=res["meta"]["kind"],
                    rows=res["rows"],
                    columns=res["columns"],
                    size=res["size"],
                    schema={"columns": res["schema"], "codec": res["meta"]},
                    summary_digest=res["summary_digest"],
                    reused_from=first,
                )
            )
            cache = schema.data_cache
            values = {
                "quick": quick[key],
                "digest": res["digest"],
                "summary_digest": res["summary_digest"],
                "meta": res["meta"],
            }
            exists = conn.execute(
                select(cache.c.fingerprint).where(cache.c.fingerprint == fingerprints[key])
            ).first()
            if exists is None:
                conn.execute(insert(cache).values(fingerprint=fingerprints[key], **values))
            else:
                conn.execute(
                    update(cache).where(cache.c.fingerprint == fingerprints[key]).values(**values)
                )
        Database.record_change(conn, "snapshot", f"{name}/{version}")
        return int(version)

    version = db.run_write(publish)
    from .catalog import get_snapshot

    return get_snapshot(ws, f"{name}/{version}")


__all__ = ["SerializationError", "create_snapshot", "current_user"]
