"""What the snapshot functions return: plain records with text and HTML views."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from ..workspace import Workspace


def _fmt_size(n: int | None) -> str:
    if n is None:
        return ""
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"  # pragma: no cover


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th style='text-align:left'>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(f"<td style='text-align:left'>{html.escape(str(c))}</td>" for c in r)
        + "</tr>"
        for r in rows
    )
    return f"<table class='opx-table'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def list_html(headers: Any, rows: list[list[Any]]) -> str:
    """A listing (one record a row) as an escaped HTML table."""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table class='opx-table'><tr>{head}</tr>{body}</table>"


def fields_html(rows: list[list[Any]], css: str) -> str:
    """One record's ``[label, value]`` rows as an escaped two-column HTML table."""
    body = "".join(
        f"<tr><th style='text-align:left'>{html.escape(str(a))}</th>"
        f"<td style='text-align:left'>{html.escape(str(b))}</td></tr>"
        for a, b in rows
    )
    return f"<table class='{css}'>{body}</table>"


def fields_text(rows: list[list[Any]]) -> str:
    """One record's ``[label, value]`` rows as aligned plain text."""
    return text_table(["", ""], rows).split("\n", 1)[-1]


def text_table(headers: list[str], rows: list[list[Any]]) -> str:
    """A plain-text table with aligned columns."""
    cells = [[str(h) for h in headers], *[[str(c) for c in r] for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


@dataclass
class DataInfo:
    """One dataset stored in a snapshot."""

    key: str
    digest: str
    kind: str
    rows: int
    columns: int
    size: int
    schema: list[dict[str, Any]]
    summary_digest: str | None = None
    reused_from: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "digest": self.digest,
            "kind": self.kind,
            "rows": self.rows,
            "columns": self.columns,
            "size": self.size,
            "schema": self.schema,
            "summary_digest": self.summary_digest,
            "reused_from": self.reused_from,
        }


@dataclass
class Snapshot:
    """An immutable, versioned snapshot of a model and its data.

    Attributes
    ----------
    name, version, ref :
        ``ref`` is ``"name/version"``, the exact reference to this snapshot.
    """

    id: int
    name: str
    version: int
    created_at: datetime
    created_by: str
    message: str
    parent: str | None
    model: dict[str, Any] | None
    metrics: dict[str, Any]
    params: dict[str, Any]
    tags: dict[str, Any]
    input_schema: list[dict[str, Any]]
    environment: dict[str, Any]
    provenance: dict[str, Any]
    data: dict[str, DataInfo] = field(default_factory=dict)
    aliases: list[str] = field(default_factory=list)
    reference_key: str | None = None
    source_digest: str | None = None
    workspace: Workspace | None = field(default=None, repr=False, compare=False)

    @property
    def ref(self) -> str:
        """The exact reference, e.g. ``"churn/3"``."""
        return f"{self.name}/{self.version}"

    def _ws(self) -> Workspace:
        if self.workspace is None:
            from ..workspace import get_workspace

            return get_workspace()
        return self.workspace

    def load_model(self, trusted: list[str] | None = None, allow_pickle: bool = False) -> Any:
        """Load this snapshot's model (see :func:`jupyter_opx.load_model`)."""
        from .catalog import load_model

        return load_model(self._ws(), self.ref, trusted=trusted, allow_pickle=allow_pickle)

    def load_data(self, key: str | None = None) -> Any:
        """Load one of this snapshot's datasets (see :func:`jupyter_opx.load_data`)."""
        from .catalog import load_data

        return load_data(self._ws(), self.ref, key)

    def reference_summary(self) -> dict[str, Any] | None:
        """The reference summaries drift is measured against (None if no data)."""
        from .catalog import reference_summary

        return reference_summary(self._ws(), self)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view of the snapshot."""
        return {
            "name": self.name,
            "version": self.version,
            "ref": self.ref,
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
            "message": self.message,
            "parent": self.parent,
            "aliases": list(self.aliases),
            "model": self.model,
            "data": {k: v.to_dict() for k, v in self.data.items()},
            "reference_key": self.reference_key,
            "metrics": self.metrics,
            "params": self.params,
            "tags": self.tags,
            "input_schema": self.input_schema,
            "environment": self.environment,
            "provenance": self.provenance,
            "source_digest": self.source_digest,
        }

    # -- views -----------------------------------------------------------------------
    def _overview_rows(self) -> list[list[Any]]:
        rows: list[list[Any]] = [
            [
                "ref",
                self.ref
                + (f"  ({', '.join('@' + a for a in self.aliases)})" if self.aliases else ""),
            ],
            ["created", f"{self.created_at:%Y-%m-%d %H:%M:%S} UTC by {self.created_by}"],
        ]
        if self.message:
            rows.append(["message", self.message])
        if self.parent:
            rows.append(["parent", self.parent])
        if self.model:
            rows.append(
                [
                    "model",
                    f"{self.model['class']} ({self.model['codec']}, "
                    f"{_fmt_size(self.model['size'])}, sha256 {self.model['digest'][:12]})",
                ]
            )
        for key, info in self.data.items():
            reuse = f", reused from {info.reused_from}" if info.reused_from else ""
            rows.append(
                [
                    f"data[{key}]",
                    f"{info.rows:,} rows x {info.columns} columns "
                    f"({_fmt_size(info.size)}, sha256 {info.digest[:12]}{reuse})",
                ]
            )
        if self.metrics:
            rows.append(["metrics", ", ".join(f"{k}={_num(v)}" for k, v in self.metrics.items())])
        if self.params:
            rows.append(["params", ", ".join(f"{k}={v}" for k, v in self.params.items())])
        if self.tags:
            rows.append(["tags", ", ".join(f"{k}={v}" for k, v in self.tags.items())])
        git = self.provenance.get("git")
        if git:
            rows.append(["git", f"{git['commit'][:10]}{' (dirty)' if git.get('dirty') else ''}"])
        if self.provenance.get("notebook_path"):
            rows.append(["notebook", self.provenance["notebook_path"]])
        rows.append(["python", self.environment.get("python", "")])
        return rows

    def __str__(self) -> str:
        return text_table(["", ""], self._overview_rows()).split("\n", 1)[-1]

    def _repr_html_(self) -> str:
        return (
            f"<div class='opx-snapshot'><b>Snapshot {html.escape(self.ref)}</b>"
            + _table(["", ""], self._overview_rows())
            + "</div>"
        )


def _num(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


@dataclass
class AliasEvent:
    """One move of an alias: who pointed it at which version, and from where."""

    name: str
    alias: str
    version: int
    previous_version: int | None
    at: datetime
    by: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "alias": self.alias,
            "version": self.version,
            "previous_version": self.previous_version,
            "at": self.at.isoformat(),
            "by": self.by,
        }

    def __str__(self) -> str:
        prev = f"from {self.name}/{self.previous_version}" if self.previous_version else "(new)"
        return (
            f"{self.name}@{self.alias} -> {self.name}/{self.version} {prev} "
            f"by {self.by} at {self.at:%Y-%m-%d %H:%M:%S} UTC"
        )

    def _repr_html_(self) -> str:
        return f"<div class='opx-alias'>{html.escape(str(self))}</div>"


@dataclass
class ModelSummary:
    """One snapshot name: how many versions, the latest, and where its aliases point."""

    name: str
    versions: int
    latest: int
    updated_at: datetime
    aliases: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "versions": self.versions,
            "latest": self.latest,
            "latest_ref": f"{self.name}/{self.latest}",
            "updated_at": self.updated_at.isoformat(),
            "aliases": dict(self.aliases),
        }


class SnapshotList(list[Snapshot]):
    """A list of snapshots that renders as a table in notebooks."""

    HEADERS: ClassVar[list[str]] = ["ref", "created", "aliases", "model", "data", "message"]

    def rows(self) -> list[list[Any]]:
        return [
            [
                s.ref,
                f"{s.created_at:%Y-%m-%d %H:%M}",
                " ".join("@" + a for a in s.aliases),
                (s.model or {}).get("class", "").rsplit(".", 1)[-1],
                ", ".join(f"{k}[{v.rows:,}x{v.columns}]" for k, v in s.data.items()),
                s.message,
            ]
            for s in self
        ]

    def __str__(self) -> str:
        if not self:
            return "no snapshots yet — create one with opx.snapshot(name, model=..., data=...)"
        return text_table(self.HEADERS, self.rows())

    def _repr_html_(self) -> str:
        if not self:
            return f"<div class='opx-empty'>{html.escape(str(self))}</div>"
        return _table(self.HEADERS, self.rows())


@dataclass
class SnapshotDiff:
    """Differences between two snapshots (``a`` → ``b``)."""

    a: str
    b: str
    model: dict[str, Any]
    data: dict[str, Any]
    metrics: dict[str, Any]
    params: dict[str, Any]
    tags: dict[str, Any]
    input_schema: dict[str, Any]
    environment: dict[str, Any]

    @property
    def identical(self) -> bool:
        """True when nothing recorded differs (beyond time, author and version)."""
        return not (
            self.model.get("changed")
            or any(d["status"] != "same" for d in self.data.values())
            or self.metrics
            or self.params
            or self.tags
            or any(self.input_schema.values())
            or self.environment
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "a": self.a,
            "b": self.b,
            "identical": self.identical,
            "model": self.model,
            "data": self.data,
            "metrics": self.metrics,
            "params": self.params,
            "tags": self.tags,
            "input_schema": self.input_schema,
            "environment": self.environment,
        }

    def rows(self) -> list[list[Any]]:
        out: list[list[Any]] = []
        if self.model.get("changed"):
            out.append(
                ["model", self.model.get("a_class"), self.model.get("b_class"), "artifact changed"]
            )
        for key, d in self.data.items():
            if d["status"] == "same":
                continue
            note = d["status"]
            schema = d.get("schema") or {}
            parts = []
            if schema.get("added"):
                parts.append("+" + ",".join(schema["added"]))
            if schema.get("removed"):
                parts.append("-" + ",".join(schema["removed"]))
            if schema.get("changed"):
                parts.append("~" + ",".join(c["column"] for c in schema["changed"]))
            if parts:
                note += " (" + " ".join(parts) + ")"
            out.append([f"data[{key}] rows", d.get("a_rows", ""), d.get("b_rows", ""), note])
        for k, m in self.metrics.items():
            delta = m.get("delta")
            out.append(
                [
                    f"metric {k}",
                    _num(m["a"]),
                    _num(m["b"]),
                    "" if delta is None else f"{delta:+.4g}",
                ]
            )
        for section in ("params", "tags"):
            for k, v in getattr(self, section).items():
                out.append([f"{section[:-1]} {k}", v["a"], v["b"], ""])
        for kind in ("added", "removed", "changed"):
            cols = self.input_schema.get(kind)
            if cols:
                out.append([f"input schema {kind}", "", "", ", ".join(map(str, cols))])
        for k, v in self.environment.items():
            out.append([f"env {k}", v["a"], v["b"], ""])
        return out

    def __str__(self) -> str:
        if self.identical:
            return (
                f"{self.a} and {self.b} are identical (model, data, metrics, params, environment)"
            )
        return text_table(["", self.a, self.b, ""], self.rows())

    def _repr_html_(self) -> str:
        if self.identical:
            return f"<div class='opx-diff'>{html.escape(str(self))}</div>"
        return _table(["", self.a, self.b, ""], self.rows())
