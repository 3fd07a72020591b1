"""The workspace: where the store lives and the entry point of every operation.

Resolution order (see DESIGN.md, "The store"):

1. ``$OPX_HOME`` — a folder that *is* the store (it holds ``config.toml``,
   ``opx.db`` and ``blobs/``);
2. the nearest ancestor of the working directory that holds ``.opx/``;
3. ``./.opx``, created on the first write.

``.opx/config.toml`` may set ``database`` (an SQLAlchemy URL, default SQLite
``opx.db`` in WAL mode), ``artifacts`` (an fsspec URL, default ``blobs/``) and
``alerts`` (alert rules kept in the file: ``[[alerts]]`` tables with ``model``,
``rule`` and optional ``min_n``, ``window``, ``webhook``, ``trigger_job``; they
are added to the store when alerts are evaluated) and
``trusted_types`` (model types trusted at load time, beside scikit-learn's,
numpy's and scipy's).
"""

from __future__ import annotations

import os
import sys
import threading
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .exceptions import StoreError, ValidationError

if TYPE_CHECKING:
    from .store.blobs import BlobStore
    from .store.db import Database

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

STORE_DIRNAME = ".opx"
CONFIG_NAME = "config.toml"
_KNOWN_KEYS = {"database", "artifacts", "trusted_types", "alerts"}


def find_store_dir(start: str | os.PathLike[str] | None = None) -> Path:
    """Return the store folder that an operation started in ``start`` uses.

    Nothing is created: the returned folder may not exist yet.
    """
    env = os.environ.get("OPX_HOME")
    if env:
        return Path(env).expanduser().resolve()
    here = Path(start or os.getcwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / STORE_DIRNAME
        if candidate.is_dir():
            return candidate
    return here / STORE_DIRNAME


def _read_config(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        with path.open("rb") as fh:
            config = tomllib.load(fh)
    except (tomllib.TOMLDecodeError, OSError) as exc:
        raise ValidationError(f"cannot read {path}: {exc}; fix or remove the file") from exc
    unknown = set(config) - _KNOWN_KEYS
    if unknown:
        raise ValidationError(
            f"{path}: unknown setting(s) {', '.join(sorted(unknown))}; "
            f"known settings are {', '.join(sorted(_KNOWN_KEYS))}"
        )
    trusted = config.get("trusted_types", [])
    if not isinstance(trusted, list) or not all(isinstance(t, str) for t in trusted):
        raise ValidationError(f"{path}: trusted_types must be a list of strings")
    rules = config.get("alerts", [])
    if not isinstance(rules, list) or not all(
        isinstance(r, dict) and isinstance(r.get("model"), str) and isinstance(r.get("rule"), str)
        for r in rules
    ):
        raise ValidationError(
            f"{path}: alerts must be a list of tables with model and rule, e.g. "
            '[[alerts]] model = "churn"  rule = "auc < 0.7"  min_n = 500'
        )
    for key in ("database", "artifacts"):
        if key in config and not isinstance(config[key], str):
            raise ValidationError(f"{path}: {key} must be a string (a URL)")
    return config


class Workspace:
    """A jupyter_opx store: metadata database plus content-addressed blobs.

    Parameters
    ----------
    root : path-like, optional
        The store folder (``.opx``). Default: resolved as described in the
        module docstring.

    Notes
    -----
    Opening a workspace is cheap: the database and blob store are connected on
    first use, and nothing is written until the first write.
    """

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root).expanduser().resolve() if root is not None else find_store_dir()
        self.config = _read_config(self.root / CONFIG_NAME)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Workspace({str(self.root)!r})"

    # -- locations -----------------------------------------------------------------
    @property
    def database_url(self) -> str:
        """The SQLAlchemy URL of the metadata database."""
        url = self.config.get("database")
        return url if url else f"sqlite:///{self.root / 'opx.db'}"

    @property
    def artifacts_url(self) -> str:
        """The fsspec URL under which blobs are stored."""
        url = self.config.get("artifacts")
        return url if url else str(self.root / "blobs")

    @property
    def trusted_types(self) -> list[str]:
        """Model types trusted at load time by this store's configuration.

        Read from ``config.toml`` on every call, so that trusting a type there
        (as an ``UntrustedModelError`` advises) takes effect without a restart.
        """
        return list(_read_config(self.root / CONFIG_NAME).get("trusted_types", []))

    @property
    def exists(self) -> bool:
        """Whether the store has been written to (its database exists)."""
        if self.config.get("database"):
            return True
        return (self.root / "opx.db").exists()

    def ensure_root(self) -> None:
        """Create the store folder, with a clear error when it cannot be written."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / f".write-probe-{os.getpid()}-{threading.get_ident()}"
            probe.touch()
            probe.unlink()
        except OSError as exc:
            raise StoreError(
                f"cannot write to the store at {self.root} ({exc.strerror or exc}); "
                "make the folder writable or set OPX_HOME to a writable folder"
            ) from exc

    # -- parts ---------------------------------------------------------------------
    @cached_property
    def db(self) -> Database:
        """The metadata database (created and migrated on first use)."""
        from .store.db import Database

        with self._lock:
            if not self.config.get("database"):
                self.ensure_root()
            return Database(self.database_url)

    @cached_property
    def blobs(self) -> BlobStore:
        """The content-addressed blob store."""
        from .store.blobs import BlobStore

        return BlobStore(self.artifacts_url)

    def change_seq(self) -> int:
        """The store's change sequence: it grows with every visible write."""
        if not self.exists:
            return 0
        return self.db.change_seq()

    def close(self) -> None:
        """Release database connections (the workspace stays usable)."""
        if "db" in self.__dict__:
            self.db.dispose()
            del self.__dict__["db"]


_workspaces: dict[Path, Workspace] = {}
_workspaces_lock = threading.Lock()


def get_workspace(root: str | os.PathLike[str] | None = None) -> Workspace:
    """Return the (cached) workspace for ``root`` or for the resolved store folder."""
    path = Path(root).expanduser().resolve() if root is not None else find_store_dir()
    with _workspaces_lock:
        ws = _workspaces.get(path)
        if ws is None:
            ws = _workspaces[path] = Workspace(path)
        return ws


def forget_workspace(root: str | os.PathLike[str]) -> None:
    """Drop the cached workspace of ``root`` (closed), e.g. after its config.toml changed."""
    path = Path(root).expanduser().resolve()
    with _workspaces_lock:
        ws = _workspaces.pop(path, None)
    if ws is not None:
        ws.close()
