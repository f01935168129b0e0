"""Mult-VAE (Liang et al., WWW 2018): a variational autoencoder with a multinomial likelihood.

Encoder: L2-normalised, dropped-out multi-hot row -> tanh MLP -> (mu, logvar); decoder: z -> tanh
MLP -> item logits. Loss: -sum(x * log_softmax(logits)) + beta * KL, beta annealed linearly to
`anneal_cap`. Scoring uses mu (no sampling), so scores are deterministic. Training runs in the
shared epoch trainer (`recommenders.training`) with early stopping on validation Recall@20.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .cf_base import HistoryModel
from .training import EpochTrained


def _mlp(dims: list[int]):
    import torch.nn as nn

    layers = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(dims) - 2:
            layers.append(nn.Tanh())
    return nn.Sequential(*layers)


def _build(n_items: int, hidden: list[int], latent: int, dropout: float):
    """The encoder/decoder pair as one nn.Module (built lazily so importing this file needs no torch)."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class VAE(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = _mlp([n_items, *hidden, 2 * latent])
            self.decoder = _mlp([latent, *reversed(hidden), n_items])
            self.drop = nn.Dropout(dropout)
            for m in self.modules():
                if isinstance(m, nn.Linear):
                    nn.init.xavier_normal_(m.weight)
                    nn.init.normal_(m.bias, std=0.001)

        def forward(self, x: torch.Tensor):
            h = self.encoder(self.drop(F.normalize(x, dim=1)))
            mu, logvar = h.chunk(2, dim=1)
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
            return self.decoder(z), mu, logvar

    return VAE()


class MultiVAE(EpochTrained, HistoryModel):
    """Mult-VAE^PR with early stopping on validation Recall@20."""

    name = "multivae"

    @dataclass
    class Config:
        hidden: list[int] = field(default_factory=lambda: [600])
        latent: int = 200
        dropout: float = 0.5
        lr: float = 1e-3
        weight_decay: float = 0.0
        batch_size: int = 500
        epochs: int = 200
        patience: int = 20
        anneal_cap: float = 0.2
        anneal_steps: int = 20000

    def _net(self):
        c = self.config
        return _build(self.n_items, list(c.hidden), c.latent, c.dropout)

    # --- what the epoch trainer asks (recommenders.training) ---------------------------------------
    def setup_fit(self, data, seed: int):
        """Keep the training rows, reset the KL annealing, build the VAE."""
        self._set_history(data.train)
        self._step = 0
        return self._net()

    def configure_optimizer(self, net):
        import torch

        return torch.optim.Adam(net.parameters(), lr=self.config.lr, weight_decay=self.config.weight_decay)

    def batch_loss(self, x, gen):
        """Multinomial negative log-likelihood + beta * KL, beta annealed linearly per batch to `anneal_cap`."""
        import torch.nn.functional as F

        c = self.config
        logits, mu, logvar = self.net(x)
        beta = min(c.anneal_cap, self._step / max(c.anneal_steps, 1))
        self._step += 1
        nll = -(F.log_softmax(logits, 1) * x).sum(1).mean()
        kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1).mean()
        return nll + beta * kl

    def fit_state(self) -> dict:
        import torch

        return {"step": torch.tensor([self._step])}

    def load_fit_state(self, tensors: dict) -> None:
        self._step = int(tensors["step"][0])

    def score(self, users: np.ndarray, history=None) -> np.ndarray:
        import torch

        self.net.eval()
        with torch.no_grad():
            logits, _, _ = self.net(torch.from_numpy(self._rows(users, history)))
        return logits.numpy()

