"""Who may call a route: a pluggable object, asked once per request.

Every route but ``opx serve``'s ``GET …/health`` names the scope it needs
(``read`` for reading, ``dashboard`` for the few reads the business
dashboard makes, ``feedback:write`` to post events, ``admin`` for the other
writes); the handler's ``prepare`` awaits ``auth.authorize(handler, scope)``
before anything else happens, so a request without valid credentials learns
nothing and sends no body to the core.

Where the token may travel:

* ``Authorization: Bearer <token>``: every route;
* ``?token=``: only the event stream (EventSource cannot set headers) and the
  dashboard page, which trades it at once for a cookie and redirects to its
  URL without the token;
* the dashboard cookie (:data:`DASHBOARD_COOKIE`: HttpOnly, SameSite=Strict,
  its path limited to one model's ``/dashboard/MODEL``): only the dashboard's
  own routes, which are all ``GET``. No write route ever reads a cookie, so a
  page elsewhere cannot make a logged-in browser write (no CSRF).

``opx serve`` uses :class:`TokenAuth` (``Authorization: Bearer <token>``,
tokens made by ``opx token create``). The Jupyter server extension mounts the
same handlers with :class:`JupyterAuth`, which checks Jupyter's own login
and asks Jupyter's authorizer, as ``@authorized`` does.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

from ..exceptions import AuthError, ForbiddenError
from ..workspace import Workspace

#: the cookie the dashboard page sets from its ``?token=``
DASHBOARD_COOKIE = "opx_dashboard"
#: scopes that only read: inside Jupyter they need the authorizer's ``read``
READ_SCOPES = frozenset({"read", "dashboard"})

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
    """The token of an ``Authorization: Bearer …`` header, else of ``?token=`` or of
    the dashboard cookie where the route allows them (see the module docstring).

    ``?token=`` URLs are redacted in the access log.
    """
    header = handler.request.headers.get("Authorization", "")
    scheme, _, value = header.strip().partition(" ")
    if header and scheme.lower() != "bearer":
        raise AuthError("unsupported Authorization scheme; send 'Authorization: Bearer <token>'")
    if value.strip():
        return value.strip()
    if handler.allow_query_token:
        query = handler.get_query_argument("token", None)
        if query:
            return query
    if handler.allow_cookie_token and handler.request.method in ("GET", "HEAD"):
        return handler.get_cookie(DASHBOARD_COOKIE) or None
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
        model = handler.auth_model() if scope == "dashboard" else None
        return await handler.run_blocking(verify_token, self.ws, secret, scope, model)


class JupyterAuth(Auth):
    """Jupyter's authentication and authorization, for handlers mounted in a Jupyter server.

    The user is the one Jupyter's identity provider found in the handler's
    ``prepare`` (token, cookie or whatever the deployment configured): none
    is a 403, as for Jupyter's own API. Jupyter's authorizer then decides
    ``read`` (scopes ``read`` and ``dashboard``) or ``write`` (any other scope) on the resource
    :attr:`resource`, so a deployment's authorizer can make the panel read-only.
    """

    resource = "opx"

    async def authorize(self, handler: OpxHandler, scope: str) -> Any:
        user = getattr(handler, "current_user", None)
        if not user:
            raise ForbiddenError(
                "not logged in to Jupyter: open JupyterLab and log in, or send "
                "'Authorization: token <jupyter server token>'",
                needed=scope,
            )
        action = "read" if scope in READ_SCOPES else "write"
        allowed = handler.authorizer.is_authorized(handler, user, action, self.resource)  # type: ignore[attr-defined]
        if inspect.isawaitable(allowed):
            allowed = await allowed
        if not allowed:
            raise ForbiddenError(
                f"user {getattr(user, 'username', user)!r} may not {action} {self.resource} "
                "on this Jupyter server (its authorizer refused)",
                needed=scope,
            )
        return user


__all__ = ["DASHBOARD_COOKIE", "READ_SCOPES", "Auth", "JupyterAuth", "TokenAuth", "bearer_token"]
