"""Finding, loading and promoting snapshots."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import Connection, Row, func, insert, select, update

from ..exceptions import NotFoundError, SerializationError, ValidationError
from ..store import schema
from ..store.db import Database, as_utc, utcnow
from ..workspace import Workspace
from . import codecs
from .capture import current_user
from .records import AliasEvent, DataInfo, ModelSummary, Snapshot, SnapshotList
from .refs import Ref, check_alias, parse_ref

S = schema.snapshots


def _names(conn: Connection) -> list[str]:
    return list(conn.execute(select(S.c.name).distinct().order_by(S.c.name)).scalars())


def resolve_row(conn: Connection, ref: str | Ref) -> Row[Any]:
    """The snapshots row a reference points at.

    Raises
    ------
    NotFoundError
        Unknown name, version or alias; the message lists what exists.
    """
    r = parse_ref(ref)
    base = select(S).where(S.c.name == r.name)
    if r.alias is not None:
        target = conn.execute(
            select(schema.aliases.c.version).where(
                schema.aliases.c.name == r.name, schema.aliases.c.alias == r.alias
            )
        ).scalar()
        if target is None:
            _require_name(conn, r.name)
            known = list(
                conn.execute(
                    select(schema.aliases.c.alias).where(schema.aliases.c.name == r.name)
                ).scalars()
            )
            hint = f"its aliases are {', '.join(known)}" if known else "it has no aliases yet"
            raise NotFoundError(
                f"{r.name} has no alias {r.alias!r} ({hint}); "
                f"set one with opx.promote('{r.name}/N', '{r.alias}')",
                ref=str(r),
            )
        row = conn.execute(base.where(S.c.version == target)).first()
    elif r.version is not None:
        row = conn.execute(base.where(S.c.version == r.version)).first()
        if row is None:
            _require_name(conn, r.name)
            latest = conn.execute(
                select(S.c.version).where(S.c.name == r.name).order_by(S.c.version.desc()).limit(1)
            ).scalar()
            raise NotFoundError(
                f"{r.name} has no version {r.version} (versions 1 to {latest} exist)",
                ref=str(r),
            )
    else:
        row = conn.execute(base.order_by(S.c.version.desc()).limit(1)).first()
    if row is None:
        _require_name(conn, r.name)
        raise NotFoundError(f"snapshot {r} not found", ref=str(r))  # pragma: no cover
    return row


def _require_name(conn: Connection, name: str) -> None:
    exists = conn.execute(select(S.c.id).where(S.c.name == name).limit(1)).first()
    if exists is None:
        names = _names(conn)
        listing = (
            f"existing snapshots: {', '.join(names[:10])}"
            if names
            else "the store has no snapshots yet"
        )
        raise NotFoundError(f"no snapshot named {name!r} ({listing})", ref=name)


def _no_store(ref: str | Ref) -> NotFoundError:
    return NotFoundError(
        f"snapshot {ref} not found: there is no store here yet (it is created by the "
        "first opx.snapshot); set OPX_HOME or cd into your project",
        ref=str(ref),
    )


#: ids per ``IN (…)`` list (well under SQLite's and PostgreSQL's parameter limits)
_CHUNK = 500


def _chunks(values: list[Any]) -> list[list[Any]]:
    return [values[i : i + _CHUNK] for i in range(0, len(values), _CHUNK)]


def _to_snapshots(ws: Workspace, conn: Connection, rows: list[Row[Any]]) -> list[Snapshot]:
    """Snapshots from their rows, with parents, data entries and aliases.

    A fixed number of queries whatever the number of rows (a page of 500
    snapshots is four queries, not two thousand).
    """
    if not rows:
        return []
    ids = [r.id for r in rows]
    entries: dict[int, list[Any]] = {i: [] for i in ids}
    D = schema.snapshot_data
    for chunk in _chunks(ids):
        for d in conn.execute(
            select(D).where(D.c.snapshot_id.in_(chunk)).order_by(D.c.snapshot_id, D.c.key)
        ):
            entries[d.snapshot_id].append(d)
    # names of the parents and of the snapshots whose data was reused
    wanted = {r.parent_id for r in rows if r.parent_id is not None}
    wanted |= {
        d.reused_from
        for ds in entries.values()
        for d in ds
        if d.reused_from is not None and d.reused_from != d.snapshot_id
    }
    refs: dict[int, str] = {}
    for chunk in _chunks(sorted(wanted)):
        for p in conn.execute(select(S.c.id, S.c.name, S.c.version).where(S.c.id.in_(chunk))):
            refs[p.id] = f"{p.name}/{p.version}"
    A = schema.aliases
    aliases: dict[tuple[str, int], list[str]] = {}
    for chunk in _chunks(sorted({r.name for r in rows})):
        for a in conn.execute(
            select(A.c.name, A.c.version, A.c.alias).where(A.c.name.in_(chunk)).order_by(A.c.alias)
        ):
            aliases.setdefault((a.name, a.version), []).append(a.alias)
    return [
        _snapshot_of(ws, row, entries[row.id], refs, aliases.get((row.name, row.version), []))
        for row in rows
    ]


def _snapshot_of(
    ws: Workspace,
    row: Row[Any],
    entries: list[Any],
    refs: dict[int, str],
    aliases: list[str],
) -> Snapshot:
    data: dict[str, DataInfo] = {}
    for d in entries:
        reused = None
        if d.reused_from is not None and d.reused_from != row.id:
            reused = refs.get(d.reused_from)
        data[d.key] = DataInfo(
            key=d.key,
            digest=d.digest,
            kind=d.kind,
            rows=int(d.rows),
            columns=int(d.columns),
            size=int(d.size),
            schema=list(d.schema.get("columns", [])),
            summary_digest=d.summary_digest,
            reused_from=reused,
        )
    model = None
    if row.model_digest:
        model = {
            "digest": row.model_digest,
            "codec": row.model_codec,
            "class": row.model_class,
            "size": row.model_size,
        }
    created = as_utc(row.created_at)
    assert created is not None
    return Snapshot(
        id=row.id,
        name=row.name,
        version=row.version,
        created_at=created,
        created_by=row.created_by,
        message=row.message,
        parent=refs.get(row.parent_id) if row.parent_id is not None else None,
        model=model,
        metrics=dict(row.metrics),
        params=dict(row.params),
        tags=dict(row.tags),
        input_schema=list(row.input_schema),
        environment=dict(row.environment),
        provenance=dict(row.provenance),
        data=data,
        aliases=list(aliases),
        reference_key=row.reference_key,
        source_digest=row.source_digest,
        workspace=ws,
    )


def _to_snapshot(ws: Workspace, conn: Connection, row: Row[Any]) -> Snapshot:
    return _to_snapshots(ws, conn, [row])[0]


def get_snapshot(ws: Workspace, ref: str | Ref) -> Snapshot:
    """The snapshot a reference points at (see :func:`jupyter_opx.show`)."""
    parse_ref(ref)
    if not ws.exists:
        raise _no_store(ref)
    with ws.db.transaction() as conn:
        return _to_snapshot(ws, conn, resolve_row(conn, ref))


def resolve_version(ws: Workspace, ref: str | Ref) -> tuple[str, int]:
    """``(name, version)`` of the snapshot a reference points at, and nothing more.

    One indexed lookup, for hot paths (every feedback batch resolves its model)
    that need neither the datasets nor the aliases :func:`get_snapshot` gathers.
    """
    parse_ref(ref)
    if not ws.exists:
        raise _no_store(ref)
    with ws.db.transaction() as conn:
        row = resolve_row(conn, ref)
    return str(row.name), int(row.version)


def list_snapshots(
    ws: Workspace, name: str | None = None, limit: int | None = None, offset: int = 0
) -> SnapshotList:
    """Snapshots, newest first, optionally of one name (a page of them with ``limit``)."""
    if not ws.exists:
        return SnapshotList()
    with ws.db.transaction() as conn:
        query = select(S).order_by(S.c.created_at.desc(), S.c.id.desc())
        if name is not None:
            _require_name(conn, parse_ref(name).name)
            query = query.where(S.c.name == parse_ref(name).name)
        if limit is not None:
            query = query.limit(limit).offset(offset)
        return SnapshotList(_to_snapshots(ws, conn, list(conn.execute(query).all())))


def count_snapshots(ws: Workspace, name: str | None = None) -> int:
    """How many snapshots there are (of ``name`` if given): the total of a paged listing."""
    if not ws.exists:
        return 0
    with ws.db.transaction() as conn:
        query = select(func.count()).select_from(S)
        if name is not None:
            _require_name(conn, parse_ref(name).name)
            query = query.where(S.c.name == parse_ref(name).name)
        return int(conn.execute(query).scalar() or 0)


def list_models(ws: Workspace, limit: int | None = None, offset: int = 0) -> list[ModelSummary]:
    """Every snapshot name, by name: its number of versions, latest version and aliases.

    What a model list needs without reading every snapshot (two queries per page).
    """
    if not ws.exists:
        return []
    with ws.db.transaction() as conn:
        query = (
            select(
                S.c.name,
                func.count().label("versions"),
                func.max(S.c.version).label("latest"),
                func.max(S.c.created_at).label("updated_at"),
            )
            .group_by(S.c.name)
            .order_by(S.c.name)
        )
        if limit is not None:
            query = query.limit(limit).offset(offset)
        rows = conn.execute(query).all()
        A = schema.aliases
        aliases: dict[str, dict[str, int]] = {}
        for chunk in _chunks([r.name for r in rows]):
            for a in conn.execute(
                select(A.c.name, A.c.alias, A.c.version)
                .where(A.c.name.in_(chunk))
                .order_by(A.c.alias)
            ):
                aliases.setdefault(a.name, {})[a.alias] = int(a.version)
    return [
        ModelSummary(
            name=r.name,
            versions=int(r.versions),
            latest=int(r.latest),
            updated_at=as_utc(r.updated_at),  # type: ignore[arg-type]
            aliases=aliases.get(r.name, {}),
        )
        for r in rows
    ]


def count_models(ws: Workspace) -> int:
    """How many snapshot names there are: the total of a paged :func:`list_models`."""
    if not ws.exists:
        return 0
    with ws.db.transaction() as conn:
        names = select(S.c.name).distinct().subquery()
        return int(conn.execute(select(func.count()).select_from(names)).scalar() or 0)


def promote(ws: Workspace, ref: str | Ref, alias: str) -> AliasEvent:
    """Point ``name@alias`` at the version ``ref`` resolves to, keeping history."""
    check_alias(alias)
    if not ws.exists:
        raise _no_store(ref)
    who = current_user()

    def write(conn: Connection) -> AliasEvent:
        row = resolve_row(conn, ref)
        A = schema.aliases
        now = utcnow()
        prev = conn.execute(
            select(A.c.version).where(A.c.name == row.name, A.c.alias == alias)
        ).scalar()
        values = {"version": row.version, "updated_at": now, "updated_by": who}
        if prev is None:
            conn.execute(insert(A).values(name=row.name, alias=alias, **values))
        else:
            conn.execute(update(A).where(A.c.name == row.name, A.c.alias == alias).values(**values))
        conn.execute(
            insert(schema.alias_history).values(
                name=row.name,
                alias=alias,
                version=row.version,
                previous_version=prev,
                at=now,
                by=who,
            )
        )
        Database.record_change(conn, "alias", f"{row.name}@{alias}")
        return AliasEvent(row.name, alias, row.version, prev, now, who)

    return ws.db.run_write(write)


def alias_history(ws: Workspace, name: str, alias: str | None = None) -> list[AliasEvent]:
    """Every move of the aliases of ``name`` (or of one alias), newest first."""
    if not ws.exists:
        return []
    H = schema.alias_history
    with ws.db.transaction() as conn:
        _require_name(conn, name)
        query = select(H).where(H.c.name == name).order_by(H.c.id.desc())
        if alias is not None:
            query = query.where(H.c.alias == alias)
        return [
            AliasEvent(r.name, r.alias, r.version, r.previous_version, as_utc(r.at), r.by)  # type: ignore[arg-type]
            for r in conn.execute(query)
        ]


def load_model(
    ws: Workspace,
    ref: str | Ref,
    trusted: list[str] | None = None,
    allow_pickle: bool = False,
) -> Any:
    """Load a snapshot's model after verifying its hash; trust is decided now."""
    snap = get_snapshot(ws, ref)
    if snap.model is None:
        raise NotFoundError(f"{snap.ref} has no model (it holds data only)", ref=snap.ref)
    if trusted is not None and (
        isinstance(trusted, str) or not all(isinstance(t, str) for t in trusted)
    ):
        raise ValidationError("trusted must be a list of type names, e.g. ['mypkg.MyModel']")
    data = ws.blobs.get(snap.model["digest"])  # hash verified before any decoding
    return codecs.load_model_bytes(
        data,
        snap.model["codec"],
        trusted=[*ws.trusted_types, *(trusted or [])],
        allow_pickle=allow_pickle,
        ref=snap.ref,
    )


