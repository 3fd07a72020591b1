"""The REST API of the Jupyter server extension under ``/opx/api``, in a real Jupyter
server (pytest-jupyter): every route with real data, the errors, Jupyter's auth on
every registered route, and every JSON answer validated against ``api/openapi.yaml``.

The store is made once for the module (two snapshots, a job from
``tests/notebooks/jobs/typed_params.ipynb``, one run executed to the end, feedback
and an alert rule) in the folder Jupyter serves; each test starts its own Jupyter
server on it. Tests that write use names of their own, so their order does not matter.

pytest-jupyter's fixtures are imported into this module only (not registered as a
plugin), so its autouse event-loop fixtures do not reach the other test modules;
the tests are plain functions that drive Jupyter's loop.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote, urlencode

import numpy as np
import pytest
import yaml
from conftest import make_frame
from jupyter_server.utils import url_path_join
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate as validate_spec
from pytest_jupyter.jupyter_server import *  # noqa: F403 - fixtures for this module only
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from tornado.httpclient import HTTPRequest
from tornado.web import RequestHandler

import jupyter_opx as opx
from jupyter_opx.server.app import ROUTES, path_regex
from jupyter_opx.server.handlers import AuthenticatedNotFoundHandler, OpxHandler

HERE = Path(__file__).parent
SPEC = yaml.safe_load((HERE.parent / "api" / "openapi.yaml").read_text())
SPEC_URI = "urn:jupyter-opx:openapi"
REGISTRY: Registry = Registry().with_resource(
    SPEC_URI, Resource.from_contents(SPEC, default_specification=DRAFT202012)
)
API = "opx/api"
#: a value for each path parameter, to reach every route
SAMPLE = {"ref": "churn", "name": "score", "model": "churn", "kind": "predictions", "run_id": "1"}


class Reply(NamedTuple):
    status: int
    headers: Any
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


# -- the store and the server ---------------------------------------------------------------
@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder Jupyter serves, with a store in ``.opx`` holding real data."""
    root = tmp_path_factory.mktemp("lab")
    store = root / ".opx"
    (root / "notebooks").mkdir()
    shutil.copy(HERE / "notebooks" / "jobs" / "typed_params.ipynb", root / "notebooks/score.ipynb")
    (root.parent / "outside.ipynb").write_text("{}")  # for the escape tests
    frame = make_frame(200)[["tenure", "charges", "plan"]]
    opx.snapshot("churn", data={"train": frame}, metrics={"auc": 0.8}, workspace=store)
    opx.snapshot("churn", data={"train": frame}, metrics={"auc": 0.85}, workspace=store)
    opx.promote("churn/1", "production", workspace=store)
    opx.create_job("score", root / "notebooks/score.ipynb", output=["html"], workspace=store)
    run = opx.run_job("score", {"repeats": 3}, wait=True, workspace=store)
    assert run.status == "succeeded", run.error
    ids = [f"c{i}" for i in range(200)]
    opx.log_predictions("churn", ids, np.linspace(0, 1, 200), features=frame, workspace=store)
    opx.log_outcomes("churn", ids, [i % 2 for i in range(200)], workspace=store)
    opx.add_alert("churn", "auc < 0.99", workspace=store)
    return root


@pytest.fixture
def jp_root_dir(seeded: Path) -> Path:
    return seeded


@pytest.fixture
def jp_server_config() -> dict[str, Any]:
    return {
        "ServerApp": {
            "jpserver_extensions": {"jupyter_opx": True, "jupyter_server_terminals": False}
        }
    }


@pytest.fixture
def run_id(seeded: Path) -> int:
    """The run the store was seeded with (finished, with logs and an HTML output)."""
    return opx.list_runs("score", status="succeeded", workspace=seeded / ".opx")[-1].id


