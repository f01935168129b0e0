"""The one epoch trainer of every recommender trained in epochs (DiffRec, L-DiffRec, Mult-VAE, SASRec,
GRU4Rec, DreamRec).

`train_epochs(model, data, seed=..., progress=..., checkpoint_dir=...)` does what every such model
needs and nothing a model computes: seed every generator, Adam-style steps with optional gradient
clipping, an EMA of the weights (`core.ema`) when the config asks for one, validation every
`eval_every` epochs, early stopping when the validation figure has not improved for `patience`
validations, an optional time cap, a tqdm bar, epoch checkpoints (`recommenders.checkpoint`: a
rerun after a kill resumes after the last finished epoch and ends with the same bytes; checkpoints
of other settings are ignored), and the one training log below. At the end the model holds the
weights of its best validation (the EMA weights when averaging).

What a model supplies (mix in `EpochTrained` before its base class to get `fit`)::

    class MyModel(EpochTrained, HistoryModel):      # or (EpochTrained, NextItemModel)
        def setup_fit(self, data, seed) -> nn.Module      # read the data, build and return the net (RNGs seeded)
        def configure_optimizer(self, net) -> Optimizer
        def train_batches(self, data, gen) -> Iterable    # one epoch's batches, shuffled with `gen`
        def batch_loss(self, batch, gen) -> Tensor        # the loss of one batch (scalar)
        valid_metric: str                                 # e.g. "recall@20": the figure validate() returns
        def validate(self, data) -> float                 # higher is better; uses `self.net`
        def fit_fingerprint(self, data, seed) -> str      # what makes a checkpoint this run's
        def fit_state(self) -> dict[str, Tensor]          # optional: training state beyond weights
        def load_fit_state(self, tensors) -> None         #   (e.g. DiffRec's per-timestep losses)

`HistoryModel` (CF) already provides `valid_metric`, `validate`, `fit_fingerprint` and
`train_batches`, so a new CF model writes `setup_fit`, `configure_optimizer` and `batch_loss`
(see `multivae.py`). `NextItemModel` (sequential) provides all of them from three methods of its
own, so a new next-item model writes `build`, `loss(seq, seq_len, target)` and `score_batch`
(see `sasrec.py`) and a config subclassing `NextItemConfig`. The trainer reads from `model.config`: `epochs`, `patience`,
and, when present, `eval_every` (1), `ema_decay` (0 = no EMA), `grad_clip` (0 = none) and
`max_train_seconds` (0 = no cap). During validation and after `fit`, `model.net` is the module whose
weights are judged (the EMA copy when averaging).

The log (`fit`'s return value), the same keys for every model; epochs count from 1 (epoch k = after
k passes over the training data)::

    {"model", "metric": "valid_<valid_metric>", "best_epoch", "best_valid", "epochs_run",
     "epochs_resumed", "stopped": "patience" | "time cap" | "epochs", "seconds", "seconds_to_best",
     "log": [{"epoch", "loss" (mean over batches), "valid" (None when not validated), "seconds"}]}
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from core.runtime import seed_everything

if TYPE_CHECKING:
    import torch

EMA_WARMUP = 10  # the EMA's warm-up (core.ema): the average forgets the initial weights in ~10 steps
TRAINER_FORMAT = 2  # part of every checkpoint's fingerprint: checkpoints of the per-model loops are ignored
LOG_KEYS = ("model", "metric", "best_epoch", "best_valid", "epochs_run", "epochs_resumed", "stopped", "seconds",
            "seconds_to_best", "log")
RECORD_KEYS = ("epoch", "loss", "valid", "seconds")


@dataclass(frozen=True)
class TrainSettings:
    """The trainer's knobs, read from a model's config (missing ones take the defaults)."""

    epochs: int
    patience: int
    eval_every: int = 1
    ema_decay: float = 0.0
    grad_clip: float = 0.0
    max_train_seconds: float = 0.0

    @classmethod
    def of(cls, config: Any) -> "TrainSettings":
        from core.errors import InputError

        s = cls(**{k: getattr(config, k) for k in cls.__dataclass_fields__ if hasattr(config, k)})
        if s.epochs < 1 or s.patience < 1 or s.eval_every < 1:
            raise InputError(f"epochs, patience and eval_every must be at least 1 (got {s.epochs}, {s.patience}, "
                             f"{s.eval_every})")
        if not 0.0 <= s.ema_decay < 1.0:
            raise InputError(f"ema_decay must be in [0, 1), got {s.ema_decay}")
        return s


def shuffled_batches(tensors: tuple, batch_size: int, gen: "torch.Generator") -> Iterable[tuple]:
    """Rows of `tensors` (same first axis) in batches of `batch_size`, in an order drawn from `gen`."""
    import torch

    for idx in torch.randperm(len(tensors[0]), generator=gen).split(batch_size):
        yield tuple(t[idx] for t in tensors)


class EpochTrained:
    """Mixin: `fit` through `train_epochs`; the model supplies the methods named in the module docstring."""

    def fit(self, data, *, seed: int = 0, progress: bool = True, checkpoint_dir: str | Path | None = None) -> dict:
        """Train on data.train, early-stopping on data.valid; resumable from `checkpoint_dir` (see `train_epochs`)."""
        return train_epochs(self, data, seed=seed, progress=progress, checkpoint_dir=checkpoint_dir)

    def fit_state(self) -> dict:
        """Tensors beyond the weights that a resumed run needs (none by default)."""
        return {}

    def load_fit_state(self, tensors: dict) -> None:
        """Inverse of `fit_state`."""


def train_epochs(model, data, *, seed: int = 0, progress: bool = True,
                 checkpoint_dir: str | Path | None = None) -> dict:
    """Train `model` on `data` in epochs (see the module docstring); returns the training log."""
    import torch
    from tqdm.auto import tqdm

    from core.ema import EMA

    from .checkpoint import EpochCheckpoint, fingerprint

    s = TrainSettings.of(model.config)
    # 1. seed everything, then let the model read the data and build its network
    seed_everything(seed)
    net = model.net = model.setup_fit(data, seed)
    opt = model.configure_optimizer(net)
    gen = torch.Generator().manual_seed(seed)  # the trainer's and the model's own draws (order, timesteps)
    ema = EMA(net, s.ema_decay, warmup=EMA_WARMUP) if s.ema_decay > 0 else None
    judged = copy.deepcopy(net) if ema is not None else net  # the module validation (and the result) uses
    run = _Run()
    # 2. resume the last finished epoch of this very run, if a checkpoint holds one
    ckpt = None
    if checkpoint_dir is not None:
        run_fingerprint = fingerprint(run=model.fit_fingerprint(data, seed), trainer=TRAINER_FORMAT)
        ckpt = EpochCheckpoint(checkpoint_dir, run_fingerprint)
        saved = ckpt.load()
        if saved is not None:
            run = _restore(saved, model, net, opt, gen, ema)
            if progress:
                tqdm.write(f"{model.name}: resuming after epoch {run.epoch} from {checkpoint_dir}")
    # 3. the epochs
    start = time.perf_counter() - run.seconds
    metric = f"valid_{model.valid_metric}"
    bar = tqdm(total=s.epochs, initial=run.epoch, desc=f"{model.name} fit",
               disable=not progress or run.stopped is not None, leave=False)
    while run.stopped is None:
        run.epoch += 1
        net.train()
        total, n_batches = 0.0, 0
        for batch in model.train_batches(data, gen):
            loss = model.batch_loss(batch, gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if s.grad_clip:
                torch.nn.utils.clip_grad_norm_(net.parameters(), s.grad_clip)
            opt.step()
            if ema is not None:
                ema.update(net)
            total += float(loss.detach())
            n_batches += 1
        record = {"epoch": run.epoch, "loss": total / max(n_batches, 1), "valid": None, "seconds": 0.0}
        if run.epoch % s.eval_every == 0 or run.epoch == s.epochs:
            if ema is not None:
                ema.copy_to(judged)
            model.net = judged
            with torch.no_grad():
                record["valid"] = value = float(model.validate(data))
            if value > run.best:
                run.best, run.best_epoch, run.bad = value, run.epoch, 0
                run.best_state = {k: v.detach().clone() for k, v in judged.state_dict().items()}
                run.seconds_to_best = time.perf_counter() - start
            else:
                run.bad += 1
            model.net = net
        record["seconds"] = run.seconds = time.perf_counter() - start
        run.log.append(record)
        if run.bad >= s.patience:
            run.stopped = "patience"
        elif s.max_train_seconds and run.seconds > s.max_train_seconds:
            run.stopped = "time cap"
        elif run.epoch >= s.epochs:
            run.stopped = "epochs"
        if ckpt is not None:
            _save(ckpt, run, model, net, opt, gen, ema)
        bar.update(1)
        bar.set_postfix(loss=f"{record['loss']:.4f}", best=f"{run.best:.4f}@{run.best_epoch}")
        if progress:
            bar.write(f"{model.name} epoch {run.epoch}: loss {record['loss']:.4f}"
                      + (f", {metric} {record['valid']:.4f}" if record["valid"] is not None else "")
                      + f", {record['seconds']:.1f}s")
    bar.close()
    # 4. keep the best validated weights
    model.net = judged
    if run.best_state is not None:
        judged.load_state_dict(run.best_state)
    judged.eval()
    return {"model": model.name, "metric": metric, "best_epoch": run.best_epoch, "best_valid": run.best,
            "epochs_run": len(run.log), "epochs_resumed": run.resumed, "stopped": run.stopped,
            "seconds": run.seconds, "seconds_to_best": run.seconds_to_best, "log": run.log}


@dataclass
class _Run:
    """Where a training run stands after its last finished epoch (what a checkpoint restores)."""

    epoch: int = 0
    best: float = -float("inf")
    best_epoch: int = 0
    bad: int = 0  # validations since the best one
    stopped: str | None = None
    seconds: float = 0.0
    seconds_to_best: float = 0.0
    resumed: int = 0
    best_state: dict | None = None
    log: list | None = None

    def __post_init__(self):
        self.log = [] if self.log is None else self.log

    def state(self) -> dict:
        keys = ("epoch", "best", "best_epoch", "bad", "stopped", "seconds", "seconds_to_best", "log")
        return {k: getattr(self, k) for k in keys}


def _save(ckpt, run: _Run, model, net, opt, gen, ema) -> None:
    """Checkpoint one finished epoch: weights, EMA, best weights, optimizer, generators, model state, log."""
    from .checkpoint import optimizer_tensors, rng_tensors, with_prefix

    opt_tensors, opt_meta = optimizer_tensors(opt)
    tensors = {**with_prefix("net.", net.state_dict()), **opt_tensors, **rng_tensors(gen),
               **with_prefix("best.", run.best_state or {}), **with_prefix("fit.", model.fit_state())}
    if ema is not None:
        tensors.update(with_prefix("ema.", ema.shadow))
    best = run.best if run.best_state is not None else None  # -inf is not JSON
    ckpt.save(tensors, {**run.state(), "best": best, "optimizer": opt_meta,
                        "ema_updates": ema.updates if ema is not None else 0})


def _restore(saved: tuple[dict, dict], model, net, opt, gen, ema) -> _Run:
    """Inverse of `_save` into the live objects."""
    from .checkpoint import load_optimizer, restore_rng, strip_prefix

    tensors, state = saved
    net.load_state_dict(strip_prefix("net.", tensors))
    load_optimizer(opt, tensors, state["optimizer"])
    restore_rng(gen, tensors)
    if ema is not None:
        ema.load_shadow(strip_prefix("ema.", tensors), state["ema_updates"])
    model.load_fit_state(strip_prefix("fit.", tensors))
    best_state = strip_prefix("best.", tensors) or None
    return _Run(epoch=state["epoch"], best=state["best"] if state["best"] is not None else -float("inf"),
                best_epoch=state["best_epoch"], bad=state["bad"], stopped=state["stopped"],
                seconds=state["seconds"], seconds_to_best=state["seconds_to_best"], resumed=state["epoch"],
                best_state=best_state, log=state["log"])
