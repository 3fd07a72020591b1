"""Real kernels through papermill: the magics in a kernel, and every example notebook."""

from __future__ import annotations

from pathlib import Path

import nbformat
import papermill as pm
import pytest

import jupyter_opx as opx

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "notebooks"
EXAMPLES = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("OPX_HOME", str(tmp_path / ".opx"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _run(src: Path, out: Path, **params):
    return pm.execute_notebook(
        str(src),
        str(out),
        parameters=params,
        kernel_name="python3",
        cwd=str(out.parent),
        progress_bar=False,
    )


def test_snapshot_from_a_real_kernel(store, monkeypatch):
    nb_path = FIXTURES / "snapshot_in_kernel.ipynb"
    monkeypatch.setenv("OPX_NOTEBOOK_PATH", str(nb_path))
    _run(nb_path, store / "out.ipynb")
    snaps = opx.list_snapshots("kernel-made")
    assert [s.version for s in snaps] == [2, 1]
    first, second = snaps[1], snaps[0]
    assert first.message == "made in a kernel"
    assert first.model["class"] == "sklearn.ensemble._forest.RandomForestClassifier"
    assert first.data == {}  # the cell made a model, not a DataFrame
    assert second.metrics == {"acc": 1.0}
    assert second.data["train"].rows == 60
    # provenance: executed cells always, the notebook when the kernel knows it
    assert second.provenance["notebook_path"] == str(nb_path)
    source = opx.api.catalog.source(opx.current_workspace(), second.ref)
    assert any("RandomForestClassifier" in cell for cell in source["cells"])
    assert "".join(source["notebook"]["cells"][2]["source"]).startswith("%%opx snapshot")
    assert "scikit-learn" in second.environment["packages"]
    # a forest loads without ceremony (sklearn's Tree type is trusted by default)
    model = opx.load_model(second.ref)
    assert model.n_estimators == 5


def test_a_failing_magic_stops_the_run(store):
    with pytest.raises(pm.PapermillExecutionError) as info:
        _run(FIXTURES / "magic_error_stops_run.ipynb", store / "out.ipynb")
    assert info.value.ename == "NotFoundError"
    assert "no-such-model" in info.value.evalue
    out = nbformat.read(store / "out.ipynb", as_version=4)
    [cell] = [c for c in out.cells if c.source.startswith("%opx show")]
    [error] = [o for o in cell.outputs if o.output_type == "error"]
    assert len(error.traceback) == 1 and "no-such-model" in error.traceback[0]
    assert not any(o.get("text") == "never reached\n" for o in out.cells[2].get("outputs", []))


@pytest.mark.parametrize("notebook", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_notebooks_run(store, notebook):
    _run(notebook, store / notebook.name)
    assert opx.list_snapshots(), f"{notebook.name} made no snapshot"