@pytest.fixture
def api(
    jp_serverapp: Any, http_server_client: Any, jp_auth_header: dict[str, str], jp_asyncio_loop: Any
) -> Iterator[Callable[..., Reply]]:
    """``api(METHOD, TEMPLATE, params=…, query=…, body=…, auth=True)`` → :class:`Reply`.

    ``TEMPLATE`` is an OpenAPI path (``/snapshots/{ref}``); path parameters are
    URL-encoded (``churn/1`` → ``churn%2F1``). Every JSON answer is checked
    against the spec: its status must be documented for the operation, and the
    body must fit the documented schema.
    """

    def call(
        method: str,
        template: str,
        params: dict[str, Any] | None = None,
        query: dict[str, Any] | None = None,
        body: Any = None,
        auth: bool = True,
        headers: dict[str, str] | None = None,
        raw_path: str | None = None,
    ) -> Reply:
        path = raw_path or template.format(
            **{k: quote(str(v), safe="") for k, v in (params or {}).items()}
        )
        url = url_path_join(jp_serverapp.base_url, API) + path
        if query:
            url += "?" + urlencode(query)
        all_headers = {**(jp_auth_header if auth else {}), **(headers or {})}
        data = body if isinstance(body, (bytes, str)) or body is None else json.dumps(body)
        if data is None and method in ("POST", "PATCH"):
            data = b""
        future = http_server_client.fetch(
            url,
            method=method,
            body=data,
            headers=all_headers,
            raise_error=False,
            request_timeout=60,
        )
        response = jp_asyncio_loop.run_until_complete(future)
        reply = Reply(response.code, response.headers, response.body or b"")
        if raw_path is None:
            check_against_spec(method, template, reply)
        return reply

    yield call
    jp_serverapp.web_app.settings["opx"].close()


def _pointer(*parts: str) -> str:
    return "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def check_against_spec(method: str, template: str, reply: Reply) -> None:
    """The status is documented for the operation; a JSON body fits its schema."""
    operation = SPEC["paths"][template][method.lower()]
    documented = operation["responses"]
    assert str(reply.status) in documented, (method, template, reply.status, reply.body[:300])
    where = ["paths", template, method.lower(), "responses", str(reply.status)]
    response = documented[str(reply.status)]
    if "$ref" in response:
        name = response["$ref"].rsplit("/", 1)[-1]
        where, response = ["components", "responses", name], SPEC["components"]["responses"][name]
    kind = reply.headers.get("Content-Type", "").split(";")[0]
    assert kind in response["content"], (method, template, kind)
    if kind == "application/json":
        schema = {"$ref": f"{SPEC_URI}#/{_pointer(*where, 'content', kind, 'schema')}"}
        OAS31Validator(schema, registry=REGISTRY).validate(reply.json)


# -- the contract -------------------------------------------------------------------------------
def test_openapi_file_is_valid_and_describes_exactly_the_routes() -> None:
    validate_spec(SPEC)
    routes: dict[str, set[str]] = {}
    for template, handler, _ in ROUTES:
        methods = {
            m.lower()
            for m in handler.SUPPORTED_METHODS
            if getattr(handler, m.lower()) is not getattr(RequestHandler, m.lower())
        }
        routes.setdefault(template, set()).update(methods)
    documented = {path: set(ops) - {"parameters"} for path, ops in SPEC["paths"].items()}
    assert routes == documented


def test_version_and_no_public_route(api) -> None:
    r = api("GET", "/version")
    assert r.status == 200 and r.json == {"version": opx.__version__}
    # /health is opx serve's public route; inside Jupyter no path answers strangers
    assert api("GET", "", raw_path="/health").status == 404
    assert api("GET", "", raw_path="/health", auth=False).status == 403


