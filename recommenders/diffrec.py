"""DiffRec (Wang et al., "Diffusion Recommender Model", SIGIR 2023): Gaussian diffusion over a user's
interaction vector with an MLP denoiser that predicts x0.

Forward process: x_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) eps, with 1 - ab_t rising linearly from
noise_scale * noise_min to noise_scale * noise_max over `steps` (the paper keeps the noise small so
the personalised signal survives). Training: timestep t drawn by importance sampling on the running
per-t loss (Nichol & Dhariwal 2021, sec. 3.3), loss weighted by SNR(t-1) - SNR(t) (paper eq. 14).
Scoring is deterministic: the input row is noised without noise to `sampling_start` and denoised
with posterior-mean steps (diffusers' `DDPMScheduler` over DiffRec's schedule, custom timesteps, its
variance set to zero); `ensemble` averages the x0 estimates met on the way (step ensembling)
instead of keeping only the last one. `ema_decay` > 0 keeps an exponential moving average of the
weights (`core.ema`, as image diffusion models do, with a warm-up so it forgets the initial weights)
and selects and scores with it. Training runs in the shared epoch trainer (`recommenders.training`);
this file supplies the loss, the network and the optimizer. `item_linear` adds a zero-diagonal
item-item linear path to the denoiser and `cooc` feeds it the user's co-occurrence neighbourhood
(see `build_denoiser`). `loss: multinomial` swaps the paper's squared error for the multinomial
log-likelihood of Mult-VAE (Liang et al. 2018) as the x0 objective, an option chosen on validation
data like any other hyperparameter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from core.errors import InputError

from .cf_base import HistoryModel
from .training import EpochTrained


def diffrec_betas(steps: int, noise_scale: float, noise_min: float, noise_max: float,
                  max_beta: float = 0.999) -> np.ndarray:
    """DiffRec's schedule: 1 - alpha_bar linear in t, then betas from the alpha_bar ratios (float64)."""
    if steps < 1 or not 0 < noise_min <= noise_max or noise_scale <= 0:
        raise InputError("diffrec needs steps >= 1 and 0 < noise_min <= noise_max, noise_scale > 0")
    one_minus_ab = noise_scale * np.linspace(noise_min, noise_max, steps, dtype=np.float64)
    ab = 1.0 - one_minus_ab
    betas = np.empty(steps)
    betas[0] = one_minus_ab[0]
    betas[1:] = np.minimum(1.0 - ab[1:] / ab[:-1], max_beta)
    return betas


def build_denoiser(n_items: int, hidden: list[int], emb_dim: int, dropout: float, activation: str = "tanh",
                   normalize: bool = True, item_linear: bool = False, cooc=None):
    """MLP denoiser: [normalised x_t ; time embedding] -> hidden -> mirrored hidden -> x0 estimate.

    `item_linear` adds a second path from the same (normalised, dropped-out) input straight to the
    output: an item-to-item matrix with its diagonal left out (so no item predicts itself), starting
    at zero, as in linear denoising autoencoders (Steck 2020, EDLAE). The MLP then models what a
    linear item-item map cannot.

    `cooc` (an item-item matrix, fixed) gives the MLP a second input, the user's two-hop neighbourhood
    normalise(x @ cooc) of the same dropped-out input, as CF-Diff (Hou et al., SIGIR 2024) conditions
    its denoiser on higher-order neighbours. In eval mode the (multi-hot, sparse) input is multiplied
    as a sparse matrix, which is what keeps scoring every user fast.
    """
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    from diffusers.models.embeddings import get_timestep_embedding

    def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:  # [cos | sin], Vaswani et al. 2017
        return get_timestep_embedding(t, dim, flip_sin_to_cos=True, downscale_freq_shift=0)

    act = {"tanh": torch.tanh, "relu": F.relu, "sigmoid": torch.sigmoid}[activation]

    class Denoiser(nn.Module):
        def __init__(self):
            super().__init__()
            self.time_proj = nn.Linear(emb_dim, emb_dim)
            down = [n_items * (2 if cooc is not None else 1) + emb_dim, *hidden]
            up = [*reversed(hidden), n_items]
            self.down = nn.ModuleList(nn.Linear(a, b) for a, b in zip(down[:-1], down[1:]))
            self.up = nn.ModuleList(nn.Linear(a, b) for a, b in zip(up[:-1], up[1:]))
            self.drop = nn.Dropout(dropout)
            self.item_item = nn.Parameter(torch.zeros(n_items, n_items)) if item_linear else None
            self.register_buffer("cooc", None if cooc is None else torch.as_tensor(cooc, dtype=torch.float32),
                                 persistent=False)  # rebuilt from the training rows, not saved
            for m in self.modules():  # the paper's init: N(0, 2 / (fan_in + fan_out)), tiny biases
                if isinstance(m, nn.Linear):
                    nn.init.normal_(m.weight, std=math.sqrt(2.0 / (m.in_features + m.out_features)))
                    nn.init.normal_(m.bias, std=0.001)

        def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            x = self.drop(F.normalize(x, dim=1) if normalize else x)
            sparse = not self.training and len(x) >= 64 and torch.count_nonzero(x) < 0.1 * x.numel()
            xs = x.to_sparse() if sparse else None  # batch scoring: the multi-hot rows are ~2% non-zero

            def mm(w):  # x @ w, as a sparse product where that is cheaper (it needs a contiguous w to be)
                return torch.sparse.mm(xs, w.contiguous()) if xs is not None else x @ w

            temb = self.time_proj(timestep_embedding(t, emb_dim))
            first = self.down[0]
            n = x.shape[1]
            h = mm(first.weight[:, :n].t()) + temb @ first.weight[:, -emb_dim:].t() + first.bias
            if self.cooc is not None:
                h = h + F.normalize(mm(self.cooc), dim=1) @ first.weight[:, n:2 * n].t()
            h = act(h)
            skip = None
            if self.item_item is not None:  # x W with W's diagonal taken out
                skip = mm(self.item_item) - x * torch.diagonal(self.item_item)
            for layer in self.down[1:]:
                h = act(layer(h))
            for i, layer in enumerate(self.up):
                h = layer(h)
                if i < len(self.up) - 1:
                    h = act(h)
            return h if skip is None else h + skip

    return Denoiser()


