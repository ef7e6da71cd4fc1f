"""A throwaway PostgreSQL cluster for the outbox tests: initdb in a temporary directory, a Unix socket only.

Found on PATH or under /usr/lib/postgresql/*/bin (Debian's ``postgresql`` package, which .ci/run
installs). PostgreSQL refuses to run as root: as root, the cluster belongs to ``nobody`` and the
server runs as that user. Tests skip, saying why, only when no PostgreSQL is installed at all.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PostgresCluster", "find_postgres", "postgres_cluster"]

USER = "dmpc"
"""The cluster's superuser (trust authentication over the socket, which only the test machine reaches)."""


def find_postgres() -> Path | None:
    """The directory holding initdb, pg_ctl and postgres, or None."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return Path(candidates[-1]).parent if candidates else None


@dataclass
class PostgresCluster:
    """A running cluster: make one database per test with :meth:`database`."""

    bindir: Path
    socket_dir: Path
    port: int

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{USER}@/{database}?host={self.socket_dir}&port={self.port}"

    def database(self) -> str:
        """A fresh, empty database's URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(
            host=str(self.socket_dir), port=self.port, user=USER, dbname="postgres", autocommit=True
        ) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


@contextmanager
def postgres_cluster() -> Iterator[PostgresCluster]:
    """Start a cluster in a fresh temporary directory; stop and remove it on exit."""
    bindir = find_postgres()
    if bindir is None:
        raise FileNotFoundError("PostgreSQL is not installed (no initdb on PATH nor under /usr/lib/postgresql)")
    root = Path(tempfile.mkdtemp(prefix="dmpc-pg-"))
    data, sockets = root / "data", root / "run"
    sockets.mkdir()
    uid: int | None = None
    gid: int | None = None
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        uid, gid = nobody.pw_uid, nobody.pw_gid
        for path in (root, sockets):
            os.chown(path, uid, gid)
    environment = {**os.environ, "LC_ALL": "C", "HOME": str(root)}

    def run(*args: str, check: bool = True) -> None:
        subprocess.run(
            args,
            check=check,
            capture_output=True,
            env=environment,
            cwd=root,
            user=uid,
            group=gid,
            extra_groups=[] if uid is not None else None,
        )

    port = 20000 + (os.getpid() % 20000)
    run(str(bindir / "initdb"), "-D", str(data), "-U", USER, "--auth=trust", "-E", "UTF8", "--no-sync")
    options = f"-k {sockets} -p {port} -c listen_addresses='' -c fsync=off -c max_connections=60"
    run(str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "-t", "60", "start")
    try:
        yield PostgresCluster(bindir, sockets, port)
    finally:
        run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop", check=False)
        time.sleep(0.1)
        shutil.rmtree(root, ignore_errors=True)
