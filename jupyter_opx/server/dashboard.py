"""The business dashboard of ``opx serve``: ``/dashboard/{model}``, read-only, live.

A business owner opens a share link, ``http://HOST:PORT/dashboard/churn?token=…``,
made from a token with the least scope that works (``opx token create NAME
--scope dashboard:churn``; ``dashboard``, ``read`` and ``admin`` tokens open
it too). No Jupyter is needed.

Routes (``opx serve`` only; every one is ``GET``):

=========================================  =================================================
``/dashboard/{model}?window=1d``           the page (HTML); ``?token=`` is traded for a cookie
``/dashboard/{model}/content?window=1d``   its live part, re-fetched when the store changes
``/dashboard/{model}/stream``              server-sent events of the store's change sequence
``/dashboard/static/dashboard.js``         the page's one script, from the package (public)
=========================================  =================================================

The token: a browser cannot send an ``Authorization`` header when it loads a
page or opens an ``EventSource``, so the first load carries ``?token=``. The
page answers it with a cookie holding the token (``HttpOnly`` so scripts
cannot read it, ``SameSite=Strict`` so other sites cannot send it, its
``Path`` limited to this model's ``/dashboard/MODEL``) and a redirect to the
same URL without the token, which so leaves the address bar and the history.
Only these ``GET`` routes accept the cookie; the API under ``/api`` never
does, so it cannot be used to write anything (no CSRF). The token is checked
on every request: revoking it closes the dashboard at once.

Without a token, with a bad or revoked one, with too little scope, for an
unknown model: an HTML page saying what happened and how to get a link,
never a traceback.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from ..exceptions import NotFoundError
from .auth import DASHBOARD_COOKIE
from .handlers import OpxHandler, log
from .stream import StreamHandler

if TYPE_CHECKING:
    from ..monitoring.compute import Feedback
    from ..workspace import Workspace

STATIC = Path(__file__).with_name("static")
#: how long the dashboard cookie lives (revoking the token ends it at once anyway)
COOKIE_DAYS = 30
#: a computed Feedback is reused for this many seconds while the store has not changed
CACHE_SECONDS = 10.0
_CACHE_SIZE = 16
SECURITY_HEADERS = {
    # the page's own script only; inline styles (the SVG charts use style attributes)
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; "
    "style-src 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_cache: dict[tuple[int, str, str], tuple[int, float, Feedback]] = {}
_cache_lock = threading.Lock()
ERROR_CSS = """
body{margin:0;background:#f8fafc;color:#0f172a;line-height:1.5;
 font-family:system-ui,-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif}
main{max-width:720px;margin:10vh auto;padding:0 20px}h1{font-size:1.5rem}
pre{background:rgba(127,127,127,.12);padding:10px 12px;border-radius:6px;
 white-space:pre-wrap;word-break:break-all}.meta{opacity:.7;font-size:.9rem}
