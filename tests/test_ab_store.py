"""The A/B store: exact counts under concurrent writers, idempotent retries, clear errors."""

from __future__ import annotations

import sqlite3
import threading

import numpy as np
import pytest

from app.ab import ABStore, preference_pairs, results, serve_once, write_pairs
from core.errors import InputError
from core.io import read_jsonl


@pytest.fixture
def store(tmp_path):
    s = ABStore(tmp_path / "ab.sqlite")
    s.create_experiment("hero", segment="navy-lovers")
    for k in range(3):
        s.add_creative("hero", f"c{k}", image_path=f"img/c{k}.png", prompt=f"prompt {k}")
    return s


def test_wal_mode_and_first_creative_is_control(store):
    con = sqlite3.connect(store.path)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()
    assert store.experiment("hero").control_id == "c0"


def test_concurrent_writers_lose_and_double_nothing(store):
    n_threads, n_writes = 8, 200
    errors: list[BaseException] = []
    start = threading.Barrier(n_threads)

    def worker(t: int) -> None:
        try:
            start.wait()
            for k in range(n_writes):
                c = f"c{(t + k) % 3}"
                imp = store.record_impression("hero", c, user_id=f"u{t}")
                if k % 4 == 0:
                    store.record_click(impression_id=imp)
                if k % 10 == 0:
                    store.record_vote("hero", c, f"c{(t + k + 1) % 3}", user_id=f"u{t}")
        except BaseException as e:  # surfaced below: a thread's exception must fail the test
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors[0]
    counts = store.counts()
    assert counts["impressions"] == n_threads * n_writes
    assert counts["clicks"] == n_threads * n_writes // 4
    assert counts["votes"] == n_threads * n_writes // 10
    arms = store.arms("hero")
    assert sum(a.impressions for a in arms) == n_threads * n_writes
    expected = {f"c{j}": 0 for j in range(3)}
    for t in range(n_threads):
        for k in range(n_writes):
            expected[f"c{(t + k) % 3}"] += 1
    assert {a.creative_id: a.impressions for a in arms} == expected


def test_retried_events_are_recorded_once(store):
    imp = store.record_impression("hero", "c1", event_id="imp-1")
    assert store.record_impression("hero", "c1", event_id="imp-1") == imp
    store.record_click(impression_id=imp)
    store.record_click(impression_id=imp)  # a second click on the same impression is not a second click
    store.record_vote("hero", "c1", "c2", event_id="v-1")
    store.record_vote("hero", "c1", "c2", event_id="v-1")
    c = store.counts()
    assert (c["impressions"], c["clicks"], c["votes"]) == (1, 1, 1)


def test_user_mistakes_are_input_errors(store, tmp_path):
    with pytest.raises(InputError, match="unknown experiment"):
        store.record_impression("nope", "c0")
    with pytest.raises(InputError, match="unknown creative"):
        store.record_impression("hero", "zz")
    with pytest.raises(InputError, match="two different"):
        store.record_vote("hero", "c0", "c0")
    with pytest.raises(InputError, match="already exists"):
        store.create_experiment("hero")
    with pytest.raises(InputError, match="unknown impression"):
        store.record_click(impression_id="missing")
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(InputError, match="not an A/B database"):
        ABStore(junk)


def test_serve_results_and_pair_export(store, tmp_path):
    rng = np.random.default_rng(0)
    for _ in range(30):
        served = serve_once(store, "hero", user_id="u", rng=rng)
        if served["creative_id"] == "c2":
            store.record_click(impression_id=served["impression_id"])
    store.record_vote("hero", "c2", "c0")
    store.record_vote("hero", "c2", "c1")
    res = results(store, "hero", n_samples=2000)
    assert sum(r["impressions"] for r in res["creatives"]) == 30
    assert res["votes"]["n_votes"] == 2 and res["votes"]["ranking"][0]["creative_id"] == "c2"
    assert res["creatives"][0]["prob_beat_control"] is None  # c0 is the control
    pairs = preference_pairs(store, "hero", source="votes")
    stats = write_pairs(pairs, tmp_path / "pairs.jsonl")
    rows = read_jsonl(tmp_path / "pairs.jsonl")
    assert stats["written"] == len(rows) == 2
    assert {r["chosen"] for r in rows} == {"img/c2.png"} and rows[0]["prompt"] == "prompt 2"


def test_http_api_round_trip_and_schema(store):
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from app.ab.api import make_router

    web = FastAPI()
    web.include_router(make_router(store), prefix="/api/ab")
    client = TestClient(web)
    r = client.post("/api/ab/choose", json={"experiment_id": "hero", "user_id": "u1", "event_id": "e1"})
    assert r.status_code == 200, r.text
    chosen = r.json()
    assert chosen["creative_id"] in {"c0", "c1", "c2"} and chosen["impression_id"] == "e1"
    assert client.post("/api/ab/choose", json={"experiment_id": "hero", "event_id": "e1"}).status_code == 200
    assert client.post("/api/ab/click", json={"impression_id": "e1"}).status_code == 200
    peek = client.post("/api/ab/choose", json={"experiment_id": "hero", "record_impression": False}).json()
    assert peek["impression_id"] is None and peek["image_path"].startswith("img/")
    r = client.post("/api/ab/vote", json={"experiment_id": "hero", "winner_id": "c1", "loser_id": "c0"})
    assert r.status_code == 200
    pair = client.get("/api/ab/experiments/hero/pair").json()
    assert pair["left_id"] != pair["right_id"]
    res = client.get("/api/ab/experiments/hero/results").json()
    assert sum(c["impressions"] for c in res["creatives"]) == 1  # the retried choose was not double-counted
    assert sum(c["clicks"] for c in res["creatives"]) == 1 and res["votes"]["n_votes"] == 1
    assert client.post("/api/ab/choose", json={"experiment_id": "nope"}).status_code == 404
    assert client.post("/api/ab/vote", json={"experiment_id": "hero", "winner_id": "c1", "loser_id": "c1"}).status_code == 400
    assert client.post("/api/ab/vote", json={"experiment_id": "hero", "winner_id": "c1"}).status_code == 422
    schema = client.get("/openapi.json").json()
    assert {"/api/ab/choose", "/api/ab/click", "/api/ab/vote", "/api/ab/impression",
            "/api/ab/experiments/{experiment_id}/results"} <= set(schema["paths"])
    assert "ResultsResponse" in schema["components"]["schemas"]


