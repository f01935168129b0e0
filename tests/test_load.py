"""A small version of benchmarks/load_test.py: concurrent clients, retries, and exact counts, in SQLite and
in PostgreSQL (a real server: `tests/postgres_tools.py`), including a dropped connection and a server
restart in the middle of a run."""
from __future__ import annotations

import importlib.util
import sqlite3
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CLIENTS, PER_CLIENT = 8, 100


def _load_test_module():
    spec = importlib.util.spec_from_file_location("atelier_load_test", ROOT / "benchmarks" / "load_test.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def lt():
    return _load_test_module()


def _assert_exact(report: dict) -> None:
    assert report["errors"] == 0, report["first_errors"]
    assert report["impressions_sent"] == CLIENTS * PER_CLIENT // 2 == report["impressions_stored"]
    assert report["votes_sent"] == CLIENTS * PER_CLIENT // 2 == report["votes_stored"]
    assert report["lost"] == report["doubled"] == report["unexpected"] == 0
    assert report["requests"] == CLIENTS * (PER_CLIENT + PER_CLIENT // 10)  # the retries were really sent
    assert 0 < report["p50_ms"] <= report["p95_ms"] <= report["p99_ms"]


def test_plan_is_seeded_and_has_retries(lt):
    a, b = lt.plan(3, 40, seed=1), lt.plan(3, 40, seed=1)
    assert a == b and a != lt.plan(4, 40, seed=1)
    ids = [p["event_id"] for _, p in a]
    assert len(ids) == 44 and len(set(ids)) == 40


def test_audit_sees_lost_and_doubled(lt, tmp_path):
    """The checker itself can fail: drop one event and double another, and it must say so."""
    db = tmp_path / "ab.sqlite"
    store = lt.prepare_store(db)
    events = lt.plan(0, 10, seed=0)
    for kind, p in events[1:]:  # the first event is lost
        if kind == "impression":
            store.record_impression(p["experiment_id"], p["creative_id"], event_id=p["event_id"])
        else:
            store.record_vote(p["experiment_id"], p["winner_id"], p["loser_id"], event_id=p["event_id"])
    with sqlite3.connect(db) as con:  # a doubled row, as a store without a primary key would keep
        con.execute("CREATE TABLE votes2 AS SELECT * FROM votes")
        con.execute("DROP TABLE votes")
        con.execute("ALTER TABLE votes2 RENAME TO votes")
        con.execute("INSERT INTO votes SELECT * FROM votes LIMIT 1")
    counts = lt.audit(db, 1, 10, seed=0)
    assert counts["lost"] == 1 and counts["doubled"] == 1


def test_store_under_concurrent_clients(lt, tmp_path):
    report = lt.store_load(tmp_path / "ab.sqlite", CLIENTS, PER_CLIENT, seed=0)
    lt.print_report(report)
    _assert_exact(report)


def test_http_vote_endpoint_under_concurrent_clients(lt, tmp_path):
    """The served app (UI + /api/ab) on a free loopback port: every vote and impression lands exactly once."""
    report = lt.http_load(tmp_path / "ab.sqlite", CLIENTS, PER_CLIENT, seed=0, out_dir=tmp_path / "ui")
    lt.print_report(report)
    assert report["url"].startswith("http://127.0.0.1:")
    _assert_exact(report)


def test_postgres_store_under_concurrent_clients(lt, postgres_db):
    report = lt.store_load(postgres_db, CLIENTS, PER_CLIENT, seed=0)
    lt.print_report(report)
    assert report["backend"] == "postgresql"
    _assert_exact(report)


def test_postgres_http_under_concurrent_clients(lt, postgres_db, tmp_path):
    report = lt.http_load(postgres_db, CLIENTS, PER_CLIENT, seed=0, out_dir=tmp_path / "ui")
    lt.print_report(report)
    _assert_exact(report)


@pytest.mark.parametrize("target", ["store", "http"])
def test_postgres_dropped_connections_and_a_restart_lose_nothing(lt, postgres_server, postgres_db, tmp_path, target):
    """Every connection is cut a third of the way in and the server restarted at two thirds; the store
    retries on fresh connections and the HTTP clients retry with the same event_id: still exact."""
    if not postgres_server.restartable:
        pytest.skip("$ATELIER_TEST_POSTGRES names an external server: the test cannot restart it")
    chaos = lt.chaos_events(postgres_server, postgres_db)
    if target == "store":
        report = lt.store_load(postgres_db, CLIENTS, PER_CLIENT, seed=0, chaos=chaos)
    else:
        report = lt.http_load(postgres_db, CLIENTS, PER_CLIENT, seed=0, out_dir=tmp_path / "ui", chaos=chaos)
    lt.print_report(report)
    assert [c["event"] for c in report["chaos"]] == ["connections dropped", "server restarted"]
    _assert_exact(report)


# --- UI queue: sessions are served in order, and one session's cancel leaves the others alone -----------
@pytest.mark.slow  # a served app and three HTTP clients, about 1 min; the waiting line itself: tests/test_ui_waiting.py
def test_ui_generation_queue_is_fifo_over_http(lt, tmp_path, monkeypatch):
    """Three sessions ask for images over HTTP at once; they take their turns at the pipelines
    (`engine.generation_turn`, the waiting line) in the order they reached it, one at a time, each in its
    own folder.
    (A waiter's Cancel leaving the line is tested in tests/test_ui_waiting.py: since Gradio admits
    the jobs and they wait in Atelier's own line, a client-side cancel no longer reaches a waiter.)"""
    import threading
    import time

    from gradio_client import Client
    from PIL import Image

    from app.ui import engine
    from app.ui.workspace import Unavailable
    from core.creative import Creative

    runs: list[tuple[str, float, float]] = []
    arrived: list[int] = []
    lock = threading.Lock()
    real_turn = engine.generation_turn

    def slow_product_images(ws, condition, out_dir, *, category, n_candidates, seed):
        """A stand-in for the diffusion pipeline: takes its turn, takes a while, records who ran when."""
        with lock:
            arrived.append(seed)
        with real_turn():
            t0 = time.time()
            time.sleep(1.0)
            Image.new("RGB", (8, 8), (seed % 256, 0, 0)).save(out_dir / "c.png")
            with lock:
                runs.append((out_dir.parent.name, seed, t0))
        return [Creative("c", "product", "fake", "p", seed, 1, 1.0, 8, 8, image_path="c.png")]

    monkeypatch.setattr(engine, "product_images", slow_product_images)
    app = lt.build_server_app(tmp_path / "ui", tmp_path / "ab.sqlite")
    ws = app.state.workspace
    try:
        user = sorted(ws.shop().users)[0]
        ws.recommender("ease")  # fit once now, so the jobs below only wait for each other
    except Unavailable as e:
        pytest.skip(str(e))
    with lt.LoopbackServer(app) as srv:
        url = f"http://127.0.0.1:{srv.port}/"
        clients = [Client(url, verbose=False, download_files=False) for _ in range(3)]
        jobs = []
        for k, c in enumerate(clients):  # seeds 10, 11, 12 tell the sessions apart
            jobs.append(c.submit(user, None, "ease", "any", 10 + k, 1, api_name="/shopper_generate"))
            time.sleep(0.4)
        results = [j.result(timeout=120) for j in jobs]
    assert all(str(r[0]).startswith("Made 1 image") for r in results), results
    seeds = [s for _, s, _ in runs]
    assert sorted(seeds) == [10, 11, 12] and seeds == arrived, f"came {arrived}, ran {seeds}: not first come, first served"
    starts = [t for _, _, t in runs]
    assert all(b - a >= 0.95 for a, b in zip(starts, starts[1:])), "two jobs held the pipelines at once"
    assert len({sid for sid, _, _ in runs}) == 3  # each session wrote into its own folder
