"""The REST surface over real HTTP on 127.0.0.1: ingestion, auth on every route,
the change stream, errors as JSON; ``opx serve`` and the Jupyter server
extension as real processes.

The in-process server runs :func:`serve_until_stopped` on its own event loop
in a thread (the code path of ``opx serve``), on a free port, and every test
stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import requests
from tornado.web import RequestHandler

import jupyter_opx as opx
from jupyter_opx.jobs.lease import holder_of
from jupyter_opx.server.app import make_app, serve_until_stopped
from jupyter_opx.server.handlers import OpxHandler
from jupyter_opx.server.stream import StreamHandler
from jupyter_opx.tokens import create_token
from jupyter_opx.workspace import Workspace, get_workspace

BIN = Path(sys.executable).parent
EVENTS = [
    {
        "id": "c1",
        "score": 0.81,
        "features": {"tenure": 3, "charges": 80.5, "plan": "basic"},
        "ts": "2026-11-30T06:00:00Z",
        "event_id": "e1",
    },
    {"id": "c2", "score": 0.12, "features": {"tenure": 40}, "ts": 1796018400, "event_id": "e2"},
    {"id": "c3", "score": 0.55, "ts": "2026-11-30T07:30:00+01:00", "event_id": "e3"},
]


class Server:
    """``serve_until_stopped`` on its own loop in a thread."""

    def __init__(self, ws: Workspace, **options: Any) -> None:
        self.app = make_app(ws, **options)
        self.stop_event = asyncio.Event()
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.ready.wait(10), self.error
        self.url: str

    def _run(self) -> None:
        def ready(url: str) -> None:
            self.url, self.loop = url, asyncio.get_running_loop()
            self.ready.set()

        try:
            asyncio.run(serve_until_stopped(self.app, port=0, on_ready=ready, stop=self.stop_event))
        except BaseException as exc:  # pragma: no cover - shown by the assert in __init__
            self.error = exc
            self.ready.set()

    def stop(self) -> None:
        if not self.thread.is_alive():
            return
        self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(15)
        assert not self.thread.is_alive()


#: the REST API (feedback ingestion, tokens, streams) runs on SQLite and PostgreSQL
pytestmark = pytest.mark.backends("sqlite", "postgresql")


@pytest.fixture
def ws(store: Path, frame: Any) -> Workspace:
    """A store holding snapshot churn/1 with reference data."""
    opx.snapshot("churn", data={"train": frame[["tenure", "charges", "plan"]]})
    return get_workspace()


@pytest.fixture
def tokens(ws: Workspace) -> dict[str, str]:
    return {
        scope: create_token(ws, scope.replace(":", "-"), scope)[1]
        for scope in ("feedback:write", "read", "admin")
    }


@pytest.fixture
def serve(ws: Workspace) -> Iterator[Callable[..., Server]]:
    started: list[Server] = []

    def start(**options: Any) -> Server:
        started.append(Server(ws, **options))
        return started[-1]

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def server(serve: Callable[..., Server]) -> Server:
    return serve()


def auth(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def encode(fmt: str, events: list[dict[str, Any]]) -> tuple[bytes, dict[str, str]]:
    """A body and its headers in one of the wire formats."""
    if fmt == "json":
        return json.dumps(events).encode(), {"Content-Type": "application/json"}
    ndjson = "\n".join(json.dumps(e) for e in events).encode()
    if fmt == "ndjson":
        return ndjson, {"Content-Type": "application/x-ndjson"}
    if fmt == "gzip":
        return gzip.compress(ndjson), {
            "Content-Type": "application/x-ndjson",
            "Content-Encoding": "gzip",
        }
    assert fmt == "csv"
    lines = ["id,score,ts,event_id,features.tenure,features.plan"]
    for e in events:
        f = e.get("features", {})
        # one column, one form: a CSV column of ISO times (epoch seconds work when all are)
        ts = e["ts"] if isinstance(e["ts"], str) else datetime.fromtimestamp(e["ts"], timezone.utc)
        lines.append(
            f"{e['id']},{e['score']},{ts},{e['event_id']},{f.get('tenure', '')},{f.get('plan', '')}"
        )
    return "\n".join(lines).encode(), {"Content-Type": "text/csv; charset=utf-8"}


def post(
    server: Server,
    secret: str,
    events: list[dict[str, Any]],
    kind: str = "predictions",
    model: str = "churn",
    fmt: str = "json",
) -> requests.Response:
    body, headers = encode(fmt, events)
    return requests.post(
        f"{server.url}/feedback/{model}/{kind}",
        data=body,
        headers={**headers, **auth(secret)},
        timeout=10,
    )


def volume(kind: str = "predictions") -> int:
    fb = opx.feedback("churn")
    return int(fb.volume[kind].sum()) if len(fb.volume) else 0


# -- ingestion -------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["json", "ndjson", "csv", "gzip"])
def test_post_predictions_in_each_wire_format(server, tokens, fmt) -> None:
    r = post(server, tokens["feedback:write"], EVENTS, fmt=fmt)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["model"] == "churn" and body["version"] == 1
    assert body["kind"] == "predictions" and body["rows"] == 3 and body["segment"] >= 1
    assert volume() == 3  # a 2xx means stored: visible at once


def test_treatments_outcomes_and_a_versioned_ref(server, tokens) -> None:
    secret = tokens["feedback:write"]
    r = post(
        server, secret, [{"id": "c1", "arm": "email"}, {"id": "c2", "arm": "control"}], "treatments"
    )
    assert r.status_code == 201 and r.json()["rows"] == 2
    r = post(server, secret, [{"id": "c1", "value": 1}, {"id": "c2", "value": False}], "outcomes")
    assert r.status_code == 201 and r.json()["version"] is None
    r = post(server, secret, EVENTS[:1], model="churn%2F1")  # the ref churn/1, URL-encoded
    assert r.status_code == 201 and r.json()["version"] == 1
    assert (volume("treatments"), volume("outcomes"), volume()) == (2, 2, 1)


def test_resending_a_batch_is_counted_once(server, tokens) -> None:
    secret = tokens["feedback:write"]
    assert post(server, secret, EVENTS).status_code == 201
    assert post(server, secret, EVENTS, fmt="ndjson").status_code == 201
    # without event ids, ids derived from the content make a re-send idempotent too
    no_ids = [{k: v for k, v in e.items() if k != "event_id"} for e in EVENTS]
    assert post(server, secret, no_ids).status_code == 201
    assert post(server, secret, no_ids).status_code == 201
    assert volume() == 6


def test_one_bad_row_rejects_the_whole_batch(server, tokens, ws) -> None:
    secret = tokens["feedback:write"]
    seq = ws.change_seq()
    bad = [*EVENTS, {"id": "c4", "score": "high"}, {"id": "c5", "score": float("nan")}]
    for fmt in ("json", "ndjson"):
        body, headers = encode(fmt, bad)
        body = body.replace(b"NaN", b'"NaN"')
        r = requests.post(
            f"{server.url}/feedback/churn/predictions",
            data=body,
            headers={**headers, **auth(secret)},
            timeout=10,
        )
        assert r.status_code == 400, r.text
        assert r.json()["code"] == "invalid" and r.json()["rows"] == [3, 4]
        assert "first bad rows: 3, 4" in r.json()["message"]
    r = post(server, secret, [{"id": "c1"}], "outcomes")
    assert r.status_code == 400 and "value" in r.json()["message"]
    r = requests.post(
        f"{server.url}/feedback/churn/outcomes",
        data=b"id,value\nc1,1\nc2,maybe\n",
        headers={"Content-Type": "text/csv", **auth(secret)},
        timeout=10,
    )
    assert r.status_code == 400 and r.json()["rows"] == [1]
    for body, ctype in ((b"{not json", "application/json"), (b"<xml/>", "application/xml")):
        r = requests.post(
            f"{server.url}/feedback/churn/outcomes",
            data=body,
            headers={"Content-Type": ctype, **auth(secret)},
            timeout=10,
        )
        assert r.status_code == 400 and r.json()["message"]
    assert ws.change_seq() == seq and volume() == 0  # nothing of any of it was stored


def test_unknown_model_or_kind_is_404(server, tokens) -> None:
    secret = tokens["feedback:write"]
    r = post(server, secret, EVENTS, model="nope")
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    assert "nope" in r.json()["message"]
    r = post(server, secret, EVENTS, model="churn%40production")  # no such alias yet
    assert r.status_code == 404
    r = post(server, secret, EVENTS, kind="clicks")
    assert r.status_code == 404 and "predictions|treatments|outcomes" in r.json()["message"]
    r = requests.get(f"{server.url}/nothing/here", timeout=10)
    assert r.status_code == 404 and r.json()["code"] == "not_found"


def test_oversize_bodies_are_413_with_a_json_message(serve, tokens) -> None:
    server = serve(max_body=4096)
    secret = tokens["feedback:write"]
    many = [{"id": f"c{i}", "score": 0.5, "event_id": f"e{i}"} for i in range(200)]
    body, headers = encode("json", many)
    assert len(body) > 4096
    r = requests.post(
        f"{server.url}/feedback/churn/predictions",
        data=body,
        headers={**headers, **auth(secret)},
        timeout=10,
    )
    assert r.status_code == 413 and r.json()["code"] == "too_large"
    assert "4,096 bytes" in r.json()["message"] and "--max-body" in r.json()["message"]
    # small on the wire, too large once decompressed (a gzip bomb stops at the limit)
    bomb = gzip.compress(b"[" + b" " * 200_000 + b"]")
    assert len(bomb) < 4096
    r = requests.post(
        f"{server.url}/feedback/churn/predictions",
        data=bomb,
        headers={"Content-Encoding": "gzip", **headers, **auth(secret)},
        timeout=10,
    )
    assert r.status_code == 413 and "decompressed" in r.json()["message"]
    # chunked, with no Content-Length to refuse up front
    r = requests.post(
        f"{server.url}/feedback/churn/predictions",
        data=(body[i : i + 1000] for i in range(0, len(body), 1000)),
        headers={**headers, **auth(secret)},
        timeout=10,
    )
    assert r.status_code == 413
    assert post(server, secret, EVENTS).status_code == 201  # a batch within the limit
    assert volume() == 3


def test_bad_gzip_is_400(server, tokens) -> None:
    r = requests.post(
        f"{server.url}/feedback/churn/predictions",
        data=b"not gzip at all",
        headers={"Content-Encoding": "gzip", **auth(tokens["feedback:write"])},
        timeout=10,
    )
    assert r.status_code == 400 and "gzip" in r.json()["message"]


# -- authentication ----------------------------------------------------------------------
def _methods(handler: type) -> list[str]:
    return [
        m
        for m in ("GET", "POST", "PUT", "PATCH", "DELETE")
        if getattr(handler, m.lower()) is not getattr(RequestHandler, m.lower())
    ]


def test_every_route_but_health_requires_auth(server, tokens) -> None:
    rules = server.app.wildcard_router.rules
    protected = 0
    for rule in rules:
        handler = rule.target
        assert issubclass(handler, OpxHandler)
        if rule.matcher.regex.pattern.startswith("/dashboard"):
            continue  # HTML pages: test_every_dashboard_route_requires_a_dashboard_token
        path = rule.matcher.reverse(*["churn", "predictions"][: rule.matcher._group_count])
        url = server.url.removesuffix("/api") + path
        if handler.scope is None:
            assert path == "/api/health"
            r = requests.get(url, timeout=10)
            assert r.status_code == 200
            assert r.json() == {"status": "ok", "version": opx.__version__}
            continue
        wrong = "read" if handler.scope == "feedback:write" else "feedback:write"
        for method in _methods(handler):
            protected += 1
            calls = {
                "none": {},
                "bad": auth("opx_" + "x" * 43),
                "other scheme": {"Authorization": f"Basic {tokens['admin']}"},
                "wrong scope": auth(tokens[wrong]),
            }
            for label, headers in calls.items():
                r = requests.request(method, url, headers=headers, data=b"[]", timeout=10)
                want = 403 if label == "wrong scope" else 401
                assert r.status_code == want, (method, path, label, r.text)
                assert r.json()["code"] == ("forbidden" if want == 403 else "unauthorized")
                if want == 401:
                    assert r.headers["WWW-Authenticate"].startswith("Bearer")
            if not handler.allow_query_token:  # ?token= only where EventSource needs it
                r = requests.request(
                    method, url, params={"token": tokens["admin"]}, data=b"[]", timeout=10
                )
                assert r.status_code == 401
    assert protected == 25  # every method of every route in app.ROUTES but GET /health


def test_every_dashboard_route_requires_a_dashboard_token(server, tokens) -> None:
    origin = server.url.removesuffix("/api")
    public, protected = [], 0
    for rule in server.app.wildcard_router.rules:
        handler = rule.target
        if not rule.matcher.regex.pattern.startswith("/dashboard"):
            continue
        if handler.scope is None:  # the page's script, and the HTML 404 of other paths
            public.append(handler.__name__)
            continue
        path = rule.matcher.reverse("churn")
        assert path is not None and path.startswith("/dashboard/churn")
        for method in _methods(handler):
            assert method == "GET"  # the dashboard only reads
            protected += 1
            calls = {
                "none": {},
                "bad": auth("opx_" + "x" * 43),
                "wrong scope": auth(tokens["feedback:write"]),
            }
            for label, headers in calls.items():
                r = requests.get(origin + path, headers=headers, timeout=10, stream=True)
                want = 403 if label == "wrong scope" else 401
                assert r.status_code == want, (path, label)
                r.close()
            for scope in ("read", "admin"):  # read and admin open every dashboard
                r = requests.get(
                    origin + path, headers=auth(tokens[scope]), timeout=10, stream=True
                )
                assert r.status_code == 200, (path, scope)
                r.close()
            r = requests.post(origin + path, headers=auth(tokens["admin"]), data=b"", timeout=10)
            assert r.status_code == 405
    assert protected == 3  # page, content, stream
    assert sorted(public) == ["DashboardNotFoundHandler", "DashboardScriptHandler"]


def test_revoked_token_is_refused(server, tokens, ws) -> None:
    from jupyter_opx.tokens import revoke_token

    assert post(server, tokens["admin"], EVENTS).status_code == 201
    revoke_token(ws, "admin")
    r = post(server, tokens["admin"], EVENTS)
    assert r.status_code == 401 and "revoked" in r.json()["message"]


# -- reading -----------------------------------------------------------------------------
def test_get_feedback_returns_kpis(server, tokens) -> None:
    post(server, tokens["feedback:write"], EVENTS)
    outcomes = [{"id": "c1", "value": 1}, {"id": "c2", "value": 0}, {"id": "c3", "value": 1}]
    post(server, tokens["feedback:write"], outcomes, "outcomes")
    r = requests.get(
        f"{server.url}/feedback/churn", params={"window": "1d"}, headers=auth(tokens["read"])
    )
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["model"] == "churn" and data["window"] == "1d"
    assert data["kpis"]["predictions"] == 3 and data["kpis"]["outcomes"] == 3
    assert sum(row["predictions"] for row in data["volume"]) == 3
    assert {"performance", "drift", "uplift", "alerts"} <= set(data)
    r = requests.get(
        f"{server.url}/feedback/churn", params={"window": "1y"}, headers=auth(tokens["read"])
    )
    assert r.status_code == 400 and "window" in r.json()["message"]
    r = requests.get(f"{server.url}/feedback/ghost", headers=auth(tokens["read"]))
    assert r.status_code == 404


def test_an_unexpected_error_is_a_generic_500(server, tokens, monkeypatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("internal detail /srv/secret")

    monkeypatch.setattr("jupyter_opx.monitoring.compute.compute", broken)
    r = requests.get(f"{server.url}/feedback/churn", headers=auth(tokens["read"]), timeout=10)
    assert r.status_code == 500
    assert r.json() == {
        "code": "internal",
        "message": "internal server error; the server log has the details",
    }


def test_the_event_loop_stays_free_while_the_core_works(server, tokens, monkeypatch) -> None:
    entered, release = threading.Event(), threading.Event()

    def slow(*args: Any, **kwargs: Any) -> Any:
        entered.set()
        release.wait(10)
        raise RuntimeError("done")

    monkeypatch.setattr("jupyter_opx.monitoring.compute.compute", slow)
    reader = threading.Thread(
        target=requests.get,
        args=(f"{server.url}/feedback/churn",),
        kwargs={"headers": auth(tokens["read"]), "timeout": 10},
    )
    reader.start()
    try:
        assert entered.wait(5)
        t0 = time.monotonic()
        assert requests.get(f"{server.url}/health", timeout=5).status_code == 200
        assert time.monotonic() - t0 < 0.5
    finally:
        release.set()
        reader.join(10)


def _next_event(lines: Iterator[str]) -> tuple[str | None, dict[str, str]]:
    """The next server-sent event (or comment line) from a stream's lines."""
    event: dict[str, str] = {}
    for line in lines:
        if line.startswith(":"):
            return "comment", {"text": line}
        if line:
            field, _, value = line.partition(": ")
            event[field] = value
        elif event:
            return event.get("event"), event
    raise AssertionError("the stream ended")