def load_data(ws: Workspace, ref: str | Ref, key: str | None = None) -> Any:
    """Load one dataset of a snapshot (the only one when ``key`` is None)."""
    snap = get_snapshot(ws, ref)
    info = _data_info(snap, key)
    with ws.db.transaction() as conn:
        meta = conn.execute(
            select(schema.snapshot_data.c.schema).where(
                schema.snapshot_data.c.snapshot_id == snap.id,
                schema.snapshot_data.c.key == info.key,
            )
        ).scalar_one()
    # The hash is checked while pyarrow decodes (both release the GIL), and the
    # result is handed out only once the check passed. Parquet decoding runs no
    # code from the file; models, which could, are verified before decoding.
    buffer = ws.blobs.map_unverified(info.digest)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="opx-verify") as pool:
        verified = pool.submit(ws.blobs.check, buffer, info.digest)
        try:
            result = codecs.read_parquet(buffer, meta.get("codec", {}))
        except SerializationError:
            verified.result()  # a damaged blob is reported as such, not as bad parquet
            raise
        verified.result()
    return result


def _data_info(snap: Snapshot, key: str | None) -> DataInfo:
    if not snap.data:
        raise NotFoundError(f"{snap.ref} has no data (it holds a model only)", ref=snap.ref)
    if key is None:
        if len(snap.data) == 1:
            return next(iter(snap.data.values()))
        raise ValidationError(
            f"{snap.ref} holds several datasets ({', '.join(snap.data)}); name one, "
            f"e.g. load_data({snap.ref!r}, {next(iter(snap.data))!r})"
        )
    if key not in snap.data:
        raise NotFoundError(
            f"{snap.ref} has no dataset {key!r} (it has {', '.join(snap.data)})", ref=snap.ref
        )
    return snap.data[key]


