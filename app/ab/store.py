"""SQLite store of A/B experiments: creatives, impressions, clicks and pairwise votes.

Safe under many concurrent writers (threads, processes, HTTP requests): every operation opens its
own connection (a sqlite3 connection must not be shared across threads), the database runs in
WAL mode so readers never block the writer, writes take the lock up front (`BEGIN IMMEDIATE`)
and wait on a busy timeout instead of failing. Counts are never kept in mutable counters: every
impression, click and vote is one row, so a count is exact by construction. A client may pass an
`event_id`; a retried request with the same id is recorded once (no doubled counts).
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from core.errors import InputError

SCHEMA = """
CREATE TABLE IF NOT EXISTS experiments (
    experiment_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    segment TEXT,
    control_id TEXT,
    status TEXT NOT NULL DEFAULT 'running',
    created_at REAL NOT NULL,
    meta TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS creatives (
    experiment_id TEXT NOT NULL REFERENCES experiments(experiment_id),
    creative_id TEXT NOT NULL,
    image_path TEXT,
    prompt TEXT,
    record TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL,
    PRIMARY KEY (experiment_id, creative_id)
);
CREATE TABLE IF NOT EXISTS impressions (
    impression_id TEXT PRIMARY KEY,
    experiment_id TEXT NOT NULL,
    creative_id TEXT NOT NULL,
    user_id TEXT,
    ts REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS clicks (
    click_id TEXT PRIMARY KEY,
    impression_id TEXT,
    experiment_id TEXT NOT NULL,
    creative_id TEXT NOT NULL,
    user_id TEXT,
    ts REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS votes (
    vote_id TEXT PRIMARY KEY,
    experiment_id TEXT NOT NULL,
    winner_id TEXT NOT NULL,
    loser_id TEXT NOT NULL,
    user_id TEXT,
    ts REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS impressions_arm ON impressions(experiment_id, creative_id);
CREATE INDEX IF NOT EXISTS clicks_arm ON clicks(experiment_id, creative_id);
CREATE UNIQUE INDEX IF NOT EXISTS clicks_once ON clicks(impression_id) WHERE impression_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS votes_exp ON votes(experiment_id);
"""


@dataclass
class ArmStats:
    """Counts of one creative in one experiment."""

    creative_id: str
    impressions: int = 0
    clicks: int = 0
    image_path: str | None = None
    prompt: str | None = None
    record: dict[str, Any] = field(default_factory=dict)


@dataclass
class Experiment:
    """One experiment: a set of creatives competing for the same slot."""

    experiment_id: str
    name: str
    segment: str | None
    control_id: str | None
    status: str
    created_at: float
    meta: dict[str, Any]


@dataclass
class Vote:
    """One pairwise judgement: `winner_id` was preferred over `loser_id`."""

    vote_id: str
    experiment_id: str
    winner_id: str
    loser_id: str
    user_id: str | None
    ts: float


def _new_id() -> str:
    return uuid.uuid4().hex


class ABStore:
    """The A/B database at `path`; cheap to construct, safe to share across threads."""

    def __init__(self, path: str | Path, *, busy_timeout_s: float = 30.0):
        self.path = Path(path)
        self.busy_timeout_s = busy_timeout_s
        if self.path.exists() and self.path.is_dir():
            raise InputError("A/B database path is a folder, expected a file", path=str(self.path))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with self._connect() as con:
                con.execute("PRAGMA journal_mode=WAL")
                con.executescript(SCHEMA)
        except sqlite3.DatabaseError as e:
            raise InputError(f"not an A/B database ({e})", path=str(self.path)) from None

    # --- connections -------------------------------------------------------------------------
    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # One connection per call: correct across threads and processes, and cheap for SQLite.
        con = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None)
        try:
            con.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_s * 1000)}")
            con.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints; WAL keeps it consistent
            con.execute("PRAGMA foreign_keys=ON")
            yield con
        finally:
            con.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that takes the lock at BEGIN, so it never deadlocks on upgrade."""
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    # --- experiments and creatives -----------------------------------------------------------
    def create_experiment(
        self,
        name: str,
        *,
        experiment_id: str | None = None,
        segment: str | None = None,
        meta: dict[str, Any] | None = None,
    ) -> str:
        """Create an experiment and return its id (the name unless an id is given)."""
        if not name or not name.strip():
            raise InputError("experiment name is empty")
        exp_id = experiment_id or name
        with self._write() as con:
            if con.execute("SELECT 1 FROM experiments WHERE experiment_id=?", (exp_id,)).fetchone():
                raise InputError(f"experiment {exp_id!r} already exists", path=str(self.path))
            con.execute(
                "INSERT INTO experiments (experiment_id, name, segment, created_at, meta) VALUES (?,?,?,?,?)",
                (exp_id, name, segment, time.time(), json.dumps(meta or {})),
            )
        return exp_id

    def add_creative(
        self,
        experiment_id: str,
        creative_id: str,
        *,
        image_path: str | None = None,
        prompt: str | None = None,
        record: dict[str, Any] | None = None,
        control: bool = False,
    ) -> None:
        """Add a creative to an experiment; `control=True` makes it the baseline to beat."""
        if not creative_id:
            raise InputError("creative id is empty")
        with self._write() as con:
            self._require_experiment(con, experiment_id)
            exists = con.execute(
                "SELECT 1 FROM creatives WHERE experiment_id=? AND creative_id=?", (experiment_id, creative_id)
            ).fetchone()
            if exists:
                raise InputError(f"creative {creative_id!r} is already in experiment {experiment_id!r}")
            con.execute(
                "INSERT INTO creatives (experiment_id, creative_id, image_path, prompt, record, created_at) "
                "VALUES (?,?,?,?,?,?)",
                (experiment_id, creative_id, image_path, prompt, json.dumps(record or {}), time.time()),
            )
            has_control = con.execute(
                "SELECT control_id FROM experiments WHERE experiment_id=?", (experiment_id,)
            ).fetchone()[0]
            if control or has_control is None:  # the first creative is the control unless told otherwise
                con.execute(
                    "UPDATE experiments SET control_id=? WHERE experiment_id=?", (creative_id, experiment_id)
                )

    def set_status(self, experiment_id: str, status: str, *, winner: str | None = None) -> None:
        """Mark an experiment 'running' or 'stopped'; a stopped one serves `winner` (default: its control)."""
        if status not in ("running", "stopped"):
            raise InputError(f"status must be 'running' or 'stopped', got {status!r}")
        with self._write() as con:
            exp = self._require_experiment(con, experiment_id)
            if winner is not None:
                self._require_creative(con, experiment_id, winner)
            meta = {**exp.meta, "winner": winner}
            con.execute(
                "UPDATE experiments SET status=?, meta=? WHERE experiment_id=?",
                (status, json.dumps(meta), experiment_id),
            )

    def experiment(self, experiment_id: str) -> Experiment:
        """Read one experiment (InputError if unknown)."""
        with self._connect() as con:
            return self._require_experiment(con, experiment_id)

    def experiments(self) -> list[Experiment]:
        """All experiments, oldest first."""
        with self._connect() as con:
            rows = con.execute("SELECT * FROM experiments ORDER BY created_at, experiment_id").fetchall()
        return [_experiment(r) for r in rows]

    def _require_experiment(self, con: sqlite3.Connection, experiment_id: str) -> Experiment:
        row = con.execute("SELECT * FROM experiments WHERE experiment_id=?", (experiment_id,)).fetchone()
        if row is None:
            raise InputError(f"unknown experiment {experiment_id!r}", path=str(self.path))
        return _experiment(row)

    def _require_creative(self, con: sqlite3.Connection, experiment_id: str, creative_id: str) -> None:
        row = con.execute(
            "SELECT 1 FROM creatives WHERE experiment_id=? AND creative_id=?", (experiment_id, creative_id)
        ).fetchone()
        if row is None:
            self._require_experiment(con, experiment_id)
            raise InputError(f"unknown creative {creative_id!r} in experiment {experiment_id!r}")

    # --- events ------------------------------------------------------------------------------
    def record_impression(
        self, experiment_id: str, creative_id: str, *, user_id: str | None = None, event_id: str | None = None
    ) -> str:
        """Record that `creative_id` was shown; returns the impression id (idempotent on `event_id`)."""
        imp_id = event_id or _new_id()
        with self._write() as con:
            self._require_creative(con, experiment_id, creative_id)
            con.execute(
                "INSERT OR IGNORE INTO impressions VALUES (?,?,?,?,?)",
                (imp_id, experiment_id, creative_id, user_id, time.time()),
            )
        return imp_id

    def record_click(
        self,
        experiment_id: str | None = None,
        creative_id: str | None = None,
        *,
        impression_id: str | None = None,
        user_id: str | None = None,
        event_id: str | None = None,
    ) -> str:
        """Record a click, by impression id (counted once per impression) or by experiment + creative."""
        click_id = event_id or _new_id()
        with self._write() as con:
            if impression_id is not None:
                row = con.execute(
                    "SELECT experiment_id, creative_id, user_id FROM impressions WHERE impression_id=?",
                    (impression_id,),
                ).fetchone()
                if row is None:
                    raise InputError(f"unknown impression {impression_id!r}")
                experiment_id, creative_id = row[0], row[1]
                user_id = user_id or row[2]
            elif experiment_id is None or creative_id is None:
                raise InputError("a click needs an impression id, or an experiment and a creative id")
            self._require_creative(con, experiment_id, creative_id)
            con.execute(
                "INSERT OR IGNORE INTO clicks VALUES (?,?,?,?,?,?)",
                (click_id, impression_id, experiment_id, creative_id, user_id, time.time()),
            )
        return click_id

    def record_vote(
        self,
        experiment_id: str,
        winner_id: str,
        loser_id: str,
        *,
        user_id: str | None = None,
        event_id: str | None = None,
    ) -> str:
        """Record that a person preferred `winner_id` over `loser_id` (idempotent on `event_id`)."""
        if winner_id == loser_id:
            raise InputError("a vote needs two different creatives")
        vote_id = event_id or _new_id()
        with self._write() as con:
            self._require_creative(con, experiment_id, winner_id)
            self._require_creative(con, experiment_id, loser_id)
            con.execute(
                "INSERT OR IGNORE INTO votes VALUES (?,?,?,?,?,?)",
                (vote_id, experiment_id, winner_id, loser_id, user_id, time.time()),
            )
        return vote_id

    # --- reads -------------------------------------------------------------------------------
    def arms(self, experiment_id: str) -> list[ArmStats]:
        """Impression and click counts of every creative in an experiment, in insertion order."""
        with self._connect() as con:
            self._require_experiment(con, experiment_id)
            rows = con.execute(
                """
                SELECT c.creative_id, c.image_path, c.prompt, c.record,
                  (SELECT COUNT(*) FROM impressions i WHERE i.experiment_id=c.experiment_id AND i.creative_id=c.creative_id),
                  (SELECT COUNT(*) FROM clicks k WHERE k.experiment_id=c.experiment_id AND k.creative_id=c.creative_id)
                FROM creatives c WHERE c.experiment_id=? ORDER BY c.created_at, c.rowid
                """,
                (experiment_id,),
            ).fetchall()
        return [
            ArmStats(r[0], impressions=r[4], clicks=r[5], image_path=r[1], prompt=r[2], record=json.loads(r[3]))
            for r in rows
        ]

    def votes(self, experiment_id: str) -> list[Vote]:
        """All pairwise votes of an experiment, oldest first."""
        with self._connect() as con:
            self._require_experiment(con, experiment_id)
            rows = con.execute(
                "SELECT * FROM votes WHERE experiment_id=? ORDER BY ts, rowid", (experiment_id,)
            ).fetchall()
        return [Vote(*r) for r in rows]

    def counts(self) -> dict[str, int]:
        """Total rows per event table (what a load test compares with what it sent)."""
        with self._connect() as con:
            return {
                t: con.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                for t in ("experiments", "creatives", "impressions", "clicks", "votes")
            }


def _experiment(row: tuple) -> Experiment:
    return Experiment(row[0], row[1], row[2], row[3], row[4], row[5], json.loads(row[6]))
