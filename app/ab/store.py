"""The A/B store of experiments: creatives, impressions, clicks and pairwise votes, on SQLite (the
embedded default, a file) or PostgreSQL (`postgresql://...`, a server for teams that outgrow one
machine); the same SQL, the same guarantees (`app.ab.db` holds the two backends).

Safe under many concurrent writers (threads, processes, HTTP requests): every operation is one
transaction, and counts are never kept in mutable counters: every impression, click and vote is
one row, so a count is exact by construction. A client may pass an `event_id`, its idempotency key,
scoped to its experiment: a retried request with the same id is stored once and answered as a
duplicate (`Recorded.duplicate`), the same id for a different event in the same experiment is an
error, and the same id in another experiment is another event.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import InputError

from .db import PG_SCHEMA, PostgresDB, SqliteDB, StoreUnavailable, Tx, open_db

SCHEMA_VERSION = 3  # 3: the feedback table (a schema-2 database gains it on open)
TABLES = ("experiments", "creatives", "impressions", "clicks", "votes", "feedback")
FEEDBACK_KINDS = ("impression", "click", "choice", "like", "skip")
META = "atelier_meta"  # (key, value): app = atelier-ab, schema_version


def schema(db) -> list[str]:
    """CREATE statements for one backend (PostgreSQL needs DOUBLE PRECISION and an explicit order column)."""
    real, seq = db.real, db.seq_column
    return [
        f"CREATE TABLE IF NOT EXISTS {META} (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        f"""CREATE TABLE IF NOT EXISTS experiments (
    experiment_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    segment TEXT,
    control_id TEXT,
    status TEXT NOT NULL DEFAULT 'running',
    created_at {real} NOT NULL,
    meta TEXT NOT NULL DEFAULT '{{}}'
)""",
        f"""CREATE TABLE IF NOT EXISTS creatives (
    experiment_id TEXT NOT NULL REFERENCES experiments(experiment_id),
    creative_id TEXT NOT NULL,
    image_path TEXT,
    prompt TEXT,
    record TEXT NOT NULL DEFAULT '{{}}',
    created_at {real} NOT NULL{seq},
    PRIMARY KEY (experiment_id, creative_id)
)""",
        f"""CREATE TABLE IF NOT EXISTS impressions (
    impression_id TEXT NOT NULL,
    experiment_id TEXT NOT NULL,
    creative_id TEXT NOT NULL,
    user_id TEXT,
    ts {real} NOT NULL,
    PRIMARY KEY (experiment_id, impression_id)
)""",
        f"""CREATE TABLE IF NOT EXISTS clicks (
    click_id TEXT NOT NULL,
    impression_id TEXT,
    experiment_id TEXT NOT NULL,
    creative_id TEXT NOT NULL,
    user_id TEXT,
    ts {real} NOT NULL,
    PRIMARY KEY (experiment_id, click_id)
)""",
        f"""CREATE TABLE IF NOT EXISTS votes (
    vote_id TEXT NOT NULL,
    experiment_id TEXT NOT NULL,
    winner_id TEXT NOT NULL,
    loser_id TEXT NOT NULL,
    user_id TEXT,
    ts {real} NOT NULL{seq},
    PRIMARY KEY (experiment_id, vote_id)
)""",
        f"""CREATE TABLE IF NOT EXISTS feedback (
    event_id TEXT NOT NULL,
    experiment_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    creative_ids TEXT NOT NULL,
    ts {real} NOT NULL{seq},
    PRIMARY KEY (experiment_id, event_id)
)""",
        "CREATE INDEX IF NOT EXISTS feedback_user ON feedback(user_id)",
        "CREATE INDEX IF NOT EXISTS impressions_arm ON impressions(experiment_id, creative_id)",
        "CREATE INDEX IF NOT EXISTS impressions_id ON impressions(impression_id)",
        "CREATE INDEX IF NOT EXISTS clicks_arm ON clicks(experiment_id, creative_id)",
        "CREATE UNIQUE INDEX IF NOT EXISTS clicks_once ON clicks(experiment_id, impression_id) "
        "WHERE impression_id IS NOT NULL",
        "CREATE INDEX IF NOT EXISTS votes_exp ON votes(experiment_id)",
    ]


class Recorded(str):
    """The id of a recorded event (a str, as before), and whether this call was a duplicate of one already
    stored (a retry: nothing new was written)."""

    duplicate: bool

    def __new__(cls, value: str, duplicate: bool = False) -> "Recorded":
        obj = super().__new__(cls, value)
        obj.duplicate = duplicate
        return obj


class EventConflict(InputError):
    """An `event_id` reused in the same experiment for a different event."""


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


MAX_ID_CHARS = 200


def _event_id(event_id: str | None) -> str:
    """The caller's idempotency key (checked: non-empty text, no control characters), or a new one."""
    if event_id is None:
        return _new_id()
    if not isinstance(event_id, str) or not event_id.strip() or len(event_id) > MAX_ID_CHARS \
            or any(ord(c) < 32 for c in event_id):
        raise InputError(f"event_id must be 1..{MAX_ID_CHARS} characters of text without control characters")
    return event_id


