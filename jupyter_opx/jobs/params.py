"""A job's parameters: find the parameters cell, parse it, convert and check values.

Pure (no kernel, no store), so a bad ``-p`` value is refused before any kernel starts.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import difflib
import io
import json
import re
import tokenize
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from datetime import date, datetime
from typing import Any

from ..exceptions import ValidationError
from ..snapshots.refs import Ref, parse_ref

PARAMS_MAGIC = "%%opx params"
PARAMETERS_TAG = "parameters"
PARAM_TYPES = ("int", "float", "bool", "str", "date", "list", "dict", "ref", "any")
NO_PARAMS_CELL = (
    "this notebook has no parameters cell; add one starting with %%opx params "
    "(or tag a cell 'parameters')"
)

_MAGIC_LINE = re.compile(r"^%%opx\s+params\s*(#.*)?$")
# Keyed by the last dotted component, so ``datetime.date`` and ``opx.Ref`` work too.
_ANNOTATIONS = {kind: kind for kind in PARAM_TYPES}
_ANNOTATIONS.update({"List": "list", "Dict": "dict", "Ref": "ref", "SnapshotRef": "ref"})
_ANNOTATIONS.update({"Any": "any", "object": "any"})
_EXPECTED = {  # type -> (what is expected, what to write instead)
    "int": ("an int", "write a whole number such as 5"),
    "float": ("a float", "write a number such as 0.5 or 1e-3"),
    "bool": ("a bool", "write true or false (also yes/no, on/off, 1/0)"),
    "str": ("a str", "pass the value as a string"),
    "date": ("a date", "write an ISO date such as 2026-11-30"),
    "list": ("a list", 'write a JSON or Python list such as ["a", "b"]'),
    "dict": ("a dict", 'write a JSON or Python dict such as {"a": 1}'),
    "ref": ("a snapshot reference", "write NAME, NAME/VERSION or NAME@ALIAS (churn@production)"),
    "any": ("a value", "give a value"),
}
_TRUE, _FALSE = {"true", "yes", "1", "on"}, {"false", "no", "0", "off"}
_LITERAL_TYPES = {t: t.__name__ for t in (bool, int, float, str, list, dict)}
_LITERAL_ERRORS = (ValueError, TypeError, SyntaxError, MemoryError, RecursionError)


@dataclass
class Param:
    """One parameter of a job's notebook (see :func:`parse_params`)."""

    name: str
    type: str  # one of PARAM_TYPES
    default: Any = None  # the literal default, converted to ``type`` when it fits
    help: str = ""  # the assignment's trailing comment
    source_line: int = 0  # 1-based line of the assignment in the cell
    nullable: bool = False  # None accepted: Optional[X], X | None or a None default
    default_source: str | None = None  # a default that is no literal: "date.today()"

    def to_dict(self) -> dict[str, Any]:
        """The parameter as a JSON-ready mapping (the inverse of :meth:`from_dict`)."""
        data = asdict(self)  # a tuple default becomes a list, a set its repr (shown only)
        data["default"] = json.loads(json.dumps(self.default, default=repr))
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Param:
        """A parameter from :meth:`to_dict`'s mapping (unknown keys are ignored)."""
        names = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in names})


# -- finding and parsing the cell ----------------------------------------------------------
def _source_text(source: Any) -> str:
    text = "".join(source) if isinstance(source, list) else str(source or "")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _magic_line(lines: list[str]) -> int | None:
    """Index of the ``%%opx params`` line if it is the first non-blank line."""
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    return first if first is not None and _MAGIC_LINE.match(lines[first].strip()) else None


def _tags(cell: Mapping[str, Any]) -> list[str]:
    return list((cell.get("metadata") or {}).get("tags") or [])


