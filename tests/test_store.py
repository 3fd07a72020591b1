"""The workspace (where the store lives), the metadata database and the blob store."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import inspect, select, text

import jupyter_opx as opx
from jupyter_opx.exceptions import CorruptBlobError, NotFoundError, StoreError, ValidationError
from jupyter_opx.store import schema
from jupyter_opx.store.blobs import BlobStore
from jupyter_opx.store.db import HEAD_REVISION, Database
from jupyter_opx.workspace import Workspace, find_store_dir, get_workspace


def _tiny() -> pd.DataFrame:
    return pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [4, 5, 6]})


def _blob_files(root: Path) -> list[Path]:
    base = root / "sha256"
    return sorted(p for p in base.rglob("*") if p.is_file()) if base.exists() else []


def _no_store_above(path: Path) -> None:
    for folder in (path, *path.parents):
        if (folder / ".opx").is_dir():
            pytest.skip(f"{folder} holds a .opx store, which would be found first")


# -- workspace resolution ------------------------------------------------------------------
def test_opx_home_is_the_store(store: Path) -> None:
    assert find_store_dir() == store.resolve()
    snap = opx.snapshot("m", data=_tiny())
    assert snap.ref == "m/1"
    assert (store / "opx.db").is_file()
    assert _blob_files(store / "blobs")
    assert not (Path.cwd() / ".opx").exists()


def test_nearest_ancestor_holding_opx_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _no_store_above(tmp_path)
    project = tmp_path / "project"
    (project / ".opx").mkdir(parents=True)
    (project / "sub" / ".opx").mkdir(parents=True)
    deep = project / "sub" / "notebooks" / "deeper"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    assert find_store_dir() == (project / "sub" / ".opx").resolve()
    opx.snapshot("m", data=_tiny())
    assert (project / "sub" / ".opx" / "opx.db").is_file()
    assert not (project / ".opx" / "opx.db").exists()
    assert not (deep / ".opx").exists()

    monkeypatch.chdir(project)
    assert find_store_dir() == (project / ".opx").resolve()


def test_local_store_is_created_on_first_write_only(workdir: Path) -> None:
    _no_store_above(workdir)
    assert find_store_dir() == (workdir / ".opx").resolve()
    # reads on a store that does not exist yet answer without creating anything
    assert list(opx.list_snapshots()) == []
    assert opx.verify() == {"checked": 0, "corrupt": [], "missing": []}
    assert opx.alias_history("churn") == []
    assert opx.current_workspace().change_seq() == 0
    for read in (
        lambda: opx.show("churn"),
        lambda: opx.load_model("churn/1"),
        lambda: opx.load_data("churn@production"),
        lambda: opx.diff("a", "b"),
        lambda: opx.promote("churn/1", "production"),
    ):
        with pytest.raises(NotFoundError, match="no store here yet"):
            read()
    assert not (workdir / ".opx").exists()

    snap = opx.snapshot("churn", data=_tiny())
    assert snap.version == 1
    assert (workdir / ".opx" / "opx.db").is_file()
    assert [s.ref for s in opx.list_snapshots()] == ["churn/1"]


def test_config_database_and_artifacts_are_honoured(store: Path, tmp_path: Path) -> None:
    store.mkdir()
    db_file = tmp_path / "elsewhere" / "meta.db"
    db_file.parent.mkdir()
    blobs = tmp_path / "artifacts"
    (store / "config.toml").write_text(
        f'database = "sqlite:///{db_file}"\nartifacts = "{blobs}"\n', encoding="utf-8"
    )
    ws = opx.current_workspace()
    assert ws.database_url == f"sqlite:///{db_file}"
    assert ws.artifacts_url == str(blobs)

    snap = opx.snapshot("m", data=_tiny())
    assert db_file.is_file()
    assert not (store / "opx.db").exists()
    assert not (store / "blobs").exists()
    files = _blob_files(blobs)
    assert snap.data["data"].digest in {p.parent.name + p.name for p in files}
    pd.testing.assert_frame_equal(opx.load_data("m"), _tiny())


def test_config_trusted_types_is_read(store: Path) -> None:
    store.mkdir()
    (store / "config.toml").write_text('trusted_types = ["mypkg.Model", "other.Thing"]\n')
    assert opx.current_workspace().trusted_types == ["mypkg.Model", "other.Thing"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("database = \n", "cannot read"),
        ('databse = "sqlite:///x.db"\n', "unknown setting(s) databse; known settings are"),
        ('trusted_types = "mypkg.Model"\n', "trusted_types must be a list of strings"),
        ("trusted_types = [1, 2]\n", "trusted_types must be a list of strings"),
        ("database = 5\n", "database must be a string"),
        ("artifacts = ['a']\n", "artifacts must be a string"),
    ],
)
def test_bad_config_is_a_validation_error(store: Path, content: str, message: str) -> None:
    store.mkdir()
    config = store / "config.toml"
    config.write_text(content, encoding="utf-8")
    with pytest.raises(ValidationError) as info:
        opx.list_snapshots()
    assert message in info.value.message
    assert str(config) in info.value.message


def test_store_under_a_regular_file_is_a_store_error(
    tmp_path: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    monkeypatch.setenv("OPX_HOME", str(blocker / "store"))
    # reading an absent store is fine ...
    assert list(opx.list_snapshots()) == []
    # ... writing one is refused with advice
    with pytest.raises(StoreError) as info:
        opx.snapshot("m", data=_tiny())
    assert "cannot write to the store" in info.value.message
    assert "OPX_HOME" in info.value.message
    assert info.value.status == 503


def test_artifacts_under_a_regular_file_is_a_store_error(store: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    store.mkdir()
    (store / "config.toml").write_text(f'artifacts = "{blocker}/blobs"\n')
    with pytest.raises(StoreError, match="cannot write blobs under"):
        opx.snapshot("m", data=_tiny())
    assert list(opx.list_snapshots()) == []


def test_database_under_a_regular_file_is_a_store_error(store: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    store.mkdir()
    (store / "config.toml").write_text(f'database = "sqlite:///{blocker}/opx.db"\n')
    with pytest.raises(StoreError, match="cannot open the database"):
        opx.snapshot("m", data=_tiny())


@pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0,
    reason="root ignores permission bits; covered by the regular-file tests above",
)
def test_read_only_folder_is_a_store_error(tmp_path: Path, workdir: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    parent = tmp_path / "locked"
    parent.mkdir()
    parent.chmod(0o555)
    try:
        monkeypatch.setenv("OPX_HOME", str(parent / "store"))
        with pytest.raises(StoreError, match="cannot write to the store"):
            opx.snapshot("m", data=_tiny())
    finally:
        parent.chmod(0o755)


def test_workspace_is_cached_per_folder(store: Path, tmp_path: Path) -> None:
    assert get_workspace() is get_workspace(store)
    other = tmp_path / "other"
    assert get_workspace(other) is not get_workspace()
    assert isinstance(opx.current_workspace(other), Workspace)


def test_explicit_workspace_argument(store: Path, tmp_path: Path) -> None:
    other = tmp_path / "other-store"
    snap = opx.snapshot("m", data=_tiny(), workspace=other)
    assert (other / "opx.db").is_file()
    assert not store.exists()
    assert [s.ref for s in opx.list_snapshots(workspace=other)] == [snap.ref]
    assert list(opx.list_snapshots()) == []


# -- metadata database ---------------------------------------------------------------------
@pytest.mark.backends("postgresql")
def test_config_database_can_be_postgresql(store: Path) -> None:
    ws = opx.current_workspace()
    assert ws.database_url.startswith("postgresql+psycopg://")
    assert ws.exists  # a configured server database counts as existing
    opx.snapshot("m", data=_tiny())
    assert not (store / "opx.db").exists()
    assert _blob_files(store / "blobs")  # blobs stay on the filesystem
    with ws.db.transaction() as conn:
        assert conn.dialect.name == "postgresql"
        assert conn.execute(select(schema.snapshots.c.name)).scalars().all() == ["m"]


@pytest.mark.backends("postgresql")
def test_missing_postgresql_database_is_a_store_error(pg_cluster) -> None:  # type: ignore[no-untyped-def]
    url = pg_cluster.url("opx_missing_database")
    with pytest.raises(StoreError, match=r"cannot open the database .*opx_missing_database"):
        Database(url)


def test_sqlite_runs_in_wal_mode(store: Path) -> None:
    opx.snapshot("m", data=_tiny())
    with opx.current_workspace().db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


@pytest.fixture
def db_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """The URL of a fresh, empty metadata database of the test's backend."""
    if backend == "postgresql":
        return str(request.getfixturevalue("pg_url"))
    return f"sqlite:///{tmp_path / 'opx.db'}"


