"""The one evaluation module: all-ranking Recall/NDCG/HR@K, coverage and popularity, used by every model.

Protocol (DiffRec, Wang et al. SIGIR 2023, as in shared/data/README.md): rank all items, mask the
items a user has already seen, Recall@K = hits / |relevant|, NDCG@K with the ideal DCG over
min(|relevant|, K) positions, HR@K = 1 if any hit; averaged over users that have relevant items.
"""

from __future__ import annotations

import numpy as np

DEFAULT_KS = (10, 20, 50)


def _as_numpy(scores) -> np.ndarray:
    if hasattr(scores, "detach"):
        scores = scores.detach().cpu().numpy()
    return np.asarray(scores, dtype=np.float32)


def mask_seen(scores, exclude) -> np.ndarray:
    """Copy of `scores` with the (row, item) entries of a csr matrix `exclude` set to -inf."""
    s = _as_numpy(scores).copy()
    if exclude is not None:
        coo = exclude.tocoo()
        s[coo.row, coo.col] = -np.inf
    return s


def topk(scores, k: int, exclude=None) -> np.ndarray:
    """Indices of the k best items per row, best first, seen items masked."""
    s = mask_seen(scores, exclude)
    k = min(k, s.shape[1])
    part = np.argpartition(-s, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(s, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def _relevance(top: np.ndarray, ground_truth) -> tuple[np.ndarray, np.ndarray]:
    """hits (n, K) booleans and the number of relevant items per row."""
    if hasattr(ground_truth, "tocsr"):
        gt = ground_truth.tocsr()
        rows = np.repeat(np.arange(top.shape[0]), top.shape[1])
        hits = np.asarray(gt[rows, top.ravel()]).reshape(top.shape) > 0
        n_rel = np.diff(gt.indptr)
    else:
        target = np.asarray(ground_truth).reshape(-1, 1)
        hits = top == target
        n_rel = np.ones(top.shape[0], dtype=np.int64)
    return hits, n_rel


def ranking_metrics(scores, ground_truth, exclude=None, ks=DEFAULT_KS) -> dict[str, float]:
    """Recall@K, NDCG@K and HR@K averaged over rows with at least one relevant item.

    `ground_truth` is a csr matrix (rows x items) or a 1-D array of one target item per row.
    """
    ks = tuple(sorted(ks))
    return metrics_from_top(topk(scores, max(ks), exclude), ground_truth, ks)


def metrics_from_top(top: np.ndarray, ground_truth, ks=DEFAULT_KS) -> dict[str, float]:
    """`ranking_metrics` from best-first top lists (n, >= max(ks)), e.g. an approximate retrieval's."""
    ks = tuple(sorted(ks))
    top = np.asarray(top)
    if top.shape[1] < max(ks):
        raise ValueError(f"top lists have {top.shape[1]} items, fewer than K = {max(ks)}")
    hits, n_rel = _relevance(top, ground_truth)
    valid = n_rel > 0
    discounts = 1.0 / np.log2(np.arange(2, top.shape[1] + 2))
    out: dict[str, float] = {}
    for k in ks:
        h = hits[:, :k]
        n_hit = h.sum(1)
        recall = n_hit / np.maximum(n_rel, 1)
        dcg = (h * discounts[:k]).sum(1)
        ideal = np.cumsum(discounts[:k])[np.clip(np.minimum(n_rel, k) - 1, 0, None)]
        ndcg = dcg / ideal
        out[f"recall@{k}"] = float(recall[valid].mean()) if valid.any() else 0.0
        out[f"ndcg@{k}"] = float(ndcg[valid].mean()) if valid.any() else 0.0
        out[f"hr@{k}"] = float((n_hit[valid] > 0).mean()) if valid.any() else 0.0
    return out


def capped_recall(top: np.ndarray, ground_truth, k: int = 20) -> float:
    """Recall@k with hits divided by min(|relevant|, k) instead of |relevant| (LightGCN's and GiffCF's
    code; their published Recall@20 is this figure): equal to Recall@k for users with at most k relevant
    items, higher for the others. Reported beside Recall@k so their numbers compare on one scale."""
    hits, n_rel = _relevance(np.asarray(top)[:, :k], ground_truth)
    valid = n_rel > 0
    return float((hits.sum(1) / np.maximum(np.minimum(n_rel, k), 1))[valid].mean()) if valid.any() else 0.0


def coverage(top: np.ndarray, n_items: int) -> float:
    """Share of the catalog that appears in at least one user's list."""
    return float(len(np.unique(top)) / n_items)


def mean_popularity(top: np.ndarray, item_counts: np.ndarray) -> float:
    """Mean training popularity (interaction count) of recommended items: higher means more popularity bias."""
    return float(np.asarray(item_counts, dtype=np.float64)[top].mean())