def find_params_cell(nb: Any) -> int | None:
    """Index of the parameters cell of ``nb`` (an nbformat notebook), or None.

    That is the first code cell starting with ``%%opx params`` or tagged ``parameters``.
    """
    for index, cell in enumerate(nb.get("cells") or []):
        if cell.get("cell_type") == "code" and (
            PARAMETERS_TAG in _tags(cell)
            or _magic_line(_source_text(cell.get("source")).split("\n")) is not None
        ):
            return index
    return None


def _union(members: list[ast.expr]) -> tuple[str | None, bool]:
    others = [m for m in members if not (isinstance(m, ast.Constant) and m.value is None)]
    nullable = len(others) < len(members)
    if len(others) != 1:
        return "any", nullable  # int | str: anything goes
    kind, inner_nullable = _annotation_type(others[0])
    return kind, nullable or inner_nullable


def _annotation_type(node: ast.expr) -> tuple[str | None, bool]:
    """``(type, nullable)`` of an annotation; type None when it is not understood."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        try:  # a string annotation: "ref", "Optional[int]"
            return _annotation_type(ast.parse(node.value.strip(), mode="eval").body)
        except SyntaxError:
            return None, False
    if isinstance(node, ast.Name | ast.Attribute):
        return _ANNOTATIONS.get(node.id if isinstance(node, ast.Name) else node.attr), False
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _union([node.left, node.right])  # a | b | c nests: (a | b) | c
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name | ast.Attribute):
        args = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        outer = node.value.id if isinstance(node.value, ast.Name) else node.value.attr
        if outer in ("Optional", "Union"):
            return _union([*args, ast.Constant(None)] if outer == "Optional" else list(args))
        return _ANNOTATIONS.get(outer), False  # list[int], Dict[str, float]
    return None, isinstance(node, ast.Constant) and node.value is None


def _parseable_source(lines: list[str]) -> tuple[str, ast.Module]:
    """Parse the cell as Python: each line the parser rejects (``%time``, ``!ls``,
    ``x = !ls``, ``obj?``) becomes ``pass``, keeping its indentation and all line numbers.
    """
    lines = list(lines)
    for _ in range(2 * len(lines) + 2):  # each line: at most "pass", then blank
        try:
            return "\n".join(lines), ast.parse("\n".join(lines))
        except SyntaxError as err:  # at a blank line or past the end: blame the line above
            i = max(0, min((err.lineno or len(lines)) - 1, len(lines) - 1))
            while i > 0 and not lines[i].strip():
                i -= 1
            indent = lines[i][: len(lines[i]) - len(lines[i].lstrip())]
            lines[i] = "" if lines[i].strip() == "pass" else indent + "pass"
    return "", ast.parse("")


def _comments(text: str) -> dict[int, str]:
    """Line number → comment, from the tokenizer (so ``"a # b"`` holds no comment)."""
    found: dict[int, str] = {}
    with contextlib.suppress(tokenize.TokenError, SyntaxError):  # keep those found so far
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type == tokenize.COMMENT:
                found[tok.start[0]] = tok.string.lstrip("#").strip()
    return found


def _param(stmt: ast.Assign | ast.AnnAssign, name: str, text: str, notes: dict[int, str]) -> Param:
    assert stmt.value is not None
    kind, nullable = None, False
    if isinstance(stmt, ast.AnnAssign):
        kind, nullable = _annotation_type(stmt.annotation)
    help_text = notes.get(stmt.end_lineno or stmt.lineno) or notes.get(stmt.lineno, "")
    try:
        default = ast.literal_eval(stmt.value)
    except _LITERAL_ERRORS:
        source = ast.get_source_segment(text, stmt.value)
        return Param(name, kind or "any", None, help_text, stmt.lineno, nullable, source)
    if kind is None:
        kind = _LITERAL_TYPES.get(type(default), "any")
        with contextlib.suppress(ValidationError):  # "churn@production": resolved per run
            kind = "ref" if kind == "str" and parse_ref(default).alias else kind
    param = Param(name, kind, default, help_text, stmt.lineno, nullable or default is None)
    # e.g. 1 for a float → 1.0; a default that does not fit is shown as written
    with contextlib.suppress(ValidationError):
        param.default = coerce(param, default)
    return param


def parse_params(source: str | list[str]) -> list[Param]:
    """The parameters defined by a parameters cell's source (``%%opx params`` line or not).

    Returns
    -------
    list of Param
        One per top-level ``NAME = value`` or ``NAME: annotation = value``, in order of
        first assignment (a later one sets the default). A string default ``NAME@ALIAS``
        without annotation is a ``ref`` (annotate it ``str`` to opt out).
    """
    lines = _source_text(source).split("\n")
    magic = _magic_line(lines)
    text, tree = _parseable_source(["" if i == magic else line for i, line in enumerate(lines)])
    notes = _comments(text)
    params: dict[str, Param] = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
            target = stmt.targets[0]
        elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
            target = stmt.target
        else:
            continue
        if isinstance(target, ast.Name):
            params[target.id] = _param(stmt, target.id, text, notes)
    return list(params.values())


def notebook_params(nb: Any) -> list[Param] | None:
    """The parameters of a notebook, or None when it has no parameters cell."""
    index = find_params_cell(nb)
    return None if index is None else parse_params(nb["cells"][index].get("source"))


# -- converting values ---------------------------------------------------------------------
def _convert(kind: str, value: Any) -> Any:
    """``value`` as ``kind``; ValueError (or a literal_eval error) when it does not fit."""
    text = value.strip() if isinstance(value, str) else None
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "int" and (text is not None or (number and float(value).is_integer())):
        return int(text if text is not None else value)  # int("5.5") raises
    if kind == "float" and (text is not None or number):
        return float(text if text is not None else value)
    if kind == "bool" and (isinstance(value, bool) or (number and value in (0, 1))):
        return bool(value)
    if kind == "bool" and text is not None and text.lower() in _TRUE | _FALSE:
        return text.lower() in _TRUE
    if kind == "str" and text is not None:
        return value
    if kind == "date" and text is not None:  # kept as ISO text: papermill injects JSON
        return date.fromisoformat(text).isoformat()
    if kind == "date" and isinstance(value, date) and not isinstance(value, datetime):
        return value.isoformat()
    if kind in ("list", "dict"):
        obj = value
        if text is not None:
            try:
                obj = json.loads(text)
            except ValueError:
                obj = ast.literal_eval(text)
        obj = list(obj) if kind == "list" and isinstance(obj, tuple) else obj
        if isinstance(obj, list if kind == "list" else dict):
            return obj
    if kind == "ref" and (isinstance(value, Ref) or text is not None):
        return str(value) if isinstance(value, Ref) else str(parse_ref(text or ""))
    if kind not in _EXPECTED or kind == "any":
        with contextlib.suppress(*_LITERAL_ERRORS):
            return value if text is None else ast.literal_eval(text)
        return value
    raise ValueError(value)


def _invalid(param: Param, value: Any, hint: str | None = None) -> ValidationError:
    expected, default_hint = _EXPECTED.get(param.type, _EXPECTED["any"])
    shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
    if value is not None and not isinstance(value, str):
        shown += f" ({type(value).__name__})"
    return ValidationError(
        f"parameter {param.name}: expected {expected}, got {shown}; {hint or default_hint}",
        param=param.name,
        expected=param.type,
    )


def coerce(param: Param, value: Any) -> Any:
    """Convert ``value`` (``-p`` text such as ``"0.4"``, or a typed value) to ``param``'s type.

    Returns
    -------
    Any
        Dates (ISO) and snapshot references stay strings; lists and dicts are parsed from
        JSON or Python text; ``"None"``/``"null"`` is None for a nullable parameter.

    Raises
    ------
    ValidationError
        The value does not fit; the message names the parameter and the type.
    """
    if param.nullable and (
        value is None or (isinstance(value, str) and value.strip() in ("None", "null"))
    ):
        return None
    required = "it is not optional: give a value, or leave it out to keep the default"
    if value is None:
        raise _invalid(param, value, required)
    try:
        result = _convert(param.type, value)
    except (*_LITERAL_ERRORS, OverflowError, ValidationError):
        raise _invalid(param, value)
    if result is None and not param.nullable:
        raise _invalid(param, value, required)
    return result


def parse_assignments(items: Iterable[str]) -> dict[str, str]:
    """Split ``["k=v", ...]`` (the ``-p`` options) on the first ``=`` into name → text.

    Raises
    ------
    ValidationError
        An item has no ``=`` or its name is not a Python identifier.
    """
    values: dict[str, str] = {}
    for item in [items] if isinstance(items, str) else items:
        name, sep, text = item.partition("=")
        if not sep or not name.strip().isidentifier():
            raise ValidationError(
                f"invalid parameter assignment {item!r}: write NAME=VALUE, e.g. -p threshold=0.4",
                assignment=item,
            )
        values[name.strip()] = text  # a repeated name: the last one wins, as in papermill
    return values


def validate(params: list[Param] | None, values: Mapping[str, Any] | None) -> dict[str, Any]:
    """Check and convert a run's values (name → text or typed value) against ``params``.

    ``params`` is None when the notebook has no parameters cell. The result maps the
    given names only to their converted values; the others keep their defaults.

    Raises
    ------
    ValidationError
        No parameters cell, an unknown name, or a value that does not fit.
    """
    values = dict(values or {})
    if params is None:
        if values:
            raise ValidationError(NO_PARAMS_CELL, unknown=sorted(values))
        return {}
    known = {param.name: param for param in params}
    unknown = [name for name in values if name not in known]
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(known), n=1)
        raise ValidationError(
            f"unknown parameter{'s' * (len(unknown) > 1)} {', '.join(map(repr, unknown))}"
            + (f" (did you mean {close[0]!r}?)" if close else "")
            + f"; this notebook's parameters are: {', '.join(known) or '(none)'}",
            unknown=unknown,
            known=list(known),
        )
    return {name: coerce(known[name], value) for name, value in values.items()}


# -- the job's copy of the notebook --------------------------------------------------------
def prepare_job_notebook(nb: Any) -> tuple[Any, list[Param] | None]:
    """A copy of ``nb`` ready for papermill, and its parameters (``nb`` is not modified).

    Returns
    -------
    tuple
        ``(copy, params)``. In the copy the parameters cell is tagged ``parameters``
        (papermill injects the run's values after it) and its ``%%opx params`` line
        is ``# %%opx params``: plain Python in a kernel without the extension.
        ``params`` is None when there is no parameters cell.
    """
    job_nb = copy.deepcopy(nb)
    index = find_params_cell(job_nb)
    if index is None:
        return job_nb, None
    cell = job_nb["cells"][index]
    source = _source_text(cell.get("source"))
    tags = _tags(cell)
    cell.setdefault("metadata", {})["tags"] = tags + [PARAMETERS_TAG] * (PARAMETERS_TAG not in tags)
    lines = source.split("\n")
    magic = _magic_line(lines)
    if magic is not None:
        lines[magic] = "# " + lines[magic]
        cell["source"] = "\n".join(lines)
    return job_nb, parse_params(source)


def format_params(params: list[Param] | None) -> str:
    """The parameters as a plain-text table (name, type, default, help)."""
    if params is None:
        return NO_PARAMS_CELL
    if not params:
        return "the parameters cell defines no parameters"
    rows = [("NAME", "TYPE", "DEFAULT", "HELP")]
    for p in params:
        default = p.default_source if p.default_source is not None else repr(p.default)
        default = default if len(default) <= 40 else default[:37] + "..."
        rows.append((p.name, f"{p.type} | None" if p.nullable else p.type, default, p.help))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    pad = (
        "  ".join([*(c.ljust(w) for c, w in zip(row[:3], widths, strict=True)), row[3]])
        for row in rows
    )
    return "\n".join(line.rstrip() for line in pad)
