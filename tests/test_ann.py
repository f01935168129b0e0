"""The inverted-file index (recommenders/ann.py) and DreamRec's `retrieval="ivf"` option."""
import numpy as np
import pytest
import torch

from core.errors import InputError
from recommenders.ann import IVFIndex, exact_topk, kmeans, recall_at_k
from recommenders.base import SequentialRecommender, model_class

torch.set_num_threads(1)


def clustered(n_items: int = 2000, n_centres: int = 40, dim: int = 16, seed: int = 0):
    """Items around random centres with varied norms (inner-product search, not only cosine)."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(n_centres, dim, generator=g) * 2
    which = torch.randint(0, n_centres, (n_items,), generator=g)
    items = centres[which] + 0.5 * torch.randn(n_items, dim, generator=g)
    queries = items[torch.randint(0, n_items, (300,), generator=g)] + 0.3 * torch.randn(300, dim, generator=g)
    return items, queries


def test_all_lists_probed_equals_exact_topk():
    items, queries = clustered()
    index = IVFIndex(items, seed=0)
    got = index.topk(queries, 20, index.n_clusters)
    ref = exact_topk(queries, items, 20)
    assert torch.equal(got.ids, ref.ids)
    assert torch.allclose(got.scores, ref.scores, atol=1e-5)
    assert torch.equal(got.scores, got.scores.sort(dim=1, descending=True).values)  # best first


def test_recall_is_high_on_clustered_data_with_few_lists():
    items, queries = clustered()
    index = IVFIndex(items, seed=0)  # round(sqrt(2000)) = 45 lists
    assert index.n_clusters == 45 and int(index.sizes.sum()) == len(items) and (index.sizes > 0).all()
    ref = exact_topk(queries, items, 10).ids
    r1 = recall_at_k(index.topk(queries, 10, 1).ids, ref)
    r8 = recall_at_k(index.topk(queries, 10, 8).ids, ref)
    probed = (queries @ index.centroids.T).topk(8, dim=1).indices
    assert index.sizes[probed].sum(1).float().mean() < len(items) / 3  # scores under a third of the items
    assert r8 >= 0.95, r8
    assert r1 <= r8


def test_excluded_items_are_never_returned_and_match_exact_exclusion():
    items, queries = clustered()
    index = IVFIndex(items, seed=0)
    ref = exact_topk(queries, items, 10).ids
    exclude = torch.cat([ref[:, :3], torch.full((len(ref), 2), len(items))], 1)  # 3 best + 2 pad ids
    got = index.topk(queries, 10, index.n_clusters, exclude=exclude)
    assert not (got.ids[:, :, None] == exclude[:, None, :3]).any()
    assert torch.equal(got.ids, exact_topk(queries, items, 10, exclude=exclude).ids)
    approx = index.topk(queries, 10, 4, exclude=exclude).ids
    assert not (approx[:, :, None] == exclude[:, None, :3]).any()


def test_index_is_deterministic_with_a_seed():
    items, queries = clustered()
    a, b, c = IVFIndex(items, seed=3), IVFIndex(items, seed=3), IVFIndex(items, seed=4)
    assert torch.equal(a.centroids, b.centroids) and torch.equal(a.lists, b.lists)
    assert torch.equal(a.topk(queries, 10, 3).ids, b.topk(queries, 10, 3).ids)
    assert not torch.equal(a.centroids, c.centroids)


def test_small_n_probe_still_returns_k_real_items():
    items, queries = clustered(n_items=300, n_centres=30)
    index = IVFIndex(items, n_clusters=60, seed=0)
    got = index.topk(queries, 25, 1)  # one list holds fewer than 25 items: n_probe is raised
    assert (got.ids >= 0).all() and torch.isfinite(got.scores).all()
    assert all(len(set(row)) == 25 for row in got.ids.tolist())


def test_kmeans_assigns_to_nearest_centroid_and_rejects_bad_k():
    items, _ = clustered(n_items=500)
    cent, assign = kmeans(items, 10, seed=0)
    assert torch.equal(assign, torch.cdist(items, cent).argmin(1))
    with pytest.raises(ValueError):
        kmeans(items, 0)


@pytest.fixture(scope="module")
def dreamrec():
    m = model_class("dreamrec")(n_items=300, hidden=16, max_len=6, num_train_timesteps=50, sampling_steps=5,
                                emb_init_std=1.0)
    torch.manual_seed(0)
    m.net = m.build().eval()  # untrained weights are enough to compare the two retrieval paths
    return m


def _histories(n_rows: int = 64, n_items: int = 300, max_len: int = 6):
    rng = np.random.default_rng(0)
    lens = rng.integers(1, max_len + 1, n_rows)
    seq = np.full((n_rows, max_len), n_items, np.int64)
    for r, n in enumerate(lens):
        seq[r, :n] = rng.integers(0, n_items, n)
    return seq, lens


def test_dreamrec_ivf_with_all_lists_matches_exact(dreamrec, tmp_path):
    seq, lens = _histories()
    exact = dreamrec.recommend(seq, lens, k=20, seed=1)
    n = dreamrec.ivf_index().n_clusters
    assert n == round(300 ** 0.5)
    assert np.array_equal(dreamrec.recommend(seq, lens, k=20, seed=1, retrieval="ivf", n_probe=n), exact)
    approx = dreamrec.recommend(seq, lens, k=20, seed=1, retrieval="ivf", n_probe=3, batch_size=16)
    assert approx.shape == exact.shape and (approx >= 0).all() and (approx < 300).all()
    # the index is not saved: a loaded model rebuilds the same one
    loaded = SequentialRecommender.load(dreamrec.save(tmp_path / "m"))
    assert np.array_equal(loaded.recommend(seq, lens, k=20, seed=1, retrieval="ivf", n_probe=3), approx)
    assert loaded.config.retrieval == "exact"


def test_dreamrec_retrieval_setting_is_checked():
    with pytest.raises(InputError):
        model_class("dreamrec")(retrieval="hnsw")
    with pytest.raises(InputError):
        model_class("dreamrec")(n_probe=0)


def test_topk_rows_matches_torch_topk():
    from recommenders.ann import topk_rows

    gen = torch.Generator().manual_seed(0)
    s = torch.randn(300, 545, generator=gen)
    s[:, 500:] = float("-inf")  # padding slots, as in the IVF candidates
    got, ref = topk_rows(s, 50), s.topk(50, dim=1)
    assert torch.equal(got.scores, ref.values)
    assert torch.equal(s.gather(1, got.ids), got.scores)  # the ids point at those scores
    assert (got.scores[:, :-1] >= got.scores[:, 1:]).all()  # best first
    assert topk_rows(s[:, :7], 20).ids.shape == (300, 7)  # k is capped at the number of columns
