"""Where a snapshot came from: environment, git state, notebook and executed cells.

Everything here is read offline: package versions come from installed
metadata (``importlib.metadata``), never from pip or the network.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from functools import cache, lru_cache
from pathlib import Path
from typing import Any


@lru_cache(maxsize=1)
def module_distributions() -> dict[str, list[str]]:
    """Top-level module → distribution names (scans installed metadata once per process)."""
    from importlib.metadata import packages_distributions

    return dict(packages_distributions())


@cache
def _dist_version(dist: str) -> str | None:
    # parsing a package's metadata costs ~1 ms; a loaded module's version cannot change
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:  # pragma: no cover - broken metadata
        return None


def environment() -> dict[str, Any]:
    """Python, platform and versions of the packages imported in this process."""
    stdlib: frozenset[str] = getattr(sys, "stdlib_module_names", frozenset())
    tops = {
        name.split(".", 1)[0]
        for name in list(sys.modules)
        if not name.startswith("_") and name.split(".", 1)[0] not in stdlib
    }
    mapping = module_distributions()
    packages: dict[str, str] = {}
    for top in sorted(tops):
        for dist in mapping.get(top, ()):
            found = _dist_version(dist)
            if found is not None:
                packages[dist] = found
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "executable": sys.executable,
        "packages": dict(sorted(packages.items(), key=lambda kv: kv[0].lower())),
    }


def git_info(start: str | os.PathLike[str] | None = None) -> dict[str, Any] | None:
    """Commit, branch and dirty flag of the repository holding ``start`` (or None)."""
    here = Path(start or os.getcwd()).resolve()
    if not any((p / ".git").exists() for p in (here, *here.parents)):
        return None

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", "-C", str(here), *args],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return None
    status = git("status", "--porcelain", "--untracked-files=no")
    return {
        "commit": commit,
        "branch": git("rev-parse", "--abbrev-ref", "HEAD"),
        "dirty": bool(status),
    }


def read_notebook(path: str | None) -> dict[str, Any] | None:
    """The saved notebook at ``path`` as JSON, or None when it cannot be read."""
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "cells" in data else None


def notebook_path_from_env(user_ns: dict[str, Any] | None = None) -> str | None:
    """The path of the running notebook when the kernel knows it.

    JupyterLab sets ``__session__`` in the kernel's namespace and
    ``JPY_SESSION_NAME`` in its environment; papermill runs set neither.
    """
    candidates = [
        (user_ns or {}).get("__session__"),
        os.environ.get("JPY_SESSION_NAME"),
        os.environ.get("OPX_NOTEBOOK_PATH"),
    ]
    for value in candidates:
        if isinstance(value, str) and value.endswith(".ipynb"):
            return value
    return None