def reference_summary(ws: Workspace, snap: Snapshot) -> dict[str, Any] | None:
    """The reference summaries stored with a snapshot (None without data)."""
    key = snap.reference_key
    if key is None or key not in snap.data or snap.data[key].summary_digest is None:
        return None
    digest = snap.data[key].summary_digest
    assert digest is not None
    summary: dict[str, Any] = json.loads(ws.blobs.get(digest))
    summary["dataset"] = key
    return summary


def source(ws: Workspace, ref: str | Ref) -> dict[str, Any] | None:
    """The executed cells and notebook recorded with a snapshot, if any."""
    snap = get_snapshot(ws, ref)
    if snap.source_digest is None:
        return None
    result: dict[str, Any] = json.loads(ws.blobs.get(snap.source_digest))
    return result


def verify_store(ws: Workspace) -> dict[str, Any]:
    """Re-hash every blob the store references or holds.

    Returns
    -------
    dict
        ``{"checked": n, "corrupt": [digest...], "missing": [digest...]}``
        where *missing* are blobs the metadata references but the store lacks.
    """
    if not ws.exists:
        return {"checked": 0, "corrupt": [], "missing": []}
    with ws.db.transaction() as conn:
        referenced = set(conn.execute(select(schema.blobs.c.digest)).scalars())
    stored = set(ws.blobs.iter_digests())
    corrupt = sorted(d for d in stored if not ws.blobs.verify(d))
    missing = sorted(referenced - stored)
    return {"checked": len(stored), "corrupt": corrupt, "missing": missing}
