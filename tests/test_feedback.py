"""Feedback on creatives: events move the taste the right way, are stored once, and survive a restart."""
from __future__ import annotations

import time

import numpy as np
import pytest

from core.errors import InputError
from recommenders.catalog import Catalog, Item
from recommenders.feedback import (
    Choice,
    TastePosterior,
    event_choice,
    features,
    history_hessian,
    history_posterior,
    newton_fit,
    pair_information,
    pick_pair,
)
from recommenders.taste import attribute_table, fit_attribute_taste

COLORS = ["blue", "green", "red"]
PATTERNS = ["dotted", "solid"]


def _catalog() -> Catalog:
    items = [Item(f"{c}{k}", f"{c} shirt", "shirt", {"color": c, "pattern": PATTERNS[k % 2]})
             for c in COLORS for k in range(6)]
    return Catalog(items)


def _flat_prior(catalog) -> TastePosterior:
    _, vocab, _ = attribute_table(catalog)
    p = sum(len(v) for v in vocab.values())
    return TastePosterior.from_prior(vocab, np.zeros(p), np.eye(p), "test")


RED = {"category": "shirt", "color": "red", "pattern": "solid"}
BLUE = {"category": "shirt", "color": "blue", "pattern": "solid"}


def test_a_choice_moves_the_taste_toward_the_winner():
    post = _flat_prior(_catalog())
    w0 = post.weights()["color"]
    after = post.update([Choice(RED, (BLUE,))])
    w1 = after.weights()["color"]
    assert w1["red"] > w0["red"] and w1["blue"] < w0["blue"]
    assert abs(w1["green"] - w0["green"]) < abs(w1["red"] - w0["red"])  # green was not in the question
    assert after.weights()["pattern"] == pytest.approx(post.weights()["pattern"], abs=1e-9)  # same pattern shown


def test_click_like_and_skip_mean_over_or_under_nothing():
    post = _flat_prior(_catalog())
    up = post.update([event_choice("click", [RED])]).weights()["color"]["red"]
    down = post.update([event_choice("skip", [RED])]).weights()["color"]["red"]
    assert down < 1 / 3 < up
    assert event_choice("impression", [RED]) is None
    with pytest.raises(InputError):
        event_choice("choice", [RED])
    with pytest.raises(InputError):
        event_choice("nod", [RED])


def test_newton_reaches_the_map_and_agrees_with_the_batch_fit():
    catalog = _catalog()
    _, vocab, _ = attribute_table(catalog)
    p = sum(len(v) for v in vocab.values())
    choices = [Choice(RED, (BLUE,))] * 3 + [Choice(BLUE, (RED,))]
    # the batch fit's prior is l2 * |theta|^2, i.e. precision 2 * l2
    mean, _ = newton_fit(np.zeros(p), 2 * 0.5 * np.eye(p), choices, vocab, steps=50, tol=1e-14)
    batch = fit_attribute_taste([[]], catalog, l2=0.5, choices=[choices])[0]
    post = TastePosterior.from_prior(vocab, mean, np.eye(p), "x")
    for kind in ("color", "pattern"):
        for v, w in batch.weights[kind].items():
            assert post.weights()[kind][v] == pytest.approx(w, abs=1e-4)


def test_fit_without_choices_is_unchanged_and_with_choices_moves():
    catalog = _catalog()
    hist = [["blue0", "blue1", "green0", "blue2"]]
    a = fit_attribute_taste(hist, catalog, l2=0.1)[0].weights
    b = fit_attribute_taste(hist, catalog, l2=0.1, choices=[[]])[0].weights
    c = fit_attribute_taste(hist, catalog, l2=0.1, choices=[[Choice(RED, (BLUE,))] * 4])[0].weights
    assert a == b
    assert c["color"]["red"] > a["color"]["red"]


def test_history_hessian_is_the_exact_second_derivative():
    torch = pytest.importorskip("torch")
    catalog = _catalog()
    hist = ["blue0", "red1", "blue2", "green3", "blue4"]
    post = history_posterior(hist, catalog, l2=0.1, recency=1.0)
    ids, vocab, codes = attribute_table(catalog)
    x = torch.tensor(features([{"category": catalog[i].category, **catalog[i].attributes} for i in ids], vocab))
    seq = [ids.index(i) for i in hist]
    n = len(seq)
    wt = torch.exp(-1.0 * (n - 1 - torch.arange(n, dtype=torch.float64)) / n)

    def nll(t):
        u, left, ll = x @ t, torch.ones(len(ids), dtype=torch.bool), 0.0
        for s, j in enumerate(seq):
            ll = ll + wt[s] * (u[j] - torch.logsumexp(u[left], 0))
            left = left.clone()
            left[j] = False
        return -ll + 0.1 * (t ** 2).sum()

    h = torch.autograd.functional.hessian(nll, torch.tensor(post.mean)).numpy()
    assert np.abs(h - history_hessian(hist, catalog, post.mean, l2=0.1, recency=1.0)).max() < 1e-9