def test_stream_delivers_the_new_change_sequence_within_a_second(server, tokens, ws) -> None:
    # a browser's EventSource cannot set headers: the token comes as ?token=
    r = requests.get(
        f"{server.url}/stream", params={"token": tokens["read"]}, stream=True, timeout=5
    )
    try:
        assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/event-stream")
        lines = r.iter_lines(chunk_size=1, decode_unicode=True)
        kind, first = _next_event(lines)
        assert kind == "change" and json.loads(first["data"]) == {"seq": ws.change_seq()}
        t0 = time.monotonic()
        assert post(server, tokens["feedback:write"], EVENTS).status_code == 201
        kind, event = _next_event(lines)
        latency = time.monotonic() - t0
        assert kind == "change" and json.loads(event["data"])["seq"] > int(first["id"])
        assert event["id"] == str(json.loads(event["data"])["seq"])
        assert latency < 1.0
    finally:
        r.close()


def test_stream_sends_heartbeats(server, tokens, monkeypatch) -> None:
    monkeypatch.setattr(StreamHandler, "heartbeat", 0.2)
    r = requests.get(f"{server.url}/stream", headers=auth(tokens["admin"]), stream=True, timeout=5)
    try:
        lines = r.iter_lines(chunk_size=1, decode_unicode=True)
        assert _next_event(lines)[0] == "change"
        assert _next_event(lines) == ("comment", {"text": ": heartbeat"})
    finally:
        r.close()


