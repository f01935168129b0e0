"""DiffRec's weight averaging (ema_decay): the kept weights are the warmed-up EMA of the trained ones."""

import copy

import numpy as np
import pytest
from tiny_models import TINY, tiny_splits

from core.ema import EMA
from recommenders.diffrec import DiffRec
from recommenders.training import EMA_WARMUP


def test_ema_warmup_decay_rises_to_the_cap():
    import torch

    ema = EMA(torch.nn.Linear(2, 2), 0.99, warmup=EMA_WARMUP)
    decays = [ema.decay_at(n) for n in range(1, 2000)]
    assert decays[0] == pytest.approx(2 / 11)  # the first updates mostly copy the trained weights
    assert all(a <= b for a, b in zip(decays, decays[1:]))
    assert max(decays) == 0.99 and decays[-1] == 0.99


def test_fit_keeps_the_ema_of_the_trained_weights(monkeypatch):
    import torch

    data = tiny_splits()
    seen = []  # (decay, trained weights after each optimizer step)
    real_update = EMA.update

    def recording_update(self, model):
        seen.append((self.decay_at(self.updates + 1), [p.detach().clone() for p in model.parameters()]))
        real_update(self, model)

    class Recorded(DiffRec):
        def _net(self):
            net = super()._net()
            self.init_weights = [p.detach().clone() for p in net.parameters()]
            return net

    monkeypatch.setattr(EMA, "update", recording_update)
    model = Recorded(**{**TINY["diffrec"], "epochs": 1, "patience": 1, "lr": 1e-2, "ema_decay": 0.9})
    model.fit(data, seed=0, progress=False)
    n_steps = -(-data.n_users // model.config.batch_size)
    assert [d for d, _ in seen] == [min(0.9, (1 + n) / (EMA_WARMUP + n)) for n in range(1, n_steps + 1)]

    expected = copy.deepcopy(model.init_weights)  # replay the average by hand
    for decay, weights in seen:
        expected = [decay * e + (1 - decay) * w for e, w in zip(expected, weights)]
    kept = [p.detach() for p in model.net.parameters()]
    for e, k in zip(expected, kept):
        torch.testing.assert_close(k, e, rtol=1e-5, atol=1e-6)
    # ... and they are not simply the last trained weights
    assert any(not torch.allclose(k, w) for k, w in zip(kept, seen[-1][1]))
    scores = model.score(np.arange(data.n_users))
    assert np.isfinite(scores).all()


def test_item_linear_path_ignores_the_diagonal_and_reloads(tmp_path):
    import torch

    from recommenders.base import CFRecommender

    data = tiny_splits()
    model = DiffRec(**{**TINY["diffrec"], "item_linear": True, "lr": 1e-2})
    model.fit(data, seed=0, progress=False)
    users = np.arange(data.n_users)
    scores = model.score(users)
    w = model.net.item_item
    assert w.shape == (data.n_items, data.n_items) and w.abs().sum() > 0  # the path was trained
    with torch.no_grad():
        w.fill_diagonal_(5.0)  # no item may predict itself
    np.testing.assert_allclose(model.score(users), scores, rtol=0, atol=1e-4)
    with torch.no_grad():
        w[0, 1] += 5.0  # an off-diagonal entry does count
    assert not np.allclose(model.score(users), scores)
    with torch.no_grad():
        w[0, 1] -= 5.0
    model.save(tmp_path / "m")
    np.testing.assert_array_equal(CFRecommender.load(tmp_path / "m").score(users), model.score(users))


@pytest.mark.parametrize("extra", [{}, {"cooc": True}, {"cooc": True, "item_linear": True}])
def test_sparse_eval_path_matches_the_dense_one_and_reloads(extra, tmp_path):
    """Scoring multiplies the multi-hot input as a sparse matrix; it must give the dense forward's numbers."""
    import torch

    from recommenders.base import CFRecommender

    data = tiny_splits(n_users=80, n_items=400)  # >= 64 rows, 8 of 400 items: the sparse path
    model = DiffRec(**{**TINY["diffrec"], **extra, "dropout": 0.0, "lr": 1e-2})
    model.fit(data, seed=0, progress=False)
    x = torch.from_numpy(data.train.toarray())
    t = torch.zeros(len(x), dtype=torch.long)
    with torch.no_grad():
        sparse = model.net.eval()(x, t)
        dense = model.net.train()(x, t)  # dropout 0: train mode differs only in taking the dense path
    model.net.eval()
    torch.testing.assert_close(sparse, dense, rtol=1e-4, atol=1e-5)
    users = np.arange(data.n_users)
    model.save(tmp_path / "m")
    np.testing.assert_array_equal(CFRecommender.load(tmp_path / "m").score(users), model.score(users))