# -- snapshots -----------------------------------------------------------------------------------
def test_snapshots_list_show_promote_history_diff(api) -> None:
    r = api("GET", "/snapshots")
    assert r.status == 200
    assert (r.json["total"], r.json["limit"], r.json["offset"]) == (2, 50, 0)
    assert [s["ref"] for s in r.json["items"]] == ["churn/2", "churn/1"]
    r = api("GET", "/snapshots", query={"name": "churn", "limit": 1, "offset": 1})
    assert [s["ref"] for s in r.json["items"]] == ["churn/1"] and r.json["total"] == 2

    assert api("GET", "/snapshots/{ref}", {"ref": "churn/1"}).json["metrics"] == {"auc": 0.8}
    prod = api("GET", "/snapshots/{ref}", {"ref": "churn@production"}).json
    assert prod["ref"] == "churn/1" and prod["aliases"] == ["production"]
    unencoded_at = api("GET", "/snapshots/{ref}", raw_path="/snapshots/churn@production")
    assert unencoded_at.status == 200 and unencoded_at.json["ref"] == "churn/1"
    assert api("GET", "/snapshots/{ref}", {"ref": "churn"}).json["ref"] == "churn/2"

    r = api("POST", "/snapshots/{ref}/promote", {"ref": "churn/2"}, body={"alias": "staging"})
    assert r.status == 200
    assert (r.json["name"], r.json["alias"], r.json["version"]) == ("churn", "staging", 2)
    r = api("GET", "/snapshots/{name}/history", {"name": "churn"}, query={"alias": "staging"})
    assert [(e["alias"], e["version"]) for e in r.json["items"]] == [("staging", 2)]
    assert api("GET", "/snapshots/{name}/history", {"name": "churn"}).json["total"] >= 2

    r = api("GET", "/diff", query={"a": "churn/1", "b": "churn/2"})
    assert r.status == 200 and r.json["metrics"] and not r.json["identical"]


def test_models_lists_each_name_once_with_its_versions_and_aliases(api) -> None:
    r = api("GET", "/models")
    assert r.status == 200 and r.json["total"] == 1
    (churn,) = r.json["items"]
    assert (churn["name"], churn["versions"], churn["latest"]) == ("churn", 2, 2)
    assert churn["latest_ref"] == "churn/2" and churn["aliases"]["production"] == 1
    assert api("GET", "/models", query={"offset": 1}).json["items"] == []


# -- jobs ----------------------------------------------------------------------------------------
def test_jobs_list_show_create_update_enable(api) -> None:
    r = api("GET", "/jobs")
    assert "score" in [j["name"] for j in r.json["items"]] and r.json["total"] >= 1
    job = api("GET", "/jobs/{name}", {"name": "score"}).json
    assert job["output"] == ["html"]
    assert [p["name"] for p in job["params"]] == ["threshold", "batch_date", "repeats", "model"]

    created = api(
        "POST",
        "/jobs",
        body={
            "name": "api-job",
            "notebook": "notebooks/score.ipynb",
            "params": {"threshold": "0.7"},
            "schedule": "0 6 * * *",
            "timezone": "Europe/Paris",
            "timeout": 600,
            "retries": 1,
            "env": {"MODE": "prod"},
        },
    )
    assert created.status == 201, created.body
    assert created.json["defaults"] == {"threshold": 0.7}
    assert created.json["schedule_text"] == "every day at 06:00 Europe/Paris"
    assert created.json["next_run"] and created.json["enabled"]

    r = api("PATCH", "/jobs/{name}", {"name": "api-job"}, body={"schedule": "30 7 * * 1"})
    assert r.status == 200 and r.json["version"] == 2 and r.json["timeout"] == 600
    assert (
        api("GET", "/jobs/{name}", {"name": "api-job"}, query={"version": 1}).json["version"] == 1
    )
    assert api("POST", "/jobs/{name}/disable", {"name": "api-job"}).json["enabled"] is False
    assert api("GET", "/jobs/{name}", {"name": "api-job"}).json["next_run"] is None
    assert api("POST", "/jobs/{name}/enable", {"name": "api-job"}).json["enabled"] is True


def test_notebook_params_and_schedule_preview_for_the_form(api) -> None:
    r = api("GET", "/notebook-params", query={"path": "notebooks/score.ipynb"})
    assert r.status == 200
    params = {p["name"]: p for p in r.json["params"]}
    assert params["threshold"]["type"] == "float" and params["threshold"]["default"] == 0.5
    assert params["model"]["type"] == "ref" and params["threshold"]["help"] == "decision threshold"

    r = api("GET", "/schedule-preview", query={"cron": "0 6 * * *", "tz": "Europe/Paris"})
    assert r.json["text"] == "every day at 06:00 Europe/Paris" and len(r.json["next"]) == 3
    # 06:00 in Paris is 04:00 or 05:00 UTC, by daylight saving
    assert all(t.endswith(("T04:00:00+00:00", "T05:00:00+00:00")) for t in r.json["next"])
    assert api("GET", "/schedule-preview", query={"cron": ""}).json["text"] == "manual"