def test_stopping_the_server_closes_open_streams(serve, tokens) -> None:
    server = serve()
    r = requests.get(f"{server.url}/stream", headers=auth(tokens["read"]), stream=True, timeout=5)
    lines = r.iter_lines(chunk_size=1, decode_unicode=True)
    assert _next_event(lines)[0] == "change"
    t0 = time.monotonic()
    server.stop()
    assert time.monotonic() - t0 < 3
    with pytest.raises((AssertionError, requests.exceptions.RequestException)):
        _next_event(lines)  # the stream ended
    r.close()


# -- processes -------------------------------------------------------------------------
def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPX_")}
    return {**env, **extra}


def _cli_token(env: dict[str, str]) -> str:
    """A ``feedback:write`` token made by ``opx token create`` (its last line)."""
    created = subprocess.run(
        [BIN / "opx", "token", "create", "ci", "--scope", "feedback:write"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return created.stdout.strip().splitlines()[-1]


def test_opx_serve_process_serves_and_stops_cleanly_on_sigterm(ws, store, tmp_path) -> None:
    env = _env(OPX_HOME=str(store))
    secret = _cli_token(env)
    log = (tmp_path / "serve.err").open("w")
    proc = subprocess.Popen(
        [BIN / "opx", "serve", "--port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+/api", first)
        assert url, first
        base = url.group(0)
        assert requests.get(f"{base}/health", timeout=5).json()["status"] == "ok"
        r = requests.post(
            f"{base}/feedback/churn/predictions",
            data="\n".join(json.dumps(e) for e in EVENTS),
            headers={"Content-Type": "application/x-ndjson", **auth(secret)},
            timeout=10,
        )
        assert r.status_code == 201, r.text
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        assert "opx serve: stopped" in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    assert volume() == 3
    assert "201 POST /api/feedback/churn/predictions" in (tmp_path / "serve.err").read_text()


@pytest.mark.backends("sqlite")
@pytest.mark.skipif(sys.platform != "linux", reason="glibc's mallopt")
def test_opx_serve_keeps_large_freed_blocks_instead_of_faulting_them_in_again() -> None:
    """tune_malloc (called by opx serve before any worker forks): allocating and
    freeing a request-sized block again and again no longer maps fresh pages."""
    code = (
        "import resource, sys\n"
        "from jupyter_opx.server.app import tune_malloc\n"
        "tuned = tune_malloc()\n"
        "def cycle():\n"  # a request's blocks: the body, its text, a read buffer
        "    blocks = [bytearray(5 << 20) for _ in range(3)]\n"
        "    for block in blocks:\n"
        "        block[::4096] = b'x' * len(block[::4096])\n"
        "cycle()\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "for _ in range(20):\n"
        "    cycle()\n"
        "print(tuned, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    # untuned, glibc maps (and unmaps) the blocks of each cycle afresh: 76,190 faults
    assert out[0] == "True" and int(out[1]) < 1000, out


def test_jupyter_server_extension_runs_the_scheduler(tmp_path) -> None:
    root = tmp_path / "lab"
    root.mkdir()
    ws = Workspace(root / ".opx")
    env = _env(JUPYTER_CONFIG_DIR=str(tmp_path / "cfg"), JUPYTER_RUNTIME_DIR=str(tmp_path / "rt"))
    log = (tmp_path / "jupyter.log").open("w")
    proc = subprocess.Popen(
        [
            BIN / "jupyter",
            "server",
            "--port=0",
            "--ip=127.0.0.1",
            "--allow-root",
            "--IdentityProvider.token=secret",
            "--ServerApp.open_browser=False",
            f"--ServerApp.root_dir={root}",
            "--OpxServer.scheduler=True",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            if holder_of(ws) is not None:
                break
            time.sleep(0.2)
        lease = holder_of(ws)
        assert lease is not None, (tmp_path / "jupyter.log").read_text()
        assert lease[0].split(":")[1] == str(proc.pid)  # held by the Jupyter server itself
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    text = (tmp_path / "jupyter.log").read_text()
    assert "jupyter_opx: scheduler started for" in text
    assert holder_of(ws) is None  # released on shutdown: a standby takes over at once
    ws.close()


def test_extension_is_enabled_and_ok_after_install(tmp_path) -> None:
    out = subprocess.run(
        [BIN / "jupyter", "server", "extension", "list"],
        env=_env(JUPYTER_CONFIG_DIR=str(tmp_path / "cfg")),
        capture_output=True,
        text=True,
        timeout=60,
    )
    text = re.sub(r"\x1b\[[0-9;]*m", "", out.stdout + out.stderr)
    assert re.search(r"jupyter_opx\s+enabled", text), text
    assert re.search(rf"jupyter_opx {re.escape(opx.__version__)}\s+OK", text), text


def test_extension_leaves_the_scheduler_off_by_default(tmp_path, caplog) -> None:
    import logging

    from traitlets.config import Config, Configurable

    from jupyter_opx.server.extension import OpxServer, _load_jupyter_server_extension

    class FakeWebApp:
        def __init__(self) -> None:
            self.settings: dict[str, Any] = {}
            self.rules: list[Any] = []

        def add_handlers(self, host: str, rules: list[Any]) -> None:
            self.rules = rules

    class FakeServerApp(Configurable):
        log = logging.getLogger("fake-serverapp")
        root_dir = str(tmp_path)
        base_url = "/"
        web_app = FakeWebApp()

    with caplog.at_level(logging.INFO, "fake-serverapp"):
        _load_jupyter_server_extension(FakeServerApp(config=Config()))
    FakeServerApp.web_app.settings["opx"].close()
    assert FakeServerApp.web_app.rules  # the REST API is mounted all the same
    assert "scheduler off" in caplog.text
    assert not (tmp_path / ".opx").exists()
    settings = OpxServer(config=Config({"OpxServer": {"scheduler_concurrency": 5}}))
    assert (settings.scheduler, settings.scheduler_concurrency, settings.scheduler_prestart) == (
        False,
        5,
        0,
    )


def _children(pid: int) -> set[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return {int(p) for p in path.read_text().split()} if path.exists() else set()


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads /proc (Linux)")
@pytest.mark.parametrize("reuseport", ["1", "0"], ids=["own-sockets", "shared-socket"])
def test_opx_serve_workers_share_the_port_replace_the_dead_and_stop_together(
    ws, store, tmp_path, reuseport
) -> None:
    """``--workers 2``: concurrent posts all stored, a killed worker replaced, SIGTERM ends all."""
    env = _env(OPX_HOME=str(store), OPX_SERVE_REUSEPORT=reuseport)
    secret = _cli_token(env)
    err = tmp_path / "serve.err"
    out = tmp_path / "serve.out"
    with err.open("w") as log, out.open("w") as stdout:
        proc = subprocess.Popen(
            [BIN / "opx", "serve", "--port", "0", "--workers", "2"],
            env=env,
            stdout=stdout,
            stderr=log,
            text=True,
        )
    workers: set[int] = set()
    try:
        deadline = time.monotonic() + 30
        while "worker processes" not in out.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, out.read_text()
            time.sleep(0.05)
        text = out.read_text()
        base = re.search(r"http://127\.0\.0\.1:\d+/api", text)
        assert base, text
        workers = _children(proc.pid)
        assert len(workers) == 2, text
        assert {int(p) for p in re.findall(r"\d+", text.split("worker processes")[1])} == workers

        def send(i: int) -> int:
            body = "\n".join(
                json.dumps({"id": f"c{i}-{k}", "score": 0.1 * k, "ts": "2026-11-30T06:00:00Z"})
                for k in range(5)
            )
            with requests.Session() as session:
                return session.post(
                    f"{base.group(0)}/feedback/churn/predictions",
                    data=body,
                    headers={"Content-Type": "application/x-ndjson", **auth(secret)},
                    timeout=30,
                ).status_code

        codes: list[int] = []
        threads = [threading.Thread(target=lambda i=i: codes.append(send(i))) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert codes == [201] * 8
        assert volume() == 40

        # a worker killed is replaced, and the server keeps answering
        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while not (len(_children(proc.pid)) == 2 and victim not in _children(proc.pid)):
            assert time.monotonic() < deadline, out.read_text()
            time.sleep(0.05)
        assert f"worker {victim} killed by SIGKILL; starting another" in out.read_text()
        workers = _children(proc.pid)
        for _ in range(4):
            assert requests.get(f"{base.group(0)}/health", timeout=5).status_code == 200
        assert send(99) == 201 and volume() == 45

        # SIGTERM to the parent alone stops every worker, then the parent
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert "opx serve: stopped" in out.read_text()
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in workers):
            assert time.monotonic() < deadline, [p for p in workers if _alive(p)]
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    logged = err.read_text()
    assert re.search(r"tornado\.access \[\d+\] 201 POST /api/feedback/churn/predictions", logged)
