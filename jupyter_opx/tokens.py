"""API tokens of ``opx serve``: created once, stored only as a hash, scoped, revocable.

A token is ``opx_`` followed by 43 random URL-safe characters (256 bits from
:func:`secrets.token_urlsafe`). It is shown once, when it is created; the
store keeps its SHA-256 only, so a copy of the database does not leak usable
tokens. A 256-bit random secret needs no slow password hash: nobody can guess
it, and a lookup by hash takes constant time.

Scopes:

* ``feedback:write`` — post feedback events;
* ``dashboard`` — open the read-only business dashboard (``/dashboard/MODEL``) of
  any model, and only the reads it needs: ``GET /api/feedback/{model}``,
  ``GET /api/alerts`` and the change stream; no snapshots, jobs or runs, no writes;
* ``dashboard:MODEL`` — the same, restricted to one model (``dashboard:churn``);
  a share link for one business owner;
* ``read`` — read everything (feedback, snapshots, jobs, runs, the stream); opens
  every dashboard too;
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
SCOPES = ("feedback:write", "read", "admin", "dashboard")
#: ``dashboard:MODEL``: the dashboard scope restricted to one model (a snapshot name)
DASHBOARD_MODEL_PREFIX = "dashboard:"
PREFIX = "opx_"
#: the ``model`` of :meth:`Token.allows` meaning every model at once (e.g. all alerts)
ALL_MODELS = "*"
#: ``last_used_at`` is refreshed at most this often
TOUCH_EVERY = timedelta(minutes=1)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$")
_MODEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")  # a snapshot name
_SCOPE_LENGTH = 256
#: scopes that include opening the dashboard of any model
_DASHBOARD_ANY = frozenset({"admin", "read", "dashboard"})


def model_of(ref: str) -> str:
    """The snapshot name of a model reference (``churn@production``, ``churn/3`` → ``churn``)."""
    return re.split(r"[/@]", str(ref).strip(), maxsplit=1)[0]


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

    def allows(self, scope: str, model: str | None = None) -> bool:
        """Whether this token grants ``scope`` (``admin`` grants every scope).

        For ``scope="dashboard"``, ``model`` is the model (name or reference)
        the request reads: ``read`` and ``dashboard`` open every model,
        ``dashboard:churn`` only ``churn``. ``model=None`` asks for what holds
        no model's data (the change stream's sequence number), which any
        dashboard scope may read; :data:`ALL_MODELS` asks for every model at once,
        which a model-restricted token may not.
        """
        if scope in self.scopes or "admin" in self.scopes:
            return True
        if scope != "dashboard":
            return False
        if _DASHBOARD_ANY.intersection(self.scopes):
            return True
        models = self.dashboard_models
        if model is None:
            return bool(models)
        return model != ALL_MODELS and model_of(model) in models

    @property
    def dashboard_models(self) -> tuple[str, ...]:
        """The models of this token's ``dashboard:MODEL`` scopes."""
        n = len(DASHBOARD_MODEL_PREFIX)
        return tuple(s[n:] for s in self.scopes if s.startswith(DASHBOARD_MODEL_PREFIX))

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


def _known_scope(part: str) -> bool:
    if part in SCOPES:
        return True
    model = part[len(DASHBOARD_MODEL_PREFIX) :]
    return part.startswith(DASHBOARD_MODEL_PREFIX) and bool(_MODEL.match(model))


def check_scope(scope: str) -> tuple[str, ...]:
    """The scopes of ``scope`` (one scope or several joined by commas), validated."""
    parts = tuple(dict.fromkeys(p.strip() for p in str(scope).split(",") if p.strip()))
    bad = [p for p in parts if not _known_scope(p)]
    if not parts or bad:
        shown = ", ".join(repr(p) for p in bad) or repr(scope)
        raise ValidationError(
            f"unknown token scope {shown}; use {', '.join(SCOPES)} or dashboard:MODEL "
            "(several joined by commas; admin implies all)"
        )
    if len(",".join(parts)) > _SCOPE_LENGTH:
        raise ValidationError(f"token scope too long (at most {_SCOPE_LENGTH} characters)")
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
        ``feedback:write``, ``read``, ``admin``, ``dashboard`` or ``dashboard:MODEL``
        (several joined by commas).
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


def verify_token(
    ws: Workspace, secret: str | None, needed_scope: str, model: str | None = None
) -> Token:
    """The token whose secret is ``secret``, if it is active and grants ``needed_scope``
    (for ``dashboard``: on ``model``, see :meth:`Token.allows`).

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
    if not token.allows(needed_scope, model):
        needed = needed_scope
        if needed_scope == "dashboard" and model not in (None, ALL_MODELS):
            needed = f"dashboard:{model_of(str(model))}"
        elif needed_scope == "dashboard" and model == ALL_MODELS:
            needed = "dashboard (of every model: name one, e.g. ?model=NAME)"
        raise ForbiddenError(
            f"token {token.name!r} has scope {token.scope}; this needs {needed}",
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
    "ALL_MODELS",
    "DASHBOARD_MODEL_PREFIX",
    "PREFIX",
    "SCOPES",
    "Token",
    "check_scope",
    "create_token",
    "list_tokens",
    "model_of",
    "revoke_token",
    "verify_token",
]
