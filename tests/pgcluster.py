"""A throwaway PostgreSQL cluster for the tests, and a fresh database per test.

The cluster is started once per test session from the PostgreSQL server
binaries (``initdb``, ``pg_ctl``; Debian keeps them in
``/usr/lib/postgresql/<version>/bin``) into a temporary folder, listening on
127.0.0.1 on a free port with its unix socket in that folder; it is stopped
and removed at the end. ``initdb`` and ``postgres`` refuse to run as root, so
as root they run as the ``postgres`` system user (created by Debian's
``postgresql`` package) in a folder that user owns.

Where no PostgreSQL can be found the PostgreSQL variants of the tests are
skipped with the reason, except when ``$CI`` is set: there they fail, so that
CI never passes without having exercised PostgreSQL (``make test`` installs it).
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

#: the SQLAlchemy driver the tests (and the ``postgres`` extra) use
DRIVER = "postgresql+psycopg"
#: the database that migrated test databases are copied from
TEMPLATE = "opx_template"


def find_bin_dir() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl`` (newest version first), if any."""
    found = shutil.which("initdb")
    if found and (Path(found).resolve().parent / "pg_ctl").is_file():
        return Path(found).resolve().parent
    for candidate in sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0,
        reverse=True,
    ):
        if (Path(candidate) / "initdb").is_file() and (Path(candidate) / "pg_ctl").is_file():
            return Path(candidate)
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Cluster:
    """A running PostgreSQL cluster in a temporary folder (see the module docstring)."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.as_root = os.geteuid() == 0
        # as root, in /tmp: the postgres user must reach the folder ($TMPDIR may not let it)
        tmp_root = "/tmp" if self.as_root and os.path.isdir("/tmp") else None
        self.dir = Path(tempfile.mkdtemp(prefix="opx-pg-", dir=tmp_root))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self.port = _free_port()
        self.user = "postgres"
        if self.as_root:
            import pwd

            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                shutil.rmtree(self.dir, ignore_errors=True)
                raise RuntimeError(
                    "running as root, PostgreSQL needs the 'postgres' system user "
                    "(created by the Debian 'postgresql' package)"
                ) from None
            os.chown(self.dir, owner.pw_uid, owner.pw_gid)
        self._counter = itertools.count(1)
        self._template_ready = False

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bin_dir / args[0]), *args[1:]]
        if self.as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=self.dir)
        if result.returncode != 0:
            log = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
            raise RuntimeError(
                f"{' '.join(cmd)} failed ({result.returncode}):\n"
                f"{result.stdout}\n{result.stderr}\n{log}"
            )
        return result

    def start(self) -> None:
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            self.user,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )
        for attempt in range(3):  # the free port may be taken before the server binds it
            # durability is not under test here: skip fsyncs so that the cluster is quick
            options = (
                f"-h 127.0.0.1 -p {self.port} -k {self.dir} -F "
                "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200 "
                # a zone far from UTC, so that a timestamp read or written in local time shows
                "-c timezone=Pacific/Chatham"
            )
            try:
                self._run(
                    "pg_ctl",
                    "-D",
                    str(self.data),
                    "-l",
                    str(self.log),
                    "-w",
                    "-o",
                    options,
                    "start",
                )
                return
            except RuntimeError:
                if attempt == 2:
                    raise
                self.port = _free_port()

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"{DRIVER}://{self.user}@127.0.0.1:{self.port}/{database}"

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.url().replace(f"{DRIVER}://", "postgresql://")) as conn:
            conn.autocommit = True
            conn.execute(sql)

    def create_database(self, migrated: bool = False) -> str:
        """A new database, empty or already migrated; returns its SQLAlchemy URL.

        A migrated one is a copy of a template migrated once per session (the
        migrations themselves run on the empty databases of the tests that ask).
        """
        name = f"opx_{os.getpid()}_{next(self._counter)}"
        if not migrated:
            self._admin(f'CREATE DATABASE "{name}"')
            return self.url(name)
        if not self._template_ready:
            from jupyter_opx.store.db import Database

            self._admin(f'CREATE DATABASE "{TEMPLATE}"')
            Database(self.url(TEMPLATE)).dispose()  # no connection may stay on a template
            self._template_ready = True
        self._admin(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}"')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        for attempt in range(5):
            try:
                self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                return
            except Exception:
                if attempt == 4:
                    raise
                time.sleep(0.2)


def start_cluster() -> Iterator[Cluster]:
    """Start a cluster (or skip / fail as the module docstring says), stop it after."""
    in_ci = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")

    def unavailable(reason: str) -> None:
        if in_ci:
            pytest.fail(f"PostgreSQL tests cannot run in CI: {reason}", pytrace=False)
        pytest.skip(f"PostgreSQL not available: {reason}")

    try:
        import psycopg  # noqa: F401
    except ImportError:
        unavailable("the psycopg driver is not installed (pip install 'psycopg[binary]')")
    bin_dir = find_bin_dir()
    if bin_dir is None:
        unavailable("no initdb/pg_ctl found (install PostgreSQL, e.g. apt-get install postgresql)")
        raise AssertionError("unreachable")
    cluster: Cluster | None = None
    try:
        cluster = Cluster(bin_dir)
        cluster.start()
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        if cluster is not None:
            cluster.stop()
        unavailable(f"the throwaway cluster did not start: {exc}")
        raise AssertionError("unreachable") from exc
    try:
        yield cluster
    finally:
        cluster.stop()
