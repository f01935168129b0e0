"""DreamRec (Yang et al., NeurIPS 2023): generate the next item's embedding, guided by the history.

A transformer encodes the history into a guidance vector c; a small denoiser learns to recover the
target item's embedding x0 from a noised copy x_t (x0 or epsilon prediction). Training drops c for
a share of rows (a learned "no history" vector) so that sampling can use classifier-free guidance
(Ho & Salimans 2022): out = (1 + w) f(x_t, c, t) - w f(x_t, null, t). Scores are the inner products
of the generated embedding with every item embedding.

`objective="preferdiff"` trains with PreferDiff (Liu et al., ICLR 2025): cosine denoising error
instead of squared error, plus a BPR term asking the model to denoise the positive item better than
the centroid of sampled negatives under the same history, mixed with the simple loss by `pref_lambda`.
`objective="softmax"` takes PreferDiff's preference term to its many-negative limit: every item is a
negative, the denoised x0 estimate must rank the target first under a softmax over the very scores
used for ranking (`logits`: inner products, or cosine / temperature; the cross-entropy on the
denoised embedding of DiffuRec, Li et al. TOIS 2023), mixed with the cosine denoising error by
`pref_lambda`. It is the default: on zhihu it learned far
faster per epoch than "mse" (whose learned embeddings collapse toward each other: the squared error
never pushes non-targets apart) or "preferdiff" with one negative centroid.

Two further choices, both measured on zhihu validation: the diffused x0 is the *unit* item embedding
times `data_scale` (the raw embeddings either shrink under the MSE or grow until x_t gives the target
away at almost every t, leaving the history unused), and `aux_ce` adds a next-item cross-entropy on
the guidance vector itself so the history encoder learns at SASRec's pace.

Samplers are diffusers' DDPM, DDIM and DPM-Solver++ schedulers (`recommenders.schedulers` sets them
up for embeddings; training noises x0 with the same scheduler's `add_noise`), so the number of reverse
steps is an inference-time choice: tens of steps instead of the published hundreds. With a few steps,
scoring every item becomes most of the inference cost; `recommend(retrieval="ivf")` ranks only the
items of the `n_probe` best k-means lists of an inverted-file index (`recommenders.ann`) instead.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from core.errors import InputError

from .ann import IVFIndex
from .schedulers import SAMPLERS, make_scheduler, set_steps
from .seq_base import NextItemConfig, NextItemModel, SeqEncoder

OBJECTIVES = ("mse", "preferdiff", "softmax")
SCORES = ("dot", "cosine")
RETRIEVALS = ("exact", "ivf")


@dataclass
class DreamRecConfig(NextItemConfig):  # data shape, optimisation and trainer settings: NextItemConfig
    hidden: int = 64
    n_layers: int = 1
    n_heads: int = 2
    dropout: float = 0.1
    emb_init_std: float = 0.02
    normalize_items: bool = True     # diffuse unit item embeddings times data_scale (no collapse, fixed SNR)
    data_scale: float = 1.0          # norm of the diffused x0; the noise has norm ~sqrt(hidden)
    denoiser_mult: int = 2          # denoiser width = mult * hidden
    cond_skip: bool = False         # add a linear path from the guidance vector to the x0 output
    # forward process
    num_train_timesteps: int = 1000
    beta_schedule: str = "linear"
    beta_start: float = 1e-4
    beta_end: float = 0.02
    prediction_type: str = "sample"  # "sample" (x0, as DreamRec) or "epsilon"
    # guidance
    p_uncond: float = 0.1
    guidance: float = 0.0            # w; 0 = conditional only (w = 1, 2, 4 did not help on zhihu valid)
    # objective
    objective: str = "softmax"       # "mse" (DreamRec), "preferdiff" or "softmax"
    n_neg: int = 64
    pref_lambda: float = 0.2         # weight of the simple (positive-only) denoising loss
    pref_beta: float = 1.0
    temperature: float = 0.1         # softmax objective with cosine scores: logits = cos / temperature
    score: str = "dot"               # rank items by "dot" (DreamRec) or "cosine" with the generated embedding
    aux_ce: float = 1.0              # weight of a next-item cross-entropy on the guidance vector itself
    # sampling at inference
    sampler: str = "ddim"
    sampling_steps: int = 10
    eta: float = 0.0
    sample_seed: int = 0
    # top-k retrieval in recommend(): "exact" scores every item; "ivf" scores only the items of the
    # n_probe best of ivf_clusters k-means lists (recommenders.ann; 0 clusters = round(sqrt(n_items)))
    retrieval: str = "exact"
    n_probe: int = 8
    ivf_clusters: int = 0
    ivf_iters: int = 10
    ivf_seed: int = 0


class Denoiser(nn.Module):
    """MLP on [x_t, c, emb(t)]; the first layer is split per input so c's part is computed once per row."""

    def __init__(self, hidden: int, mult: int, cond_skip: bool = False):
        super().__init__()
        width = mult * hidden
        self.hidden = hidden
        self.in_x = nn.Linear(hidden, width)
        self.in_c = nn.Linear(hidden, width, bias=False)
        self.in_t = nn.Sequential(nn.Linear(hidden, width), nn.GELU(), nn.Linear(width, width))
        self.out = nn.Sequential(nn.GELU(), nn.Linear(width, hidden))
        # optional linear path from the guidance vector straight to the output: at high noise the
        # best x0 estimate is a function of the history alone, and this path gives it directly
        self.skip = nn.Linear(hidden, hidden, bias=False) if cond_skip else None

    def cond(self, c: torch.Tensor) -> torch.Tensor:
        """The guidance vector's contribution(s), computed once and reused across sampling steps."""
        return torch.cat([self.in_c(c), self.skip(c)], -1) if self.skip is not None else self.in_c(c)

    def time_part(self, t: torch.Tensor) -> torch.Tensor:
        """The timestep's contribution; sampling computes it for all its timesteps in one call."""
        from diffusers.models.embeddings import get_timestep_embedding

        # [cos | sin] sinusoids of Vaswani et al. 2017
        return self.in_t(get_timestep_embedding(t, self.hidden, flip_sin_to_cos=True, downscale_freq_shift=0))

    def forward(self, x: torch.Tensor, c_part: torch.Tensor, t: torch.Tensor | None = None, *,
                t_part: torch.Tensor | None = None) -> torch.Tensor:
        if t_part is None:
            t_part = self.time_part(t)
        if self.skip is None:
            return self.out(self.in_x(x) + c_part + t_part)
        c_in, c_skip = c_part.split([self.in_c.out_features, self.hidden], -1)
        return self.out(self.in_x(x) + c_in + t_part) + c_skip