# -- runs ----------------------------------------------------------------------------------------
def test_runs_list_show_logs_output(api, run_id) -> None:
    r = api("GET", "/runs", query={"job": "score", "status": "succeeded"})
    assert run_id in [x["id"] for x in r.json["items"]] and r.json["total"] >= 1
    run = api("GET", "/runs/{run_id}", {"run_id": run_id}).json
    assert run["status"] == "succeeded" and run["metrics"] == {"rows_scored": 42}
    assert run["resolved"] == {"model": "churn/1"} and run["cells_done"] == run["cells_total"]

    logs = api("GET", "/runs/{run_id}/logs", {"run_id": run_id}).json
    assert "line 2 threshold=0.5" in "".join(e["text"] for e in logs["items"])
    after = api("GET", "/runs/{run_id}/logs", {"run_id": run_id}, query={"after": logs["last_seq"]})
    assert after.json["items"] == [] and after.json["last_seq"] == logs["last_seq"]

    page = api("GET", "/runs/{run_id}/output", {"run_id": run_id})
    assert page.status == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "sandbox" in page.headers["Content-Security-Policy"]
    assert b"line 2 threshold=0.5" in page.body
    nb = api("GET", "/runs/{run_id}/output", {"run_id": run_id}, query={"format": "ipynb"})
    assert json.loads(nb.body)["nbformat"] == 4

    r = api("POST", "/runs/{run_id}/cancel", {"run_id": run_id})
    assert r.status == 409 and "already succeeded" in r.json["message"]


def test_run_now_is_accepted_and_runs(api) -> None:
    r = api("POST", "/jobs/{name}/runs", {"name": "score"}, body={"params": {"repeats": 1}})
    assert r.status == 202 and r.json["trigger"] == "api" and r.json["params"]["repeats"] == 1
    deadline = time.monotonic() + 60
    run = r.json
    while run["status"] not in ("succeeded", "failed", "timed_out", "cancelled"):
        assert time.monotonic() < deadline, run
        time.sleep(0.3)
        run = api("GET", "/runs/{run_id}", {"run_id": r.json["id"]}).json
    assert run["status"] == "succeeded", run["error"]


# -- feedback ------------------------------------------------------------------------------------
def test_feedback_alerts_and_ingest(api) -> None:
    r = api("GET", "/feedback/{model}", {"model": "churn"}, query={"window": "1d"})
    assert r.status == 200 and r.json["kpis"]["predictions"] >= 200
    assert r.json["reference"] == "churn/2"
    alerts = api("GET", "/alerts", query={"model": "churn"}).json
    assert [a["expr"] for a in alerts["items"]] == ["auc < 0.99"]
    events = [{"id": "x1", "score": 0.4, "event_id": "api-x1"}]
    r = api(
        "POST",
        "/feedback/{model}/{kind}",
        {"model": "churn@production", "kind": "predictions"},
        body=events,
        headers={"Content-Type": "application/json"},
    )
    assert r.status == 201 and (r.json["version"], r.json["rows"]) == (1, 1)


def test_stream_sends_the_change_sequence_and_its_moves(
    api, jp_serverapp, jp_http_port, jp_auth_header, jp_asyncio_loop
) -> None:
    path = url_path_join(jp_serverapp.base_url, API, "stream")

    async def follow() -> tuple[int, int]:
        reader, writer = await asyncio.open_connection("127.0.0.1", jp_http_port)
        auth = jp_auth_header["Authorization"]
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {auth}\r\n\r\n".encode()
        )

        async def next_seq() -> int:
            while True:
                line = (await asyncio.wait_for(reader.readline(), 10)).decode()
                if line.startswith("data:"):
                    return int(json.loads(line[len("data:") :])["seq"])

        status = (await reader.readline()).decode()
        assert " 200 " in status, status
        first = await next_seq()
        await asyncio.to_thread(
            opx.promote, "churn/2", "canary", workspace=jp_serverapp.root_dir + "/.opx"
        )
        second = await next_seq()
        writer.close()
        return first, second

    first, second = jp_asyncio_loop.run_until_complete(follow())
    assert second > first > 0


