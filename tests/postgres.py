"""A throwaway PostgreSQL server for tests: its own cluster in a temporary directory, on a free port.

The tests need a real server (the shared store's SQL, pool, migrations and concurrency are what is
tested). PostgreSQL refuses to run as root, and these machines run as root: the cluster is then made
and run by the `postgres` OS user (`runuser -u postgres`), as the Debian package creates it. Without
PostgreSQL the tests fail, saying how to install it (`make install`), never skip.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.llm_support.procs import free_port

INSTALL = (
    "PostgreSQL is not installed, and the shared-store tests need a real server: run `make install` (its "
    "`system` step installs the Debian package postgresql with apt-get), or install PostgreSQL 14+ so that "
    "initdb and pg_ctl are on PATH or in /usr/lib/postgresql/<version>/bin"
)


def server_programs() -> Path | None:
    """The directory with initdb, pg_ctl and postgres: PATH first, else the newest Debian install."""
    found = shutil.which("pg_ctl")
    candidates = [Path(os.path.realpath(found)).parent] if found else []
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name or 0))
    candidates += [Path(p) for p in reversed(versions)]
    for directory in candidates:
        if all((directory / name).exists() for name in ("initdb", "pg_ctl", "postgres")):
            return directory
    return None


@dataclass
class Cluster:
    bin: Path
    root: Path  # data/, the socket and the log
    port: int
    as_user: list[str]  # ["runuser", "-u", "postgres", "--"] when we are root

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, database: str = "xrserve") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*self.as_user, str(self.bin / "pg_ctl"), "-D", str(self.data), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=check,
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        self.ctl("-o", options, "-l", str(self.root / "log"), "-w", "-t", "30", "start")

    def stop(self, mode: str = "fast") -> None:
        self.ctl("-m", mode, "-w", "stop", check=False)

    def psql(self, sql: str, database: str = "xrserve") -> str:
        """Run SQL with psql (the client a person would use); its output, unaligned, without headers."""
        psql = self.bin / "psql" if (self.bin / "psql").exists() else Path(shutil.which("psql") or "psql")
        result = subprocess.run(
            [str(psql), "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", self.url(database), "-c", sql],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if result.returncode != 0:
            raise AssertionError(f"psql {sql!r} failed: {result.stderr}")
        return result.stdout.strip()

    def remove(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


def start_cluster(database: str = "xrserve") -> Cluster:
    """initdb + pg_ctl start in a new temporary directory, and an empty database; `remove()` when done.

    Raises AssertionError (a failure, not a skip) when PostgreSQL is missing.
    """
    programs = server_programs()
    if programs is None:
        raise AssertionError(INSTALL)
    as_user: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="xrserve-pg-"))
    if os.geteuid() == 0:  # postgres will not run as root: its own user runs it, in a directory it owns
        if shutil.which("runuser") is None or subprocess.run(["id", "-u", "postgres"], capture_output=True).returncode:
            raise AssertionError(f"running as root, PostgreSQL needs the 'postgres' user and runuser: {INSTALL}")
        shutil.chown(root, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    cluster = Cluster(programs, root, free_port(), as_user)
    subprocess.run(
        [*as_user, str(programs / "initdb"), "-D", str(cluster.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
         "--no-sync", "--no-instructions"],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    try:
        cluster.start()
        give_up = time.monotonic() + 30
        while True:  # the socket can lag pg_ctl's "started" by a moment
            try:
                cluster.psql(f"CREATE DATABASE {database}", database="postgres")
                break
            except AssertionError:
                if time.monotonic() > give_up:
                    raise
                time.sleep(0.2)
    except BaseException:
        log = root / "log"
        print(log.read_text() if log.exists() else "(no server log)")
        cluster.remove()
        raise
    return cluster