@media (prefers-color-scheme: dark){body{background:#0b1220;color:#e5e7eb}}
"""


def error_page(status: int, title: str, message: str, advice: str = "") -> str:
    """A small self-contained HTML page for an error (never a traceback; no pandas import,
    so a stranger's request is answered at once)."""
    from html import escape

    from .._version import __version__

    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer"><link rel="icon" href="data:,">
<title>{status} · {escape(title)}</title><style>{ERROR_CSS}</style></head>
<body><main><h1>{escape(title)}</h1>
<p>{escape(message)}</p>{advice}
<p class="meta">HTTP {status} · jupyter_opx dashboard {escape(__version__)}</p></main></body></html>
"""


def feedback_at(ws: Workspace, model: str, window: str) -> tuple[Feedback, int]:
    """The :class:`Feedback` of ``model`` and the change sequence it reflects (blocking).

    Many open dashboards ask at the same change: one computation serves them
    for up to :data:`CACHE_SECONDS` while the sequence stays the same.
    """
    from ..monitoring.compute import compute

    seq = ws.change_seq()
    key = (id(ws), model, window)
    with _cache_lock:
        hit = _cache.get(key)
    if hit is not None and hit[0] == seq and time.monotonic() - hit[1] < CACHE_SECONDS:
        return hit[2], seq
    fb = compute(ws, model, window)
    with _cache_lock:
        if len(_cache) >= _CACHE_SIZE:
            _cache.pop(next(iter(_cache)), None)
        _cache[key] = (seq, time.monotonic(), fb)
    return fb, seq


class DashboardHandler(OpxHandler):
    """Base of the dashboard's routes: ``dashboard`` scope on the path's model, the
    cookie accepted, HTML error pages."""

    scope: str | None = "dashboard"
    allow_cookie_token = True
    SUPPORTED_METHODS = ("GET",)

    def auth_model(self) -> str | None:
        return str(self.path_kwargs.get("model") or "")

    def set_default_headers(self) -> None:
        for name, value in SECURITY_HEADERS.items():
            self.set_header(name, value)

    def window(self) -> str:
        window = self.get_query_argument("window", "1d").strip() or "1d"
        return window[:32]

    def link_form(self) -> str:
        from urllib.parse import quote

        model = self.path_kwargs.get("model") or "MODEL"
        path = "/dashboard/" + quote(model, safe="@")
        return f"{self.request.protocol}://{self.request.host}{path}?token=TOKEN"

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        from html import escape

        exc = kwargs.get("exc_info", (None, None, None))[1]
        status, body = self.error_response(exc, status_code)
        message = str(body.get("message", ""))
        model = self.path_kwargs.get("model") or "MODEL"
        scope = f"dashboard:{model.split('@')[0].split('/')[0]}"
        how = (
            "<p>Ask whoever runs this model's <code>opx serve</code> for a dashboard link. "
            "They make one with:</p>"
            f"<pre>opx token create NAME --scope {escape(scope)}</pre>"
            "<p>and share it in this form:</p>"
            f"<pre>{escape(self.link_form())}</pre>"
            "<p>A link opens the dashboard once per browser; later visits need no token.</p>"
        )
        if status == 401:
            title = "A dashboard link is needed"
            if self.get_cookie(DASHBOARD_COOKIE):
                self.clear_cookie(DASHBOARD_COOKIE, path=self._cookie_path())
            if "authentication required" in message:
                message = "This dashboard opens with a link that carries an access token."
            advice = how
        elif status == 403:
            title = "This link does not open this dashboard"
            advice = how
        elif status == 404:
            title = "No such dashboard"
            advice = (
                "<p>Check the model's name in the address: it is the name given to "
                "<code>opx.snapshot(NAME, …)</code>; <code>opx snapshots</code> lists them.</p>"
            )
        elif status == 400:
            title = "This address is not valid"
            advice = "<p>Windows are 1h, 1d or 1w, e.g. <code>?window=1d</code>.</p>"
        else:
            title = "The dashboard cannot be shown"
            advice = "<p>Try again in a moment; the server's log has the details.</p>"
        self.set_status(status)
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.finish(error_page(status, title, message, advice))

    def _cookie_path(self) -> str:
        # the model's segment as the browser sent it (URL-encoded), so the cookie
        # goes to this model's page, content and stream and nowhere else
        parts = self.request.path.split("/")
        return "/".join(parts[:3]) if len(parts) >= 3 else "/dashboard"


class DashboardPageHandler(DashboardHandler):
    """``GET /dashboard/{model}``: the page; ``?token=`` becomes a cookie and a redirect."""

    allow_query_token = True

    async def get(self, model: str) -> None:
        from .dashboard_page import render_page

        secret = self.get_query_argument("token", None)
        if secret:
            # authorize() has accepted it: keep it in a cookie, drop it from the URL
            self.set_cookie(
                DASHBOARD_COOKIE,
                secret,
                path=self._cookie_path(),
                max_age=COOKIE_DAYS * 86_400,
                httponly=True,
                # behind a TLS proxy too (the header can only make the cookie stricter)
                secure=self.request.protocol == "https"
                or self.request.headers.get("X-Forwarded-Proto", "").lower() == "https",
                samesite="Strict",
            )
            rest = [
                (k, self.decode_argument(v[-1]))
                for k, v in self.request.query_arguments.items()
                if k != "token"
            ]
            self.redirect(self.request.path + ("?" + urlencode(rest) if rest else ""), status=303)
            return
        fb, seq = await self.run_blocking(feedback_at, self.ctx.ws, model, self.window())
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.finish(render_page(fb, model, seq))


class DashboardContentHandler(DashboardHandler):
    """``GET /dashboard/{model}/content?window=``: the live part of the page (HTML),
    which the page's script fetches when the change stream moves."""

    async def get(self, model: str) -> None:
        from .dashboard_page import render_content

        fb, seq = await self.run_blocking(feedback_at, self.ctx.ws, model, self.window())
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.set_header("X-Opx-Seq", str(seq))
        self.finish(render_content(fb, seq))


class DashboardStreamHandler(StreamHandler):
    """``GET /dashboard/{model}/stream``: the change stream, with the dashboard's cookie."""

    scope = "dashboard"
    allow_query_token = False
    allow_cookie_token = True

    def auth_model(self) -> str | None:
        return str(self.path_kwargs.get("model") or "")

    async def get(self, model: str) -> None:  # type: ignore[override]
        await super().get()


class DashboardScriptHandler(OpxHandler):
    """``GET /dashboard/static/dashboard.js``: the page's script, from the package (public:
    it holds no data)."""

    scope = None

    def get(self) -> None:
        try:
            text = (STATIC / "dashboard.js").read_bytes()
        except OSError:  # a broken install
            log.error("dashboard.js is missing from %s", STATIC)
            raise NotFoundError("dashboard.js is missing from this installation") from None
        self.set_header("Content-Type", "text/javascript; charset=UTF-8")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Cache-Control", "no-cache")
        self.finish(text)


class DashboardNotFoundHandler(DashboardHandler):
    """Any other path under ``/dashboard``: an HTML 404 saying what a dashboard URL looks like."""

    scope = None

    async def prepare(self) -> None:
        await super().prepare()
        raise NotFoundError(
            "A dashboard's address is /dashboard/MODEL, e.g. /dashboard/churn, "
            "opened the first time with the link's ?token=."
        )


#: ``(tornado pattern, handler)``, in matching order; mounted by ``opx serve`` only
DASHBOARD_ROUTES: list[tuple[str, type[OpxHandler]]] = [
    (r"/dashboard/static/dashboard\.js$", DashboardScriptHandler),
    (r"/dashboard/(?P<model>[^/]+)/content$", DashboardContentHandler),
    (r"/dashboard/(?P<model>[^/]+)/stream$", DashboardStreamHandler),
    (r"/dashboard/(?P<model>[^/]+)/?$", DashboardPageHandler),
    (r"/dashboard(?:/.*)?$", DashboardNotFoundHandler),
]


__all__ = [
    "DASHBOARD_ROUTES",
    "DashboardContentHandler",
    "DashboardHandler",
    "DashboardNotFoundHandler",
    "DashboardPageHandler",
    "DashboardScriptHandler",
    "DashboardStreamHandler",
    "error_page",
    "feedback_at",
]
