"""Each metric in recommenders.metrics against small examples computed by hand."""

import math

import numpy as np
import pytest
import scipy.sparse as sp

from recommenders.metrics import (
    coverage,
    mask_seen,
    mean_popularity,
    metrics_from_top,
    ranking_metrics,
    topk,
)


def csr(rows, n_items):
    """A binary csr matrix from a list of item-index lists."""
    r = [i for i, items in enumerate(rows) for _ in items]
    c = [j for items in rows for j in items]
    return sp.csr_matrix((np.ones(len(c), np.float32), (r, c)), shape=(len(rows), n_items))


SCORES = np.array([
    [0.9, 0.8, 0.1, 0.5, 0.3],  # item 0 is seen -> ranking 1, 3, 4, 2
    [0.1, 0.2, 0.3, 0.4, 0.5],  # ranking 4, 3, 2, 1, 0
    [0.5, 0.4, 0.3, 0.2, 0.1],  # no relevant items: must not count
], np.float32)
SEEN = csr([[0], [], []], 5)
RELEVANT = csr([[1, 4], [0], []], 5)


def test_topk_masks_seen_items_and_orders_best_first():
    assert topk(SCORES, 3, exclude=SEEN).tolist() == [[1, 3, 4], [4, 3, 2], [0, 1, 2]]
    assert np.isneginf(mask_seen(SCORES, SEEN)[0, 0])
    assert SCORES[0, 0] == pytest.approx(0.9)  # the caller's array is untouched


def test_recall_ndcg_hr_at_2_by_hand():
    m = ranking_metrics(SCORES, RELEVANT, exclude=SEEN, ks=(2,))
    # user 0: top-2 = [1, 3], one of 2 relevant found at rank 1; user 1: top-2 = [4, 3], no hit.
    idcg_user0 = 1 / math.log2(2) + 1 / math.log2(3)  # ideal DCG over min(|GT|=2, K=2) positions
    assert m["recall@2"] == pytest.approx((1 / 2 + 0) / 2)
    assert m["ndcg@2"] == pytest.approx((1 / idcg_user0 + 0) / 2)
    assert m["hr@2"] == pytest.approx(0.5)


def test_recall_ndcg_at_3_by_hand():
    m = ranking_metrics(SCORES, RELEVANT, exclude=SEEN, ks=(3,))
    # user 0: top-3 = [1, 3, 4], hits at ranks 1 and 3.
    dcg = 1 / math.log2(2) + 1 / math.log2(4)
    idcg = 1 / math.log2(2) + 1 / math.log2(3)
    assert m["recall@3"] == pytest.approx(0.5)
    assert m["ndcg@3"] == pytest.approx(dcg / idcg / 2)


def test_ideal_dcg_is_capped_at_k():
    # 3 relevant items, K = 1, the top item is relevant: NDCG@1 = 1 (IDCG over min(3, 1) = 1 position).
    m = ranking_metrics(np.array([[3.0, 2.0, 1.0, 0.0]]), csr([[0, 1, 2]], 4), ks=(1,))
    assert m["ndcg@1"] == pytest.approx(1.0)
    assert m["recall@1"] == pytest.approx(1 / 3)


def test_single_target_ground_truth():
    scores = np.array([[0.1, 0.9, 0.5, 0.7], [0.4, 0.3, 0.2, 0.1]])
    target = np.array([2, 3])  # ranks: user 0 -> 3rd, user 1 -> 4th
    m = ranking_metrics(scores, target, ks=(3,))
    assert m["hr@3"] == pytest.approx(0.5)
    assert m["recall@3"] == pytest.approx(0.5)
    assert m["ndcg@3"] == pytest.approx((1 / math.log2(4)) / 2)


def test_metrics_from_top_lists_match_and_need_enough_items():
    scores = np.array([[0.1, 0.9, 0.5, 0.7], [0.4, 0.3, 0.2, 0.1]])
    target = np.array([2, 3])
    top = np.array([[1, 3, 2], [0, 1, 2]])  # best first: target 2 at rank 3 for row 0, row 1 misses
    assert metrics_from_top(top, target, ks=(1, 3)) == ranking_metrics(scores, target, ks=(1, 3))
    assert metrics_from_top(top, target, ks=(3,))["ndcg@3"] == pytest.approx((1 / math.log2(4)) / 2)
    with pytest.raises(ValueError, match="fewer than K"):
        metrics_from_top(top[:, :2], target, ks=(3,))


def test_all_ks_reported():
    m = ranking_metrics(np.random.default_rng(0).random((4, 60)), csr([[1], [2, 3], [4], [5]], 60))
    assert set(m) == {f"{name}@{k}" for name in ("recall", "ndcg", "hr") for k in (10, 20, 50)}


def test_coverage_and_mean_popularity():
    top = np.array([[0, 1], [1, 2]])
    assert coverage(top, 4) == pytest.approx(3 / 4)
    assert mean_popularity(top, np.array([10, 5, 1, 0])) == pytest.approx((10 + 5 + 5 + 1) / 4)


def test_capped_recall_divides_by_min_of_relevant_and_k():
    """GiffCF's / LightGCN's Recall@k: hits / min(|relevant|, k); equal to Recall@k when |relevant| <= k."""
    import scipy.sparse as sp

    from recommenders.metrics import capped_recall, metrics_from_top

    top = np.array([[0, 1, 2], [0, 1, 2]])
    gt = sp.csr_matrix(np.array([[1, 1, 1, 1, 1, 1], [1, 0, 0, 0, 0, 1]], dtype=np.float32))
    # user 0: 3 hits of 6 relevant -> recall 0.5, capped 3 / min(6, 3) = 1; user 1: 1 of 2 -> 0.5 both ways
    assert capped_recall(top, gt, k=3) == pytest.approx(0.75)
    assert metrics_from_top(top, gt, ks=(3,))["recall@3"] == pytest.approx(0.5)
