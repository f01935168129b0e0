"""A bounded, loopback-only load test of the A/B service: many clients at once, then exact counts.

Each client sends impressions (through `/choose`), clicks and votes, and re-sends a share of its
requests with the same `event_id`, the way a client retries after a timeout. Afterwards the rows
in SQLite must equal the distinct events sent: nothing lost, nothing doubled. With `http=True`
the requests go through a real uvicorn server on 127.0.0.1 serving the same router the Gradio
app mounts; with `http=False` the clients call the store directly from their threads.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import InputError

from .service import serve_once
from .store import ABStore

N_CREATIVES = 4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Server:
    """uvicorn on a loopback port in a background thread, serving the A/B router under /api/ab."""

    def __init__(self, store: ABStore):
        import uvicorn
        from fastapi import FastAPI

        from .api import make_router

        web = FastAPI()
        web.include_router(make_router(store), prefix="/api/ab")
        self.port = _free_port()
        self.server = uvicorn.Server(uvicorn.Config(web, host="127.0.0.1", port=self.port, log_level="warning",
                                                    access_log=False))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError("the load-test server did not start")
            time.sleep(0.02)
        return f"http://127.0.0.1:{self.port}/api/ab"

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


FEEDBACK_CYCLE = ("choice", "click", "like", "skip", "impression")


def _client(k: int, n_events: int, retry_share: float, seed: int, send, sent: dict, lat: list,
            feedback: bool = False) -> None:
    """One client: impressions, a click on every 4th, a vote every 2nd; some requests sent twice.
    With `feedback`, every vote is followed by one feedback event (choice, click, like, skip, impression
    in turn) of the same shopper."""
    rng = np.random.default_rng([seed, k])
    creatives = [f"c{j}" for j in range(N_CREATIVES)]
    for e in range(n_events):
        user = f"user{k}-{e % 50}"
        kind = "vote" if e % 2 else "impression"
        event_id = f"{k}-{e}-{uuid.uuid4().hex[:8]}"
        if kind == "impression":
            payload = {"experiment_id": "load", "user_id": user, "event_id": event_id}
        else:
            a, b = rng.choice(N_CREATIVES, size=2, replace=False)
            payload = {"experiment_id": "load", "winner_id": creatives[a], "loser_id": creatives[b],
                       "user_id": user, "event_id": event_id}
        for attempt in range(2 if rng.random() < retry_share else 1):
            t0 = time.perf_counter()
            out = send(kind, payload)
            lat.append(time.perf_counter() - t0)
        sent[kind] += 1
        if kind == "impression" and e % 4 == 0:
            click = {"impression_id": out["impression_id"], "event_id": f"click-{event_id}"}
            for attempt in range(2 if rng.random() < retry_share else 1):
                t0 = time.perf_counter()
                send("click", click)
                lat.append(time.perf_counter() - t0)
            sent["click"] += 1
        if feedback and kind == "vote":
            fk = FEEDBACK_CYCLE[(e // 2) % len(FEEDBACK_CYCLE)]
            ids = [creatives[a], creatives[b]] if fk == "choice" else [creatives[a]]
            fb = {"experiment_id": "load", "user_id": user, "kind": fk, "creative_ids": ids,
                  "event_id": f"fb-{event_id}"}
            for attempt in range(2 if rng.random() < retry_share else 1):
                t0 = time.perf_counter()
                send("feedback", fb)
                lat.append(time.perf_counter() - t0)
            sent["feedback"] += 1


def run_load_test(
    db: str | Path,
    *,
    clients: int = 20,
    events: int = 500,
    http: bool = True,
    retry_share: float = 0.05,
    seed: int = 0,
    feedback: bool = False,
) -> dict[str, Any]:
    """Run the load test on a new database at `db`; returns sent vs stored counts and latency percentiles."""
    db = Path(db)
    if db.exists():
        raise InputError("the load test needs a new database file; this one exists", db)
    if clients < 1 or events < 1 or not 0 <= retry_share <= 1:
        raise InputError("clients and events must be >= 1 and retry_share in [0, 1]")
    store = ABStore(db)
    store.create_experiment("load")
    for j in range(N_CREATIVES):
        store.add_creative("load", f"c{j}")

    def direct(kind: str, payload: dict) -> dict:
        if kind == "impression":
            return serve_once(store, payload["experiment_id"], user_id=payload["user_id"],
                              event_id=payload["event_id"])
        if kind == "click":
            return {"click_id": store.record_click(impression_id=payload["impression_id"],
                                                   event_id=payload["event_id"])}
        if kind == "feedback":
            return {"event_id": store.record_feedback(payload["experiment_id"], payload["user_id"], payload["kind"],
                                                      payload["creative_ids"], event_id=payload["event_id"])}
        return {"vote_id": store.record_vote(payload["experiment_id"], payload["winner_id"], payload["loser_id"],
                                             user_id=payload["user_id"], event_id=payload["event_id"])}

    sent = [{"impression": 0, "click": 0, "vote": 0, "feedback": 0} for _ in range(clients)]
    lats: list[list[float]] = [[] for _ in range(clients)]
    errors: list[BaseException] = []

    def worker(k: int, send) -> None:
        try:
            _client(k, events, retry_share, seed, send, sent[k], lats[k], feedback)
        except BaseException as e:  # reported below; a failed client must fail the test
            errors.append(e)

    def run_all(make_send) -> float:
        threads = [threading.Thread(target=worker, args=(k, make_send())) for k in range(clients)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return time.perf_counter() - t0

    if http:
        import httpx

        with _Server(store) as base:
            paths = {"impression": "/choose", "click": "/click", "vote": "/vote", "feedback": "/feedback"}

            def make_send():
                client = httpx.Client(base_url=base, timeout=60.0)

                def send(kind: str, payload: dict) -> dict:
                    r = client.post(paths[kind], json=payload)
                    r.raise_for_status()
                    return r.json()

                return send

            seconds = run_all(make_send)
    else:
        seconds = run_all(lambda: direct)
    if errors:
        raise errors[0]
    counts = store.counts(feedback=True)
    kinds = ("impression", "click", "vote") + (("feedback",) if feedback else ())
    expected = {k: sum(s[k] for s in sent) for k in kinds}
    stored = {"impression": counts["impressions"], "click": counts["clicks"], "vote": counts["votes"],
              "feedback": counts["feedback"]}
    stored = {k: stored[k] for k in kinds}
    lat = np.array([x for lst in lats for x in lst]) * 1000.0
    return {
        "transport": "http (uvicorn, 127.0.0.1)" if http else "direct (threads)",
        "clients": clients,
        "events_per_client": events,
        "retry_share": retry_share,
        "requests": int(lat.size),
        "seconds": round(seconds, 3),
        "requests_per_s": round(lat.size / seconds, 1),
        "expected": expected,
        "stored": stored,
        "lost": {k: max(0, expected[k] - stored[k]) for k in expected},
        "doubled": {k: max(0, stored[k] - expected[k]) for k in expected},
        "exact": expected == stored,
        "latency_ms": {f"p{q}": round(float(np.percentile(lat, q)), 2) for q in (50, 90, 95, 99)}
        | {"max": round(float(lat.max()), 2)},
    }
