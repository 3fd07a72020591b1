"""Reading requests into the models of :mod:`.models`, and writing pages of results.

:func:`from_json` reads a JSON body (unknown fields, missing required ones and
wrong types are a 400 with the field named, never a 500); :func:`from_query`
reads query strings, converted to each field's type (arguments a model does
not name are ignored: browsers, proxies and Jupyter add their own, such as
``token`` or ``_xsrf``).
"""

from __future__ import annotations

import json
import math
import types
from dataclasses import MISSING, fields
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

from ..exceptions import ValidationError
from .models import Page

M = TypeVar("M")
_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}


def _kind(tp: Any) -> str:
    if tp in _NAMES:
        return _NAMES[tp]
    origin = get_origin(tp)
    if origin is list:
        return "a list"
    if origin is dict:
        return "an object"
    if origin in (Union, types.UnionType):
        return " or ".join(_kind(a) for a in get_args(tp) if a is not type(None))
    return "a value"


def _convert(value: Any, tp: Any, where: str, text: bool) -> Any:
    """``value`` checked against the type ``tp`` (converted from a string when ``text``)."""
    if tp is Any:
        return value
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, where, text)
            except ValidationError:
                continue
        raise ValidationError(f"{where} must be {_kind(tp)}, not {value!r}", field=where)
    bad = ValidationError(f"{where} must be {_kind(tp)}, not {value!r}", field=where)
    if text and isinstance(value, str) and tp in (int, float, bool):
        if tp is bool:
            if value.lower() not in ("true", "false", "1", "0"):
                raise bad
            return value.lower() in ("true", "1")
        try:
            number = int(value) if tp is int else float(value)
        except ValueError:
            raise bad from None
        if not math.isfinite(number):
            raise bad
        return number
    if tp is bool:
        if not isinstance(value, bool):
            raise bad
        return value
    if tp is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise bad
        return value
    if tp is float:
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise bad
        if not math.isfinite(value):
            raise bad
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise bad
        return value
    if origin is list:
        if not isinstance(value, list):
            raise bad
        (item,) = get_args(tp)
        return [_convert(v, item, f"{where}[{i}]", False) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise bad
        _, item = get_args(tp)
        return {k: _convert(v, item, f"{where}.{k}", False) for k, v in value.items()}
    raise TypeError(f"unsupported model field type {tp!r}")  # pragma: no cover


def _build(model: type[M], data: dict[str, Any], text: bool) -> M:
    hints = get_type_hints(model)
    values: dict[str, Any] = {}
    for f in fields(model):  # type: ignore[arg-type]
        if f.name in data:
            values[f.name] = _convert(data[f.name], hints[f.name], f.name, text)
        elif f.default is MISSING and f.default_factory is MISSING:
            raise ValidationError(f"{f.name} is required", field=f.name)
    return model(**values)


def from_json(model: type[M], body: bytes | str | None) -> M:
    """Read a JSON request body into ``model`` (an empty body is ``{}``).

    Raises
    ------
    ValidationError
        Invalid JSON, not an object, an unknown or missing field, a wrong type.
    """
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body or ""
    try:
        data = json.loads(text) if text.strip() else {}
    except ValueError as exc:
        raise ValidationError(f"the request body is not valid JSON ({exc})") from None
    except RecursionError:
        raise ValidationError("the request body is nested too deeply") from None
    if not isinstance(data, dict):
        raise ValidationError(f"the request body must be a JSON object ({model.__name__})")
    known = {f.name for f in fields(model)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValidationError(
            f"unknown field(s) {', '.join(unknown)} in {model.__name__}; "
            f"known fields are {', '.join(sorted(known))}",
            fields=unknown,
        )
    return _build(model, data, text=False)


def from_query(model: type[M], args: dict[str, str]) -> M:
    """Read query arguments into ``model`` (arguments it does not name are ignored)."""
    return _build(model, args, text=True)


def page(items: list[Any], total: int, query: Page) -> dict[str, Any]:
    """A ``List…Response``: one page of ``to_dict()``-able records and the total."""
    return {
        "items": [i.to_dict() for i in items],
        "total": total,
        "limit": query.limit,
        "offset": query.offset,
    }


def page_of(records: list[Any], query: Page) -> dict[str, Any]:
    """A ``List…Response`` cut from a full list (for the short lists: jobs, alerts)."""
    return page(records[query.offset : query.offset + query.limit], len(records), query)


__all__ = ["from_json", "from_query", "page", "page_of"]
