"""Listing snapshots and models: a page is read in a fixed number of queries, and says
the same as one snapshot read on its own (parents, reused data, aliases)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import event

import jupyter_opx as opx
from jupyter_opx.snapshots import catalog
from jupyter_opx.workspace import get_workspace


def _three_names(frame: pd.DataFrame) -> None:
    """a/1, a/2 (same data: reused), b/1 (same data again), c/1; a@production → 1."""
    opx.snapshot("a", data={"train": frame}, metrics={"auc": 0.7})
    opx.snapshot("a", data={"train": frame, "test": frame.head(50)})
    opx.snapshot("b", data={"train": frame})
    opx.snapshot("c", data={"train": frame.head(100)})
    opx.promote("a/1", "production")
    opx.promote("a/2", "staging")


def _count_queries(ws: Any) -> list[str]:
    seen: list[str] = []
    event.listen(ws.db.engine, "before_cursor_execute", lambda *a: seen.append(a[2]), retval=False)
    return seen


def test_a_page_of_snapshots_says_what_each_snapshot_says(store: Path, frame) -> None:  # type: ignore[no-untyped-def]
    _three_names(frame)
    ws = get_workspace()
    listed = catalog.list_snapshots(ws, limit=50)
    assert [s.ref for s in listed] == ["c/1", "b/1", "a/2", "a/1"]
    for snap in listed:
        assert snap.to_dict() == catalog.get_snapshot(ws, snap.ref).to_dict()
    by_ref = {s.ref: s for s in listed}
    assert by_ref["a/2"].parent == "a/1" and by_ref["a/1"].parent is None
    assert by_ref["a/2"].data["train"].reused_from == "a/1"
    assert by_ref["b/1"].data["train"].reused_from == "a/1"
    assert list(by_ref["a/2"].data) == ["test", "train"]
    assert by_ref["a/1"].aliases == ["production"] and by_ref["a/2"].aliases == ["staging"]


def test_a_page_of_snapshots_is_a_fixed_number_of_queries(store: Path, frame) -> None:  # type: ignore[no-untyped-def]
    _three_names(frame)
    ws = get_workspace()
    seen = _count_queries(ws)
    catalog.list_snapshots(ws, limit=50)
    # BEGIN, the page, its data entries, the parents' and reused data's refs, the aliases
    assert len(seen) == 5, seen


def test_models_list_each_name_with_versions_latest_and_aliases(store: Path, frame) -> None:  # type: ignore[no-untyped-def]
    ws = get_workspace()
    assert catalog.list_models(ws) == [] and catalog.count_models(ws) == 0
    _three_names(frame)
    ws = get_workspace()
    models = catalog.list_models(ws)
    assert [(m.name, m.versions, m.latest) for m in models] == [
        ("a", 2, 2),
        ("b", 1, 1),
        ("c", 1, 1),
    ]
    assert models[0].aliases == {"production": 1, "staging": 2}
    assert models[0].to_dict()["latest_ref"] == "a/2"
    assert catalog.count_models(ws) == 3
    assert [m.name for m in catalog.list_models(ws, limit=1, offset=1)] == ["b"]


def test_the_jobs_list_is_a_fixed_number_of_queries(store: Path) -> None:
    from jupyter_opx.jobs import definitions as D
    from jupyter_opx.jobs import runs as R

    notebook = Path(__file__).parent / "notebooks" / "jobs" / "typed_params.ipynb"
    ws = get_workspace()
    for i in range(4):
        D.create_job(ws, f"job-{i}", notebook, schedule="0 6 * * *" if i % 2 else None)
    R.create_run(ws, "job-1")
    second = R.create_run(ws, "job-1")
    seen = _count_queries(ws)
    jobs = D.list_jobs(ws)
    # BEGIN, the latest versions, states, last run ids, their statuses, first versions
    assert len(seen) == 6, seen
    assert [j.name for j in jobs] == ["job-0", "job-1", "job-2", "job-3"]
    assert (jobs[1].last_run_id, jobs[1].last_status) == (second.id, "queued")
    assert jobs[0].last_run_id is None and jobs[0].next_run is None
    assert jobs[1].next_run is not None
    assert jobs[1].to_dict() == D.get_job(ws, "job-1").to_dict()