# -- errors --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "template", "params", "query", "body", "status", "says"),
    [
        ("POST", "/jobs", None, None, "{not json", 400, "not valid JSON"),
        ("POST", "/jobs", None, None, "[1, 2]", 400, "JSON object"),
        (
            "POST",
            "/jobs",
            None,
            None,
            {"name": "x", "notebook": "a.ipynb", "colour": 1},
            400,
            "unknown field",
        ),
        ("POST", "/jobs", None, None, {"name": "x"}, 400, "notebook is required"),
        (
            "POST",
            "/jobs",
            None,
            None,
            {"name": "x", "notebook": "notebooks/score.ipynb", "timeout": "soon"},
            400,
            "timeout must be",
        ),
        (
            "POST",
            "/jobs",
            None,
            None,
            {"name": "x", "notebook": "notebooks/score.ipynb", "retries": True},
            400,
            "retries must be",
        ),
        (
            "POST",
            "/jobs",
            None,
            None,
            {"name": "x", "notebook": "notebooks/score.ipynb", "schedule": "daily"},
            400,
            "invalid cron",
        ),
        (
            "POST",
            "/jobs",
            None,
            None,
            {"name": "x", "notebook": "../outside.ipynb"},
            400,
            "out of the server root",
        ),
        ("POST", "/jobs", None, None, {"name": "x", "notebook": "/etc/passwd"}, 400, "absolute"),
        (
            "POST",
            "/jobs",
            None,
            None,
            {"name": "x", "notebook": "notebooks/none.ipynb"},
            404,
            "not found",
        ),
        (
            "POST",
            "/jobs",
            None,
            None,
            {"name": "score", "notebook": "notebooks/score.ipynb"},
            409,
            "exists",
        ),
        (
            "PATCH",
            "/jobs/{name}",
            {"name": "score"},
            None,
            {"notebook": "../../x.ipynb"},
            400,
            "out of the server root",
        ),
        ("PATCH", "/jobs/{name}", {"name": "nope"}, None, {}, 404, "no job named"),
        (
            "POST",
            "/jobs/{name}/runs",
            {"name": "score"},
            None,
            {"params": {"repeats": "many"}},
            400,
            "repeats",
        ),
        (
            "POST",
            "/jobs/{name}/runs",
            {"name": "score"},
            None,
            {"params": {"colour": 1}},
            400,
            "colour",
        ),
        (
            "POST",
            "/jobs/{name}/runs",
            {"name": "score"},
            None,
            {"params": [1]},
            400,
            "params must be",
        ),
        ("POST", "/jobs/{name}/enable", {"name": "nope"}, None, None, 404, "no job named"),
        (
            "GET",
            "/jobs/{name}",
            {"name": "score"},
            {"version": "two"},
            None,
            400,
            "version must be",
        ),
        (
            "GET",
            "/notebook-params",
            None,
            {"path": "../outside.ipynb"},
            None,
            400,
            "out of the server root",
        ),
        ("GET", "/notebook-params", None, {}, None, 400, "path is required"),
        ("GET", "/schedule-preview", None, {"cron": "61 * * * *"}, None, 400, "invalid cron"),
        (
            "GET",
            "/schedule-preview",
            None,
            {"cron": "0 6 * * *", "tz": "Mars/Olympus"},
            None,
            400,
            "time zone",
        ),
        ("GET", "/snapshots/{ref}", {"ref": "nope"}, None, None, 404, "no snapshot named"),
        ("GET", "/snapshots/{ref}", {"ref": "churn/9"}, None, None, 404, "no version 9"),
        ("GET", "/snapshots/{ref}", {"ref": "churn@nowhere"}, None, None, 404, "no alias"),
        ("GET", "/snapshots/{ref}", {"ref": "bad ref!"}, None, None, 400, ""),
        ("GET", "/snapshots", None, {"limit": 0}, None, 400, "limit must be"),
        ("GET", "/snapshots", None, {"limit": "ten"}, None, 400, "limit must be"),
        ("GET", "/runs", None, {"limit": 201}, None, 400, "limit must be from 1 to 200"),
        ("GET", "/snapshots", None, {"offset": -1}, None, 400, "offset must be"),
        (
            "POST",
            "/snapshots/{ref}/promote",
            {"ref": "churn/1"},
            None,
            {"alias": 3},
            400,
            "alias must be",
        ),
        ("POST", "/snapshots/{ref}/promote", {"ref": "nope/1"}, None, {}, 404, "no snapshot named"),
        ("GET", "/diff", None, {"a": "churn/1"}, None, 400, "b is required"),
        ("GET", "/runs", None, {"status": "sleeping"}, None, 400, "status must be"),
        ("GET", "/runs", None, {"job": "nope"}, None, 404, "no job named"),
        ("GET", "/runs/{run_id}", {"run_id": 999999}, None, None, 404, "no run 999999"),
        ("GET", "/runs/{run_id}", {"run_id": "abc"}, None, None, 400, "a run id is a number"),
        ("GET", "/runs/{run_id}/logs", {"run_id": 1}, {"after": "x"}, None, 400, "after must be"),
        (
            "GET",
            "/runs/{run_id}/output",
            {"run_id": 1},
            {"format": "pdf"},
            None,
            400,
            "format must be",
        ),
        ("POST", "/runs/{run_id}/cancel", {"run_id": 999999}, None, None, 404, "no run"),
        (
            "GET",
            "/feedback/{model}",
            {"model": "churn"},
            {"window": "fortnight"},
            None,
            400,
            "window",
        ),
        (
            "GET",
            "/feedback/{model}",
            {"model": "churn"},
            {"threshold": "high"},
            None,
            400,
            "threshold",
        ),
        ("GET", "/feedback/{model}", {"model": "nope"}, None, None, 404, "no snapshot named"),
        ("GET", "/alerts", None, {"model": "nope"}, None, 404, "no snapshot named"),
    ],
)
def test_errors_are_json_with_the_right_status(
    api, method, template, params, query, body, status, says
) -> None:
    r = api(method, template, params, query=query, body=body)
    assert r.status == status, r.body
    assert r.json["code"] in ("invalid", "not_found", "conflict") and says in r.json["message"]


