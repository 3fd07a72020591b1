"""The lab extension's package agrees with the Python package (no browser, no node).

Same version everywhere (the panel refuses a server of another major.minor),
and the TypeScript models carry the names of the REST models, as STYLE.md asks.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import jupyter_opx

ROOT = Path(__file__).resolve().parents[1]
LABEXT = ROOT / "labextension"


def test_versions_agree() -> None:
    package = json.loads((LABEXT / "package.json").read_text())
    version_ts = (LABEXT / "src" / "version.ts").read_text()
    declared = re.search(r"EXTENSION_VERSION = '([^']+)'", version_ts)
    assert declared is not None
    assert package["version"] == jupyter_opx.__version__ == declared.group(1)


def test_package_builds_into_the_python_package() -> None:
    package = json.loads((LABEXT / "package.json").read_text())
    assert package["name"] == "jupyter-opx"
    assert package["jupyterlab"]["outputDir"] == "../jupyter_opx/labextension"
    assert "@jupyter/builder" in package["devDependencies"]
    assert jupyter_opx._jupyter_labextension_paths() == [
        {"src": "labextension", "dest": "jupyter-opx"}
    ]


def test_typescript_models_mirror_the_server_models() -> None:
    tree = ast.parse((ROOT / "jupyter_opx" / "server" / "models.py").read_text())
    python = {
        node.name
        for node in tree.body
        if isinstance(node, ast.ClassDef) and not node.name.endswith("Query")
    }
    typescript = set(
        re.findall(
            r"^export (?:interface|type) (\w+)",
            (LABEXT / "src" / "models.ts").read_text(),
            re.MULTILINE,
        )
    )
    assert python - typescript == set()
