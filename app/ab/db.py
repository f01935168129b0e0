"""The two databases under the A/B store: SQLite (embedded, the default) and PostgreSQL (a server, for
teams that outgrow one machine). The store writes its SQL once, with `?` placeholders; a backend
runs one transaction (`run(fn, write=...)`) and turns its driver's failures into one-line errors.

- SQLite: one connection per call (a sqlite3 connection must not cross threads), WAL mode, writes take
  the lock at BEGIN (`BEGIN IMMEDIATE`) and wait on a busy timeout instead of failing.
- PostgreSQL (psycopg 3): a small pool of connections; the tables live in their own schema
  (`atelier_ab`), so a shared database's other tables are never touched. A transaction cut off by a
  dropped connection or a server restart is retried on a fresh connection until `retry_s` has passed;
  every write the store makes is keyed (idempotent), so a retry never doubles an event.
"""

from __future__ import annotations

import os
import queue
import re
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, TypeVar

from core.errors import InputError

T = TypeVar("T")
PG_SCHEMA = "atelier_ab"


class StoreUnavailable(InputError):
    """The database itself is unusable (damaged, unreachable, read-only): not one request's fault."""


def is_postgres(spec: str | Path) -> bool:
    return isinstance(spec, str) and spec.startswith(("postgresql://", "postgres://"))