def test_an_unknown_path_under_the_api_is_a_json_404(api) -> None:
    r = api("GET", "", raw_path="/no/such/route")
    assert r.status == 404 and r.json["code"] == "not_found"


# -- authentication --------------------------------------------------------------------------------
def _opx_rules(router: Any) -> Iterator[Any]:
    for rule in router.rules:
        if hasattr(rule.target, "rules"):
            yield from _opx_rules(rule.target)
        elif hasattr(rule.matcher, "regex") and API in rule.matcher.regex.pattern.replace("\\", ""):
            yield rule


def _methods(handler: type) -> list[str]:
    return [
        m
        for m in handler.SUPPORTED_METHODS
        if getattr(handler, m.lower()) is not getattr(RequestHandler, m.lower())
    ]


def test_every_registered_route_requires_jupyter_auth(api, jp_serverapp) -> None:
    web_app = jp_serverapp.web_app
    rules = list(_opx_rules(web_app.default_router))
    base = url_path_join(jp_serverapp.base_url, API)
    templates = {re.escape(base) + path_regex(t): t for t, _, _ in ROUTES}
    checked = 0
    for rule in rules:
        handler = rule.target
        assert issubclass(handler, OpxHandler)
        assert not web_app._check_handler_auth(rule.matcher, handler)  # Jupyter's own audit
        pattern = rule.matcher.regex.pattern
        if issubclass(handler, AuthenticatedNotFoundHandler):
            path, methods = "/no/such/route", ["GET", "POST"]
        else:
            template = templates[pattern]
            path, methods = template.format(**SAMPLE), _methods(handler)
        assert rule.matcher.regex.match(base + path), (pattern, path)
        for method in methods:
            # a valid XSRF pair: the 403 comes from the missing login, not from XSRF
            xsrf = {"Cookie": "_xsrf=0123abcd", "X-XSRFToken": "0123abcd"}
            for headers in ({}, {"Authorization": "token wrong"}, xsrf):
                body = None if method == "GET" else b"{}"
                r = api(method, "", raw_path=path, auth=False, headers=headers, body=body)
                assert r.status == 403, (method, path, headers, r.body)
                assert r.json["code"] == "forbidden"
                if headers is xsrf:  # refused by JupyterAuth itself
                    assert "not logged in to Jupyter" in r.json["message"]
            checked += 1
    mounted = {rule.target.__name__ for rule in rules}
    assert mounted == {h.__name__ for t, h, _ in ROUTES if t != "/health"} | {
        "AuthenticatedNotFoundHandler"
    }
    assert checked == 27  # the 25 methods of the routes but /health, GET and POST of the 404


