"""Feedback events: normalising and validating what arrives, all or nothing.

Three kinds of event, with the wire format of DESIGN.md:

* ``predictions`` — ``id``, ``score`` and/or ``label``, optional ``features``
  (a mapping), ``ts``, ``event_id``;
* ``treatments`` — ``id``, ``arm`` (e.g. ``"email"`` / ``"control"``), ``ts``, ``event_id``;
* ``outcomes`` — ``id``, ``value``, ``ts``, ``event_id``.

Every input (Python arrays, JSON arrays, NDJSON, CSV) becomes one DataFrame
with typed columns (``id`` str, ``ts`` UTC nanoseconds, ``event_id`` str, the
kind's value columns, features as ``f:<name>`` columns). A batch with any bad
row is rejected whole, with a message that names the first bad rows. Events
without an ``event_id`` get one derived from their content, so re-sending the
same batch is idempotent.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd

from ..exceptions import ValidationError

KINDS = ("predictions", "treatments", "outcomes")
FEATURE_PREFIX = "f:"
MAX_SHOWN = 5
_CORE = {
    "predictions": ("id", "ts", "event_id", "score", "label", "features"),
    "treatments": ("id", "ts", "event_id", "arm"),
    "outcomes": ("id", "ts", "event_id", "value"),
}


def check_kind(kind: str) -> str:
    """Return ``kind`` if it is one of :data:`KINDS`, else raise."""
    if kind not in KINDS:
        raise ValidationError(f"unknown event kind {kind!r}; use one of {', '.join(KINDS)}")
    return kind


def _bad(kind: str, what: str, rows: Any) -> ValidationError:
    rows = [int(r) for r in list(rows)[:MAX_SHOWN]]
    shown = ", ".join(str(r) for r in rows)
    return ValidationError(
        f"{kind}: {what} (first bad rows: {shown}); nothing of this batch was stored",
        rows=rows,
    )


def _ids(kind: str, values: Any) -> pd.Series:
    s = pd.Series(values, dtype=object).reset_index(drop=True)
    missing = s.isna() | s.map(lambda v: isinstance(v, str) and not v.strip())
    if missing.any():
        raise _bad(kind, "every event needs a non-empty id", np.flatnonzero(missing.to_numpy()))
    bad = s.map(lambda v: not isinstance(v, (str, int, np.integer)) or isinstance(v, bool))
    if bad.any():
        raise _bad(kind, "ids must be strings or integers", np.flatnonzero(bad.to_numpy()))
    return s.astype(str)


def _timestamps(kind: str, values: Any, n: int, now: pd.Timestamp) -> pd.Series:
    if values is None:
        return (
            pd.Series(np.full(n, now.value), dtype="int64")
            .astype("datetime64[ns]")
            .dt.tz_localize("UTC")
        )
    s = (
        pd.Series(values, dtype=object).reset_index(drop=True)
        if not isinstance(values, pd.Series)
        else values.reset_index(drop=True)
    )
    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        out = pd.to_datetime(s, utc=True)
        return out.fillna(now).dt.as_unit("ns")
    result = pd.Series(pd.NaT, index=s.index, dtype="datetime64[ns, UTC]")
    missing = s.isna()
    result[missing] = now
    numeric = s.map(
        lambda v: isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
    )
    numeric &= ~missing
    if numeric.any():
        nums = pd.to_numeric(s[numeric], errors="coerce").astype(float)
        bad = ~np.isfinite(nums)
        if bad.any():
            raise _bad(kind, "ts must be ISO 8601 or epoch seconds", nums.index[bad])
        result[numeric] = pd.to_datetime(nums, unit="s", utc=True)
    text = ~(missing | numeric)
    if text.any():
        parsed = pd.to_datetime(s[text].astype(str), utc=True, errors="coerce", format="ISO8601")
        if parsed.isna().any():
            raise _bad(kind, "ts must be ISO 8601 or epoch seconds", parsed.index[parsed.isna()])
        result[text] = parsed
    return result.dt.as_unit("ns")


def _numbers(kind: str, name: str, values: Any, allow_missing: bool = False) -> pd.Series:
    s = pd.Series(values).reset_index(drop=True)
    as_num = pd.to_numeric(s, errors="coerce").astype(float)
    bools = s.map(lambda v: isinstance(v, (bool, np.bool_)))
    if bools.any():  # True/False are fine outcome values: 1/0
        as_num[bools] = s[bools].astype(float)
    finite = np.isfinite(as_num.to_numpy())
    bad = ~finite & ~(s.isna().to_numpy() if allow_missing else np.zeros(len(s), bool))
    if bad.any():
        raise _bad(kind, f"{name} must be a finite number", np.flatnonzero(bad))
    return as_num


def _event_ids(kind: str, frame: pd.DataFrame, given: Any) -> pd.Series:
    if given is not None:
        s = pd.Series(given, dtype=object).reset_index(drop=True)
        present = ~s.isna()
        if present.all():
            return s.astype(str)
    else:
        s = pd.Series([None] * len(frame), dtype=object)
        present = pd.Series(False, index=s.index)
    # derived from content: the same event sent twice gets the same id
    key = frame[[c for c in frame.columns if c != "event_id"]].copy()
    key["__kind"] = kind
    for col in key.columns:
        if key[col].dtype == object:
            key[col] = key[col].astype(str)
    h1 = pd.util.hash_pandas_object(key, index=False, hash_key="opx-event-id-001")
    h2 = pd.util.hash_pandas_object(key, index=False, hash_key="opx-event-id-002")
    derived = pd.Series(
        [f"{a:016x}{b:016x}" for a, b in zip(h1.to_numpy(), h2.to_numpy(), strict=True)],
        dtype=object,
    )
    return s.where(present, derived).astype(str)


def _features(kind: str, features: Any, n: int) -> pd.DataFrame:
    if features is None:
        return pd.DataFrame(index=range(n))
    if isinstance(features, pd.DataFrame):
        frame = features.reset_index(drop=True)
    else:
        rows = list(features)
        bad = [i for i, r in enumerate(rows) if r is not None and not isinstance(r, dict)]
        if bad:
            raise _bad(kind, "features must be an object of name → value", bad)
        frame = pd.DataFrame([r or {} for r in rows])
    if len(frame) != n:
        raise ValidationError(f"{kind}: {len(frame)} feature rows for {n} events")
    frame.columns = [f"{FEATURE_PREFIX}{c}" for c in frame.columns]
    return frame


def normalize(
    kind: str,
    *,
    ids: Any,
    ts: Any = None,
    event_ids: Any = None,
    score: Any = None,
    label: Any = None,
    features: Any = None,
    arm: Any = None,
    value: Any = None,
    now: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """One typed, validated DataFrame of events (see the module docstring).

    Raises
    ------
    ValidationError
        Naming the first bad rows; nothing is stored.
    """
    check_kind(kind)
    now = now if now is not None else pd.Timestamp.now(tz="UTC")
    id_s = _ids(kind, ids)
    n = len(id_s)
    if n == 0:
        raise ValidationError(f"{kind}: the batch is empty")

    def broadcast(values: Any, name: str) -> Any:
        if values is None:
            return None
        if not pd.api.types.is_list_like(values):  # one value for the whole batch
            return [values] * n
        seq = values if hasattr(values, "__len__") else list(values)
        if len(seq) != n:
            raise ValidationError(f"{kind}: {len(seq)} values of {name} for {n} ids")
        return seq

    frame = pd.DataFrame({"id": id_s})
    frame["ts"] = _timestamps(kind, broadcast(ts, "ts") if ts is not None else None, n, now)
    if kind == "predictions":
        if score is None and label is None:
            raise ValidationError("predictions need a score (or a label) for every event")
        both = score is not None and label is not None
        if score is not None:
            frame["score"] = _numbers(kind, "score", broadcast(score, "score"), allow_missing=both)
        if label is not None:
            frame["label"] = _numbers(kind, "label", broadcast(label, "label"), allow_missing=both)
        if both:
            neither = frame["score"].isna() & frame["label"].isna()
            if neither.any():
                raise _bad(
                    kind, "every prediction needs a score or a label", np.flatnonzero(neither)
                )
        feats = _features(kind, features, n)
        frame = pd.concat([frame, feats], axis=1)
    elif kind == "treatments":
        arms = pd.Series(broadcast(arm, "arm"), dtype=object) if arm is not None else None
        if arms is None:
            raise ValidationError("treatments need an arm for every event (e.g. email, control)")
        bad = arms.isna() | arms.map(lambda v: not isinstance(v, str) or not v.strip())
        if bad.any():
            raise _bad(kind, "arm must be a non-empty string", np.flatnonzero(bad.to_numpy()))
        frame["arm"] = arms.astype(str).to_numpy()
    else:
        if value is None:
            raise ValidationError("outcomes need a value for every event")
        frame["value"] = _numbers(kind, "value", broadcast(value, "value"))
    frame["event_id"] = _event_ids(
        kind, frame, broadcast(event_ids, "event_id") if event_ids is not None else None
    )
    return frame


def from_records(kind: str, records: list[Any], now: pd.Timestamp | None = None) -> pd.DataFrame:
    """Events from JSON objects (a JSON array or NDJSON lines), validated."""
    check_kind(kind)
    bad = [i for i, r in enumerate(records) if not isinstance(r, dict)]
    if bad:
        raise _bad(kind, "each event must be a JSON object", bad)
    allowed = set(_CORE[kind])
    unknown = sorted({k for r in records for k in r} - allowed)
    if unknown:
        raise ValidationError(
            f"{kind}: unknown field(s) {', '.join(unknown)}; "
            f"the fields are {', '.join(_CORE[kind])}"
        )

    def column(name: str) -> list[Any] | None:
        if not any(name in r for r in records):
            return None
        return [r.get(name) for r in records]

    score = column("score")
    label = column("label")
    if kind == "predictions" and score is not None and label is None:
        missing = [i for i, v in enumerate(score) if v is None]
        if missing:
            raise _bad(kind, "every prediction needs a score or a label", missing)
    return normalize(
        kind,
        ids=[r.get("id") for r in records],
        ts=column("ts"),
        event_ids=column("event_id"),
        score=score,
        label=label,
        features=column("features"),
        arm=column("arm"),
        value=column("value"),
        now=now,
    )


def parse_body(
    kind: str, body: bytes, content_type: str, now: pd.Timestamp | None = None
) -> pd.DataFrame:
    """Events from an HTTP body: JSON array, NDJSON or CSV (by Content-Type).

    CSV has the same columns; features are columns named ``features.NAME``.
    """
    ctype = (content_type or "application/json").split(";")[0].strip().lower()
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ValidationError("the body must be UTF-8 text") from None
    if ctype in (
        "application/x-ndjson",
        "application/ndjson",
        "application/jsonl",
        "application/jsonlines",
    ):
        records = []
        for i, line in enumerate(text.splitlines()):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValidationError(
                    f"{kind}: line {i + 1} is not JSON ({exc.msg})", rows=[i]
                ) from None
        return from_records(kind, records, now)
    if ctype in ("text/csv", "application/csv"):
        import io

        try:
            frame = pd.read_csv(io.StringIO(text), dtype={"id": str, "event_id": str, "arm": str})
        except (ValueError, pd.errors.ParserError) as exc:
            raise ValidationError(f"{kind}: the CSV cannot be read ({exc})") from None
        feats = [c for c in frame.columns if c.startswith("features.")]
        records = frame.drop(columns=feats).to_dict(orient="records")
        for rec, (_, row) in zip(records, frame[feats].iterrows(), strict=True):
            for key, val in list(rec.items()):
                if isinstance(val, float) and math.isnan(val):
                    rec[key] = None
            if feats:
                rec["features"] = {
                    c[len("features.") :]: (None if pd.isna(v) else v) for c, v in row.items()
                }
        return from_records(kind, records, now)
    if ctype not in ("application/json", "text/json", ""):
        raise ValidationError(
            f"unsupported Content-Type {ctype!r}: send application/json (an array), "
            "application/x-ndjson or text/csv"
        )
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationError(
            f"{kind}: the body is not JSON ({exc.msg} at line {exc.lineno})"
        ) from None
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise ValidationError(f"{kind}: send a JSON array of events")
    return from_records(kind, data, now)
