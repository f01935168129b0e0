"""What the CLI, the HTTP API and the UI do with an A/B store: serve a creative, read results."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np

from core.errors import InputError

from .bandit import stopping_rule, summarize, thompson_choice
from .bradley_terry import fit_votes
from .store import ABStore, ArmStats


def choose_arm(store: ABStore, experiment_id: str, rng: np.random.Generator) -> ArmStats:
    """Thompson-sample the creative to show next from the experiment's current counts."""
    exp = store.experiment(experiment_id)
    arms = store.arms(experiment_id)
    if not arms:
        raise InputError(f"experiment {experiment_id!r} has no creatives yet")
    if exp.status == "stopped":
        # A stopped experiment serves its declared winner (or the control) to everyone.
        winner = exp.meta.get("winner") or exp.control_id
        return next((a for a in arms if a.creative_id == winner), arms[0])
    return arms[thompson_choice([a.clicks for a in arms], [a.impressions for a in arms], rng)]


def choose_creative(store: ABStore, experiment_id: str, rng: np.random.Generator) -> str:
    """Id of the creative to show next (Thompson sampling; a stopped experiment's winner)."""
    return choose_arm(store, experiment_id, rng).creative_id


def serve_once(
    store: ABStore,
    experiment_id: str,
    *,
    user_id: str | None = None,
    rng: np.random.Generator | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    """Choose a creative and record its impression; returns ids the caller reports a click with.

    A retry (the same `event_id` in the same experiment) gets the impression already recorded, with
    `duplicate: True`, instead of a new draw.
    """
    from .store import EventConflict

    rng = rng if rng is not None else np.random.default_rng()
    if event_id is not None:
        done = store.impression(experiment_id, event_id)
        if done is not None:
            return _served(store, experiment_id, done["creative_id"], event_id, duplicate=True)
    arm = choose_arm(store, experiment_id, rng)
    try:
        imp = store.record_impression(experiment_id, arm.creative_id, user_id=user_id, event_id=event_id)
    except EventConflict:  # a concurrent retry of the same request drew another creative first
        done = store.impression(experiment_id, event_id)
        return _served(store, experiment_id, done["creative_id"], event_id, duplicate=True)
    return {
        "experiment_id": experiment_id,
        "creative_id": arm.creative_id,
        "impression_id": str(imp),
        "image_path": arm.image_path,
        "duplicate": imp.duplicate,
    }


def _served(store: ABStore, experiment_id: str, creative_id: str, impression_id: str, duplicate: bool) -> dict:
    path = next((a.image_path for a in store.arms(experiment_id) if a.creative_id == creative_id), None)
    return {"experiment_id": experiment_id, "creative_id": creative_id, "impression_id": impression_id,
            "image_path": path, "duplicate": duplicate}


def results(
    store: ABStore,
    experiment_id: str,
    *,
    n_samples: int = 20000,
    seed: int = 0,
    prob_threshold: float = 0.95,
    loss_threshold: float = 0.001,
    min_impressions: int = 100,
) -> dict[str, Any]:
    """Online results (posterior CTRs, probability to beat control, stopping rule) and vote ranking."""
    exp = store.experiment(experiment_id)
    arms = store.arms(experiment_id)
    out: dict[str, Any] = {
        "experiment_id": exp.experiment_id,
        "name": exp.name,
        "segment": exp.segment,
        "status": exp.status,
        "control_id": exp.control_id,
        "creatives": [],
        "stop": None,
        "votes": {"n_votes": 0, "ranking": []},
    }
    if not arms:
        return out
    ids = [a.creative_id for a in arms]
    control = ids.index(exp.control_id) if exp.control_id in ids else 0
    summary = summarize(
        [a.clicks for a in arms], [a.impressions for a in arms], control=control, n_samples=n_samples, seed=seed
    )
    for arm, s in zip(arms, summary):
        row = asdict(s)
        row.pop("index")
        out["creatives"].append({"creative_id": arm.creative_id, "image_path": arm.image_path, **row})
    decision = stopping_rule(
        summary, prob_threshold=prob_threshold, loss_threshold=loss_threshold, min_impressions=min_impressions
    )
    out["stop"] = {**decision.to_dict(), "winner": None if decision.winner is None else ids[decision.winner]}
    votes = store.votes(experiment_id)
    bt = fit_votes([(v.winner_id, v.loser_id) for v in votes], ids)
    out["votes"] = {"n_votes": len(votes), "ranking": bt.to_rows()}
    return out


def vote_pair(
    store: ABStore, experiment_id: str, rng: np.random.Generator | None = None
) -> tuple[str, str]:
    """Two creatives to show side by side, favouring the least-voted (so every pair gets judged)."""
    arms = store.arms(experiment_id)
    if len(arms) < 2:
        raise InputError(f"experiment {experiment_id!r} needs at least two creatives to vote on")
    rng = rng if rng is not None else np.random.default_rng()
    games = {a.creative_id: 0 for a in arms}
    for v in store.votes(experiment_id):
        games[v.winner_id] += 1
        games[v.loser_id] += 1
    # Random tie-breaking among the least-judged creatives.
    order = sorted(games, key=lambda c: (games[c], rng.random()))
    pair = [order[0], order[1]]
    rng.shuffle(pair)
    return pair[0], pair[1]
