"""The business dashboard of ``opx serve`` over real HTTP: least-privilege tokens, the
``?token=`` → cookie → redirect flow, the cookie never writing, HTML error pages,
the page's content, and ``opx token create --scope dashboard:MODEL``.

The browser side (live refresh without reload) is in ``tests/browser/test_dashboard.py``.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests

import jupyter_opx as opx
from jupyter_opx.cli import main
from jupyter_opx.exceptions import ForbiddenError, ValidationError
from jupyter_opx.server.app import make_app, serve_until_stopped
from jupyter_opx.server.auth import DASHBOARD_COOKIE
from jupyter_opx.tokens import ALL_MODELS, create_token, revoke_token, verify_token
from jupyter_opx.workspace import Workspace, get_workspace

PREDICTIONS = [
    {"id": f"c{i}", "score": i / 10, "features": {"tenure": i, "plan": "basic"}}
    for i in range(1, 8)
]


class Server:
    """``serve_until_stopped`` on its own loop in a thread (the code path of ``opx serve``)."""

    def __init__(self, ws: Workspace) -> None:
        self.app = make_app(ws)
        self.stop_event = asyncio.Event()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.ready.wait(10)

    def _run(self) -> None:
        def ready(url: str) -> None:
            self.origin, self.loop = url.removesuffix("/api"), asyncio.get_running_loop()
            self.ready.set()

        asyncio.run(serve_until_stopped(self.app, port=0, on_ready=ready, stop=self.stop_event))

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(15)
        assert not self.thread.is_alive()


@pytest.fixture
def ws(store: Any, frame: Any) -> Workspace:
    """Snapshots churn/1 and other/1 with reference data, churn with a few predictions."""
    opx.snapshot("churn", data={"train": frame[["tenure", "charges", "plan"]]})
    opx.snapshot("other", data={"train": frame[["tenure", "plan"]]})
    ws = get_workspace()
    opx.log_predictions("churn", ["a", "b"], [0.2, 0.9], workspace=ws)
    return ws


@pytest.fixture
def tokens(ws: Workspace) -> dict[str, str]:
    scopes = ("dashboard:churn", "dashboard", "read", "admin", "feedback:write")
    return {s: create_token(ws, s.replace(":", "-"), s)[1] for s in scopes}


@pytest.fixture
def server(ws: Workspace) -> Iterator[Server]:
    s = Server(ws)
    yield s
    s.stop()


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def opened(server: Server, secret: str, path: str = "/dashboard/churn") -> requests.Session:
    """A session that opened a share link (so it holds the dashboard cookie)."""
    session = requests.Session()
    r = session.get(server.origin + path, params={"token": secret}, timeout=10)
    assert r.status_code == 200, r.text
    return session


# -- the scopes (core) -----------------------------------------------------------------
def test_dashboard_scopes_grant_only_the_dashboard(ws: Workspace) -> None:
    _, one = create_token(ws, "biz", "dashboard:churn")
    _, any_model = create_token(ws, "board", "dashboard")
    _, read = create_token(ws, "reader", "read")
    assert verify_token(ws, one, "dashboard", "churn").name == "biz"
    assert verify_token(ws, one, "dashboard", "churn@production").name == "biz"
    assert verify_token(ws, one, "dashboard", "churn/3").name == "biz"
    assert verify_token(ws, one, "dashboard", None).name == "biz"  # the change stream
    with pytest.raises(ForbiddenError, match="dashboard:other"):
        verify_token(ws, one, "dashboard", "other")
    with pytest.raises(ForbiddenError):
        verify_token(ws, one, "dashboard", ALL_MODELS)
    for scope in ("read", "feedback:write", "admin"):
        with pytest.raises(ForbiddenError):
            verify_token(ws, one, scope)
        with pytest.raises(ForbiddenError):
            verify_token(ws, any_model, scope)
    assert verify_token(ws, any_model, "dashboard", ALL_MODELS).name == "board"
    assert verify_token(ws, read, "dashboard", "other").name == "reader"
    for bad in ("dashboard:", "dashboard:has space", "dashboard:churn@production", "dash"):
        with pytest.raises(ValidationError, match="scope"):
            create_token(ws, "t", bad)
    token, _ = create_token(ws, "two", "dashboard:churn,dashboard:other")
    assert token.dashboard_models == ("churn", "other")


# -- the share link: token → cookie → clean URL ----------------------------------------
def test_a_share_link_sets_a_strict_httponly_cookie_and_drops_the_token(server, tokens) -> None:
    secret = tokens["dashboard:churn"]
    r = requests.get(
        f"{server.origin}/dashboard/churn",
        params={"token": secret, "window": "1w"},
        allow_redirects=False,
        timeout=10,
    )
    assert r.status_code == 303
    assert r.headers["Location"] == "/dashboard/churn?window=1w"
    cookie = r.headers["Set-Cookie"]
    assert cookie.startswith(f"{DASHBOARD_COOKIE}={secret};")
    for attribute in ("HttpOnly", "SameSite=Strict", "Path=/dashboard/churn"):
        assert attribute in cookie
    assert r.headers["Referrer-Policy"] == "no-referrer"
    session = opened(server, secret)
    r = session.get(f"{server.origin}/dashboard/churn", timeout=10)
    assert r.status_code == 200 and "token" not in r.url
    assert r.headers["Content-Type"].startswith("text/html")
    assert "script-src 'self'" in r.headers["Content-Security-Policy"]
    r = session.get(f"{server.origin}/dashboard/churn/content", timeout=10)
    assert r.status_code == 200 and 'id="opx-content"' in r.text
    r = session.get(f"{server.origin}/dashboard/churn/stream", stream=True, timeout=10)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/event-stream")
    first = next(r.iter_lines(chunk_size=1, decode_unicode=True))
    assert first == "retry: 1000"
    r.close()


def test_the_cookie_opens_only_the_dashboard_and_never_writes(server, tokens, ws) -> None:
    # even an admin token, once in the cookie, reads only the dashboard's GET routes
    session = opened(server, tokens["admin"])
    jar = {DASHBOARD_COOKIE: tokens["admin"]}
    for method, path in (
        ("GET", "/api/feedback/churn"),
        ("GET", "/api/snapshots"),
        ("GET", "/api/stream"),
        ("POST", "/api/feedback/churn/predictions"),
        ("POST", "/api/snapshots/churn/promote"),
    ):
        r = requests.request(
            method, server.origin + path, cookies=jar, json=PREDICTIONS, timeout=10, stream=True
        )
        assert r.status_code == 401, (method, path)
        r.close()
    r = session.post(f"{server.origin}/dashboard/churn", json=PREDICTIONS, timeout=10)
    assert r.status_code == 405 and "Traceback" not in r.text
    assert opx.feedback("churn", workspace=ws).kpis()["predictions"] == 2


def test_a_model_restricted_link_opens_only_its_model(server, tokens) -> None:
    secret = tokens["dashboard:churn"]
    assert opened(server, secret, "/dashboard/churn%2F1").cookies  # a ref of churn
    r = requests.get(f"{server.origin}/dashboard/other", params={"token": secret}, timeout=10)
    assert r.status_code == 403 and r.headers["Content-Type"].startswith("text/html")
    assert "--scope dashboard:other" in r.text and "Set-Cookie" not in r.headers
    # the cookie of churn is not even sent to other's path
    session = opened(server, secret)
    r = session.get(f"{server.origin}/dashboard/other/content", timeout=10)
    assert r.status_code == 401
    # with a Bearer header, the reads the dashboard needs, for its model only
    for path, want in (
        ("/api/feedback/churn", 200),
        ("/api/alerts?model=churn", 200),
        ("/api/feedback/other", 403),
        ("/api/alerts", 403),
        ("/api/alerts?model=other", 403),
        ("/api/snapshots", 403),
        ("/api/jobs", 403),
        ("/api/runs", 403),
    ):
        r = requests.get(server.origin + path, headers=bearer(secret), timeout=10)
        assert r.status_code == want, (path, r.text)
    r = requests.post(
        f"{server.origin}/api/feedback/churn/predictions",
        headers=bearer(secret),
        json=PREDICTIONS,
        timeout=10,
    )
    assert r.status_code == 403
    # an unrestricted dashboard token reads every model's figures and alerts
    for path in ("/api/feedback/other", "/api/alerts", "/dashboard/other"):
        r = requests.get(server.origin + path, headers=bearer(tokens["dashboard"]), timeout=10)
        assert r.status_code == 200, path


def test_behind_a_tls_proxy_the_cookie_is_secure(server, tokens) -> None:
    r = requests.get(
        f"{server.origin}/dashboard/churn",
        params={"token": tokens["dashboard:churn"]},
        headers={"X-Forwarded-Proto": "https"},
        allow_redirects=False,
        timeout=10,
    )
    assert r.status_code == 303 and "Secure" in r.headers["Set-Cookie"]


def test_inside_jupyter_the_dashboard_scope_is_a_read() -> None:
    from jupyter_opx.server.auth import JupyterAuth

    asked: list[str] = []

    class Authorizer:
        def is_authorized(self, handler: Any, user: Any, action: str, resource: str) -> bool:
            asked.append(action)
            return action == "read"  # a read-only deployment

    class Handler:
        current_user = "ann"
        authorizer = Authorizer()

    auth = JupyterAuth()
    assert asyncio.run(auth.authorize(Handler(), "dashboard")) == "ann"  # type: ignore[arg-type]
    with pytest.raises(ForbiddenError):
        asyncio.run(auth.authorize(Handler(), "feedback:write"))  # type: ignore[arg-type]
    assert asked == ["read", "write"]


# -- errors are pages that say what to do ----------------------------------------------
@pytest.mark.parametrize(
    ("case", "status", "words"),
    [
        ("no token", 401, "A dashboard link is needed"),
        ("bad token", 401, "invalid token"),
        ("wrong scope", 403, "does not open this dashboard"),
        ("unknown model", 404, "No such dashboard"),
        ("bad window", 400, "not valid"),
        ("no model", 404, "/dashboard/MODEL"),
    ],
)
def test_errors_are_clear_html_pages(server, tokens, case, status, words) -> None:
    url, params = f"{server.origin}/dashboard/churn", {}
    if case == "bad token":
        params = {"token": "opx_" + "x" * 43}
    elif case == "wrong scope":
        params = {"token": tokens["feedback:write"]}
    elif case == "unknown model":
        url, params = f"{server.origin}/dashboard/ghost", {"token": tokens["dashboard"]}
    elif case == "bad window":
        params = {"token": tokens["dashboard"], "window": "1y"}
    elif case == "no model":
        url = f"{server.origin}/dashboard/"
    r = requests.get(url, params=params, timeout=10)
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"].startswith("text/html")
    assert words in r.text
    assert "Traceback" not in r.text and "opx_" + "x" * 43 not in r.text
    if status in (401, 403):
        assert "opx token create NAME --scope dashboard:churn" in r.text
        assert f"{server.origin}/dashboard/churn?token=TOKEN" in r.text


def test_a_revoked_token_closes_the_dashboard_and_clears_the_cookie(server, tokens, ws) -> None:
    session = opened(server, tokens["dashboard:churn"])
    revoke_token(ws, "dashboard-churn")
    r = session.get(f"{server.origin}/dashboard/churn/content", timeout=10)
    assert r.status_code == 401 and "revoked" in r.text
    assert f'{DASHBOARD_COOKIE}=""' in r.headers["Set-Cookie"]


# -- the page ----------------------------------------------------------------------------
def test_the_page_shows_kpis_charts_tables_in_plain_words_and_fetches_nothing(
    server, tokens, ws
) -> None:
    opx.add_alert("churn", "predictions < 1000", workspace=ws)
    opx.evaluate_alerts("churn", workspace=ws)
    session = opened(server, tokens["dashboard:churn"])
    page = session.get(f"{server.origin}/dashboard/churn", timeout=10).text
    for kpi in ("predictions", "freshness", "auc", "drift", "uplift", "alerts"):
        assert f'data-kpi="{kpi}"' in page
    tile = re.search(r'data-kpi="predictions".*?class="opx-value">([^<]*)<', page)
    assert tile is not None and tile.group(1) == "2"
    for words in (
        "How well the model ranks",
        "Does the campaign work?",
        "How to read this",
        "predictions &lt; 1000",
        "firing",
        "By hour",
        'aria-current="true">By day',
    ):
        assert words in page, words
    assert page.count("<svg") == 6 and 'data-table="uplift-total"' not in page
    # self-contained: no address outside this server, one script of our own
    assert not re.search(r"""(?:src|href)=["'](?:https?:)?//""", page)
    assert re.findall(r"<script[^>]*>", page) == [
        '<script src="/dashboard/static/dashboard.js" defer>'
    ]
    js = requests.get(f"{server.origin}/dashboard/static/dashboard.js", timeout=10)
    assert js.status_code == 200 and js.headers["Content-Type"].startswith("text/javascript")
    assert "EventSource" in js.text and "http" not in js.text.replace("https?", "")


