"""GiffCF (Zhu et al., "Graph Signal Diffusion Model for Collaborative Filtering", SIGIR 2024): a
diffusion over the item-item graph instead of Gaussian noise on the interaction vector.

The forward process smooths a user's row x over the normalised item-item graph, like the heat equation
run for time t: z_t = x + alpha * (t / T) * (smooth(x) - x), t = 0..T, with smooth(x) = x P and
P = A^T A / lambda_max, A = D_u^-1/4 R D_i^-1/2 (R the training matrix; the paper's normalisation).
An optional ideal low-pass filter (the top `ideal_cutoff` eigenvectors of P, weight `ideal_weight`)
joins P as in GF-CF (Shen et al., CIKM 2021). Optional Gaussian noise of scale
noise_scale * noise_decay^(T - t) is added during training.

The denoiser predicts x from z_t with the user's own row c = dropout(x) as its condition: a shared
item embedding E (n_items x d) maps z_t / max(|z_t|, 1) and c / max(|c|, 1) into d dimensions (the
paper divides z_t by n_items and c by its L1 norm; the L2 norms, chosen here on validation, give the
item path a signal large enough to learn from: with the paper's scaling it stayed a popularity score,
at MostPop's level, for 50 epochs on ml-1m, and its escape from there depended on the seed); a tiny
per-dimension mixer (3 -> 2 -> 1) blends them with a learned time scalar; the result goes back through
E^T and a per-item mixer (4 -> 2 -> 1) blends it with c, smooth(c) and a second time scalar. Training
minimises the squared error summed over items. Scoring runs the T reverse steps deterministically
(sharpening): predict x, re-smooth it to the next lower t, and keep a share noise_decay^(t - s) of what
the prediction did not explain. Training runs in the shared epoch trainer (`recommenders.training`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.errors import InputError

from .cf_base import HistoryModel
from .training import EpochTrained


def graph_filter(train, ideal_cutoff: int = 0) -> tuple[np.ndarray, np.ndarray | None]:
    """The item-item smoothing matrix P (dense float32, top eigenvalue 1) and, when asked, the top
    `ideal_cutoff` eigenvectors of P as columns (for the ideal low-pass filter)."""
    import scipy.sparse as sp
    from scipy.sparse.linalg import eigsh

    r = sp.csr_matrix(train, dtype=np.float64)
    du = np.asarray(r.sum(1)).ravel()
    di = np.asarray(r.sum(0)).ravel()
    with np.errstate(divide="ignore"):
        du_s = np.where(du > 0, du ** -0.25, 0.0)
        di_s = np.where(di > 0, di ** -0.5, 0.0)
    a = sp.diags(du_s) @ r @ sp.diags(di_s)
    g = (a.T @ a).toarray()
    k = max(1, int(ideal_cutoff))
    k = min(k, g.shape[0] - 1) if g.shape[0] > 1 else 1
    # a fixed start vector: ARPACK's random one changes the last digits between calls (and so the training)
    vals, vecs = (eigsh(g, k=k, which="LA", v0=np.ones(g.shape[0])) if g.shape[0] > 2 else np.linalg.eigh(g))
    order = np.argsort(vals)[::-1]
    lam = float(vals[order[0]]) if vals[order[0]] > 0 else 1.0
    p = np.ascontiguousarray(g / lam, dtype=np.float32)  # C order: a sparse x times an F-order P is 20x slower
    ideal = np.ascontiguousarray(vecs[:, order], dtype=np.float32) if ideal_cutoff > 0 else None
    return p, ideal


def _build(n_items: int, embed_dim: int, steps: int, p: np.ndarray, ideal: np.ndarray | None,
           ideal_weight: float, cond_norm_ord: int = 1, z_norm: int = 0, pass_through: bool = False):
    """The denoiser and the graph filters as one nn.Module (built lazily: importing this file needs no torch)."""
    import math

    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class Mixer(nn.Module):
        """A per-entry MLP over k same-shaped features: k -> hidden 2 (swish) -> 1, written out as weighted
        sums of whole tensors (an nn.Linear over a stacked last axis of size k is several times slower)."""

        def __init__(self, k: int):
            super().__init__()
            self.hidden, self.out = nn.Linear(k, 2), nn.Linear(2, 1)

        def forward(self, *feats: torch.Tensor) -> torch.Tensor:
            w, b = self.hidden.weight, self.hidden.bias
            h = [F.silu(sum(w[j, i] * f for i, f in enumerate(feats)) + b[j]) for j in range(2)]
            return self.out.weight[0, 0] * h[0] + self.out.weight[0, 1] * h[1] + self.out.bias[0]

    class TimeScalar(nn.Module):
        """t -> one learned scalar, through a sinusoidal embedding (Vaswani et al. 2017) and a small MLP."""

        def __init__(self, dim: int = 20):
            super().__init__()
            scales = np.power(10000.0, -np.arange(0, dim, 2) / dim)
            ang = np.arange(steps + 1)[:, None] * scales[None, :]
            table = np.concatenate([np.sin(ang), np.cos(ang)], -1).astype(np.float32)
            self.register_buffer("table", torch.from_numpy(table), persistent=False)
            self.hidden, self.out = nn.Linear(dim, dim), nn.Linear(dim, 1)

        def forward(self, t: torch.Tensor) -> torch.Tensor:  # t: (B,) long -> (B, 1)
            return self.out(F.silu(self.hidden(self.table[t])))

    class GiffNet(nn.Module):
        def __init__(self):
            super().__init__()
            bound = math.sqrt(6.0 / (n_items + embed_dim))  # Glorot uniform
            self.item_embed = nn.Parameter(torch.empty(n_items, embed_dim).uniform_(-bound, bound))
            self.t_embed, self.t_score = TimeScalar(), TimeScalar()
            self.embed_mixer, self.score_mixer = Mixer(3), Mixer(4)
            for layer in self.modules():  # Glorot-uniform weights and zero biases: with torch's default random
                if isinstance(layer, nn.Linear):  # biases the embedding mixer starts at a constant, which
                    nn.init.xavier_uniform_(layer.weight)  # turns the item path into a popularity score that
                    nn.init.zeros_(layer.bias)  # stays near MostPop (valid Recall@20 0.08 after 50 epochs)
            if pass_through:
                self._pass_through_init()

        def _pass_through_init(self) -> None:
            """Start both mixers as sums of their signals (swish ~ x / 2 near 0, so hidden unit 0 sums, the output
            doubles it): x_e ~ z_e + c_e and x ~ mid + c / 2 + smooth(c). With random 2-unit mixers whether the
            item path ever leaves the popularity plateau depends on the signs of a few weights (the seed)."""
            with torch.no_grad():
                for mixer, first in ((self.embed_mixer, [1.0, 1.0, 0.0]), (self.score_mixer, [1.0, 0.5, 1.0, 0.0])):
                    mixer.hidden.weight[0] = torch.tensor(first)
                    mixer.out.weight[0, 0], mixer.out.weight[0, 1] = 2.0, 0.0
            self.register_buffer("p", torch.from_numpy(p), persistent=False)
            self.register_buffer("ideal", torch.from_numpy(ideal) if ideal is not None else torch.zeros(0),
                                 persistent=False)

        def smooth(self, x: torch.Tensor, sparse: bool = False) -> torch.Tensor:
            """x P (rows are users), mixed with the ideal low-pass filter when it is on; `sparse` multiplies a
            mostly-zero x (a dropped-out history) as a sparse matrix, 5-6x faster here."""
            out = torch.sparse.mm(x.to_sparse(), self.p) if sparse else x @ self.p
            if ideal_weight and self.ideal.numel():
                out = (out + ideal_weight * (x @ self.ideal) @ self.ideal.T) / (1.0 + ideal_weight)
            return out

        def cond_norm(self, c: torch.Tensor) -> torch.Tensor:
            """c / max(|c|, 1), with the L1 norm (the paper's) or the L2 norm."""
            return c / c.norm(p=cond_norm_ord, dim=1, keepdim=True).clamp_min(1.0)

        def forward(self, z: torch.Tensor, c: torch.Tensor, ac: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            """The estimate of x from z_t, the condition c and smooth(c) at steps t (B,)."""
            e = self.item_embed
            z_e = (z / (z.norm(dim=1, keepdim=True).clamp_min(1.0) if z_norm == 2 else n_items)) @ e
            c_e = self.cond_norm(c) @ e
            x_e = self.embed_mixer(z_e, c_e, self.t_embed(t).expand_as(z_e))
            mid = x_e @ e.T
            return self.score_mixer(mid, c, ac, self.t_score(t).expand_as(mid))

    return GiffNet()


class GiffCF(EpochTrained, HistoryModel):
    """Graph-signal diffusion with early stopping on validation Recall@20."""

    name = "giffcf"

    @dataclass
    class Config:
        embed_dim: int = 200
        steps: int = 3            # T: diffusion steps (the paper's ml-1m setting)
        alpha: float = 1.5        # how far the forward process smooths at t = T
        ideal_weight: float = 0.0  # weight of the ideal low-pass filter in smooth() (0 = off)
        ideal_cutoff: int = 200   # its number of eigenvectors
        noise_scale: float = 0.0  # Gaussian noise at t = T during training (0 = none)
        noise_decay: float = 0.5  # noise / residual share kept per reverse step
        dropout: float = 0.5      # dropout of the condition row c in training
        z_norm: int = 2           # z_t enters the item embedding divided by its L2 norm (2, chosen on ml-1m validation:
        #                           seed 1 reached 0.119 at epoch 30 against 0.104 at epoch 80) or by n_items (0, the paper's)
        cond_norm: int = 2        # the norm c is divided by before the item embedding: 2, chosen on ml-1m validation
        #                           (seed 0, Recall@20: 0.083 after 40 epochs with the paper's L1, 0.120 with L2)
        pass_through_init: bool = True  # mixers start as sums of their inputs, not at random (ml-1m seed 0: valid
        #                                 Recall@20 0.117 at epoch 10, 0.121 at 25; random mixers 0.086 and 0.099 at 60)
        lr: float = 1e-3
        weight_decay: float = 0.0
        batch_size: int = 100
        epochs: int = 1000
        patience: int = 20        # validations (every `eval_every` epochs) without improvement
        eval_every: int = 10
        score_batch: int = 1024

    def _check(self) -> None:
        c = self.config
        if c.steps < 1 or c.embed_dim < 1 or not 0 <= c.dropout < 1 or c.alpha <= 0:
            raise InputError("giffcf needs steps >= 1, embed_dim >= 1, 0 <= dropout < 1 and alpha > 0")

    def _net(self):
        c = self.config
        self._check()
        p, ideal = graph_filter(self.train_rows, c.ideal_cutoff if c.ideal_weight else 0)
        return _build(self.n_items, c.embed_dim, c.steps, p, ideal, c.ideal_weight, c.cond_norm, c.z_norm,
                      c.pass_through_init)

    def _forward_z(self, x, ax, t):
        """z_t = x + alpha * t / T * (smooth(x) - x); t broadcast over items."""
        c = self.config
        return x + (c.alpha * t.to(x.dtype) / c.steps).unsqueeze(1) * (ax - x)

    # --- what the epoch trainer asks (recommenders.training) ---------------------------------------
    def setup_fit(self, data, seed: int):
        """Keep the training rows, build the graph filter and the denoiser."""
        import torch

        self._set_history(data.train)
        net = self._net()
        with torch.no_grad():
            rows = torch.from_numpy(self.train_rows.toarray())
            self._train_pairs = (rows, torch.cat([net.smooth(rows[i:i + 1024]) for i in range(0, len(rows), 1024)]))
        return net

    def train_batches(self, data, gen):
        """Shuffled (x, smooth(x)) pairs: smooth(x) of the training rows is fixed, so it is computed once."""
        from .training import shuffled_batches

        return shuffled_batches(self._train_pairs, self.config.batch_size, gen)

    def configure_optimizer(self, net):
        import torch

        return torch.optim.Adam(net.parameters(), lr=self.config.lr, weight_decay=self.config.weight_decay)

    def batch_loss(self, batch, gen):
        """Squared error of the x estimate from z_t at a uniform t in 1..T, summed over items."""
        import torch

        c = self.config
        x, ax = batch
        t = torch.randint(1, c.steps + 1, (x.shape[0],), generator=gen)
        z = self._forward_z(x, ax, t)
        if c.noise_scale > 0:
            sigma = c.noise_scale * c.noise_decay ** (c.steps - t.to(x.dtype))
            z = z + sigma.unsqueeze(1) * torch.randn(x.shape, generator=gen)
        keep = (torch.rand(x.shape, generator=gen) >= c.dropout).to(x.dtype)  # dropout drawn from `gen`, so
        cond = x * keep / (1.0 - c.dropout)                                     # a resumed run draws the same
        with torch.no_grad():
            acond = self.net.smooth(cond, sparse=True)
        pred = self.net(z, cond, acond, t)
        return (pred - x).pow(2).sum(1).mean()

    def denoise(self, x):
        """Scores for input rows x: T deterministic reverse (sharpening) steps from z_T."""
        import torch

        c, net = self.config, self.net
        ax = net.smooth(x, sparse=True)
        t_all = torch.full((x.shape[0],), c.steps, dtype=torch.long)
        z = self._forward_z(x, ax, t_all)
        for t in range(c.steps, 0, -1):
            tt = torch.full((x.shape[0],), t, dtype=torch.long)
            pred = net(z, x, ax, tt)
            a_pred = net.smooth(pred)
            z_s = self._forward_z(pred, a_pred, tt - 1)
            if c.noise_decay > 0:
                z = z_s + c.noise_decay * (z - self._forward_z(pred, a_pred, tt))
            else:
                z = z_s
        return z

    def score(self, users: np.ndarray, history=None) -> np.ndarray:
        import torch

        rows = self._rows(users, history)
        self.net.eval()
        out = []
        with torch.no_grad():
            for i in range(0, len(rows), self.config.score_batch):
                out.append(self.denoise(torch.from_numpy(rows[i:i + self.config.score_batch])).numpy())
        return np.concatenate(out) if out else np.zeros((0, self.n_items), np.float32)
