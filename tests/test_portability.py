"""What SQLite accepts silently and PostgreSQL refuses (or reads back otherwise):
the same code gives the same answers on both (see conftest.py for the backends)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import func, select, text

import jupyter_opx as opx
from jupyter_opx.exceptions import ValidationError
from jupyter_opx.jobs import runs as R
from jupyter_opx.jobs.lease import holder_of, try_acquire
from jupyter_opx.store import schema
from jupyter_opx.store.db import HEAD_REVISION, as_utc, json_dumps
from jupyter_opx.workspace import Workspace

pytestmark = pytest.mark.backends("sqlite", "postgresql")

JOBS = Path(__file__).resolve().parent / "notebooks" / "jobs"


def test_processes_opening_a_new_store_at_once_migrate_it_once(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    root = tmp_path / "new-store"
    if backend == "postgresql":
        root.mkdir()
        url = request.getfixturevalue("pg_url")  # an empty database
        (root / "config.toml").write_text(f'database = "{url}"\n', encoding="utf-8")
    script = (
        "import pandas as pd, jupyter_opx as o; "
        "print(o.snapshot('m', data=pd.DataFrame({'a': [1.0]})).version)"
    )
    env = {**os.environ, "OPX_HOME": str(root), "OPX_USER": "tester"}
    procs = [
        subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    outs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0]
    assert sorted(outs) == ["1", "2", "3", "4"]
    db = Workspace(root).db
    try:
        assert db.current_revision() == HEAD_REVISION
        with db.transaction() as conn:
            assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1
    finally:
        db.dispose()


def test_non_finite_floats_in_json_columns_read_back_as_null(store: Path) -> None:
    assert (
        json_dumps({"a": [1.5, float("nan")], "b": float("inf")}) == '{"a": [1.5, null], "b": null}'
    )
    opx.log_metric("loss", float("nan"))
    opx.log_metric("ratio", [1.0, float("-inf")])
    snap = opx.snapshot("m", data=pd.DataFrame({"a": [1.0]}), params={"alpha": float("nan")})
    assert opx.show(snap.ref).params == {"alpha": None}
    with opx.current_workspace().db.transaction() as conn:
        rows = conn.execute(select(schema.run_metrics.c.name, schema.run_metrics.c.value)).all()
    assert sorted(tuple(r) for r in rows) == [("loss", None), ("ratio", [1.0, None])]


def test_a_float_parameter_may_be_infinite(store: Path) -> None:
    opx.create_job("score", JOBS / "typed_params.ipynb")
    ws = opx.current_workspace()
    run = R.create_run(ws, "score", {"threshold": "inf"})
    assert opx.get_run(run.id).params == {"threshold": None}
    opx.cancel_run(run.id)


def test_values_longer_than_their_column_are_validation_errors(store: Path) -> None:
    with pytest.raises(ValidationError, match="at most 128 characters"):
        opx.log_metric("x" * 129, 1.0)
    opx.log_metric("x" * 128, 1.0)


def test_alert_settings_that_do_not_fit_their_columns_are_refused(
    store: Path, logreg, frame
) -> None:  # type: ignore[no-untyped-def]
    opx.snapshot("churn", model=logreg, data={"train": frame})
    with pytest.raises(ValidationError, match="min_n must be a whole number from 0 to"):
        opx.add_alert("churn", "psi:tenure > 0.2", min_n=2**31)
    with pytest.raises(ValidationError, match="at most 32 characters"):
        opx.add_alert("churn", "psi:tenure > 0.2", window="1" * 40)
    rule = opx.add_alert("churn", "psi:tenure > 0.2", min_n=2**31 - 1, window="1d")
    assert rule.min_n == 2**31 - 1


def test_a_nul_character_in_a_snapshot_message_is_a_validation_error(store: Path) -> None:
    with pytest.raises(ValidationError, match="NUL"):
        opx.snapshot("m", data=pd.DataFrame({"a": [1.0]}), message="a\x00b")
    snap = opx.snapshot("m", data=pd.DataFrame({"a": ["x\x00y"]}), tags={"t": "a\x00b"})
    assert opx.show(snap.ref).tags == {"t": "a\x00b"}  # JSON escapes it


def test_nul_characters_in_run_logs_are_kept_as_replacement_characters(store: Path) -> None:
    opx.create_job("plain", JOBS / "no_params.ipynb")
    ws = opx.current_workspace()
    run = R.create_run(ws, "plain")
    R.append_logs(ws, run.id, [("stdout", "a\x00b\n"), ("stderr", "plain\n")])
    assert [(s, t) for _, s, t in R.read_logs(ws, run.id)] == [
        ("stdout", "a\ufffdb\n"),
        ("stderr", "plain\n"),
    ]
    opx.cancel_run(run.id)


def test_timestamps_are_utc_and_exact(store: Path) -> None:
    ws = opx.current_workspace()
    snap = opx.snapshot("m", data=pd.DataFrame({"a": [1.0]}))
    assert snap.created_at.utcoffset() == timedelta(0)
    assert abs(datetime.now(timezone.utc) - snap.created_at) < timedelta(minutes=1)
    # an aware time in another zone, and a naive one (meaning UTC), are stored exactly
    paris = datetime(2026, 3, 29, 3, 30, 0, 123456, tzinfo=timezone(timedelta(hours=2)))
    naive = datetime(2026, 3, 29, 1, 30, 0, 123456)
    with ws.db.transaction(write=True) as conn:
        for at in (paris, naive):
            conn.execute(
                schema.changes.insert().values(at=at, kind="probe", subject=at.isoformat())
            )
    with ws.db.transaction() as conn:
        stored = conn.execute(
            select(schema.changes.c.at).where(schema.changes.c.kind == "probe")
        ).scalars()
        values = [as_utc(v) for v in stored]
    expected = datetime(2026, 3, 29, 1, 30, 0, 123456, tzinfo=timezone.utc)
    assert values == [expected, expected]


def test_large_integers_round_trip(store: Path) -> None:
    ws = opx.current_workspace()
    big = 2**40 + 7  # sizes and row counts go beyond 32 bits
    ws.db.register_blobs({"f" * 64: big})
    with ws.db.transaction() as conn:
        assert conn.execute(select(schema.blobs.c.size)).scalar() == big
    opx.log_metric("rows", 2**62)
    with ws.db.transaction() as conn:
        assert conn.execute(select(schema.run_metrics.c.value)).scalar() == 2**62


def test_counters_go_beyond_32_bits(store: Path) -> None:
    """The change sequence and the log, metric and segment keys are 64-bit everywhere."""
    ws = opx.current_workspace()
    start = 2**31 + 5
    with ws.db.transaction(write=True) as conn:
        if conn.dialect.name == "postgresql":
            for table, column in (("changes", "seq"), ("run_logs", "seq"), ("run_metrics", "id")):
                conn.execute(
                    text(f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'), {start})")
                )
        else:  # SQLite: the next key follows the largest one
            conn.execute(
                schema.changes.insert().values(
                    seq=start, at=datetime.now(timezone.utc), kind="probe", subject=""
                )
            )
            conn.execute(
                schema.run_metrics.insert().values(
                    id=start, name="probe", value=0, at=datetime.now(timezone.utc)
                )
            )
    opx.log_metric("big", 1)
    assert ws.change_seq() == start + 1
    with ws.db.transaction() as conn:
        ids = conn.execute(
            select(schema.run_metrics.c.id).where(schema.run_metrics.c.name == "big")
        )
        assert ids.scalars().all() == [start + 1]
    opx.create_job("plain", JOBS / "no_params.ipynb")
    run = R.create_run(ws, "plain")
    R.append_logs(ws, run.id, [("stdout", "line\n")])
    [(seq, _, _)] = R.read_logs(ws, run.id)
    assert seq == (start + 1 if ws.db.engine.dialect.name == "postgresql" else 1)
    opx.cancel_run(run.id)


def test_change_sequence_is_gapless_and_in_commit_order_across_processes(store: Path) -> None:
    """Four processes bump the change sequence at once: every number once, in order."""
    script = textwrap.dedent(
        """
        import jupyter_opx as opx
        for i in range(15):
            opx.log_metric("m", i)
        """
    )
    opx.log_metric("first", 0)
    env = {**os.environ, "OPX_HOME": str(store)}
    procs = [subprocess.Popen([sys.executable, "-c", script], env=env) for _ in range(4)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    ws = opx.current_workspace()
    with ws.db.transaction() as conn:
        seqs = conn.execute(select(schema.changes.c.seq).order_by(schema.changes.c.seq)).scalars()
        assert list(seqs) == list(range(1, 62))
        assert conn.execute(select(func.count()).select_from(schema.run_metrics)).scalar() == 61
    assert ws.change_seq() == 61


def test_one_lease_holder_among_racing_schedulers(store: Path, tmp_path: Path) -> None:
    """Eight processes try to take an expired lease at once: exactly one gets it."""
    ws = opx.current_workspace()
    assert try_acquire(ws, "old:1", ttl=0.001)
    sync = tmp_path / "sync"
    sync.mkdir()
    script = textwrap.dedent(
        """
        import sys, time
        from pathlib import Path
        from jupyter_opx.workspace import get_workspace
        from jupyter_opx.jobs.lease import try_acquire
        i, sync = sys.argv[1], Path(sys.argv[2])
        ws = get_workspace()
        ws.change_seq()  # connected and migrated: now race
        (sync / f"ready-{i}").touch()
        while not (sync / "go").exists():
            time.sleep(0.001)
        print(try_acquire(ws, "racer:" + i, ttl=60))
        """
    )
    env = {**os.environ, "OPX_HOME": str(store)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(i), str(sync)],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(8)
    ]
    try:
        deadline = time.monotonic() + 90
        while len(list(sync.glob("ready-*"))) < 8 and time.monotonic() < deadline:
            assert all(p.poll() is None for p in procs), "a racer died before the start"
            time.sleep(0.01)
        (sync / "go").touch()
        outs = [p.communicate(timeout=90)[0].strip() for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert all(p.returncode == 0 for p in procs)
    assert sorted(outs) == ["False"] * 7 + ["True"]
    held = holder_of(ws)
    assert held is not None and held[0] == f"racer:{outs.index('True')}"


def test_isolation_reads_see_one_snapshot(store: Path) -> None:
    """A read transaction sees one consistent state (SQLite WAL; PostgreSQL REPEATABLE READ)."""
    ws = opx.current_workspace()
    opx.log_metric("a", 1)
    with ws.db.transaction() as conn:
        before = conn.execute(select(func.count()).select_from(schema.changes)).scalar()
        opx.log_metric("b", 2)  # commits in another connection meanwhile
        after = conn.execute(select(func.count()).select_from(schema.changes)).scalar()
    assert before == after == 1
    assert ws.change_seq() == 2
    if ws.db.engine.dialect.name == "postgresql":
        with ws.db.transaction() as conn:
            level = conn.execute(text("SHOW transaction_isolation")).scalar()
        assert level == "repeatable read"


@pytest.mark.backends("postgresql")
@pytest.mark.parametrize("sqlstate", ["40001", "40P01"])  # serialization failure, deadlock
def test_write_is_retried_after_a_serialization_failure_or_deadlock(
    store: Path, sqlstate: str
) -> None:
    ws = opx.current_workspace()
    attempts: list[int] = []

    def write(conn):  # type: ignore[no-untyped-def]
        attempts.append(1)
        conn.execute(
            schema.changes.insert().values(at=datetime.now(timezone.utc), kind="k", subject="s")
        )
        if len(attempts) == 1:
            conn.exec_driver_sql(
                f"DO $$ BEGIN RAISE EXCEPTION 'lost a race' USING ERRCODE = '{sqlstate}'; END $$"
            )
        return len(attempts)

    assert ws.db.run_write(write) == 2
    with ws.db.transaction() as conn:
        assert conn.execute(select(func.count()).select_from(schema.changes)).scalar() == 1


@pytest.mark.backends("postgresql")
def test_other_database_errors_are_not_retried(store: Path) -> None:
    from sqlalchemy.exc import ProgrammingError

    ws = opx.current_workspace()
    attempts: list[int] = []

    def write(conn):  # type: ignore[no-untyped-def]
        attempts.append(1)
        conn.exec_driver_sql("SELECT * FROM no_such_table")

    with pytest.raises(ProgrammingError):
        ws.db.run_write(write)
    assert attempts == [1]


def test_a_missing_driver_is_a_store_error_saying_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from jupyter_opx.exceptions import StoreError
    from jupyter_opx.store.db import Database

    monkeypatch.setitem(sys.modules, "psycopg", None)  # import psycopg fails
    with pytest.raises(StoreError, match=r"pip install 'jupyter_opx\[postgres\]'"):
        Database("postgresql://opx@127.0.0.1:1/opx")


def test_a_plain_postgresql_url_uses_psycopg(pg_url: str) -> None:
    from jupyter_opx.store.db import Database

    db = Database(pg_url.replace("postgresql+psycopg://", "postgresql://"))
    try:
        assert db.engine.dialect.driver == "psycopg"
        assert db.current_revision() == HEAD_REVISION
    finally:
        db.dispose()
