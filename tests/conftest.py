"""Shared fixtures: an isolated store per test, small deterministic data and models.

Every test gets a clean process environment for jupyter_opx (no ``OPX_HOME``
or run id leaking in from the shell) and an empty workspace cache, so that a
store opened by one test is never reused by the next.

Backends: the ``store`` fixture's metadata database is SQLite unless a test (or
its module, through ``pytestmark``) is marked ``@pytest.mark.backends("sqlite",
"postgresql")``: it then runs once per backend, on PostgreSQL with a fresh
database of a throwaway cluster (see ``tests/pgcluster.py``) named in the store's
``config.toml``; blobs stay in the store folder either way.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pgcluster as pg
import pytest

from jupyter_opx import workspace as workspace_module

_ENV = ("OPX_HOME", "OPX_USER", "OPX_RUN_ID", "OPX_NOTEBOOK_PATH", "JPY_SESSION_NAME")


def _forget_workspaces() -> None:
    with workspace_module._workspaces_lock:
        for ws in workspace_module._workspaces.values():
            ws.close()
        workspace_module._workspaces.clear()


@pytest.fixture(autouse=True)
def _isolated_opx(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No store settings from the outside world; no workspace cached across tests."""
    for name in _ENV:
        monkeypatch.delenv(name, raising=False)
    _forget_workspaces()
    yield
    _forget_workspaces()


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory outside any git repository or store (the cwd)."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "backends(*names): run the test once per metadata database backend "
        "('sqlite', 'postgresql') through the store fixture",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker("backends")
    if marker is not None and "backend" in metafunc.fixturenames:
        metafunc.parametrize("backend", marker.args, indirect=True)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """The metadata database backend of the ``store`` fixture (default ``sqlite``)."""
    return str(getattr(request, "param", "sqlite"))


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[pg.Cluster]:
    """A throwaway PostgreSQL cluster for the whole session (skips without PostgreSQL)."""
    yield from pg.start_cluster()


def _pg_database(cluster: pg.Cluster, migrated: bool) -> Iterator[str]:
    url = cluster.create_database(migrated=migrated)
    yield url
    _forget_workspaces()  # close pooled connections before the database goes
    cluster.drop_database(url)


@pytest.fixture
def pg_url(pg_cluster: pg.Cluster) -> Iterator[str]:
    """The SQLAlchemy URL of a fresh, empty PostgreSQL database, dropped after the test."""
    yield from _pg_database(pg_cluster, migrated=False)


@pytest.fixture
def pg_store_url(pg_cluster: pg.Cluster) -> Iterator[str]:
    """Like ``pg_url``, but the database is migrated already (a copy of a template)."""
    yield from _pg_database(pg_cluster, migrated=True)


@pytest.fixture
def store(
    tmp_path: Path,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    backend: str,
    request: pytest.FixtureRequest,
) -> Path:
    """A fresh store folder, selected through ``$OPX_HOME``.

    On SQLite it is not yet created; on PostgreSQL it holds only the
    ``config.toml`` that names the test's own database (already migrated: the
    migrations of an empty database are tested through ``pg_url``).
    """
    root = tmp_path / "store"
    monkeypatch.setenv("OPX_HOME", str(root))
    monkeypatch.setenv("OPX_USER", "tester")
    if backend == "postgresql":
        url = request.getfixturevalue("pg_store_url")
        root.mkdir()
        (root / "config.toml").write_text(f'database = "{url}"\n', encoding="utf-8")
    elif backend != "sqlite":
        raise ValueError(f"unknown backend {backend!r}")
    return root


@pytest.fixture
def new_session():  # type: ignore[no-untyped-def]
    """A function that drops cached workspaces, as a fresh kernel would start."""
    return _forget_workspaces


def make_frame(n: int = 200, seed: int = 0) -> pd.DataFrame:
    """A small churn-like frame: float, int, category and string features plus a target."""
    rng = np.random.default_rng(seed)
    tenure = rng.integers(0, 72, n)
    charges = np.round(rng.normal(70.0, 20.0, n), 2)
    plan = pd.Categorical(
        rng.choice(["basic", "plus", "pro"], n), categories=["basic", "plus", "pro"]
    )
    region = rng.choice(["north", "south", "east", "west"], n)
    logit = 0.04 * (charges - 70) - 0.05 * (tenure - 36) + (plan == "basic") * 0.8
    churned = (logit + rng.normal(0, 1, n) > 0).astype(np.int64)
    return pd.DataFrame(
        {
            "tenure": tenure,
            "charges": charges,
            "plan": plan,
            "region": region,
            "churned": churned,
        }
    )


@pytest.fixture(scope="session")
def _base_frame() -> pd.DataFrame:
    return make_frame()


@pytest.fixture
def frame(_base_frame: pd.DataFrame) -> pd.DataFrame:
    """A fresh copy of the 200-row churn-like frame (tests may modify it)."""
    return _base_frame.copy()


NUMERIC = ["tenure", "charges"]
FEATURES = ["tenure", "charges", "plan", "region"]


@pytest.fixture(scope="session")
def logreg(_base_frame: pd.DataFrame):  # type: ignore[no-untyped-def]
    """LogisticRegression fitted on the two numeric columns (has feature_names_in_)."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression().fit(_base_frame[NUMERIC], _base_frame["churned"])


@pytest.fixture(scope="session")
def pipeline_model(_base_frame: pd.DataFrame):  # type: ignore[no-untyped-def]
    """Pipeline(ColumnTransformer(scaler, one-hot) -> HistGradientBoostingClassifier)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    pre = ColumnTransformer(
        [
            ("num", StandardScaler(), NUMERIC),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["plan", "region"]),
        ]
    )
    model = Pipeline(
        [("pre", pre), ("clf", HistGradientBoostingClassifier(max_iter=8, random_state=0))]
    )
    return model.fit(_base_frame[FEATURES], _base_frame["churned"])


@pytest.fixture(scope="session")
def forest(_base_frame: pd.DataFrame):  # type: ignore[no-untyped-def]
    """A tiny RandomForestClassifier on the numeric columns."""
    from sklearn.ensemble import RandomForestClassifier

    model = RandomForestClassifier(n_estimators=4, max_depth=3, random_state=0)
    return model.fit(_base_frame[NUMERIC], _base_frame["churned"])