def test_cli_round_trip(tmp_path):
    import json

    from typer.testing import CliRunner

    from app.commands.ab import app as ab_app

    db = str(tmp_path / "cli.sqlite")
    img = tmp_path / "a.png"
    img.write_bytes(b"png")
    run = CliRunner().invoke

    def ok(*args: str) -> str:
        res = run(ab_app, [*args, "--db", db])
        assert res.exit_code == 0, (args, res.output, res.exception)
        return res.output

    ok("create", "exp", "--segment", "classic")
    ok("add", "exp", "a", "--image", str(img), "--prompt", "navy shirt")
    ok("add", "exp", "b", "--image", str(img), "--prompt", "navy shirt")
    served = json.loads(ok("serve-once", "exp", "--user", "u1", "--seed", "3", "--json"))
    ok("click", served["impression_id"])
    ok("vote", "exp", "b", "a")
    res = json.loads(ok("results", "exp", "--json"))
    assert sum(c["clicks"] for c in res["creatives"]) == 1 and res["votes"]["ranking"][0]["creative_id"] == "b"
    out = tmp_path / "pairs.jsonl"
    assert json.loads(ok("export-pairs", "exp", "--out", str(out), "--json"))["written"] == 1
    assert json.loads(out.read_text())["chosen_id"] == "b"
    bad = run(ab_app, ["vote", "exp", "b", "zz", "--db", db])
    assert isinstance(bad.exception, InputError)  # the root CLI prints it as one line, exit code 2


@pytest.mark.parametrize("http", [False, True])
def test_load_test_counts_are_exact_with_retries(tmp_path, http):
    from app.ab.loadtest import run_load_test

    res = run_load_test(tmp_path / "load.sqlite", clients=4, events=40, http=http, retry_share=0.2)
    assert res["exact"], res
    assert res["expected"] == {"impression": 80, "click": 40, "vote": 80}
    assert res["requests"] > 200  # retries were really sent twice
    assert 0 < res["latency_ms"]["p50"] <= res["latency_ms"]["p99"]


def test_pairs_from_bradley_terry_and_from_ctr(store):
    for _ in range(3):
        store.record_vote("hero", "c2", "c0")
        store.record_vote("hero", "c2", "c1")
    bt = preference_pairs(store, "hero", source="bradley-terry", min_prob=0.7)
    assert bt and all(p["chosen_id"] == "c2" and p["weight"] >= 0.7 for p in bt)
    for k in range(400):
        imp = store.record_impression("hero", f"c{k % 3}")
        if k % 3 == 1 and k % 2 == 0:  # c1 gets clicks, the others none
            store.record_click(impression_id=imp)
    ctr = preference_pairs(store, "hero", source="ctr", min_prob=0.95)
    assert {(p["chosen_id"], p["rejected_id"]) for p in ctr} == {("c1", "c0"), ("c1", "c2")}
    with pytest.raises(InputError, match="pair source"):
        preference_pairs(store, "hero", source="likes")


def test_rank_command_orders_by_reward_and_feeds_an_experiment(tmp_path, monkeypatch):
    import json

    from PIL import Image
    from typer.testing import CliRunner

    import finetune.reward_loop as reward_loop
    from app.commands.ab import app as ab_app
    from core.creative import Creative, Manifest

    manifest = Manifest(tmp_path / "manifest.jsonl")
    for k, level in enumerate([40, 200, 120]):
        Image.new("RGB", (8, 8), (level, level, level)).save(tmp_path / f"c{k}.png")
        manifest.append(Creative(creative_id=f"c{k}", pipeline="product", base_model="m", prompt="p", seed=k,
                                 steps=1, guidance=1.0, width=8, height=8, image_path=f"c{k}.png"))

    class Brightness:  # stands in for the reward model: brighter = more clicks
        def __call__(self, images, prompt=""):
            return [float(np.asarray(im.convert("L")).mean()) / 255 for im in images]

    monkeypatch.setattr(reward_loop.AudienceJudge, "for_segment", classmethod(lambda cls, *a, **k: Brightness()))
    db = str(tmp_path / "r.sqlite")
    res = CliRunner().invoke(ab_app, ["rank", "--manifest", str(manifest.path), "--segment", "classic", "--top", "2",
                                      "--add-to", "top2", "--db", db, "--json"])
    assert res.exit_code == 0, (res.output, res.exception)
    out = json.loads(res.output)
    assert [r["creative_id"] for r in out["ranking"]] == ["c1", "c2"]
    assert [a.creative_id for a in ABStore(db).arms("top2")] == ["c1", "c2"]
