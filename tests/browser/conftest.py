"""A real JupyterLab on 127.0.0.1 and a real browser (Debian's chromium via Playwright).

``make test`` installs chromium when it is missing; run directly, these tests
are skipped without it. Playwright's own browser download is never used.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("OPX_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Lab:
    """A running ``jupyter lab``: where it is, its token, its folders."""

    url: str
    token: str
    root: Path
    store: Path
    log: Path

    def lab_url(self, path: str = "lab") -> str:
        return f"{self.url}/{path}?token={self.token}"

    def get(self, path: str) -> dict:
        request = urllib.request.Request(
            f"{self.url}/{path}", headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())


def _wait_ready(lab: Lab, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"jupyter lab exited ({proc.returncode}); see {lab.log}")
        try:
            lab.get("api/status")
            return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"jupyter lab did not answer within {timeout:.0f} s; see {lab.log}")


@pytest.fixture
def lab(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[Lab]:
    """``jupyter lab`` over a temporary root folder whose store is ``root/.opx``.

    The store is also this process's (``OPX_HOME``), so the test can make
    snapshots and post feedback the server then sees. The settings folder turns
    the news pop-up off; config, workspaces and runtime files stay in
    ``tmp_path``. Parametrized indirectly, ``{"server_extension": False}``
    starts it with the jupyter_opx server extension disabled.
    """
    options = getattr(request, "param", {})
    root = tmp_path / "root"
    store = root / ".opx"
    root.mkdir()
    settings = tmp_path / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    config = tmp_path / "config"
    config.mkdir()
    if not options.get("server_extension", True):
        (config / "jupyter_server_config.json").write_text(
            json.dumps({"ServerApp": {"jpserver_extensions": {"jupyter_opx": False}}})
        )
    monkeypatch.setenv("OPX_HOME", str(store))
    monkeypatch.setenv("OPX_USER", "tester")
    ARTIFACTS.mkdir(exist_ok=True)
    port, token = _free_port(), secrets.token_hex(16)
    lab = Lab(f"http://127.0.0.1:{port}", token, root, store, ARTIFACTS / "jupyter-lab.log")
    env = {
        **os.environ,
        "OPX_HOME": str(store),
        "OPX_USER": "tester",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "JUPYTER_CONFIG_DIR": str(config),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
    }
    command = [
        sys.executable,
        "-m",
        "jupyter",
        "lab",
        "--no-browser",
        "--allow-root",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        f"--LabApp.user_settings_dir={tmp_path / 'settings'}",
        f"--LabApp.workspaces_dir={tmp_path / 'workspaces'}",
    ]
    with lab.log.open("w") as log:
        proc = subprocess.Popen(command, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_ready(lab, proc)
        yield lab
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator:
    report = yield
    setattr(item, f"rep_{report.when}", report)  # the page fixture reads rep_call
    return report


@contextlib.contextmanager
def chromium_page(request: pytest.FixtureRequest, height: int, console_log: str) -> Iterator[Any]:
    """A headless chromium page, 1280 wide, its console written to
    ``test-artifacts/<console_log>``, a screenshot there when the test fails."""
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.skip(f"no chromium at {CHROMIUM}: apt-get install chromium (make test does)")
    sync_api = pytest.importorskip("playwright.sync_api")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": height})
        page = context.new_page()
        page.set_default_timeout(20_000)
        console = (ARTIFACTS / console_log).open("w")
        page.on("console", lambda m: console.write(f"[{m.type}] {m.text}\n"))
        page.on("pageerror", lambda e: console.write(f"[pageerror] {e}\n"))
        try:
            yield page
            report = getattr(request.node, "rep_call", None)
            if report is not None and report.failed:
                page.screenshot(path=str(ARTIFACTS / f"failed-{request.node.name}.png"))
        finally:
            context.close()
            browser.close()
            console.close()


@pytest.fixture
def page(lab: Lab, request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """A chromium page (1280×800) for ``lab``; a screenshot when the test fails."""
    with chromium_page(request, 800, "browser-console.log") as page:
        yield page
