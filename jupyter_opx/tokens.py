"""API tokens of ``opx serve``: created once, stored only as a hash, scoped, revocable.

A token is ``opx_`` followed by 43 random URL-safe characters (256 bits from
:func:`secrets.token_urlsafe`). It is shown once, when it is created; the
store keeps its SHA-256 only, so a copy of the database does not leak usable
tokens. A 256-bit random secret needs no slow password hash: nobody can guess
it, and a lookup by hash takes constant time.

Scopes:

* ``feedback:write`` — post feedback events;
* ``read`` — read feedback, the change stream and what the dashboard shows;
* ``admin`` — everything (implies the others).

A token may hold several scopes, written with commas (``read,feedback:write``).
Its ``last_used_at`` is written at most once a minute, so that verifying a
token on every request does not turn every read into a write.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, insert, select, update

from .exceptions import AuthError, ConflictError, ForbiddenError, NotFoundError, ValidationError
from .store import schema
from .store.db import Database, as_utc, utcnow
from .workspace import Workspace

T = schema.tokens
SCOPES = ("feedback:write", "read", "admin")
PREFIX = "opx_"
#: ``last_used_at`` is refreshed at most this often
TOUCH_EVERY = timedelta(minutes=1)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$")


@dataclass(frozen=True)
class Token:
    """A stored token, without its secret.

    Attributes
    ----------
    scopes : tuple of str
        What the token allows (see the module docstring).
    revoked_at : datetime or None
        When it was revoked; a revoked token is refused.
    """

    id: int
    name: str
    scopes: tuple[str, ...]
    created_at: datetime
    created_by: str
    last_used_at: datetime | None
    revoked_at: datetime | None

    @property
    def scope(self) -> str:
        return ",".join(self.scopes)

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def allows(self, scope: str) -> bool:
        """Whether this token grants ``scope`` (``admin`` grants every scope)."""
        return scope in self.scopes or "admin" in self.scopes

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "scope": self.scope,
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
            "last_used_at": self.last_used_at.isoformat() if self.last_used_at else None,
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
        }

    def __str__(self) -> str:
        used = f"{self.last_used_at:%Y-%m-%d %H:%M}" if self.last_used_at else "never"
        state = f"revoked {self.revoked_at:%Y-%m-%d %H:%M}" if self.revoked_at else "active"
        return (
            f"{self.name:<20} {self.scope:<22} {state:<24} last used {used:<17} "
            f"by {self.created_by}, {self.created_at:%Y-%m-%d %H:%M}"
        )


def check_scope(scope: str) -> tuple[str, ...]:
    """The scopes of ``scope`` (one scope or several joined by commas), validated."""
    parts = tuple(dict.fromkeys(p.strip() for p in str(scope).split(",") if p.strip()))
    bad = [p for p in parts if p not in SCOPES]
    if not parts or bad:
        shown = ", ".join(repr(p) for p in bad) or repr(scope)
        raise ValidationError(
            f"unknown token scope {shown}; use {', '.join(SCOPES)} "
            "(several joined by commas; admin implies all)"
        )
    return parts


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _to_token(row: Any) -> Token:
    created = as_utc(row.created_at)
    assert created is not None
    return Token(
        id=row.id,
        name=row.name,
        scopes=tuple(row.scope.split(",")),
        created_at=created,
        created_by=row.created_by,
        last_used_at=as_utc(row.last_used_at),
        revoked_at=as_utc(row.revoked_at),
    )


def create_token(
    ws: Workspace, name: str, scope: str, created_by: str | None = None
) -> tuple[Token, str]:
    """Create a token; returns ``(record, secret)``. The secret is not stored.

    Parameters
    ----------
    name : str
        Unique name saying who or what uses the token, e.g. ``scoring-job``.
    scope : str
        ``feedback:write``, ``read`` or ``admin`` (several joined by commas).
    created_by : str, optional
        Default: the current user (``$OPX_USER`` or the login name).

    Raises
    ------
    ValidationError
        Bad name or scope.
    ConflictError
        A token (active or revoked) already has this name.
    """
    from .snapshots.capture import current_user

    if not isinstance(name, str) or not _NAME.match(name):
        raise ValidationError(
            f"invalid token name {name!r}: use letters, digits, '_', '-', '.' and '@', "
            "starting with a letter or digit (at most 128 characters)"
        )
    scopes = check_scope(scope)
    secret = PREFIX + secrets.token_urlsafe(32)
    who = (created_by or current_user())[:128]

    def write(conn: Connection) -> Any:
        taken = conn.execute(select(T.c.id).where(T.c.name == name)).first()
        if taken is not None:
            raise ConflictError(
                f"a token named {name!r} already exists (names are kept after revocation); "
                "choose another name",
                name=name,
            )
        conn.execute(
            insert(T).values(
                name=name,
                scope=",".join(scopes),
                hash=_hash(secret),
                created_at=utcnow(),
                created_by=who,
            )
        )
        Database.record_change(conn, "token", name)
        return conn.execute(select(T).where(T.c.name == name)).one()

    return _to_token(ws.db.run_write(write)), secret


def list_tokens(ws: Workspace, include_revoked: bool = True) -> list[Token]:
    """Stored tokens (never their secrets), oldest first."""
    if not ws.exists:
        return []
    query = select(T).order_by(T.c.id)
    if not include_revoked:
        query = query.where(T.c.revoked_at.is_(None))
    with ws.db.transaction() as conn:
        return [_to_token(row) for row in conn.execute(query).all()]


def revoke_token(ws: Workspace, name: str) -> Token:
    """Revoke a token by name; it is refused from now on. Revoking twice is harmless.

    Raises
    ------
    NotFoundError
        No token has this name.
    """

    def write(conn: Connection) -> Any:
        row = conn.execute(select(T).where(T.c.name == name)).first()
        if row is None:
            raise NotFoundError(f"no token named {name!r}; see: opx token list", name=name)
        if row.revoked_at is None:
            conn.execute(update(T).where(T.c.id == row.id).values(revoked_at=utcnow()))
            Database.record_change(conn, "token", f"{name} revoked")
            row = conn.execute(select(T).where(T.c.id == row.id)).one()
        return row

    if not ws.exists:
        raise NotFoundError(f"no token named {name!r}; see: opx token list", name=name)
    return _to_token(ws.db.run_write(write))


def verify_token(ws: Workspace, secret: str | None, needed_scope: str) -> Token:
    """The token whose secret is ``secret``, if it is active and grants ``needed_scope``.

    Raises
    ------
    AuthError
        No secret, or an unknown or revoked one (HTTP 401).
    ForbiddenError
        The token does not grant ``needed_scope`` (HTTP 403).
    """
    if needed_scope not in SCOPES:
        raise ValueError(f"unknown scope {needed_scope!r}")  # a programming error
    if not secret:
        raise AuthError(
            "authentication required: send 'Authorization: Bearer <token>' "
            "(create a token with: opx token create NAME --scope SCOPE)"
        )
    row = None
    if secret.startswith(PREFIX) and ws.exists:
        with ws.db.transaction() as conn:
            row = conn.execute(select(T).where(T.c.hash == _hash(secret))).first()
    if row is None:
        raise AuthError("invalid token; check it, or create one with: opx token create")
    token = _to_token(row)
    if not token.active:
        raise AuthError(f"token {token.name!r} was revoked; create a new one")
    if not token.allows(needed_scope):
        raise ForbiddenError(
            f"token {token.name!r} has scope {token.scope}; this needs {needed_scope}",
            needed=needed_scope,
            scope=token.scope,
        )
    now = utcnow()
    if token.last_used_at is None or now - token.last_used_at >= TOUCH_EVERY:
        # no change-sequence bump: usage is bookkeeping, not something live views show
        ws.db.run_write(
            lambda conn: conn.execute(update(T).where(T.c.id == token.id).values(last_used_at=now))
        )
    return token


__all__ = [
    "PREFIX",
    "SCOPES",
    "Token",
    "check_scope",
    "create_token",
    "list_tokens",
    "revoke_token",
    "verify_token",
]
