"""Offline ranking of candidate creatives by a reward model, before any traffic is spent on them."""

from __future__ import annotations

from typing import Callable, Sequence, TypeVar

import numpy as np

T = TypeVar("T")


def rank_candidates(
    candidates: Sequence[T],
    reward: Callable[[Sequence[T]], Sequence[float]],
    *,
    top_k: int | None = None,
    batch_size: int = 16,
) -> list[tuple[T, float]]:
    """Score candidates with `reward` (a batched callable, e.g. the CTR reward model) and sort best first.

    Ties keep the input order, so a ranking is deterministic for a deterministic reward.
    """
    if top_k is not None and top_k < 1:
        raise ValueError("top_k must be >= 1")
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    scores: list[float] = []
    for start in range(0, len(candidates), batch_size):
        batch = candidates[start : start + batch_size]
        out = np.asarray(reward(batch), dtype=np.float64).reshape(-1)
        if out.size != len(batch):
            raise ValueError(f"reward returned {out.size} scores for {len(batch)} candidates")
        if not np.all(np.isfinite(out)):
            raise ValueError("reward returned a non-finite score")
        scores.extend(out.tolist())
    order = sorted(range(len(candidates)), key=lambda i: -scores[i])
    if top_k is not None:
        order = order[:top_k]
    return [(candidates[i], scores[i]) for i in order]
