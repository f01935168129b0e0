"""Bounded loopback load test of the A/B store and the served vote/impression API: nothing lost, nothing doubled.

N concurrent clients each send M events (alternating impressions and pairwise votes, every one
with its own `event_id`; every 10th event is sent a second time, as a client retrying after a
timeout would). Afterwards the database must hold exactly one row per distinct event id: zero
lost, zero doubled. Each backend (SQLite; PostgreSQL, a server started here with Debian's
binaries unless --postgres names one) is run straight against `ABStore` from threads, and over
HTTP against the real `atelier serve` app (Gradio UI + `/api/ab`) on a free 127.0.0.1 port.
With PostgreSQL, `--chaos` also cuts every connection a third of the way in and restarts the
server two thirds in; clients retry a failed request with the same event_id.

    python benchmarks/load_test.py                         # 20 clients x 500 events, every row
    python benchmarks/load_test.py --clients 8 --per-client 100 --target store --backend sqlite

Prints counts and latency percentiles (ms) and writes `benchmarks/results/load_test.json`.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

EXPERIMENT = "load"
CREATIVES = ("c0", "c1", "c2", "c3")
RETRY_EVERY = 10  # every 10th event is sent twice with the same event_id

Send = Callable[[str, dict], None]  # (kind, payload) -> None; raises on failure


def plan(client: int, per_client: int, seed: int) -> list[tuple[str, dict]]:
    """The events one client sends, in order (retries included), from its own seeded generator."""
    rng = np.random.default_rng([seed, client])
    events: list[tuple[str, dict]] = []
    for k in range(per_client):
        event_id = f"cl{client:03d}-ev{k:05d}"
        if k % 2 == 0:
            payload = {"experiment_id": EXPERIMENT, "creative_id": CREATIVES[int(rng.integers(len(CREATIVES)))],
                       "user_id": f"u{client}", "event_id": event_id}
            kind = "impression"
        else:
            w, loser = rng.choice(len(CREATIVES), size=2, replace=False)
            payload = {"experiment_id": EXPERIMENT, "winner_id": CREATIVES[int(w)], "loser_id": CREATIVES[int(loser)],
                       "user_id": f"u{client}", "event_id": event_id}
            kind = "vote"
        events.append((kind, payload))
        if k % RETRY_EVERY == RETRY_EVERY - 1:
            events.append((kind, payload))  # the retry: must be recorded once
    return events


def prepare_store(db: Path):
    """A fresh A/B store with one experiment of four creatives."""
    from app.ab.store import ABStore

    store = ABStore(db)
    store.create_experiment(EXPERIMENT)
    for c in CREATIVES:
        store.add_creative(EXPERIMENT, c)
    return store


def run_clients(make_sender: Callable[[int], Send], clients: int, per_client: int, seed: int,
                chaos: list[tuple[float, str, Callable[[], None]]] = ()) -> dict:
    """Start all clients together, each sending its plan; returns latencies, errors and wall time.

    `chaos`: (share of all requests sent, name, action): each action runs once, in its own thread, when
    that share of the requests has been sent (a dropped connection, a server restart)."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[str] = []
    start = threading.Barrier(clients + 1)
    total = clients * len(plan(0, per_client, seed))
    pending = sorted(chaos, key=lambda c: c[0])
    fired: list[dict] = []
    lock = threading.Lock()

    def maybe_chaos() -> None:
        sent = sum(len(x) for x in latencies)
        with lock:
            while pending and sent >= pending[0][0] * total:
                share, name, action = pending.pop(0)
                t0 = time.perf_counter()

                def go(name=name, action=action, share=share, t0=t0):
                    action()
                    fired.append({"event": name, "at_share": share, "seconds": round(time.perf_counter() - t0, 2)})
                threading.Thread(target=go, daemon=True).start()

    def client(i: int) -> None:
        send = make_sender(i)
        events = plan(i, per_client, seed)
        start.wait()
        for kind, payload in events:
            t0 = time.perf_counter()
            try:
                send(kind, payload)
            except Exception as e:  # noqa: BLE001 (a load test counts every failure, whatever it is)
                errors.append(f"client {i} {kind} {payload['event_id']}: {type(e).__name__}: {e}")
            latencies[i].append((time.perf_counter() - t0) * 1000.0)
            if pending:
                maybe_chaos()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    deadline = time.time() + 120
    while len(fired) < len(chaos) and time.time() < deadline:  # a restart still running at the end
        time.sleep(0.1)
    return {"latencies_ms": [x for per in latencies for x in per], "errors": errors, "seconds": wall,
            "chaos": fired}


