"""The wheel: built once, it ships the notebooks, the lab extension and the server config,
and installs and works where there is no node.

The wheel is built once per module (``pip wheel --no-build-isolation``, which runs
the Jupyter builder hook, ``jlpm build:prod``) from a copy of the working tree, so
the production build never replaces the development build other tests serve.
The installed wheel is then checked in a new virtual environment with a PATH that
holds no node:

- by default (about 10 s) the new environment borrows the dependencies of this
  one through a ``.pth`` file and gets the wheel itself with ``--no-deps``;
- with ``OPX_TEST_WHEEL_INSTALL=1`` (about 2 minutes on 2 cores) the wheel and
  JupyterLab are installed with all their dependencies from the package index,
  as a user would (``pip install jupyter_opx-….whl jupyterlab``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from jupyter_opx import demo
from jupyter_opx.exceptions import NotFoundError

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
NOTEBOOKS = sorted(p.name for p in (REPO / "notebooks").glob("*.ipynb"))
ANSI = re.compile(r"\x1b\[[0-9;]*m")


# -- the notebook locator (fast) ----------------------------------------------------------------
def _fake_package(root: Path, with_notebooks: bool) -> Path:
    """``root/site/jupyter_opx/demo.py`` (and ``notebooks/`` as the wheel installs it)."""
    package = root / "site" / "jupyter_opx"
    package.mkdir(parents=True)
    (package / "demo.py").write_text("")
    if with_notebooks:
        (package / "notebooks").mkdir()
        for name in NOTEBOOKS:
            shutil.copy(REPO / "notebooks" / name, package / "notebooks" / name)
    return package


def test_notebooks_are_found_in_the_installed_package(tmp_path, monkeypatch) -> None:
    package = _fake_package(tmp_path, with_notebooks=True)
    monkeypatch.setattr(demo, "__file__", str(package / "demo.py"))
    monkeypatch.delenv("OPX_NOTEBOOKS", raising=False)
    assert demo.notebooks_dir() == package / "notebooks"


def test_notebooks_are_found_in_a_checkout_and_through_opx_notebooks(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("OPX_NOTEBOOKS", raising=False)
    assert demo.notebooks_dir() == REPO / "notebooks"  # the editable install: the repository's
    mine = tmp_path / "mine"
    shutil.copytree(REPO / "notebooks", mine)
    monkeypatch.setenv("OPX_NOTEBOOKS", str(mine))
    assert demo.notebooks_dir() == mine


def test_missing_notebooks_say_where_they_were_looked_for(tmp_path, monkeypatch) -> None:
    package = _fake_package(tmp_path, with_notebooks=False)
    monkeypatch.setattr(demo, "__file__", str(package / "demo.py"))
    monkeypatch.delenv("OPX_NOTEBOOKS", raising=False)
    with pytest.raises(NotFoundError, match="OPX_NOTEBOOKS"):
        demo.notebooks_dir()


# -- the wheel, built once -----------------------------------------------------------------------
def _source_copy(dest: Path) -> Path:
    """The working tree's files (tracked and new, not ignored) copied to ``dest``;
    ``labextension/node_modules`` is linked, not copied."""
    listed = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for raw in listed:
        name = raw.decode()
        if not name or name.startswith("labextension/node_modules/"):
            continue
        src = REPO / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    modules = REPO / "labextension" / "node_modules"
    if modules.is_dir():
        (dest / "labextension" / "node_modules").symlink_to(modules)
    return dest


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    if shutil.which("node") is None or not (BIN / "jlpm").exists():
        pytest.skip("building the wheel needs node and jlpm (make venv installs jlpm)")
    pytest.importorskip("hatch_jupyter_builder")
    base = tmp_path_factory.mktemp("wheel")
    src = _source_copy(base / "src")
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            str(src),
            "-w",
            str(base / "dist"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (whl,) = (base / "dist").glob("jupyter_opx-*.whl")
    yield whl


def test_wheel_ships_notebooks_lab_extension_and_server_config(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for nb in NOTEBOOKS:
        assert f"jupyter_opx/notebooks/{nb}" in names
    data = next(n.split("/data/")[0] for n in names if "/data/" in n) + "/data/"
    labext = data + "share/jupyter/labextensions/jupyter-opx/"
    assert labext + "package.json" in names
    assert labext + "install.json" in names
    assert labext + "static/style.js" in names
    assert any(re.fullmatch(re.escape(labext) + r"static/remoteEntry\.\w+\.js", n) for n in names)
    assert data + "etc/jupyter/jupyter_server_config.d/jupyter_opx.json" in names
    assert "jupyter_opx/store/migrations/script.py.mako" in names
    assert not any("node_modules" in n or n.startswith("labextension/") for n in names)


def _nodeless_env(venv: Path, home: Path) -> dict[str, str]:
    """Only the new environment's bin on PATH (no node: JupyterLab's jlpm there cannot
    run), a clean HOME."""
    home.mkdir(exist_ok=True)  # also the working directory: not the checkout
    env = {"HOME": str(home), "PATH": str(venv / "bin"), "LANG": "C.UTF-8"}
    assert shutil.which("node", path=env["PATH"]) is None
    return env


#: ``jupyter SUBCOMMAND`` as its application class, for an environment without the scripts
APPS = {
    ("labextension", "list"): "jupyterlab.labextensions:LabExtensionApp",
    ("server", "extension", "list"): "jupyter_server.extension.serverextension:ServerExtensionApp",
}


def _check_installed(venv: Path, env: dict[str, str]) -> None:
    python = str(venv / "bin" / "python")

    def run(*args: str) -> str:
        done = subprocess.run(
            list(args), capture_output=True, text=True, env=env, cwd=env["HOME"], timeout=120
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return ANSI.sub("", done.stdout + done.stderr)

    def jupyter(*command: str) -> str:
        if (venv / "bin" / "jupyter").exists():
            return run(str(venv / "bin" / "jupyter"), *command)
        module, app = APPS[command].split(":")
        launch = f"from {module} import {app}; {app}.launch_instance()"
        return run(python, "-c", launch, command[-1])

    where = run(
        python, "-c", "import jupyter_opx.demo as d; print(d.__file__); print(d.notebooks_dir())"
    )
    module, notebooks = where.split()
    assert module.startswith(str(venv)), "jupyter_opx must come from the installed wheel"
    assert notebooks.startswith(str(venv)) and notebooks.endswith("jupyter_opx/notebooks")
    labext = jupyter("labextension", "list")
    assert re.search(r"jupyter-opx v\S+ enabled\s+OK \(python, jupyter_opx\)", labext), labext
    assert str(venv / "share" / "jupyter" / "labextensions") in labext
    server = jupyter("server", "extension", "list")
    assert re.search(r"jupyter_opx\s+enabled", server), server
    assert re.search(r"jupyter_opx \S+ OK", server), server


def test_installed_wheel_works_without_node(wheel: Path, tmp_path: Path) -> None:
    """A new environment (no system site-packages) that borrows this one's dependencies."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    purelib = Path(
        subprocess.run(
            [
                str(venv / "bin" / "python"),
                "-c",
                "import sysconfig; print(sysconfig.get_path('purelib'))",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    # the dependencies (not jupyter_opx: its editable hook is a .pth there, never read
    # from a directory a .pth file adds) come after the environment's own packages
    (purelib / "zz_dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(venv / "bin" / "python"),
            "install",
            "--no-deps",
            "--no-index",
            "--quiet",
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    _check_installed(venv, _nodeless_env(venv, tmp_path / "home"))


@pytest.mark.timeout(900)
@pytest.mark.skipif(
    not os.environ.get("OPX_TEST_WHEEL_INSTALL"),
    reason="installs every dependency into a new environment (about 2 minutes): "
    "set OPX_TEST_WHEEL_INSTALL=1",
)
def test_wheel_installs_with_its_dependencies_and_works_without_node(
    wheel: Path, tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    done = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            str(wheel),
            "jupyterlab>=4.2",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": str(venv / "bin")},
        timeout=840,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    _check_installed(venv, _nodeless_env(venv, tmp_path / "home"))