def test_one_event_updates_within_50_ms_on_the_demo_shop():
    from recommenders.condition import TASTE_FIT
    from recommenders.shop import DemoShop

    shop = DemoShop.load()
    user = sorted(shop.users)[-1]
    post = history_posterior(shop.history(user), shop.catalog, **TASTE_FIT)
    for k in range(10):  # ten events on top of each other, each timed
        a, b = dict(RED, style="casual"), dict(BLUE, style="casual")
        t0 = time.perf_counter()
        post = post.update([Choice(a, (b,))])
        assert time.perf_counter() - t0 < 0.05
    assert len(post.choices) == 10


def test_information_prefers_a_telling_pair_and_policies_pick_two():
    catalog = _catalog()
    _, vocab, _ = attribute_table(catalog)
    post = _flat_prior(catalog)
    pool = [RED, BLUE, dict(RED), {"category": "shirt", "color": "green", "pattern": "dotted"}]
    x = features(pool, vocab)
    samples = post.sample(256, np.random.default_rng(0))
    info = pair_information(np.array([[0, 1], [0, 2]]), x, samples, vocab)
    assert info[0] > 0.01 and abs(info[1]) < 1e-9  # red vs blue tells something; red vs red nothing
    rng = np.random.default_rng(1)
    for policy in ("elicit", "random", "exploit"):
        a, b = pick_pair(policy, post, x, rng)
        assert a != b and 0 <= a < len(pool) and 0 <= b < len(pool)
    assert pick_pair("elicit", post, x, rng) in {(0, 1), (1, 2), (0, 3), (1, 3), (2, 3), (0, 1)} - {(0, 2)}
    with pytest.raises(InputError):
        pick_pair("greedy", post, x, rng)


def _demo_store(path, user: str):
    from app.ab.store import ABStore

    store = ABStore(path)
    store.create_experiment("fb")
    store.add_creative("fb", "red", record={"attributes": {"category": "shirt", "color": "red", "pattern": "solid",
                                                           "style": "casual"}})
    store.add_creative("fb", "navy", record={"attributes": {"category": "shirt", "color": "navy", "pattern": "solid",
                                                            "style": "casual"}})
    return store


def test_stored_events_update_the_condition_and_survive_a_restart(tmp_path):
    from app.ab.feedback import shopper_posterior
    from app.ab.store import ABStore, EventConflict

    db = tmp_path / "ab.sqlite"
    user = "u1200"
    store = _demo_store(db, user)
    base, before, _ = shopper_posterior(store, user)
    for k in range(4):
        assert not store.record_feedback("fb", user, "choice", ["red", "navy"], event_id=f"e{k}").duplicate
    assert store.record_feedback("fb", user, "choice", ["red", "navy"], event_id="e0").duplicate  # a retry
    with pytest.raises(EventConflict):
        store.record_feedback("fb", user, "choice", ["navy", "red"], event_id="e0")
    with pytest.raises(InputError):
        store.record_feedback("fb", user, "choice", ["red", "ghost"])
    store.record_feedback("fb", user, "impression", ["navy"])
    _, after, events = shopper_posterior(store, user)
    assert len(events) == 5 and len(after.choices) == 4
    assert after.weights()["color"]["red"] > before.weights()["color"]["red"]
    assert after.weights()["color"]["navy"] < before.weights()["color"]["navy"]
    del store
    _, again, _ = shopper_posterior(ABStore(db), user)  # a new process would read the same rows
    assert np.array_equal(again.mean, after.mean)


def test_a_vote_by_a_known_shopper_updates_her(tmp_path):
    from app.ab.feedback import shopper_posterior

    store = _demo_store(tmp_path / "ab.sqlite", "u1199")
    _, before, _ = shopper_posterior(store, "u1199")
    store.record_vote("fb", "navy", "red", user_id="u1199")
    _, after, _ = shopper_posterior(store, "u1199")
    assert after.weights()["color"]["navy"] > before.weights()["color"]["navy"]


def test_feedback_api_records_once_and_answers_the_condition(tmp_path):
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from app.ab.api import make_router

    store = _demo_store(tmp_path / "ab.sqlite", "u1200")
    web = FastAPI()
    web.include_router(make_router(store), prefix="/api/ab")
    client = TestClient(web)
    body = {"experiment_id": "fb", "user_id": "u1200", "kind": "choice", "creative_ids": ["red", "navy"],
            "event_id": "k1"}
    assert client.post("/api/ab/feedback", json=body).json() == {"event_id": "k1", "duplicate": False}
    assert client.post("/api/ab/feedback", json=body).json()["duplicate"] is True
    assert client.post("/api/ab/feedback", json={**body, "kind": "wink"}).status_code == 422
    assert client.post("/api/ab/feedback", json={**body, "creative_ids": ["red", "x"], "event_id": "k2"}).status_code == 404
    r = client.get("/api/ab/feedback/u1200/condition").json()
    assert r["choices"] == 1 and set(r["attributes"]) >= {"color", "pattern"}
    assert len(store.feedback(user_id="u1200")) == 1