def audit(db: Path | str, clients: int, per_client: int, seed: int) -> dict:
    """Compare what the clients meant to record with the rows in the database: lost and doubled events."""
    sent = {"impression": set(), "vote": set()}
    requests = 0
    for i in range(clients):
        for kind, payload in plan(i, per_client, seed):
            sent[kind].add(payload["event_id"])
            requests += 1
    from app.ab.store import ABStore

    store = ABStore(db)
    stored = {"impression": [r[1] for r in store.event_ids("impressions")],
              "vote": [r[1] for r in store.event_ids("votes")]}
    out: dict = {"requests": requests}
    for kind in ("impression", "vote"):
        rows = stored[kind]
        out[f"{kind}s_sent"] = len(sent[kind])
        out[f"{kind}s_stored"] = len(rows)
        out[f"{kind}s_lost"] = len(sent[kind] - set(rows))
        out[f"{kind}s_doubled"] = len(rows) - len(set(rows))
        out[f"{kind}s_unexpected"] = len(set(rows) - sent[kind])
    out["lost"] = out["impressions_lost"] + out["votes_lost"]
    out["doubled"] = out["impressions_doubled"] + out["votes_doubled"]
    out["unexpected"] = out["impressions_unexpected"] + out["votes_unexpected"]
    return out


def percentiles(latencies_ms: list[float]) -> dict:
    a = np.asarray(latencies_ms, dtype=np.float64)
    return {f"p{q}_ms": round(float(np.percentile(a, q)), 2) for q in (50, 95, 99)} | {
        "max_ms": round(float(a.max()), 2)}


# --- targets ---------------------------------------------------------------------------------
def store_load(db: Path | str, clients: int, per_client: int, seed: int = 0, chaos=()) -> dict:
    """Clients call `ABStore` directly from threads (each call is one transaction on its own connection)."""
    store = prepare_store(db)

    def make_sender(i: int) -> Send:
        def send(kind: str, p: dict) -> None:
            if kind == "impression":
                store.record_impression(p["experiment_id"], p["creative_id"], user_id=p["user_id"], event_id=p["event_id"])
            else:
                store.record_vote(p["experiment_id"], p["winner_id"], p["loser_id"], user_id=p["user_id"],
                                  event_id=p["event_id"])
        return send

    run = run_clients(make_sender, clients, per_client, seed, chaos)
    return _report("store", run, audit(db, clients, per_client, seed), clients, per_client, db)


class LoopbackServer:
    """The real `atelier serve` app (UI + A/B API) under uvicorn on a free 127.0.0.1 port, in a thread."""

    def __init__(self, app, *, auth: tuple[str, str] | None = None):
        import uvicorn

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))  # the OS picks a free port; loopback only
        self.port = self.sock.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", limit_concurrency=None, timeout_keep_alive=30)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> "LoopbackServer":
        self.thread.start()
        deadline = time.time() + 60
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError("the server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()


def build_server_app(out_dir: Path, db: Path | str):
    """What `atelier serve` builds: Gradio Blocks and the A/B router on one FastAPI app."""
    from app.ui.server import build_app
    from app.ui.workspace import UIConfig

    return build_app(UIConfig(out_dir=out_dir, ab_db=db))


def http_load(db: Path | str, clients: int, per_client: int, seed: int = 0, out_dir: Path | None = None,
              chaos=(), retry_s: float = 120.0) -> dict:
    """Clients POST to /api/ab/impression and /api/ab/vote of the served app over keep-alive HTTP; a
    dropped connection or a 5xx is retried with the same event_id (idempotent) until `retry_s` passed."""
    prepare_store(db)
    app = build_server_app(out_dir or Path(tempfile.mkdtemp(prefix="atelier-load-ui-")), db)
    with LoopbackServer(app) as srv:
        def make_sender(i: int) -> Send:
            conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)

            def send(kind: str, p: dict) -> None:
                nonlocal conn
                body = json.dumps(p)
                deadline = time.monotonic() + retry_s
                while True:
                    try:
                        conn.request("POST", f"/api/ab/{kind}", body=body, headers={"Content-Type": "application/json"})
                        resp = conn.getresponse()
                        data = resp.read()
                        if resp.status == 200:
                            return
                        if resp.status < 500 or time.monotonic() > deadline:
                            raise RuntimeError(f"HTTP {resp.status}: {data[:200]!r}")
                    except (ConnectionError, http.client.HTTPException, TimeoutError):
                        conn.close()  # a dropped connection: reconnect and retry (idempotent)
                        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
                        if time.monotonic() > deadline:
                            raise
                    time.sleep(0.05)
            return send

        run = run_clients(make_sender, clients, per_client, seed, chaos)
        report = _report("http", run, audit(db, clients, per_client, seed), clients, per_client, db)
        report["url"] = f"http://127.0.0.1:{srv.port}/api/ab"
    return report


