"""Bandit and Bradley-Terry statistics on simulated data with known truth."""

from __future__ import annotations

import numpy as np
import pytest

from app.ab import (
    fit_bradley_terry,
    fit_votes,
    stopping_rule,
    summarize,
    thompson_choice,
)
from app.ab.export import pairs_from_reward
from app.ab.prescreen import rank_candidates


def test_thompson_sampling_concentrates_on_best_arm():
    true_ctr = np.array([0.03, 0.05, 0.10, 0.04])
    rng = np.random.default_rng(1)
    clicks = np.zeros(4, dtype=int)
    shows = np.zeros(4, dtype=int)
    late = np.zeros(4, dtype=int)
    n = 4000
    for t in range(n):
        k = thompson_choice(clicks, shows, rng)
        shows[k] += 1
        clicks[k] += rng.random() < true_ctr[k]
        if t >= n // 2:
            late[k] += 1
    assert late.argmax() == 2
    assert late[2] / late.sum() > 0.8, late


def test_thompson_explores_every_arm_at_the_start():
    rng = np.random.default_rng(0)
    picks = {thompson_choice([0, 0, 0], [0, 0, 0], rng) for _ in range(200)}
    assert picks == {0, 1, 2}


def test_probability_to_beat_control_and_stopping_rule():
    even = summarize([50, 50], [1000, 1000], control=0, n_samples=20000, seed=0)
    assert even[1].prob_beat_control == pytest.approx(0.5, abs=0.03)
    assert not stopping_rule(even).stop

    clear = summarize([50, 120], [1000, 1000], control=0, n_samples=20000, seed=0)
    assert clear[1].prob_beat_control > 0.999 and clear[0].prob_beat_control is None
    assert clear[1].prob_best > 0.999 and clear[1].ctr == pytest.approx(121 / 1002)
    decision = stopping_rule(clear, loss_threshold=0.001)
    assert decision.stop and decision.winner == 1

    few = summarize([0, 5], [10, 10], control=0, n_samples=5000, seed=0)
    assert not stopping_rule(few, min_impressions=100).stop

    with pytest.raises(ValueError):
        summarize([5], [3])  # more clicks than impressions


def test_bradley_terry_recovers_known_ordering():
    rng = np.random.default_rng(3)
    true = np.array([1.5, -0.5, 0.8, 0.0, -1.2, 0.3])
    w, l = [], []
    for _ in range(3000):
        i, j = rng.choice(6, size=2, replace=False)
        p = 1 / (1 + np.exp(true[j] - true[i]))
        if rng.random() < p:
            w.append(i), l.append(j)
        else:
            w.append(j), l.append(i)
    fit = fit_bradley_terry(w, l, 6, ids=list("abcdef"))
    assert list(np.argsort(-fit.score)) == list(np.argsort(-true))
    # The fitted differences match the true ones within a few standard errors.
    diff = fit.score - fit.score.mean() - (true - true.mean())
    assert np.all(np.abs(diff) < 4 * fit.stderr + 0.05), diff
    assert fit.ranking()[0] == "a"


def test_bradley_terry_defined_with_few_votes_and_matches_mle():
    one = fit_votes([("x", "y")], ["x", "y", "z"])
    assert np.all(np.isfinite(one.score)) and one.score[0] > one.score[2] > one.score[1]
    assert one.score[2] == pytest.approx(0.0)  # an unjudged creative stays at the reference
    # With a vanishing prior the fit is the MLE: 3 wins out of 4 gives P(x beats y) = 0.75.
    mle = fit_bradley_terry([0, 0, 0, 1], [1, 1, 1, 0], 2, prior=1e-6)
    assert mle.win_prob(0, 1) == pytest.approx(0.75, abs=1e-3)


def test_reward_ranking_and_reward_pairs():
    cands = [{"creative_id": f"c{k}", "prompt": "p" if k < 3 else "q", "image_path": f"{k}.png"} for k in range(5)]
    reward = lambda batch: [float(int(c["creative_id"][1:]) % 3) for c in batch]  # noqa: E731
    ranked = rank_candidates(cands, reward, top_k=3, batch_size=2)
    assert [c["creative_id"] for c, _ in ranked] == ["c2", "c1", "c4"]
    pairs = pairs_from_reward(cands, [reward([c])[0] for c in cands])
    assert {(p["chosen_id"], p["rejected_id"]) for p in pairs} == {("c2", "c0"), ("c4", "c3")}
    with pytest.raises(ValueError, match="scores"):
        rank_candidates(cands, lambda b: [0.0])


def test_simulation_thompson_has_lower_regret_than_uniform_on_the_demo_shop():
    from app.ab.simulate import load_shop, simulate

    res = simulate(rounds=3000, n_creatives=5, runs=4, seed=0, shop=load_shop(), progress=False)
    th, un = res["policies"]["thompson"], res["policies"]["uniform"]
    assert th["regret_mean"] < un["regret_mean"], (th["regret_mean"], un["regret_mean"])
    assert th["best_share_mean"] > un["best_share_mean"]
    # Uniform A/B gives every creative about the same share of the same traffic.
    for run in res["runs"]:
        shows = np.array(run["uniform"]["shows"])
        assert shows.sum() == 3000 and shows.min() > 3000 / 5 * 0.8
        assert sum(run["thompson"]["shows"]) == 3000
