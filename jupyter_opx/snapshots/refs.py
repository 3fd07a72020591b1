"""Snapshot names and references: ``name``, ``name/3``, ``name@production``."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..exceptions import ValidationError

NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}"
ALIAS_PATTERN = r"[A-Za-z][A-Za-z0-9_.-]{0,63}"
_NAME = re.compile(rf"^{NAME_PATTERN}$")
_ALIAS = re.compile(rf"^{ALIAS_PATTERN}$")
_REF = re.compile(
    rf"^(?P<name>{NAME_PATTERN})(?:/(?P<version>\d{{1,9}})|@(?P<alias>{ALIAS_PATTERN}))?$"
)


@dataclass(frozen=True)
class Ref:
    """A parsed snapshot reference: exactly one of ``version``/``alias`` or neither (latest)."""

    name: str
    version: int | None = None
    alias: str | None = None

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}/{self.version}"
        if self.alias is not None:
            return f"{self.name}@{self.alias}"
        return self.name


def check_name(name: str) -> str:
    """Return ``name`` if it is a valid snapshot name, else raise ValidationError."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValidationError(
            f"invalid snapshot name {name!r}: use letters, digits, '_', '-' and '.', "
            "starting with a letter or digit (at most 128 characters)"
        )
    return name


def check_alias(alias: str) -> str:
    """Return ``alias`` if it is a valid alias (e.g. ``production``), else raise."""
    if not isinstance(alias, str) or not _ALIAS.match(alias):
        raise ValidationError(
            f"invalid alias {alias!r}: use a word starting with a letter, "
            "such as 'production' or 'staging'"
        )
    return alias


def parse_ref(ref: str | Ref) -> Ref:
    """Parse ``"name"``, ``"name/N"`` or ``"name@alias"``.

    Raises
    ------
    ValidationError
        The text is not a reference.
    """
    if isinstance(ref, Ref):
        return ref
    if not isinstance(ref, str):
        raise ValidationError(f"a snapshot reference is a string, not {type(ref).__name__}")
    m = _REF.match(ref.strip())
    if not m:
        raise ValidationError(
            f"invalid snapshot reference {ref!r}: write NAME (latest), NAME/VERSION "
            "(e.g. churn/3) or NAME@ALIAS (e.g. churn@production)"
        )
    version = m.group("version")
    return Ref(m.group("name"), int(version) if version else None, m.group("alias"))