@pytest.mark.parametrize(
    "jp_server_config",
    [
        {
            "ServerApp": {
                "jpserver_extensions": {"jupyter_opx": True, "jupyter_server_terminals": False},
                "allow_unauthenticated_access": False,
            }
        }
    ],
)
def test_routes_pass_jupyters_strict_mode(api) -> None:
    assert api("GET", "/snapshots", auth=False).status == 403
    assert api("GET", "/snapshots").status == 200


def test_bad_input_anywhere_is_never_a_500(api) -> None:
    junk = {"limit": "x", "offset": "-", "after": "?", "version": "v", "window": "0", "a": ""}
    for template, handler, _ in ROUTES:
        if template in ("/health", "/stream"):
            continue
        path = template.format(**{k: "x%00y" for k in SAMPLE})
        for method in _methods(handler):
            for body in (b"\xff\xfe", b"[[[[", b'{"params": {"repeats": {}}}', b"null"):
                r = api(
                    method, "", raw_path=path, query=junk, body=None if method == "GET" else body
                )
                assert r.status < 500, (method, path, body, r.body)


def test_opx_serve_mounts_the_same_handlers_with_token_scopes(seeded, jp_asyncio_loop) -> None:
    from tornado.httpclient import AsyncHTTPClient
    from tornado.httpserver import HTTPServer
    from tornado.netutil import bind_sockets

    from jupyter_opx.server.app import make_app
    from jupyter_opx.tokens import create_token
    from jupyter_opx.workspace import Workspace

    ws = Workspace(seeded / ".opx")
    read = create_token(ws, "panel-read", "read")[1]
    admin = create_token(ws, "panel-admin", "admin")[1]
    app = make_app(ws, root_dir=seeded)

    async def scenario() -> list[int]:
        sockets = bind_sockets(0, "127.0.0.1")
        server = HTTPServer(app)
        server.add_sockets(sockets)
        base = f"http://127.0.0.1:{sockets[0].getsockname()[1]}/api"
        client = AsyncHTTPClient(force_instance=True)

        async def call(method: str, path: str, secret: str, body: Any = None) -> int:
            request = HTTPRequest(
                base + path,
                method=method,
                body=None if body is None else json.dumps(body),
                headers={"Authorization": f"Bearer {secret}"},
            )
            return (await client.fetch(request, raise_error=False)).code

        try:
            return [
                await call("GET", "/snapshots", read),
                await call("POST", "/snapshots/churn%2F1/promote", read, {"alias": "x"}),
                await call("POST", "/snapshots/churn%2F1/promote", admin, {"alias": "x"}),
                await call("POST", "/jobs", admin, {"name": "y", "notebook": "../outside.ipynb"}),
            ]
        finally:
            client.close()
            server.stop()
            app.settings["opx"].close()

    assert jp_asyncio_loop.run_until_complete(scenario()) == [200, 403, 200, 400]
    ws.close()