def _report(target: str, run: dict, counts: dict, clients: int, per_client: int, db) -> dict:
    from app.ab.db import is_postgres

    lat = run["latencies_ms"]
    return {
        "target": target,
        "backend": "postgresql" if is_postgres(str(db)) else "sqlite",
        "chaos": run.get("chaos", []),
        "clients": clients,
        "events_per_client": per_client,
        **counts,
        "errors": len(run["errors"]),
        "first_errors": run["errors"][:5],
        "seconds": round(run["seconds"], 2),
        "requests_per_s": round(len(lat) / run["seconds"], 1) if run["seconds"] else None,
        **percentiles(lat),
    }


def print_report(r: dict) -> None:
    chaos = "".join(f", {c['event']} at {c['at_share']:.0%}" for c in r.get("chaos", []))
    print(f"[{r['backend']} {r['target']}{chaos}] {r['clients']} clients x {r['events_per_client']} events ({r['requests']} requests incl. "
          f"retries) in {r['seconds']} s = {r['requests_per_s']} req/s")
    print(f"  impressions sent {r['impressions_sent']} stored {r['impressions_stored']}  votes sent {r['votes_sent']} "
          f"stored {r['votes_stored']}  lost {r['lost']} doubled {r['doubled']} unexpected {r['unexpected']} "
          f"errors {r['errors']}")
    print(f"  latency p50 {r['p50_ms']} ms  p95 {r['p95_ms']} ms  p99 {r['p99_ms']} ms  max {r['max_ms']} ms")
    for e in r["first_errors"]:
        print(f"  error: {e}")


def postgres_for_benchmark(dsn: str | None):
    """(server, DSN of a fresh database): the server at `dsn`, or a throwaway cluster started here."""
    sys.path.insert(0, str(ROOT / "tests"))
    from postgres_tools import PostgresServer, create_database, start_cluster

    server = PostgresServer(dsn) if dsn else start_cluster()
    return server, create_database(server)


def chaos_events(server, dsn: str) -> list[tuple[float, str, Callable[[], None]]]:
    """A dropped connection a third of the way in and (for a server started here) a restart at two thirds."""
    from postgres_tools import terminate_connections

    events = [(1 / 3, "connections dropped", lambda: terminate_connections(dsn))]
    if server.restartable:
        events.append((2 / 3, "server restarted", lambda: server.restart(down_s=1.0)))
    return events


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=20)
    p.add_argument("--per-client", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--target", choices=("store", "http", "both"), default="both")
    p.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    p.add_argument("--postgres", default=os.environ.get("ATELIER_TEST_POSTGRES"),
                   help="DSN of a PostgreSQL server to use (default: start a throwaway cluster)")
    p.add_argument("--no-chaos", action="store_true", help="PostgreSQL: skip the dropped-connection/restart runs")
    p.add_argument("--json-out", type=Path, default=ROOT / "benchmarks" / "results" / "load_test.json")
    a = p.parse_args(argv)
    if not (1 <= a.clients <= 200 and 1 <= a.per_client <= 100_000):
        p.error("--clients must be 1..200 and --per-client 1..100000 (this is a bounded test)")
    from core.io import write_results_json

    targets = ("store", "http") if a.target == "both" else (a.target,)
    reports = []
    server = None
    with tempfile.TemporaryDirectory(prefix="atelier-load-") as tmp:
        if a.backend in ("sqlite", "both"):
            for t in targets:
                run = store_load if t == "store" else http_load
                kwargs = {} if t == "store" else {"out_dir": Path(tmp) / "ui"}
                reports.append(run(Path(tmp) / f"{t}.sqlite", a.clients, a.per_client, a.seed, **kwargs))
                print_report(reports[-1])
        if a.backend in ("postgresql", "both"):
            server, _ = postgres_for_benchmark(a.postgres)
            try:
                from postgres_tools import create_database

                for chaos in ((False, True) if not a.no_chaos else (False,)):
                    for t in targets:
                        dsn = create_database(server)
                        run = store_load if t == "store" else http_load
                        kwargs = {} if t == "store" else {"out_dir": Path(tmp) / "ui"}
                        events = chaos_events(server, dsn) if chaos else ()
                        reports.append(run(dsn, a.clients, a.per_client, a.seed, chaos=events, **kwargs))
                        print_report(reports[-1])
            finally:
                if server.restartable:
                    import shutil

                    server.stop()
                    shutil.rmtree(server.data_dir.parent, ignore_errors=True)
    ok = all(r["lost"] == 0 and r["doubled"] == 0 and r["unexpected"] == 0 and r["errors"] == 0 for r in reports)
    write_results_json(a.json_out, {"ok": ok, "cpu_count": os.cpu_count(), "command": "python benchmarks/load_test.py",
                                   "results": reports})
    print(f"{'OK' if ok else 'FAILED'}: zero lost and zero doubled events" if ok else "FAILED: see counts above")
    print(f"wrote {a.json_out.relative_to(ROOT) if a.json_out.is_relative_to(ROOT) else a.json_out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