def test_feedback_cli_records_and_shows(tmp_path, capsys):
    from app.cli import main

    db = str(tmp_path / "ab.sqlite")
    _demo_store(db, "u1200")

    def run(*args):
        try:
            main(["feedback", *args, "--db", db])
            code = 0
        except SystemExit as e:
            code = e.code
        return code, capsys.readouterr()

    code, _ = run("record", "fb", "choice", "red", "navy", "--user", "u1200")
    assert code == 0
    code, out = run("record", "fb", "like", "red", "navy", "--user", "u1200")
    assert code == 2 and out.err.strip().startswith("error:") and len(out.err.strip().splitlines()) == 1
    code, out = run("show", "--user", "u1200")
    assert code == 0 and "1 events (1 choices)" in out.out and "color" in out.out


def test_load_test_with_feedback_loses_and_doubles_nothing(tmp_path):
    from app.ab.loadtest import run_load_test

    report = run_load_test(tmp_path / "load.sqlite", clients=20, events=500, http=False, retry_share=0.05,
                           feedback=True)
    assert report["expected"]["feedback"] == 20 * 250
    assert report["exact"], report
    assert set(report["lost"].values()) == {0} and set(report["doubled"].values()) == {0}


def test_apply_feedback_replaces_only_the_attribute_weights():
    from recommenders.condition import PreferenceCondition
    from recommenders.feedback import apply_feedback

    post = _flat_prior(_catalog()).update([Choice(RED, (BLUE,))])
    cond = PreferenceCondition("u", item_scores=[("red0", 1.0)], attributes={"style": {"casual": 1.0}}, source="ease")
    out = apply_feedback(cond, post)
    assert out.item_scores == cond.item_scores and out.attributes["style"] == {"casual": 1.0}
    assert out.top_keywords(1)["color"] == ["red"] and "1 choices" in out.source


def test_feedback_on_postgresql_concurrent_and_after_reopen(postgres_db):
    import threading

    from app.ab.feedback import shopper_posterior
    from app.ab.store import ABStore

    store = _demo_store(postgres_db, "u1200")
    errors = []

    def client(k: int) -> None:
        try:
            s = ABStore(postgres_db)
            for e in range(50):
                ids = ["red", "navy"] if (k + e) % 3 else ["navy", "red"]
                for _ in range(2 if e % 10 == 0 else 1):  # every 10th sent twice, as a retry
                    s.record_feedback("fb", "u1200", "choice", ids, event_id=f"{k}-{e}")
            s.db.close()
        except BaseException as exc:  # a failed client must fail the test
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    assert store.counts(feedback=True)["feedback"] == 400 and len({e["event_id"] for e in store.feedback("u1200")}) == 400
    _, post, _ = shopper_posterior(store, "u1200")
    store.db.close()
    again = ABStore(postgres_db)
    _, post2, _ = shopper_posterior(again, "u1200")
    again.db.close()
    assert np.allclose(post.mean, post2.mean, atol=1e-9) and len(post2.choices) == 400


def test_simulated_shopper_follows_the_shop_logit_and_elicitation_learns():
    from app.evaluation_feedback import Pool, run_user, shopper_choice
    from recommenders.shop.tastes import Taste

    catalog = _catalog()
    _, vocab, _ = attribute_table(catalog)
    taste = Taste("u", "s", {"category": {"shirt": 1.0}, "color": {"blue": 0.1, "green": 0.1, "red": 0.8},
                             "pattern": {"dotted": 0.5, "solid": 0.5}}, 0.0)
    rng = np.random.default_rng(0)
    picks = [shopper_choice(taste, RED, BLUE, rng) for _ in range(2000)]
    assert abs(np.mean(np.array(picks) == 0) - 0.8 / 0.9) < 0.03  # P(red) = w_red / (w_red + w_blue)
    items = [{"category": catalog[i].category, **catalog[i].attributes} for i in catalog.item_ids]
    x = features(items, vocab)
    pool = Pool(list(catalog.item_ids), items, x, x, {})
    path = run_user(_flat_prior(catalog), taste, pool, "elicit", 15, np.random.default_rng(1))
    assert len(path) == 16 and path[-1].top("color") == ["red"]
    assert path[-1].weights()["color"]["red"] > path[0].weights()["color"]["red"] + 0.2