class _DreamRecNet(nn.Module):
    def __init__(self, cfg: DreamRecConfig):
        super().__init__()
        self.encoder = SeqEncoder(cfg.n_items, cfg.max_len, cfg.hidden, cfg.n_layers, cfg.n_heads, cfg.dropout)
        nn.init.normal_(self.encoder.item_emb.weight, std=cfg.emb_init_std)
        with torch.no_grad():
            self.encoder.item_emb.weight[cfg.n_items].zero_()
        self.denoiser = Denoiser(cfg.hidden, cfg.denoiser_mult, cfg.cond_skip)
        self.null_cond = nn.Parameter(torch.randn(cfg.hidden) * 0.02)  # "no history" guidance

    @property
    def items(self) -> torch.Tensor:
        return self.encoder.item_emb.weight[:-1]

    def x0_of(self, idx: torch.Tensor, cfg: DreamRecConfig) -> torch.Tensor:
        """The diffused data for item indices: (scaled, unit) item embeddings."""
        e = self.encoder.item_emb(idx)
        return cfg.data_scale * F.normalize(e, dim=-1) if cfg.normalize_items else e


class DreamRec(NextItemModel):
    """Sequence diffusion recommender with classifier-free guidance and fast samplers."""

    name = "dreamrec"
    Config = DreamRecConfig

    def __init__(self, config=None, **overrides):
        super().__init__(config, **overrides)
        cfg = self.config
        if cfg.objective not in OBJECTIVES:
            raise InputError(f"objective must be one of {OBJECTIVES}, got {cfg.objective!r}")
        if cfg.score not in SCORES:
            raise InputError(f"score must be one of {SCORES}, got {cfg.score!r}")
        if cfg.sampler not in SAMPLERS:
            raise InputError(f"sampler must be one of {', '.join(SAMPLERS)}, got {cfg.sampler!r}")
        if cfg.retrieval not in RETRIEVALS:
            raise InputError(f"retrieval must be one of {RETRIEVALS}, got {cfg.retrieval!r}")
        if cfg.n_probe < 1:
            raise InputError(f"n_probe must be at least 1, got {cfg.n_probe}")
        self._ivf: IVFIndex | None = None  # built on first use after fit/load, never saved
        self._schedulers: dict = {}  # sampler name -> diffusers scheduler, built on first use
        self.noise = self.scheduler("ddpm")  # its add_noise is the forward process of training
        self.timing = {"encode_s": 0.0, "sample_s": 0.0, "rank_s": 0.0}  # of the last score() call

    def build(self) -> nn.Module:
        return _DreamRecNet(self.config)

    def scheduler(self, sampler: str):
        """The diffusers scheduler of a sampler over this model's forward process (one per name)."""
        if sampler not in SAMPLERS:
            raise InputError(f"sampler must be one of {', '.join(SAMPLERS)}, got {sampler!r}")
        if sampler not in self._schedulers:
            cfg = self.config
            self._schedulers[sampler] = make_scheduler(
                sampler, num_train_timesteps=cfg.num_train_timesteps, beta_schedule=cfg.beta_schedule,
                beta_start=cfg.beta_start, beta_end=cfg.beta_end, prediction_type=cfg.prediction_type)
        return self._schedulers[sampler]

    # -- training --------------------------------------------------------------------------
    def _x0_hat(self, out: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self.config.prediction_type == "sample":
            return out
        ab = self.noise.alphas_cumprod[t].float()[:, None]
        return (x_t - (1 - ab).sqrt() * out) / ab.sqrt()

    def loss(self, seq, seq_len, target):
        cfg, net = self.config, self.net
        c = net.encoder(seq, seq_len)
        drop = torch.rand(len(c)) < cfg.p_uncond
        c = torch.where(drop[:, None], net.null_cond.expand_as(c), c)
        c_part = net.denoiser.cond(c)
        x0 = net.x0_of(target, cfg)
        t = torch.randint(0, cfg.num_train_timesteps, (len(c),))
        eps = torch.randn_like(x0)
        x_t = self.noise.add_noise(x0, eps, t)
        out = net.denoiser(x_t, c_part, t)
        aux = cfg.aux_ce * F.cross_entropy(self.logits(c), target) if cfg.aux_ce else 0.0
        if cfg.objective == "mse":
            return F.mse_loss(out, x0 if cfg.prediction_type == "sample" else eps) + aux
        x0_hat = self._x0_hat(out, x_t, t)
        err_pos = 1 - F.cosine_similarity(x0_hat, x0, dim=-1)
        if cfg.objective == "softmax":
            ce = F.cross_entropy(self.logits(x0_hat), target)
            return cfg.pref_lambda * err_pos.mean() + (1 - cfg.pref_lambda) * ce + aux
        # PreferDiff: cosine error on x0, positive vs. the centroid of uniform negatives, same c and t.
        neg = torch.randint(0, cfg.n_items, (len(c), cfg.n_neg))
        x0_neg = net.x0_of(neg, cfg).mean(1)
        x_t_neg = self.noise.add_noise(x0_neg, torch.randn_like(x0), t)
        out_neg = net.denoiser(x_t_neg, c_part, t)
        err_neg = 1 - F.cosine_similarity(self._x0_hat(out_neg, x_t_neg, t), x0_neg, dim=-1)
        bpr = -F.logsigmoid(cfg.pref_beta * (err_neg - err_pos)).mean()
        return cfg.pref_lambda * err_pos.mean() + (1 - cfg.pref_lambda) * bpr + aux

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Item logits of embeddings x: how training's softmax and inference's ranking score items."""
        if self.config.score == "cosine":
            return F.normalize(x, dim=-1) @ self.item_vectors().T / self.config.temperature
        return x @ self.item_vectors().T

    # -- sampling --------------------------------------------------------------------------
    @torch.inference_mode()
    def generate(self, seq: torch.Tensor, seq_len: torch.Tensor, *, sampler: str | None = None,
                 steps: int | None = None, guidance: float | None = None, eta: float | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Sample the next item's embedding (B, hidden) for each history, with classifier-free guidance.

        Everything that does not change across reverse steps is computed once per batch: the history
        encoding, the guidance vector's projection in the denoiser (`cond`), and the timestep
        projections of all chosen timesteps (one batched call); each step is then two linear layers
        and the sampler's update.
        """
        cfg, net = self.config, self._require_fitted()
        net.eval()
        sampler = sampler or cfg.sampler
        w = cfg.guidance if guidance is None else guidance
        step_kwargs = {"generator": generator}
        if sampler == "ddim":
            step_kwargs["eta"] = cfg.eta if eta is None else eta
        sched = self.scheduler(sampler)
        set_steps(sched, steps or cfg.sampling_steps)
        B = len(seq)
        # 1. encode the history once
        start = time.perf_counter()
        c_part = net.denoiser.cond(net.encoder(seq, seq_len))
        self.timing["encode_s"] += time.perf_counter() - start
        # 2. prepare the guidance rows and the timestep projections
        start = time.perf_counter()
        if w != 0:  # one batched pass for the conditional and the unconditional rows
            c_part = torch.cat([c_part, net.denoiser.cond(net.null_cond)[None].expand(B, -1)])
        t_parts = net.denoiser.time_part(sched.timesteps)  # (n_steps, width)
        # 3. the reverse process
        x = torch.randn(B, cfg.hidden, generator=generator) * sched.init_noise_sigma
        for i, t in enumerate(sched.timesteps.tolist()):
            x_in = sched.scale_model_input(x, t)
            out = net.denoiser(torch.cat([x_in, x_in]) if w != 0 else x_in, c_part, t_part=t_parts[i])
            if w != 0:
                cond, uncond = out.chunk(2)
                out = (1 + w) * cond - w * uncond
            x = sched.step(out, t, x, **step_kwargs).prev_sample
        self.timing["sample_s"] += time.perf_counter() - start
        return x

    def item_vectors(self) -> torch.Tensor:
        """The item embeddings that generated vectors are ranked against (unit length for "cosine")."""
        items = self._require_fitted().items
        return F.normalize(items, dim=-1) if self.config.score == "cosine" else items

    scores_into = True

    def score_batch(self, seq, seq_len, out: torch.Tensor | None = None, **kwargs):
        x = self.generate(seq, seq_len, **kwargs)
        start = time.perf_counter()
        scores = torch.mm(x, self.item_vectors().T, out=out)  # the same ranking as logits()
        self.timing["rank_s"] += time.perf_counter() - start
        return scores

    def _sampling_kwargs(self, sampler, steps, guidance, eta, seed) -> dict:
        """Per-call sampler settings; the noise comes from `seed` (default: config.sample_seed)."""
        self.timing = dict.fromkeys(self.timing, 0.0)
        gen = torch.Generator().manual_seed(self.config.sample_seed if seed is None else seed)
        return dict(sampler=sampler, steps=steps, guidance=guidance, eta=eta, generator=gen)

    def score(self, seq: np.ndarray, seq_len: np.ndarray | None = None, *, batch_size: int = 2048,
              sampler: str | None = None, steps: int | None = None, guidance: float | None = None,
              eta: float | None = None, seed: int | None = None, **_) -> np.ndarray:
        """Scores (N, n_items): inner products of the generated embedding with all item embeddings.

        The sampling noise comes from `seed` (default: config.sample_seed), so scores are repeatable.
        """
        return super().score(seq, seq_len, batch_size=batch_size,
                             **self._sampling_kwargs(sampler, steps, guidance, eta, seed))

    def recommend(self, seq: np.ndarray, seq_len: np.ndarray | None = None, *, k: int = 20,
                  batch_size: int = 2048, sampler: str | None = None, steps: int | None = None,
                  guidance: float | None = None, eta: float | None = None, seed: int | None = None,
                  retrieval: str | None = None, n_probe: int | None = None, **_) -> np.ndarray:
        """Top-k item indices (N, k) per history, best first (same samples as `score` with this seed).

        `retrieval="ivf"` (default: config.retrieval) ranks only the items of the `n_probe` k-means
        lists whose centroids best match the generated embedding (`ivf_index()`), instead of all items;
        with n_probe = the number of lists it returns the exact top-k.
        """
        retrieval = retrieval or self.config.retrieval
        if retrieval not in RETRIEVALS:
            raise InputError(f"retrieval must be one of {RETRIEVALS}, got {retrieval!r}")
        kwargs = self._sampling_kwargs(sampler, steps, guidance, eta, seed)
        if retrieval == "exact":
            return super().recommend(seq, seq_len, k=k, batch_size=batch_size, **kwargs)
        index = self.ivf_index()
        n_probe = n_probe or self.config.n_probe
        seq, seq_len = self._as_batch(seq, seq_len)
        out = torch.empty((len(seq), min(k, self.config.n_items)), dtype=torch.long)
        for i in range(0, len(seq), batch_size):
            x = self.generate(seq[i:i + batch_size], seq_len[i:i + batch_size], **kwargs)
            start = time.perf_counter()
            out[i:i + batch_size] = index.topk(x, k, n_probe).ids
            self.timing["rank_s"] += time.perf_counter() - start
        return out.numpy()

    def ivf_index(self) -> IVFIndex:
        """The inverted-file index over `item_vectors()`, built once after fit/load (tens of ms on zhihu)."""
        if self._ivf is None:
            cfg = self.config
            self._ivf = IVFIndex(self.item_vectors().detach(), cfg.ivf_clusters or None,
                                 n_iter=cfg.ivf_iters, seed=cfg.ivf_seed)
        return self._ivf

    def setup_fit(self, data, seed: int) -> nn.Module:
        self._ivf = None  # the index belongs to the old item embeddings
        return super().setup_fit(data, seed)

    def load_state_tensors(self, tensors: dict) -> None:
        self._ivf = None
        super().load_state_tensors(tensors)

    def next_item_embedding(self, seq: np.ndarray, seq_len: np.ndarray) -> np.ndarray:
        """The generated next-item embedding for one history (for PreferenceCondition.embedding)."""
        s, n = self._as_batch(seq, seq_len)
        gen = torch.Generator().manual_seed(self.config.sample_seed)
        return self.generate(s, n, generator=gen)[0].numpy()