class ABStore:
    """The A/B database at `path` (a SQLite file) or a `postgresql://` DSN; cheap to construct, safe to
    share across threads."""

    def __init__(self, path: str | Path, *, busy_timeout_s: float = 30.0):
        self.db: SqliteDB | PostgresDB = open_db(path, busy_timeout_s)
        self.path = self.db.path  # the file (SQLite) or the DSN without its password (PostgreSQL)
        self.backend = self.db.kind
        self._open_schema()

    # --- schema ------------------------------------------------------------------------------
    def _open_schema(self) -> None:
        """Create or upgrade the schema; another application's database is refused before anything is
        written to it (its tables are read first)."""
        existing = self.db.tables()
        foreign = sorted(existing - set(TABLES) - {META} - {n + "_v1" for n in TABLES})
        if foreign:
            shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
            raise InputError(f"not an A/B database: it holds other tables ({shown}); give a new file or "
                             "an Atelier A/B database", self.path)
        version = self.db.run(lambda tx: self._version(tx, existing), write=False)
        if version is not None and version > SCHEMA_VERSION:
            raise InputError(f"A/B database schema {version} is newer than this Atelier ({SCHEMA_VERSION})",
                             self.path)
        if version == SCHEMA_VERSION:
            return
        self.db.prepare()

        def create(tx: Tx) -> None:
            now = {r[0] for r in tx.all(*self._tables_sql())}
            if now and META not in now and "votes" in now:
                self._upgrade_v1(tx)
            for stmt in schema(self.db):
                tx.run(stmt)
            tx.run(f"INSERT INTO {META} (key, value) VALUES ('app', 'atelier-ab') ON CONFLICT (key) DO NOTHING")
            tx.run(f"INSERT INTO {META} (key, value) VALUES ('schema_version', ?) "
                   "ON CONFLICT (key) DO UPDATE SET value=excluded.value", (str(SCHEMA_VERSION),))

        self.db.run(create, write=True)

    def _tables_sql(self) -> tuple[str, tuple]:
        if self.backend == "sqlite":
            return "SELECT name FROM sqlite_master WHERE type='table'", ()
        return "SELECT table_name FROM information_schema.tables WHERE table_schema=?", (PG_SCHEMA,)

    def _version(self, tx: Tx, existing: set[str]) -> int | None:
        if META not in existing:
            return None
        row = tx.one(f"SELECT value FROM {META} WHERE key='schema_version'")
        app = tx.one(f"SELECT value FROM {META} WHERE key='app'")
        if app is not None and app[0] != "atelier-ab":
            raise InputError(f"not an A/B database (it belongs to {app[0]!r})", self.path)
        try:
            return int(row[0]) if row else None
        except ValueError:
            raise InputError("not an A/B database (bad schema_version)", self.path) from None

    def _upgrade_v1(self, tx: Tx) -> None:
        """Schema 1 (SQLite, before PostgreSQL): event ids were unique across experiments. Copy the event
        tables into the experiment-scoped ones, in the same transaction."""
        for table in ("impressions", "clicks", "votes"):
            tx.run(f"ALTER TABLE {table} RENAME TO {table}_v1")
        for idx in ("impressions_arm", "clicks_arm", "clicks_once", "votes_exp"):
            tx.run(f"DROP INDEX IF EXISTS {idx}")
        for stmt in schema(self.db):
            tx.run(stmt)
        tx.run("INSERT INTO impressions (impression_id, experiment_id, creative_id, user_id, ts) "
               "SELECT impression_id, experiment_id, creative_id, user_id, ts FROM impressions_v1")
        tx.run("INSERT INTO clicks (click_id, impression_id, experiment_id, creative_id, user_id, ts) "
               "SELECT click_id, impression_id, experiment_id, creative_id, user_id, ts FROM clicks_v1")
        tx.run("INSERT INTO votes (vote_id, experiment_id, winner_id, loser_id, user_id, ts) "
               "SELECT vote_id, experiment_id, winner_id, loser_id, user_id, ts FROM votes_v1 ORDER BY rowid")
        for table in ("impressions", "clicks", "votes"):
            tx.run(f"DROP TABLE {table}_v1")

    def _write(self, fn):
        return self.db.run(fn, write=True)

    def _read(self, fn):
        return self.db.run(fn, write=False)

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

        def go(tx: Tx) -> str:
            if tx.one("SELECT 1 FROM experiments WHERE experiment_id=?", (exp_id,)):
                raise InputError(f"experiment {exp_id!r} already exists", path=str(self.path))
            tx.run("INSERT INTO experiments (experiment_id, name, segment, created_at, meta) VALUES (?,?,?,?,?)",
                   (exp_id, name, segment, time.time(), json.dumps(meta or {})))
            return exp_id

        return self._write(go)

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
        from core.io import dumps_json

        def go(tx: Tx) -> None:
            self._require_experiment(tx, experiment_id)
            if tx.one("SELECT 1 FROM creatives WHERE experiment_id=? AND creative_id=?", (experiment_id, creative_id)):
                raise InputError(f"creative {creative_id!r} is already in experiment {experiment_id!r}")
            tx.run("INSERT INTO creatives (experiment_id, creative_id, image_path, prompt, record, created_at) "
                   "VALUES (?,?,?,?,?,?)",
                   (experiment_id, creative_id, image_path, prompt, dumps_json(record or {}), time.time()))
            has_control = tx.one("SELECT control_id FROM experiments WHERE experiment_id=?", (experiment_id,))[0]
            if control or has_control is None:  # the first creative is the control unless told otherwise
                tx.run("UPDATE experiments SET control_id=? WHERE experiment_id=?", (creative_id, experiment_id))

        self._write(go)

    def set_status(self, experiment_id: str, status: str, *, winner: str | None = None) -> None:
        """Mark an experiment 'running' or 'stopped'; a stopped one serves `winner` (default: its control)."""
        if status not in ("running", "stopped"):
            raise InputError(f"status must be 'running' or 'stopped', got {status!r}")

        def go(tx: Tx) -> None:
            exp = self._require_experiment(tx, experiment_id)
            if winner is not None:
                self._require_creative(tx, experiment_id, winner)
            meta = {**exp.meta, "winner": winner}
            tx.run("UPDATE experiments SET status=?, meta=? WHERE experiment_id=?",
                   (status, json.dumps(meta), experiment_id))

        self._write(go)

    def experiment(self, experiment_id: str) -> Experiment:
        """Read one experiment (InputError if unknown)."""
        return self._read(lambda tx: self._require_experiment(tx, experiment_id))

    def experiments(self) -> list[Experiment]:
        """All experiments, oldest first."""
        rows = self._read(lambda tx: tx.all(f"SELECT {EXPERIMENT_COLUMNS} FROM experiments "
                                            "ORDER BY created_at, experiment_id"))
        return [_experiment(r) for r in rows]

    def _require_experiment(self, tx: Tx, experiment_id: str) -> Experiment:
        row = tx.one(f"SELECT {EXPERIMENT_COLUMNS} FROM experiments WHERE experiment_id=?", (experiment_id,))
        if row is None:
            raise InputError(f"unknown experiment {experiment_id!r}", path=str(self.path))
        return _experiment(row)

    def _require_creative(self, tx: Tx, experiment_id: str, creative_id: str) -> None:
        row = tx.one("SELECT 1 FROM creatives WHERE experiment_id=? AND creative_id=?", (experiment_id, creative_id))
        if row is None:
            self._require_experiment(tx, experiment_id)
            raise InputError(f"unknown creative {creative_id!r} in experiment {experiment_id!r}")

    # --- events ------------------------------------------------------------------------------
    def _insert_event(self, tx: Tx, table: str, key: str, row: dict[str, Any], same: tuple[str, ...],
                      what: str) -> Recorded:
        """Insert one keyed event row; an existing row with the same key in the same experiment is a
        duplicate when its `same` fields match (a retry), an EventConflict when they do not."""
        exp, event_id = row["experiment_id"], row[key]
        cols = tuple(row)
        inserted = tx.run(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) "
                          f"ON CONFLICT DO NOTHING", tuple(row[c] for c in cols))
        if inserted == 1:
            return Recorded(event_id)
        old = tx.one(f"SELECT {', '.join(same)} FROM {table} WHERE experiment_id=? AND {key}=?", (exp, event_id))
        if old is None:  # the conflict was on another unique key (a click on an already clicked impression)
            return self._duplicate_click(tx, row)
        if tuple(old) != tuple(row[c] for c in same):
            raise EventConflict(f"event_id {event_id!r} was already used in experiment {exp!r} for a different "
                                f"{what}; send a new event_id for a new {what}")
        return Recorded(event_id, duplicate=True)

    def _duplicate_click(self, tx: Tx, row: dict[str, Any]) -> Recorded:
        old = tx.one("SELECT click_id FROM clicks WHERE experiment_id=? AND impression_id=?",
                     (row["experiment_id"], row.get("impression_id")))
        if old is None:  # cannot happen: the insert conflicted on something
            raise StoreUnavailable("the A/B database refused a click for no visible reason", self.path)
        return Recorded(old[0], duplicate=True)

    def record_impression(
        self, experiment_id: str, creative_id: str, *, user_id: str | None = None, event_id: str | None = None
    ) -> Recorded:
        """Record that `creative_id` was shown; returns the impression id (idempotent on `event_id`)."""
        row = {"impression_id": _event_id(event_id), "experiment_id": experiment_id, "creative_id": creative_id,
               "user_id": user_id, "ts": time.time()}

        def go(tx: Tx) -> Recorded:
            self._require_creative(tx, experiment_id, creative_id)
            return self._insert_event(tx, "impressions", "impression_id", row, ("creative_id", "user_id"),
                                      "impression")

        return self._write(go)

    def impression(self, experiment_id: str, impression_id: str) -> dict[str, Any] | None:
        """One impression (creative, user) of an experiment, or None."""
        row = self._read(lambda tx: tx.one(
            "SELECT creative_id, user_id FROM impressions WHERE experiment_id=? AND impression_id=?",
            (experiment_id, impression_id)))
        return None if row is None else {"impression_id": impression_id, "creative_id": row[0], "user_id": row[1]}

    def record_click(
        self,
        experiment_id: str | None = None,
        creative_id: str | None = None,
        *,
        impression_id: str | None = None,
        user_id: str | None = None,
        event_id: str | None = None,
    ) -> Recorded:
        """Record a click, by impression id (counted once per impression) or by experiment + creative.

        A second click on an impression is answered as a duplicate with the first click's id."""
        click_id = _event_id(event_id)

        def go(tx: Tx) -> Recorded:
            exp, creative, user = experiment_id, creative_id, user_id
            if impression_id is not None:
                sql = "SELECT experiment_id, creative_id, user_id FROM impressions WHERE impression_id=?"
                args: tuple = (impression_id,)
                if exp is not None:
                    sql, args = sql + " AND experiment_id=?", (impression_id, exp)
                rows = tx.all(sql, args)
                if not rows:
                    raise InputError(f"unknown impression {impression_id!r}")
                if len(rows) > 1:
                    raise InputError(f"impression {impression_id!r} exists in several experiments; "
                                     "give the experiment too")
                exp, creative = rows[0][0], rows[0][1]
                user = user or rows[0][2]
            elif exp is None or creative is None:
                raise InputError("a click needs an impression id, or an experiment and a creative id")
            self._require_creative(tx, exp, creative)
            row = {"click_id": click_id, "impression_id": impression_id, "experiment_id": exp,
                   "creative_id": creative, "user_id": user, "ts": time.time()}
            return self._insert_event(tx, "clicks", "click_id", row, ("impression_id", "creative_id"), "click")

        return self._write(go)

    def record_vote(
        self,
        experiment_id: str,
        winner_id: str,
        loser_id: str,
        *,
        user_id: str | None = None,
        event_id: str | None = None,
    ) -> Recorded:
        """Record that a person preferred `winner_id` over `loser_id` (idempotent on `event_id`)."""
        if winner_id == loser_id:
            raise InputError("a vote needs two different creatives")
        row = {"vote_id": _event_id(event_id), "experiment_id": experiment_id, "winner_id": winner_id,
               "loser_id": loser_id, "user_id": user_id, "ts": time.time()}

        def go(tx: Tx) -> Recorded:
            self._require_creative(tx, experiment_id, winner_id)
            self._require_creative(tx, experiment_id, loser_id)
            return self._insert_event(tx, "votes", "vote_id", row, ("winner_id", "loser_id", "user_id"), "vote")

        return self._write(go)

    def record_feedback(
        self,
        experiment_id: str,
        user_id: str,
        kind: str,
        creative_ids: list[str],
        *,
        event_id: str | None = None,
    ) -> Recorded:
        """Record a shopper's answer to shown creatives (idempotent on `event_id`, like votes).

        kind: impression / click / like / skip (one creative) or choice (the chosen creative first, then
        the other one(s) shown). Every creative must be in the experiment."""
        if kind not in FEEDBACK_KINDS:
            raise InputError(f"feedback kind must be one of {', '.join(FEEDBACK_KINDS)}, got {kind!r}")
        if not isinstance(user_id, str) or not user_id.strip() or len(user_id) > MAX_ID_CHARS \
                or any(ord(c) < 32 for c in user_id):
            raise InputError(f"feedback needs a shopper id: 1..{MAX_ID_CHARS} characters without control characters")
        ids = [str(c) for c in creative_ids]
        if kind == "choice" and (len(ids) < 2 or len(set(ids)) != len(ids)):
            raise InputError("a choice needs the chosen creative and at least one other, all different")
        if kind != "choice" and len(ids) != 1:
            raise InputError(f"a {kind} is about exactly one creative, got {len(ids)}")
        row = {"event_id": _event_id(event_id), "experiment_id": experiment_id, "user_id": user_id, "kind": kind,
               "creative_ids": json.dumps(ids), "ts": time.time()}

        def go(tx: Tx) -> Recorded:
            for c in ids:
                self._require_creative(tx, experiment_id, c)
            return self._insert_event(tx, "feedback", "event_id", row, ("user_id", "kind", "creative_ids"), "feedback")

        return self._write(go)

    def feedback(self, user_id: str | None = None, experiment_id: str | None = None) -> list[dict[str, Any]]:
        """Feedback events (of one shopper and/or one experiment), in the order they were stored."""
        where, args = [], []
        if user_id is not None:
            where.append("user_id=?")
            args.append(user_id)
        if experiment_id is not None:
            where.append("experiment_id=?")
            args.append(experiment_id)
        sql = ("SELECT event_id, experiment_id, user_id, kind, creative_ids, ts FROM feedback"
               + (" WHERE " + " AND ".join(where) if where else "") + f" ORDER BY ts, {self.db.order}")
        rows = self._read(lambda tx: tx.all(sql, tuple(args)))
        return [{"event_id": r[0], "experiment_id": r[1], "user_id": r[2], "kind": r[3],
                 "creative_ids": json.loads(r[4]), "ts": float(r[5])} for r in rows]

    def votes_of(self, user_id: str) -> list[Vote]:
        """Every pairwise vote one person cast, in any experiment, oldest first."""
        rows = self._read(lambda tx: tx.all("SELECT vote_id, experiment_id, winner_id, loser_id, user_id, ts FROM votes "
                                            f"WHERE user_id=? ORDER BY ts, {self.db.order}", (user_id,)))
        return [Vote(*r) for r in rows]

    def creative_record(self, experiment_id: str, creative_id: str) -> dict[str, Any]:
        """One creative's (image_path, prompt, record) as a dict; InputError if unknown."""
        def go(tx: Tx):
            self._require_creative(tx, experiment_id, creative_id)
            return tx.one("SELECT image_path, prompt, record FROM creatives WHERE experiment_id=? AND creative_id=?",
                          (experiment_id, creative_id))

        r = self._read(go)
        return {"creative_id": creative_id, "image_path": r[0], "prompt": r[1], "record": _json(r[2])}

    # --- reads -------------------------------------------------------------------------------
    def arms(self, experiment_id: str) -> list[ArmStats]:
        """Impression and click counts of every creative in an experiment, in insertion order."""
        def go(tx: Tx) -> list[tuple]:
            self._require_experiment(tx, experiment_id)
            return tx.all(
                f"""
                SELECT c.creative_id, c.image_path, c.prompt, c.record,
                  (SELECT COUNT(*) FROM impressions i WHERE i.experiment_id=c.experiment_id AND i.creative_id=c.creative_id),
                  (SELECT COUNT(*) FROM clicks k WHERE k.experiment_id=c.experiment_id AND k.creative_id=c.creative_id)
                FROM creatives c WHERE c.experiment_id=? ORDER BY c.created_at, c.{self.db.order}
                """,
                (experiment_id,),
            )

        return [ArmStats(r[0], impressions=int(r[4]), clicks=int(r[5]), image_path=r[1], prompt=r[2],
                         record=_json(r[3])) for r in self._read(go)]

    def votes(self, experiment_id: str) -> list[Vote]:
        """All pairwise votes of an experiment, oldest first."""
        def go(tx: Tx) -> list[tuple]:
            self._require_experiment(tx, experiment_id)
            return tx.all("SELECT vote_id, experiment_id, winner_id, loser_id, user_id, ts FROM votes "
                          f"WHERE experiment_id=? ORDER BY ts, {self.db.order}", (experiment_id,))

        return [Vote(*r) for r in self._read(go)]

    def counts(self, feedback: bool = False) -> dict[str, int]:
        """Total rows per table (what a load test compares with what it sent); the feedback table with `feedback`."""
        tables = TABLES if feedback else tuple(t for t in TABLES if t != "feedback")
        return self._read(lambda tx: {t: int(tx.one(f"SELECT COUNT(*) FROM {t}")[0]) for t in tables})

    def event_ids(self, table: str) -> list[tuple[str, str]]:
        """(experiment_id, event id) of every row of an event table (what a load test audits)."""
        key = {"impressions": "impression_id", "clicks": "click_id", "votes": "vote_id", "feedback": "event_id"}[table]
        return [tuple(r) for r in self._read(lambda tx: tx.all(f"SELECT experiment_id, {key} FROM {table}"))]


EXPERIMENT_COLUMNS = "experiment_id, name, segment, control_id, status, created_at, meta"


def _json(text: str) -> dict:
    try:
        out = json.loads(text)
    except (TypeError, ValueError):
        return {}
    return out if isinstance(out, dict) else {}


def _experiment(row: tuple) -> Experiment:
    return Experiment(row[0], row[1], row[2], row[3], row[4], row[5], _json(row[6]))
