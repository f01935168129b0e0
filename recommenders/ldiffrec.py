"""L-DiffRec (Wang et al., SIGIR 2023, sec. 3.4): DiffRec in a compressed latent space for large catalogs.

Items are clustered (k-means on item embeddings, or on an SVD of the training matrix when the data
set has none); each cluster's slice of the interaction vector gets its own small VAE encoder, and
the concatenated latent means are diffused and denoised exactly as in DiffRec. Per-cluster decoders
map the denoised latent back to item scores. Training minimises, per batch,
    lambda * diffusion loss(z0)  +  multinomial recon(decode(z0_hat)) + beta * KL
with beta annealed to `anneal_cap` (the paper's joint objective), plus the plain autoencoder's
recon(decode(z)): without it the encoder learns only through a still-random denoiser and stalls.
The latent denoiser sees the latent as is (no L2 normalisation; `dropout` defaults to 0 here).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from core.errors import InputError

from .diffrec import DiffRec, build_denoiser


def cluster_items(item_emb: np.ndarray, n_clusters: int, seed: int) -> np.ndarray:
    """k-means cluster id per item (sklearn), relabelled so cluster 0 is the largest."""
    from sklearn.cluster import KMeans

    n_clusters = max(1, min(n_clusters, len(item_emb)))
    if n_clusters == 1:
        return np.zeros(len(item_emb), np.int64)
    labels = KMeans(n_clusters, n_init=4, random_state=seed).fit_predict(item_emb)
    order = np.argsort(-np.bincount(labels, minlength=n_clusters), kind="stable")
    return np.argsort(order)[labels].astype(np.int64)


def _build_autoencoder(sizes: list[int], latents: list[int], denoiser_args: dict, dropout: float):
    """Per-cluster linear VAE encoders/decoders plus the latent denoiser, as one nn.Module."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class LatentAutoencoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoders = nn.ModuleList(nn.Linear(n, 2 * d) for n, d in zip(sizes, latents))
            self.decoders = nn.ModuleList(nn.Linear(d, n) for n, d in zip(sizes, latents))
            for m in [*self.encoders, *self.decoders]:
                nn.init.xavier_normal_(m.weight)
                nn.init.normal_(m.bias, std=0.001)
            self.drop = nn.Dropout(dropout)
            self.denoiser = build_denoiser(sum(latents), **denoiser_args)

        def encode(self, x: torch.Tensor):
            """x in cluster order -> (mu, logvar), each (B, sum(latents))."""
            mus, logvars = [], []
            for enc, part in zip(self.encoders, x.split(sizes, dim=1)):
                mu, logvar = enc(self.drop(F.normalize(part, dim=1))).chunk(2, dim=1)
                mus.append(mu)
                logvars.append(logvar)
            return torch.cat(mus, 1), torch.cat(logvars, 1)

        def decode(self, z: torch.Tensor) -> torch.Tensor:
            return torch.cat([dec(part) for dec, part in zip(self.decoders, z.split(latents, dim=1))], 1)

    return LatentAutoencoder()


class LDiffRec(DiffRec):
    """Latent DiffRec: cluster-wise VAE compression, diffusion on the latent, decode to items."""

    name = "ldiffrec"

    @dataclass
    class Config(DiffRec.Config):
        n_clusters: int = 2
        latent: int = 300  # total latent width, shared among clusters by their item counts
        hidden: list[int] = field(default_factory=lambda: [300])  # latent denoiser widths
        lamda: float = 0.03  # weight of the diffusion loss against the VAE loss
        anneal_cap: float = 0.005
        anneal_steps: int = 1000
        vae_dropout: float = 0.5
        dropout: float = 0.0  # on the denoiser's input (the latent); the VAE input has its own

    def __init__(self, config=None, **overrides):
        super().__init__(config, **overrides)
        self.clusters = None
        self._step = 0

    # --- latent plumbing -----------------------------------------------------------------------
    def _layout(self) -> tuple[list[int], list[int]]:
        sizes = np.bincount(self.clusters, minlength=int(self.clusters.max()) + 1).tolist()
        latents = [max(1, round(self.config.latent * n / sum(sizes))) for n in sizes]
        self.order = np.argsort(self.clusters, kind="stable")  # items grouped by cluster
        self.inverse = np.argsort(self.order)
        return sizes, latents

    def _net(self):
        c = self.config
        if c.loss != "mse":
            raise InputError("ldiffrec diffuses a continuous latent: use loss: mse")
        self._schedule()
        sizes, latents = self._layout()
        denoiser = dict(hidden=list(c.hidden), emb_dim=c.emb_dim, dropout=c.dropout,
                        activation=c.activation, normalize=False)
        return _build_autoencoder(sizes, latents, denoiser, c.vae_dropout)

    def _predict_x0(self, z_t, t):
        return self.net.denoiser(z_t, t)

    def _item_clusters(self, data, seed: int) -> np.ndarray:
        emb = data.item_emb
        if emb is None:  # no embeddings shipped: a rank-32 SVD of the training matrix stands in
            from scipy.sparse.linalg import svds

            k = max(1, min(32, min(data.train.shape) - 1))
            _, s, vt = svds(data.train.astype(np.float64), k=k, random_state=seed)
            emb = (vt.T * s).astype(np.float32)
        return cluster_items(np.asarray(emb), self.config.n_clusters, seed)

    def batch_loss(self, x0, gen):
        """Joint objective: lambda * latent diffusion loss + VAE loss on the decoded x0 estimate."""
        import torch
        import torch.nn.functional as F

        c = self.config
        x = x0[:, self.order]
        mu, logvar = self.net.encode(x)
        z = mu + torch.randn(mu.shape, generator=gen) * torch.exp(0.5 * logvar)
        diffusion, z0_hat = self.diffusion_loss(z, gen)
        recon = 0.0
        for z_hat in (z, z0_hat):  # the plain autoencoder path keeps the encoder learning early on
            recon = recon - (F.log_softmax(self.net.decode(z_hat), 1) * x).sum(1).mean()
        kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1).mean()
        beta = min(c.anneal_cap, self._step / max(c.anneal_steps, 1))
        self._step += 1
        return c.lamda * diffusion + recon + beta * kl

    # --- what the epoch trainer asks (recommenders.training) ---------------------------------------
    def setup_fit(self, data, seed: int):
        """Cluster the items (k-means, seeded), then build encoders, decoders and denoiser."""
        self.clusters = self._item_clusters(data, seed)
        self._step = 0
        return super().setup_fit(data, seed)

    def fit_state(self) -> dict:
        import torch

        return {**super().fit_state(), "step": torch.tensor([self._step])}

    def load_fit_state(self, tensors: dict) -> None:
        super().load_fit_state(tensors)
        self._step = int(tensors["step"][0])

    # --- the recommender interface ------------------------------------------------------------
    def score(self, users: np.ndarray, history=None) -> np.ndarray:
        import torch

        self.net.eval()
        with torch.no_grad():
            x = torch.from_numpy(self._rows(users, history))[:, self.order]
            mu, _ = self.net.encode(x)
            logits = self.net.decode(self.denoise(mu))
        return logits[:, self.inverse].numpy()

    def state_tensors(self) -> dict:
        return {**super().state_tensors(), "clusters": self.clusters}

    def load_state_tensors(self, tensors: dict) -> None:
        self.clusters = np.asarray(tensors["clusters"], np.int64)
        super().load_state_tensors(tensors)
