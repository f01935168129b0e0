"""Mult-VAE (Liang et al., WWW 2018): a variational autoencoder with a multinomial likelihood.

Encoder: L2-normalised, dropped-out multi-hot row -> tanh MLP -> (mu, logvar); decoder: z -> tanh
MLP -> item logits. Loss: -sum(x * log_softmax(logits)) + beta * KL, beta annealed linearly to
`anneal_cap`. Scoring uses mu (no sampling), so scores are deterministic.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import numpy as np

from .cf_base import HistoryModel, valid_recall


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


class MultiVAE(HistoryModel):
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

    def fit(self, data, *, seed: int = 0, progress: bool = True, checkpoint_dir=None) -> dict:
        """Train with Adam; keep the weights of the best validation epoch.

        With `checkpoint_dir`, every epoch is checkpointed and a rerun with the same settings resumes
        after the last finished one, ending with the same weights (`recommenders.checkpoint`).
        """
        import torch
        import torch.nn.functional as F
        from tqdm.auto import tqdm

        from .checkpoint import (
            EpochCheckpoint,
            cf_fingerprint,
            restore_epoch,
            save_epoch,
        )

        c = self.config
        self._set_history(data.train)
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        self.net = self._net()
        opt = torch.optim.Adam(self.net.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        x_all = torch.from_numpy(self.train_rows.toarray())
        best, best_state, best_epoch, best_seconds, step, log = -1.0, None, -1, 0.0, 0, []
        first, stopped, elapsed = 0, False, 0.0
        ckpt = EpochCheckpoint(checkpoint_dir, cf_fingerprint(self, data, seed)) if checkpoint_dir is not None else None
        if ckpt is not None and (saved := ckpt.load()) is not None:
            best_state, state, _ = restore_epoch(saved, {"net": self.net}, opt, gen)
            best, best_epoch, best_seconds, log = state["best"], state["best_epoch"], state["best_seconds"], state["log"]
            step, first, stopped, elapsed = state["step"], state["epoch"] + 1, state["stopped"], state["seconds"]
            if progress:
                tqdm.write(f"multivae: resuming after epoch {state['epoch'] + 1} from {checkpoint_dir}")
        start = time.perf_counter() - elapsed
        bar = tqdm(range(first, c.epochs), desc="multivae", disable=not progress or stopped, leave=False,
                   initial=first, total=c.epochs)
        for epoch in bar:
            if stopped:
                break
            self.net.train()
            total = 0.0
            for idx in torch.randperm(len(x_all), generator=gen).split(c.batch_size):
                x = x_all[idx]
                logits, mu, logvar = self.net(x)
                beta = min(c.anneal_cap, step / max(c.anneal_steps, 1))
                nll = -(F.log_softmax(logits, 1) * x).sum(1).mean()
                kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1).mean()
                loss = nll + beta * kl
                opt.zero_grad()
                loss.backward()
                opt.step()
                step += 1
                total += float(loss.detach())
            recall = valid_recall(self, data)
            log.append({"epoch": epoch, "loss": total, "valid_recall@20": recall})
            if recall > best:
                best, best_epoch = recall, epoch
                best_state = copy.deepcopy(self.net.state_dict())
                best_seconds = time.perf_counter() - start
            bar.set_postfix(valid_r20=f"{recall:.4f}", best=f"{best:.4f}@{best_epoch}")
            stopped = epoch - best_epoch >= c.patience
            if ckpt is not None:
                save_epoch(ckpt, {"net": self.net.state_dict()}, opt, gen, best_state,
                           {"epoch": epoch, "best": best, "best_epoch": best_epoch, "best_seconds": best_seconds,
                            "log": log, "step": step, "stopped": stopped, "seconds": time.perf_counter() - start})
            if stopped:
                break
        self.net.load_state_dict(best_state)
        return {"best_epoch": best_epoch, "best_valid_recall@20": best, "seconds_to_best": best_seconds,
                "epochs_run": len(log), "epochs_resumed": first, "log": log}

    def score(self, users: np.ndarray, history=None) -> np.ndarray:
        import torch

        self.net.eval()
        with torch.no_grad():
            logits, _, _ = self.net(torch.from_numpy(self._rows(users, history)))
        return logits.numpy()

    def state_tensors(self) -> dict:
        return {**{f"net.{k}": v.contiguous() for k, v in self.net.state_dict().items()}, **self.history_tensors()}

    def load_state_tensors(self, tensors: dict) -> None:
        self.load_history_tensors(tensors)
        self.net = self._net()
        self.net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
        self.net.eval()
