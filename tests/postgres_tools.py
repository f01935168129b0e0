"""A real PostgreSQL server for the tests of the A/B store's server backend.

`$ATELIER_TEST_POSTGRES` (a DSN with the right to CREATE DATABASE) is used when set. Otherwise a
throwaway cluster is made with Debian's binaries (`/usr/lib/postgresql/*/bin/initdb`, `pg_ctl`) in a
temporary folder, listening only on a Unix socket there, run as the `postgres` user when the tests
run as root (PostgreSQL refuses to run as root). Without either, the tests that need it skip and say
why. Each test gets its own fresh database (`postgres_db`), dropped afterwards.

    def test_x(postgres_db):          # a DSN: postgresql://...
        store = ABStore(postgres_db)
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path


@dataclass
class PostgresServer:
    """A server the tests may use: an admin DSN, and (for a cluster we started) how to restart it."""

    admin_dsn: str
    data_dir: Path | None = None  # None: an external server (cannot be restarted by the tests)
    bin_dir: Path | None = None
    user: str | None = None
    options: str = ""

    def dsn(self, dbname: str) -> str:
        base, _, query = self.admin_dsn.partition("?")
        base = base.rsplit("/", 1)[0] + "/" + dbname
        return base + ("?" + query if query else "")

    def _pg_ctl(self, *args: str) -> None:
        cmd = [str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), *args]
        if self.user:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        # the server's output goes to its log file: a pipe held open by the server would hang us here
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)

    def start(self) -> None:
        self._pg_ctl("-w", "-t", "60", "-o", self.options, "-l", str(self.data_dir.parent / "server.log"), "start")

    @property
    def restartable(self) -> bool:
        return self.data_dir is not None

    def restart(self, down_s: float = 0.0) -> None:
        """Stop the server (fast: connections are cut), stay down `down_s` seconds, start it again."""
        self._pg_ctl("-w", "-m", "fast", "stop")
        time.sleep(down_s)
        self.start()

    def stop(self) -> None:
        self._pg_ctl("-w", "-m", "immediate", "stop")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_cluster() -> PostgresServer:
    """initdb + pg_ctl start in a temp folder; raises RuntimeError with the reason when impossible."""
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not bins:
        raise RuntimeError("no PostgreSQL server binaries (apt-get install postgresql) and $ATELIER_TEST_POSTGRES "
                           "is not set")
    bin_dir = Path(bins[-1]).parent
    user = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            raise RuntimeError("running as root and there is no `postgres` user to run the server as") from None
        if shutil.which("runuser") is None:
            raise RuntimeError("running as root without `runuser` to start the server as `postgres`")
        user = "postgres"
    root = Path(tempfile.mkdtemp(prefix="atelier-pg-"))
    data, port = root / "data", _free_port()
    if user:
        shutil.chown(root, user)
    wrap = ["runuser", "-u", user, "--"] if user else []
    opts = f"-c listen_addresses='' -c unix_socket_directories={root} -c port={port} -c fsync=off " \
           "-c max_connections=200"
    server = PostgresServer(f"postgresql://postgres@/postgres?host={root}&port={port}", data, bin_dir, user, opts)
    try:
        subprocess.run([*wrap, str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                        "-E", "UTF8", "--no-sync"], check=True, capture_output=True, timeout=180)
        server.start()
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as e:
        err = getattr(e, "stderr", b"") or b""
        log = root / "server.log"
        tail = log.read_text(errors="replace")[-300:] if log.is_file() else ""
        raise RuntimeError(f"could not start a PostgreSQL cluster: {e} {err.decode(errors='replace')[-300:]} "
                           f"{tail}") from None
    return server


def create_database(server: PostgresServer) -> str:
    """A new empty database on `server`; returns its DSN."""
    import psycopg

    name = f"atelier_test_{uuid.uuid4().hex[:10]}"
    deadline = time.time() + 30
    while True:
        try:
            with psycopg.connect(server.admin_dsn, autocommit=True) as con:
                con.execute(f'CREATE DATABASE "{name}"')
            return server.dsn(name)
        except psycopg.OperationalError:
            if time.time() > deadline:
                raise
            time.sleep(0.2)  # the server may be restarting


def drop_database(server: PostgresServer, dsn: str) -> None:
    import psycopg

    name = dsn.split("?")[0].rsplit("/", 1)[1]
    try:
        with psycopg.connect(server.admin_dsn, autocommit=True) as con:
            con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except psycopg.Error:
        pass


def terminate_connections(dsn: str) -> int:
    """Cut every other connection to the DSN's database (what a crashed proxy or a failover does)."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as con:
        rows = con.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                           "WHERE datname = current_database() AND pid <> pg_backend_pid()").fetchall()
    return len(rows)
