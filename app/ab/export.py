"""Preference pairs for Diffusion-DPO, from A/B votes, from online CTR results, or from a reward ranking.

Output is JSONL, one pair a line:
`{"prompt", "chosen", "rejected", "chosen_id", "rejected_id", "experiment_id", "source", "weight"}`
where `chosen`/`rejected` are image paths. Diffusion-DPO (Wallace et al. 2023) trains on pairs
that share a prompt; we write the chosen creative's prompt and keep the rejected one's as
`rejected_prompt` so the trainer can filter on equality if it wants to.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from core.errors import InputError
from core.io import atomic_write_text

from .bandit import posterior_samples
from .bradley_terry import fit_votes
from .store import ABStore, ArmStats

PAIR_SOURCES = ("votes", "bradley-terry", "ctr")


def _pair(chosen: ArmStats, rejected: ArmStats, experiment_id: str, source: str, weight: float) -> dict[str, Any]:
    return {
        "prompt": chosen.prompt or "",
        "chosen": chosen.image_path,
        "rejected": rejected.image_path,
        "chosen_id": chosen.creative_id,
        "rejected_id": rejected.creative_id,
        "rejected_prompt": rejected.prompt or "",
        "experiment_id": experiment_id,
        "source": source,
        "weight": round(float(weight), 6),
    }


def preference_pairs(
    store: ABStore, experiment_id: str, *, source: str = "votes", min_prob: float = 0.6
) -> list[dict[str, Any]]:
    """Pairs from one experiment.

    `votes`: one pair per vote. `bradley-terry`: one pair per creative pair whose fitted win
    probability is at least `min_prob`. `ctr`: one pair per creative pair where the posterior
    probability that one CTR beats the other is at least `min_prob` (from impressions/clicks).
    """
    if source not in PAIR_SOURCES:
        raise InputError(f"pair source must be one of {', '.join(PAIR_SOURCES)}, got {source!r}")
    arms = {a.creative_id: a for a in store.arms(experiment_id)}
    ids = list(arms)
    pairs: list[dict[str, Any]] = []
    if source == "votes":
        for v in store.votes(experiment_id):
            pairs.append(_pair(arms[v.winner_id], arms[v.loser_id], experiment_id, "votes", 1.0))
    elif source == "bradley-terry":
        votes = store.votes(experiment_id)
        bt = fit_votes([(v.winner_id, v.loser_id) for v in votes], ids)
        for i in range(len(ids)):
            for j in range(len(ids)):
                p = bt.win_prob(i, j)
                if i != j and p >= min_prob and bt.games[i] > 0 and bt.games[j] > 0:
                    pairs.append(_pair(arms[ids[i]], arms[ids[j]], experiment_id, "bradley-terry", p))
    else:
        a = list(arms.values())
        draws = posterior_samples([x.clicks for x in a], [x.impressions for x in a], 20000, np.random.default_rng(0))
        for i in range(len(a)):
            for j in range(len(a)):
                p = float(np.mean(draws[:, i] > draws[:, j]))
                if i != j and p >= min_prob:
                    pairs.append(_pair(a[i], a[j], experiment_id, "ctr", p))
    return pairs


def pairs_from_reward(
    candidates: Iterable[dict[str, Any]], scores: Iterable[float], *, group_key: str = "prompt", margin: float = 0.0
) -> list[dict[str, Any]]:
    """Best-vs-worst pair per prompt group from reward scores (for the reward-ranking DPO path)."""
    groups: dict[str, list[tuple[float, dict[str, Any]]]] = {}
    for cand, score in zip(candidates, scores):
        groups.setdefault(str(cand.get(group_key, "")), []).append((float(score), cand))
    pairs = []
    for key, members in groups.items():
        if len(members) < 2:
            continue
        members.sort(key=lambda m: m[0], reverse=True)
        (hi, best), (lo, worst) = members[0], members[-1]
        if hi - lo <= margin:
            continue
        pairs.append(
            {
                "prompt": best.get("prompt", key),
                "chosen": best.get("image_path"),
                "rejected": worst.get("image_path"),
                "chosen_id": best.get("creative_id"),
                "rejected_id": worst.get("creative_id"),
                "source": "reward",
                "weight": round(hi - lo, 6),
            }
        )
    return pairs


def write_pairs(pairs: list[dict[str, Any]], path: str | Path) -> dict[str, int]:
    """Write pairs with image paths as JSONL, atomically; pairs missing an image are skipped and counted."""
    kept = [p for p in pairs if p.get("chosen") and p.get("rejected")]
    text = "".join(json.dumps(p, sort_keys=True) + "\n" for p in kept)
    atomic_write_text(path, text)
    return {"written": len(kept), "skipped_no_image": len(pairs) - len(kept)}
