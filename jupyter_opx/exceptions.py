"""The one exception family of jupyter_opx.

Every error a user can cause or meet is an :class:`OpxError` subclass with a
message that says what to do next. Each surface turns it into its own form in
one place: a one-line message in the notebook, a non-zero exit with the message
on stderr in the CLI, a JSON ``{"message": ...}`` body with :attr:`OpxError.status`
over HTTP. Structured fields (``ref``, ``types`` …) let callers react without
parsing the text.
"""

from __future__ import annotations

from typing import Any


class OpxError(Exception):
    """Base class of every jupyter_opx error.

    Attributes
    ----------
    status : int
        The HTTP status a REST surface answers with.
    code : str
        A stable machine-readable identifier of the error kind.
    """

    status = 400
    code = "opx_error"

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields

    def to_dict(self) -> dict[str, Any]:
        """The error as a JSON-ready mapping (``code``, ``message`` and fields)."""
        return {"code": self.code, "message": self.message, **self.fields}

    def _render_traceback_(self) -> list[str]:
        # IPython/Jupyter protocol: show the error as one line (it says what to
        # do next), not a traceback through jupyter_opx's internals. The cell
        # still fails, so a notebook run as a job stops here.
        return [f"\x1b[0;31m{type(self).__name__}\x1b[0m: {self.message}"]


class ValidationError(OpxError):
    """Bad input: a malformed name, reference, option or value."""

    code = "invalid"


class NotFoundError(OpxError):
    """A snapshot, version, alias, dataset or other named thing does not exist."""

    status = 404
    code = "not_found"


class ConflictError(OpxError):
    """The request is valid but clashes with the store's current state."""

    status = 409
    code = "conflict"


class SerializationError(OpxError):
    """An object cannot be stored safely (or a stored artifact cannot be decoded)."""

    code = "unserializable"


class UntrustedModelError(OpxError):
    """A model artifact contains types that are not trusted at load time.

    Attributes
    ----------
    types : list of str
        The fully qualified names of the untrusted types.
    """

    status = 403
    code = "untrusted"

    def __init__(self, message: str, types: list[str], **fields: Any) -> None:
        super().__init__(message, types=list(types), **fields)
        self.types = list(types)


class CorruptBlobError(OpxError):
    """A stored blob does not match its content hash (tampered or damaged)."""

    status = 409
    code = "corrupt"

    def __init__(self, message: str, digest: str, **fields: Any) -> None:
        super().__init__(message, digest=digest, **fields)
        self.digest = digest


class AuthError(OpxError):
    """No credentials, or credentials that are unknown, revoked or malformed."""

    status = 401
    code = "unauthorized"


class ForbiddenError(OpxError):
    """Valid credentials whose scope does not allow the operation.

    Attributes
    ----------
    needed : str
        The scope the operation needs.
    """

    status = 403
    code = "forbidden"

    def __init__(self, message: str, needed: str, **fields: Any) -> None:
        super().__init__(message, needed=needed, **fields)
        self.needed = needed


class StoreError(OpxError):
    """The store cannot be opened, written or migrated."""

    status = 503
    code = "store"


__all__ = [
    "AuthError",
    "ConflictError",
    "CorruptBlobError",
    "ForbiddenError",
    "NotFoundError",
    "OpxError",
    "SerializationError",
    "StoreError",
    "UntrustedModelError",
    "ValidationError",
]
