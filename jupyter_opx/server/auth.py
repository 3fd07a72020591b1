"""Who may call a route: a pluggable object, asked once per request.

Every route but ``GET …/health`` names the scope it needs (``read``,
``feedback:write``); the handler's ``prepare`` awaits
``auth.authorize(handler, scope)`` before anything else happens, so a request
without valid credentials learns nothing and sends no body to the core.

``opx serve`` uses :class:`TokenAuth` (``Authorization: Bearer <token>``,
tokens made by ``opx token create``). The Jupyter server extension mounts the
same handlers with an object that checks Jupyter's own login instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..exceptions import AuthError
from ..workspace import Workspace

if TYPE_CHECKING:
    from .handlers import OpxHandler


class Auth:
    """Decides whether a request may use a route that needs ``scope``.

    Subclasses implement :meth:`authorize`: return who is calling (anything
    the handlers may log), or raise :class:`~jupyter_opx.exceptions.AuthError`
    (401) or :class:`~jupyter_opx.exceptions.ForbiddenError` (403).
    """

    async def authorize(self, handler: OpxHandler, scope: str) -> Any:
        raise NotImplementedError


def bearer_token(handler: OpxHandler) -> str | None:
    """The token of an ``Authorization: Bearer …`` header, or of ``?token=`` where allowed.

    Only the event-stream route takes ``?token=``: a browser's EventSource
    cannot set headers. Such URLs are redacted in the access log.
    """
    header = handler.request.headers.get("Authorization", "")
    scheme, _, value = header.strip().partition(" ")
    if header and scheme.lower() != "bearer":
        raise AuthError("unsupported Authorization scheme; send 'Authorization: Bearer <token>'")
    if value.strip():
        return value.strip()
    if handler.allow_query_token:
        return handler.get_query_argument("token", None) or None
    return None


class TokenAuth(Auth):
    """Bearer tokens of the store (see :mod:`jupyter_opx.tokens`).

    The check reads the database, so it runs on the server's worker threads,
    never on the event loop.
    """

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws

    async def authorize(self, handler: OpxHandler, scope: str) -> Any:
        from ..tokens import verify_token

        secret = bearer_token(handler)
        if not secret:  # answered without a database read
            return verify_token(self.ws, None, scope)
        return await handler.run_blocking(verify_token, self.ws, secret, scope)


__all__ = ["Auth", "TokenAuth", "bearer_token"]