def redact(dsn: str) -> str:
    """A DSN without its password, for messages and logs."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", dsn)


class Tx:
    """One open transaction: `one`, `all` and `run` take SQL with `?` placeholders."""

    def __init__(self, cursor, placeholder: str):
        self._cur = cursor
        self._ph = placeholder

    def _sql(self, sql: str) -> str:
        return sql if self._ph == "?" else sql.replace("?", self._ph)

    def run(self, sql: str, params: tuple = ()) -> int:
        self._cur.execute(self._sql(sql), params)
        return self._cur.rowcount

    def one(self, sql: str, params: tuple = ()) -> tuple | None:
        self._cur.execute(self._sql(sql), params)
        return self._cur.fetchone()

    def all(self, sql: str, params: tuple = ()) -> list[tuple]:
        self._cur.execute(self._sql(sql), params)
        return self._cur.fetchall()


class SqliteDB:
    """The embedded store: a file."""

    kind = "sqlite"
    order = "rowid"  # insertion order
    real = "REAL"
    seq_column = ""

    def __init__(self, path: str | Path, busy_timeout_s: float = 30.0):
        self.path = Path(path)
        self.name = str(self.path)
        self.busy_timeout_s = busy_timeout_s
        if self.path.is_dir():
            raise InputError("A/B database path is a folder, expected a file", self.path)
        if not self.path.exists():
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise InputError(f"cannot create the A/B database's folder ({e.strerror})", self.path) from None

    def tables(self) -> set[str]:
        """Names of the tables already in the file (read before anything is written to it)."""
        def go(tx: Tx) -> set[str]:
            return {r[0] for r in tx.all("SELECT name FROM sqlite_master WHERE type='table'")}
        return self.run(go, write=False, setup=False)

    def prepare(self) -> None:
        """WAL mode, set once (it persists in the file)."""
        def go(con: sqlite3.Connection) -> None:
            con.execute("PRAGMA journal_mode=WAL")
        self._with_connection(go)

    @contextmanager
    def _connection(self, setup: bool = True) -> Iterator[sqlite3.Connection]:
        con = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None)
        try:
            if setup:
                con.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_s * 1000)}")
                con.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints; WAL keeps it consistent
                con.execute("PRAGMA foreign_keys=ON")
            yield con
        finally:
            con.close()

    def _with_connection(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        try:
            with self._connection() as con:
                return fn(con)
        except sqlite3.Error as e:
            raise self._error(e) from None

    def run(self, fn: Callable[[Tx], T], *, write: bool, setup: bool = True) -> T:
        """`fn(tx)` in one transaction (taking the write lock at BEGIN when `write`)."""
        try:
            with self._connection(setup) as con:
                con.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                try:
                    out = fn(Tx(con.cursor(), "?"))
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
                con.execute("COMMIT")
                return out
        except sqlite3.Error as e:
            raise self._error(e) from None

    def _error(self, e: sqlite3.Error) -> InputError:
        text = str(e)
        if "readonly" in text or "read-only" in text:
            return StoreUnavailable("the A/B database is read-only; Atelier needs to write to it "
                                    "(check the file's and its folder's permissions)", self.path)
        if isinstance(e, sqlite3.OperationalError) and "locked" in text:
            return StoreUnavailable(f"the A/B database stayed locked for {self.busy_timeout_s:.0f} s", self.path)
        if isinstance(e, sqlite3.OperationalError) and "unable to open" in text:
            return StoreUnavailable("cannot open the A/B database (missing folder or no permission)", self.path)
        return StoreUnavailable(f"not an A/B database, or a damaged one ({text})", self.path)


class PostgresDB:
    """The server store: a PostgreSQL database named by a DSN (postgresql://user@host:port/dbname)."""

    kind = "postgresql"
    order = "seq"
    real = "DOUBLE PRECISION"
    seq_column = ",\n    seq BIGSERIAL"

    def __init__(self, dsn: str, *, retry_s: float | None = None, pool_size: int = 32, connect_timeout_s: int = 10):
        try:
            import psycopg  # noqa: F401
        except ImportError:
            raise InputError("a postgresql:// A/B store needs psycopg (pip install 'psycopg[binary]')") from None
        self.dsn = dsn
        self.name = redact(dsn)
        self.path = self.name  # what messages name
        # how long a transaction is retried while the server is away (env ATELIER_AB_RETRY_S, default 60 s)
        self.retry_s = float(os.environ.get("ATELIER_AB_RETRY_S", "60")) if retry_s is None else retry_s
        self.connect_timeout_s = connect_timeout_s
        self._idle: queue.LifoQueue = queue.LifoQueue(maxsize=pool_size)
        self._lock = threading.Lock()

    def _connect(self):
        import psycopg

        return psycopg.connect(self.dsn, autocommit=False, connect_timeout=self.connect_timeout_s,
                               options=f"-c search_path={PG_SCHEMA}")

    def _get(self):
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            return self._connect()

    def _put(self, con) -> None:
        try:
            self._idle.put_nowait(con)
        except queue.Full:
            con.close()

    def close(self) -> None:
        """Close the pooled connections (tests; a server closes them at exit)."""
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return

    def tables(self) -> set[str]:
        def go(tx: Tx) -> set[str]:
            return {r[0] for r in tx.all("SELECT table_name FROM information_schema.tables WHERE table_schema=?",
                                          (PG_SCHEMA,))}
        return self.run(go, write=False)

    def prepare(self) -> None:
        self.run(lambda tx: tx.run(f"CREATE SCHEMA IF NOT EXISTS {PG_SCHEMA}"), write=True)

    def run(self, fn: Callable[[Tx], T], *, write: bool, setup: bool = True) -> T:
        """`fn(tx)` in one transaction; a lost connection or a restarting server is retried on a fresh
        connection (with backoff) until `retry_s` has passed, then StoreUnavailable."""
        import psycopg

        deadline = time.monotonic() + self.retry_s
        delay = 0.05
        while True:
            con = None
            try:
                con = self._get()
                with con.transaction():
                    with con.cursor() as cur:
                        out = fn(Tx(cur, "%s"))
                self._put(con)
                return out
            except (psycopg.OperationalError, psycopg.errors.AdminShutdown, psycopg.errors.CannotConnectNow) as e:
                if con is not None:
                    con.close()
                if time.monotonic() > deadline:  # the caller reports it (the API logs one line)
                    raise StoreUnavailable(f"cannot reach the PostgreSQL A/B database "
                                           f"({' '.join(str(e).split())[:160]})", self.name) from None
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
            except psycopg.Error as e:
                if con is not None:
                    con.close()
                raise StoreUnavailable(f"PostgreSQL error ({' '.join(str(e).split())[:200]})", self.name) from None
            except BaseException:
                if con is not None:
                    if con.closed or con.broken:
                        con.close()
                    else:
                        self._put(con)
                raise


def open_db(spec: str | Path, busy_timeout_s: float = 30.0) -> SqliteDB | PostgresDB:
    """The database a `--db` value names: a postgresql:// DSN, else a SQLite file path."""
    spec_text = str(spec)
    if is_postgres(spec_text):
        return PostgresDB(spec_text)
    return SqliteDB(spec, busy_timeout_s)