@pytest.mark.backends("sqlite", "postgresql")
def test_migrations_create_tables_and_record_revision(db_url: str) -> None:
    db = Database(db_url)
    try:
        tables = set(inspect(db.engine).get_table_names())
        assert set(schema.metadata.tables) <= tables
        assert "alembic_version" in tables
        assert db.current_revision() == HEAD_REVISION
        # every column the code uses exists in the migrated table
        for name, table in schema.metadata.tables.items():
            migrated = {c["name"] for c in inspect(db.engine).get_columns(name)}
            assert {c.name for c in table.columns} == migrated, name
    finally:
        db.dispose()


@pytest.mark.backends("sqlite", "postgresql")
def test_reopening_does_not_migrate_again(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    url = db_url
    Database(url).dispose()

    import alembic.command

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("migrations ran on an up-to-date database")

    monkeypatch.setattr(alembic.command, "upgrade", refuse)
    db = Database(url)
    try:
        assert db.current_revision() == HEAD_REVISION
        with db.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1
    finally:
        db.dispose()


@pytest.mark.backends("sqlite", "postgresql")
def test_newer_schema_is_refused(db_url: str) -> None:
    url = db_url
    db = Database(url)
    with db.transaction(write=True) as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    db.dispose()
    with pytest.raises(StoreError, match="newer jupyter_opx"):
        Database(url)


@pytest.mark.backends("sqlite", "postgresql")
def test_change_sequence_grows_with_visible_writes_only(store: Path, logreg, frame) -> None:  # type: ignore[no-untyped-def]
    ws = opx.current_workspace()
    assert ws.change_seq() == 0
    opx.snapshot("m", model=logreg, data={"train": frame})
    assert ws.change_seq() == 1
    opx.snapshot("m", model=logreg, data={"train": frame})
    assert ws.change_seq() == 2
    opx.promote("m/1", "production")
    assert ws.change_seq() == 3

    # reads never bump it
    opx.show("m@production")
    opx.list_snapshots()
    opx.list_snapshots("m")
    opx.load_model("m/1")
    opx.load_data("m/2", "train")
    opx.diff("m/1", "m/2")
    opx.alias_history("m")
    opx.verify()
    opx.show("m").reference_summary()
    assert ws.change_seq() == 3

    # refused writes neither
    with pytest.raises(ValidationError):
        opx.snapshot("m", model=logreg, metrics={"auc": float("nan")})
    with pytest.raises(NotFoundError):
        opx.promote("m/9", "production")
    assert ws.change_seq() == 3

    opx.promote("m/2", "production")
    assert ws.change_seq() == 4
    with ws.db.transaction() as conn:
        rows = conn.execute(
            select(schema.changes.c.seq, schema.changes.c.kind, schema.changes.c.subject).order_by(
                schema.changes.c.seq
            )
        ).all()
    assert [tuple(r) for r in rows] == [
        (1, "snapshot", "m/1"),
        (2, "snapshot", "m/2"),
        (3, "alias", "m@production"),
        (4, "alias", "m@production"),
    ]


# -- blobs -------------------------------------------------------------------------------------
def test_blob_is_addressed_by_its_sha256(tmp_path: Path) -> None:
    blobs = BlobStore(str(tmp_path / "blobs"))
    payload = b"hello, content-addressed world\n"
    digest, size, written = blobs.put(payload)
    assert digest == hashlib.sha256(payload).hexdigest()
    assert (size, written) == (len(payload), True)
    path = Path(blobs.path(digest))
    assert path == tmp_path / "blobs" / "sha256" / digest[:2] / digest[2:]
    assert path.read_bytes() == payload
    assert path.stat().st_mode & 0o777 == 0o444
    assert blobs.get(digest) == payload
    assert bytes(blobs.get_buffer(digest)) == payload
    assert blobs.exists(digest)
    assert list(blobs.iter_digests()) == [digest]


def test_identical_blob_is_stored_once(tmp_path: Path) -> None:
    blobs = BlobStore(str(tmp_path / "blobs"))
    first = blobs.put(b"same bytes")
    second = blobs.put(bytearray(b"same bytes"))
    assert first[0] == second[0]
    assert (first[2], second[2]) == (True, False)
    with blobs.writer() as sink:
        sink.write(b"same ")
        sink.write(memoryview(b"bytes"))
    assert sink.digest == first[0]
    assert sink.size == len(b"same bytes")
    assert sink.written is False
    assert len(_blob_files(tmp_path / "blobs")) == 1


def test_writes_leave_no_temporary_files(tmp_path: Path) -> None:
    root = tmp_path / "blobs"
    blobs = BlobStore(str(root))
    blobs.put(b"one")
    with blobs.writer() as sink:
        sink.write(b"two" * 1000)
    assert sink.written is True
    assert blobs.get(sink.digest) == b"two" * 1000
    leftovers = [p for p in root.rglob("*") if p.is_file() and "tmp" in p.name]
    assert leftovers == []
    assert list((root / "tmp").iterdir()) == []
    assert sorted(blobs.iter_digests()) == sorted(
        [hashlib.sha256(b"one").hexdigest(), hashlib.sha256(b"two" * 1000).hexdigest()]
    )


def test_failed_streamed_write_commits_nothing(tmp_path: Path) -> None:
    root = tmp_path / "blobs"
    blobs = BlobStore(str(root))
    with pytest.raises(RuntimeError, match="encoder broke"), blobs.writer() as sink:
        sink.write(b"half an artifact")
        raise RuntimeError("encoder broke")
    assert list((root / "tmp").iterdir()) == []
    assert list(blobs.iter_digests()) == []


def test_read_verifies_the_hash(tmp_path: Path) -> None:
    blobs = BlobStore(str(tmp_path / "blobs"))
    digest, _, _ = blobs.put(b"precious model bytes")
    path = Path(blobs.path(digest))
    path.chmod(0o644)
    path.write_bytes(b"precious model bytez")
    with pytest.raises(CorruptBlobError) as info:
        blobs.get(digest)
    assert info.value.digest == digest
    assert "opx verify" in info.value.message
    with pytest.raises(CorruptBlobError):
        blobs.get_buffer(digest)
    assert blobs.verify(digest) is False


def test_missing_blob_and_bad_digest(tmp_path: Path) -> None:
    blobs = BlobStore(str(tmp_path / "blobs"))
    absent = hashlib.sha256(b"never stored").hexdigest()
    with pytest.raises(NotFoundError, match="missing"):
        blobs.get(absent)
    with pytest.raises(NotFoundError, match="missing"):
        blobs.get_buffer(absent)
    assert blobs.verify(absent) is False
    for bad in ("../../etc/passwd", "ABC", absent.upper(), absent[:-1]):
        with pytest.raises(NotFoundError, match="not a blob digest"):
            blobs.path(bad)


@pytest.mark.backends("sqlite", "postgresql")
def test_snapshotting_the_same_frame_twice_stores_one_data_blob(store: Path, frame) -> None:  # type: ignore[no-untyped-def]
    first = opx.snapshot("m", data={"train": frame})
    files_after_first = _blob_files(store / "blobs")
    second = opx.snapshot("m", data={"train": frame.copy()})
    other = opx.snapshot("other", data=frame)
    digest = first.data["train"].digest
    assert second.data["train"].digest == digest == other.data["data"].digest
    files = _blob_files(store / "blobs")
    assert files == files_after_first
    assert sum(1 for p in files if p.parent.name + p.name == digest) == 1
    blob = store / "blobs" / "sha256" / digest[:2] / digest[2:]
    assert hashlib.sha256(blob.read_bytes()).hexdigest() == digest
    assert blob.stat().st_size == first.data["train"].size
    with opx.current_workspace().db.transaction() as conn:
        n_blobs = conn.execute(select(schema.blobs.c.digest)).all()
    assert len(n_blobs) == len(files)
