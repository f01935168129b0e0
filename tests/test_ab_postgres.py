"""The A/B store on PostgreSQL: the same semantics as on SQLite (exact counts, idempotent keyed events scoped
to their experiment, duplicates reported), through the store, the CLI (`--db postgresql://...`) and HTTP."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from postgres_tools import terminate_connections

from core.errors import InputError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def pg_store(postgres_db):
    from app.ab.store import ABStore

    store = ABStore(postgres_db)
    for exp in ("spring", "summer"):
        store.create_experiment(exp)
        for c in ("a", "b", "c"):
            store.add_creative(exp, c)
    yield store
    store.db.close()


def test_same_semantics_as_sqlite(pg_store):
    from app.ab.store import EventConflict

    s = pg_store
    assert s.backend == "postgresql" and s.experiment("spring").control_id == "a"
    assert [a.creative_id for a in s.arms("spring")] == ["a", "b", "c"]  # insertion order
    assert not s.record_vote("spring", "a", "b", event_id="e1").duplicate
    assert not s.record_vote("summer", "a", "b", event_id="e1").duplicate
    assert s.record_vote("spring", "a", "b", event_id="e1").duplicate
    with pytest.raises(EventConflict):
        s.record_vote("spring", "b", "a", event_id="e1")
    imp = s.record_impression("spring", "b", user_id="u1", event_id="i1")
    assert s.record_impression("spring", "b", user_id="u1", event_id="i1").duplicate
    assert not s.record_click(impression_id=imp, experiment_id="spring").duplicate
    assert s.record_click(impression_id=imp, experiment_id="spring").duplicate
    assert s.counts() == {"experiments": 2, "creatives": 6, "impressions": 1, "clicks": 1, "votes": 2}
    assert [v.vote_id for v in s.votes("spring")] == ["e1"]
    with pytest.raises(InputError, match="unknown experiment"):
        s.record_vote("winter", "a", "b")


def test_concurrent_writers_with_a_dropped_connection(pg_store, postgres_db):
    s = pg_store
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def worker(t: int) -> None:
        try:
            start.wait()
            for k in range(100):
                s.record_vote("spring", "a", "b", event_id=f"t{t}-{k}", user_id=f"u{t}")
                if t == 0 and k == 50:
                    terminate_connections(postgres_db)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors[0]
    assert s.counts()["votes"] == 800


def test_cli_and_http_on_a_dsn(pg_store, postgres_db):
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from app.ab.api import make_router

    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    outs = []
    for _ in range(2):
        p = subprocess.run([sys.executable, "-m", "app.cli", "ab", "vote", "spring", "c", "a", "--event-id", "cli-1",
                            "--db", postgres_db, "--json"], env=env, capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        outs.append(json.loads(p.stdout)["duplicate"])
    assert outs == [False, True]
    web = FastAPI()
    web.include_router(make_router(postgres_db), prefix="/api/ab")
    client = TestClient(web)
    r = client.post("/api/ab/vote", json={"experiment_id": "spring", "winner_id": "c", "loser_id": "a",
                                          "event_id": "cli-1"})
    assert r.status_code == 200 and r.json()["duplicate"]
    res = client.get("/api/ab/experiments/spring/results").json()
    assert res["votes"]["n_votes"] == 1


def test_another_applications_schema_is_refused(postgres_db):
    import psycopg

    from app.ab.db import PG_SCHEMA
    from app.ab.store import ABStore

    with psycopg.connect(postgres_db, autocommit=True) as con:
        con.execute(f"CREATE SCHEMA {PG_SCHEMA}")
        con.execute(f"CREATE TABLE {PG_SCHEMA}.invoices (id int)")
    with pytest.raises(InputError, match="other tables"):
        ABStore(postgres_db)
    with psycopg.connect(postgres_db, autocommit=True) as con:
        tables = con.execute("SELECT table_name FROM information_schema.tables WHERE table_schema=%s",
                             (PG_SCHEMA,)).fetchall()
    assert tables == [("invoices",)]


def test_unreachable_server_is_one_line(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "ATELIER_AB_RETRY_S": "0.5"}
    dsn = f"postgresql://nobody@/nodb?host={tmp_path}&port=1"
    p = subprocess.run([sys.executable, "-m", "app.cli", "ab", "list", "--db", dsn], env=env, capture_output=True,
                       text=True, timeout=60)
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.returncode == 2 and len(lines) == 1 and "PostgreSQL" in lines[0], p.stderr[-1000:]