class DiffRec(EpochTrained, HistoryModel):
    """Diffusion over interaction vectors, x0 prediction, importance-sampled timesteps."""

    name = "diffrec"

    @dataclass
    class Config:
        hidden: list[int] = field(default_factory=lambda: [600, 200])  # denoiser widths (mirrored back up)
        emb_dim: int = 10
        dropout: float = 0.5
        activation: str = "tanh"
        steps: int = 40
        noise_scale: float = 0.005
        noise_min: float = 0.005
        noise_max: float = 0.01
        reweight: bool = True  # SNR-difference loss weights + importance-sampled timesteps
        loss: str = "mse"  # "mse" (paper) or "multinomial"
        lr: float = 1e-3
        weight_decay: float = 0.0
        batch_size: int = 400
        epochs: int = 50
        patience: int = 10
        sampling_start: int = 0  # timestep the input is (noise-free) diffused to before denoising
        sampling_steps: int = 1  # reverse steps from sampling_start down to 0 (strided)
        ensemble: bool = False  # average the x0 estimates of all reverse steps
        ema_decay: float = 0.0  # > 0: validate and keep an exponential moving average of the weights
        item_linear: bool = False  # add a zero-diagonal item-item linear path to the denoiser
        linear_lr: float = 0.0  # learning rate of that path (0: lr)
        cooc: bool = False  # also feed the MLP the user's two-hop item neighbourhood (CF-Diff style)

    # --- diffusion math -------------------------------------------------------------------------
    def _schedule(self) -> None:
        c = self.config
        if c.loss not in ("mse", "multinomial"):
            raise InputError(f"diffrec loss must be mse or multinomial, got {c.loss!r}")
        if not 0 <= c.sampling_start < c.steps or c.sampling_steps < 1:
            raise InputError(f"diffrec needs 0 <= sampling_start < steps ({c.steps}) and sampling_steps >= 1")
        self.betas = diffrec_betas(c.steps, c.noise_scale, c.noise_min, c.noise_max)
        self.alphas_cumprod = np.cumprod(1.0 - self.betas)
        snr = self.alphas_cumprod / (1.0 - self.alphas_cumprod)
        # Paper eq. 14 (x0 objective): weight_t = SNR(t-1) - SNR(t), and 1 at t = 0.
        self.loss_weight = np.concatenate([[1.0], snr[:-1] - snr[1:]])

    def _sample_timesteps(self, n: int, gen):
        """Importance sampling p(t) ~ sqrt(E[L_t^2]) once every t has 10 recorded losses, else uniform."""
        import torch

        T = self.config.steps
        if not self.config.reweight or (self._loss_count < self._loss_hist.shape[1]).any():
            t = torch.randint(0, T, (n,), generator=gen)
            return t, torch.ones(n)
        p = np.sqrt((self._loss_hist ** 2).mean(1))
        p = 0.999 * p / p.sum() + 0.001 / T
        t = torch.multinomial(torch.from_numpy(p), n, replacement=True, generator=gen)
        return t, torch.from_numpy(p[t.numpy()] * T).float()

    def _record_losses(self, t: np.ndarray, losses: np.ndarray) -> None:
        """Keep the 10 latest losses per timestep (vectorised: later duplicates win)."""
        for ti, li in zip(t, losses):  # at most batch_size iterations on scalars; training only
            hist = self._loss_hist[ti]
            if self._loss_count[ti] == hist.shape[0]:
                hist[:-1] = hist[1:]
                hist[-1] = li
            else:
                hist[self._loss_count[ti]] = li
                self._loss_count[ti] += 1

    def diffusion_loss(self, x0, gen):
        """Noise x0 to random t, predict x0; the weighted, importance-corrected loss and the prediction."""
        import torch
        import torch.nn.functional as F

        c = self.config
        t, pt = self._sample_timesteps(len(x0), gen)
        ab = torch.from_numpy(self.alphas_cumprod).float()[t][:, None]
        noise = torch.randn(x0.shape, generator=gen)
        x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
        out = self._predict_x0(x_t, t)
        if c.loss == "mse":
            per_user = ((out - x0) ** 2).mean(1)
            if c.reweight:
                per_user = per_user * torch.from_numpy(self.loss_weight).float()[t]
        else:
            per_user = -(F.log_softmax(out, 1) * x0).sum(1)
        if c.reweight:
            self._record_losses(t.numpy(), per_user.detach().numpy())
            per_user = per_user / pt
        return per_user.mean(), out

    @property
    def inference_timesteps(self) -> list[int]:
        c = self.config
        n = min(c.sampling_steps, c.sampling_start + 1)
        return sorted({int(round(x)) for x in np.linspace(c.sampling_start, 0, n)}, reverse=True)

    def reverse_scheduler(self):
        """diffusers' DDPM scheduler over DiffRec's own betas, its timesteps the strided inference ones.

        DiffRec denoises with the posterior mean (no noise): the scheduler's variance is "learned"
        and `denoise` passes a zero variance, so `step` returns the mean of q(x_s | x_t, x0).
        """
        from .schedulers import make_scheduler

        sched = make_scheduler("ddpm", num_train_timesteps=self.config.steps, trained_betas=self.betas,
                               prediction_type="sample", variance_type="learned")
        sched.set_timesteps(timesteps=self.inference_timesteps)
        return sched

    def denoise(self, x):
        """Deterministic reverse process from the noise-free x_start (Ho et al. 2020, eq. 7 means)."""
        import torch

        sched = self.reverse_scheduler()
        timesteps = sched.timesteps.tolist()
        x_t = sched.add_noise(x, torch.zeros_like(x), sched.timesteps[:1])  # sqrt(ab_start) x: no noise
        unused = torch.Generator()  # step() draws noise even when its variance is zero; keep it off the others
        total = 0.0
        for i, t in enumerate(timesteps):
            x0 = self._predict_x0(x_t, torch.full((len(x),), t, dtype=torch.long))
            if self.config.loss == "multinomial":
                x0 = torch.softmax(x0, 1) * x.sum(1, keepdim=True)  # back to the data's scale
            total = total + x0
            if i + 1 == len(timesteps):
                break
            x_t = sched.step(torch.cat([x0, torch.zeros_like(x0)], 1), t, x_t, generator=unused).prev_sample
        return total / len(timesteps) if self.config.ensemble else x0

    def _predict_x0(self, x_t, t):
        return self.net(x_t, t)

    # --- the recommender interface ------------------------------------------------------------
    def _net(self):
        c = self.config
        self._schedule()
        return build_denoiser(self.n_items, list(c.hidden), c.emb_dim, c.dropout, c.activation,
                              item_linear=c.item_linear, cooc=self._cooc() if c.cooc else None)

    def _cooc(self) -> np.ndarray:
        """Co-occurrence of the training rows, zero diagonal, normalised D^-1/2 C D^-1/2 (float32)."""
        x = self.train_rows.astype(np.float32)
        cooc = (x.T @ x).toarray()
        np.fill_diagonal(cooc, 0.0)
        d = 1.0 / np.sqrt(np.maximum(cooc.sum(1), 1e-12))
        return (cooc * d[:, None] * d[None, :]).astype(np.float32)

    # --- what the epoch trainer asks (recommenders.training) ---------------------------------------
    def setup_fit(self, data, seed: int):
        """Keep the training rows, reset the per-timestep loss history, build the denoiser."""
        self._set_history(data.train)
        self._loss_hist = np.zeros((self.config.steps, 10))
        self._loss_count = np.zeros(self.config.steps, dtype=np.int64)
        return self._net()

    def configure_optimizer(self, net):
        """Adam; the item-item path may have its own learning rate (`linear_lr`)."""
        import torch

        c = self.config
        linear = [p for n, p in net.named_parameters() if n == "item_item"]
        rest = [p for n, p in net.named_parameters() if n != "item_item"]
        groups = [{"params": rest}] + ([{"params": linear, "lr": c.linear_lr or c.lr}] if linear else [])
        return torch.optim.Adam(groups, lr=c.lr, weight_decay=c.weight_decay)

    def batch_loss(self, x0, gen):
        """One batch's (weighted, importance-corrected) diffusion loss."""
        return self.diffusion_loss(x0, gen)[0]

    def fit_state(self) -> dict:
        import torch

        return {"loss_hist": torch.from_numpy(self._loss_hist), "loss_count": torch.from_numpy(self._loss_count)}

    def load_fit_state(self, tensors: dict) -> None:
        self._loss_hist = tensors["loss_hist"].numpy().copy()
        self._loss_count = tensors["loss_count"].numpy().copy()

    def score(self, users: np.ndarray, history=None) -> np.ndarray:
        import torch

        self.net.eval()
        with torch.no_grad():
            return self.denoise(torch.from_numpy(self._rows(users, history))).numpy()