def test_content_follows_new_feedback(server, tokens) -> None:
    session = opened(server, tokens["dashboard:churn"])
    before = session.get(f"{server.origin}/dashboard/churn/content?window=1h", timeout=10)
    seq = int(before.headers["X-Opx-Seq"])
    r = requests.post(
        f"{server.origin}/api/feedback/churn/predictions",
        headers=bearer(tokens["feedback:write"]),
        json=PREDICTIONS,
        timeout=10,
    )
    assert r.status_code == 201
    after = session.get(f"{server.origin}/dashboard/churn/content?window=1h", timeout=10)
    assert int(after.headers["X-Opx-Seq"]) > seq
    assert 'data-window="1h"' in after.text
    tile = re.search(r'data-kpi="predictions".*?class="opx-value">([^<]*)<', after.text)
    assert tile is not None and tile.group(1) == "9"


# -- the CLI -----------------------------------------------------------------------------
def test_token_create_prints_the_share_link_and_the_token_last(store, frame, capsys) -> None:
    opx.snapshot("churn", data={"train": frame[["tenure", "plan"]]})
    argv = ["token", "create", "biz", "--scope", "dashboard:churn", "--url", "http://h:9/api"]
    assert main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    secret = lines[-1]
    assert secret.startswith("opx_")
    assert f"  http://h:9/dashboard/churn?token={secret}" in lines
    assert main(["token", "create", "writer", "--scope", "feedback:write"]) == 0
    assert "dashboard" not in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    assert "/dashboard/MODEL" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["token", "create", "--help"])
    assert "dashboard:MODEL" in capsys.readouterr().out
