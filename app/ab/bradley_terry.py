"""Bradley-Terry strengths from pairwise votes, fitted with the MM algorithm.

Model: P(i beats j) = p_i / (p_i + p_j). The MM update of Hunter (2004), "MM algorithms for
generalized Bradley-Terry models", Ann. Statist. 32(1), is p_i <- W_i / sum_j n_ij / (p_i + p_j).
Plain maximum likelihood is undefined when a creative has won (or lost) every vote, which is
the usual case with few votes, so every creative also plays `prior` virtual games against a
reference creative of strength 1 and wins half of them. That keeps every strength finite,
pulls thinly-voted creatives toward the reference, and fixes the scale (no renormalizing).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass
class BTResult:
    """Fitted strengths: `score` = log p_i (0 = the reference), with standard errors."""

    ids: list[str]
    score: np.ndarray
    stderr: np.ndarray
    wins: np.ndarray
    games: np.ndarray
    iterations: int

    def win_prob(self, i: int, j: int) -> float:
        """Model probability that item i beats item j."""
        return float(1.0 / (1.0 + np.exp(self.score[j] - self.score[i])))

    def ranking(self) -> list[str]:
        """Ids from strongest to weakest."""
        return [self.ids[k] for k in np.argsort(-self.score, kind="stable")]

    def to_rows(self) -> list[dict]:
        """One dict per item, strongest first (what the CLI, API and UI show)."""
        order = np.argsort(-self.score, kind="stable")
        return [
            {
                "creative_id": self.ids[k],
                "rank": r + 1,
                "score": float(self.score[k]),
                "stderr": float(self.stderr[k]),
                "wins": int(self.wins[k]),
                "games": int(self.games[k]),
            }
            for r, k in enumerate(order)
        ]


def fit_bradley_terry(
    winners: Sequence[int],
    losers: Sequence[int],
    n_items: int,
    *,
    ids: Sequence[str] | None = None,
    prior: float = 1.0,
    max_iter: int = 10000,
    tol: float = 1e-10,
) -> BTResult:
    """Fit strengths from votes given as item indices (`winners[k]` beat `losers[k]`)."""
    w = np.asarray(winners, dtype=np.int64)
    l = np.asarray(losers, dtype=np.int64)
    if w.shape != l.shape:
        raise ValueError("winners and losers must have the same length")
    if n_items < 1 or (w.size and (min(w.min(), l.min()) < 0 or max(w.max(), l.max()) >= n_items)):
        raise ValueError("vote index out of range")
    if prior <= 0:
        raise ValueError("prior must be > 0 so that strengths stay finite")
    n = np.zeros((n_items, n_items))  # n[i, j]: games between i and j
    np.add.at(n, (w, l), 1.0)
    n = n + n.T
    wins = np.bincount(w, minlength=n_items).astype(np.float64)
    p = np.ones(n_items)
    it = 0
    for it in range(1, max_iter + 1):
        denom = (n / (p[:, None] + p[None, :])).sum(axis=1) + prior / (p + 1.0)
        new = (wins + prior / 2.0) / denom
        delta = np.max(np.abs(np.log(new) - np.log(p)))
        p = new
        if delta < tol:
            break
    score = np.log(p)
    stderr = _stderr(p, n, prior)
    names = list(ids) if ids is not None else [str(i) for i in range(n_items)]
    if len(names) != n_items:
        raise ValueError("ids must name every item")
    return BTResult(names, score, stderr, wins.astype(np.int64), n.sum(axis=1).astype(np.int64), it)


def _stderr(p: np.ndarray, n: np.ndarray, prior: float) -> np.ndarray:
    """Standard errors of log p from the observed information (inverse Hessian)."""
    pair = n * (p[:, None] * p[None, :]) / (p[:, None] + p[None, :]) ** 2
    hess = -pair
    np.fill_diagonal(hess, pair.sum(axis=1) + prior * p / (p + 1.0) ** 2)
    return np.sqrt(np.clip(np.diag(np.linalg.inv(hess)), 0.0, None))


def fit_votes(votes: Sequence[tuple[str, str]], ids: Sequence[str], *, prior: float = 1.0) -> BTResult:
    """Fit from (winner_id, loser_id) pairs over the creatives `ids`."""
    index = {c: k for k, c in enumerate(ids)}
    unknown = {x for v in votes for x in v if x not in index}
    if unknown:
        raise ValueError(f"votes name unknown creatives: {sorted(unknown)[:5]}")
    return fit_bradley_terry(
        [index[v[0]] for v in votes], [index[v[1]] for v in votes], len(ids), ids=ids, prior=prior
    )
