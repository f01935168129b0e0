"""The one small training loop that every Atelier trainer shares (demo models, LoRA, DPO, reward).

A trainer supplies a `step_fn(step, generator) -> loss` and the modules and optimizer it trains;
`TrainLoop` does the rest: device and mixed precision through accelerate, seeded and resumable
batches (batch `k` is drawn from a generator seeded by `(seed, k)`, so a resumed run sees the same
batches as an uninterrupted one), gradient clipping, EMA weights, a tqdm bar, a validation
callback every N steps, and checkpoints every N steps with a limit on how many are kept.

Checkpoints are safetensors + JSON only (no pickle, unlike `accelerate.save_state`):
`OUT/checkpoints/step-000500/{<name>.safetensors, ema-<name>.safetensors, optimizer.safetensors,
scheduler.json, state.json}`. `resume="latest"` picks the highest step.

    loop = TrainLoop(out, models={"unet": unet}, optimizer=opt, max_steps=2000, seed=0)
    loop.run(lambda step, gen: loss_for(next_batch(gen)), resume="latest")
"""
from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from core.ema import EMA  # noqa: F401  (re-exported: trainers build it as finetune.loop.EMA)
from core.errors import InputError
from core.io import atomic_write_json, load_safetensors, save_safetensors

StepFn = Callable[[int, torch.Generator], "torch.Tensor | tuple[torch.Tensor, dict]"]
ValidateFn = Callable[[int], "dict | None"]


@dataclass
class LoopResult:
    """What a finished (or resumed-and-finished) run reports."""

    steps: int
    resumed_from: int
    seconds: float
    last_loss: float
    mean_loss_last_100: float
    checkpoint: str | None
    validation: dict | None

    def to_dict(self) -> dict:
        return dict(self.__dict__)


class TrainLoop:
    """Seeded, resumable training of named modules with one optimizer (see module docstring)."""

    def __init__(
        self,
        out_dir: str | Path,
        *,
        models: dict[str, torch.nn.Module],
        optimizer: torch.optim.Optimizer,
        max_steps: int,
        seed: int,
        lr_scheduler=None,
        ema: dict[str, EMA] | None = None,
        checkpoint_every: int = 500,
        checkpoint_limit: int = 2,
        validate_every: int = 0,
        max_grad_norm: float | None = 1.0,
        mixed_precision: str = "no",
        device: str | None = None,
        desc: str = "train",
        progress: bool = True,
    ):
        from accelerate import Accelerator

        if max_steps < 1:
            raise InputError(f"--steps must be at least 1, got {max_steps}")
        self.out_dir = Path(out_dir)
        self.ckpt_dir = self.out_dir / "checkpoints"
        cpu = device == "cpu" or (device is None and not torch.cuda.is_available())
        self.accelerator = Accelerator(cpu=cpu, mixed_precision=mixed_precision if not cpu else "no")
        names = list(models)
        prepared = self.accelerator.prepare(*models.values(), optimizer)
        self.models = dict(zip(names, prepared[: len(names)]))
        self.optimizer = prepared[-1]
        self.raw_optimizer = optimizer
        self.lr_scheduler = lr_scheduler
        self.ema = ema or {}
        self.max_steps, self.seed = max_steps, seed
        self.checkpoint_every, self.checkpoint_limit = checkpoint_every, checkpoint_limit
        self.validate_every, self.max_grad_norm = validate_every, max_grad_norm
        self.desc, self.progress = desc, progress
        self.step = 0
        self.losses: list[float] = []

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    def generator(self, step: int) -> torch.Generator:
        """The CPU generator for batch `step`: a pure function of (seed, step), so resume is exact."""
        return torch.Generator().manual_seed(self.seed * 1_000_003 + step)

    # -- the loop ------------------------------------------------------------------------------
    def run(self, step_fn: StepFn, validate: ValidateFn | None = None, resume: str | None = None) -> LoopResult:
        """Train until `max_steps`; `resume` is None, "latest" or a checkpoint folder."""
        from tqdm.auto import tqdm

        resumed_from = self.load_checkpoint(resume) if resume else 0
        for m in self.models.values():
            m.train()
        start, last_ckpt, validation = time.time(), None, None
        bar = tqdm(total=self.max_steps, initial=self.step, desc=self.desc, disable=not self.progress, dynamic_ncols=True)
        while self.step < self.max_steps:
            out = step_fn(self.step, self.generator(self.step))
            loss, logs = out if isinstance(out, tuple) else (out, {})
            if not torch.isfinite(loss):
                raise RuntimeError(f"loss is {loss.item()} at step {self.step}; lower the learning rate")
            self.accelerator.backward(loss)
            if self.max_grad_norm:
                params = [p for m in self.models.values() for p in m.parameters() if p.grad is not None]
                self.accelerator.clip_grad_norm_(params, self.max_grad_norm)
            self.optimizer.step()
            if self.lr_scheduler is not None:
                self.lr_scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            for name, ema in self.ema.items():
                ema.update(self.accelerator.unwrap_model(self.models[name]))
            self.step += 1
            self.losses.append(float(loss.detach()))
            bar.update(1)
            bar.set_postfix(loss=f"{sum(self.losses[-50:]) / len(self.losses[-50:]):.4f}", **logs)
            if self.checkpoint_every and self.step % self.checkpoint_every == 0 and self.step < self.max_steps:
                last_ckpt = self.save_checkpoint()
            if validate and self.validate_every and self.step % self.validate_every == 0 and self.step < self.max_steps:
                validation = self._validate(validate)
        bar.close()
        if self.step > resumed_from or last_ckpt is None:
            last_ckpt = self.save_checkpoint()
        if validate:
            validation = self._validate(validate)
        tail = self.losses[-100:] or [math.nan]
        return LoopResult(self.step, resumed_from, round(time.time() - start, 1), tail[-1],
                          sum(tail) / len(tail), str(last_ckpt), validation)

    def _validate(self, validate: ValidateFn) -> dict | None:
        for m in self.models.values():
            m.eval()
        with torch.no_grad():
            result = validate(self.step)
        for m in self.models.values():
            m.train()
        if result:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            with open(self.out_dir / "validation.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps({"step": self.step, **result}, sort_keys=True) + "\n")
        return result

    # -- checkpoints ---------------------------------------------------------------------------
    def save_checkpoint(self) -> Path:
        """Write `checkpoints/step-N/` (safetensors + JSON) and drop the oldest beyond the limit."""
        path = self.ckpt_dir / f"step-{self.step:06d}"
        tmp = self.ckpt_dir / f".step-{self.step:06d}.partial"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        for name, model in self.models.items():
            save_safetensors(self.accelerator.unwrap_model(model).state_dict(), tmp / f"{name}.safetensors")
        for name, ema in self.ema.items():
            save_safetensors(ema.shadow, tmp / f"ema-{name}.safetensors")
        tensors, meta = _flatten_optimizer(self.raw_optimizer.state_dict())
        save_safetensors(tensors, tmp / "optimizer.safetensors")
        atomic_write_json(tmp / "optimizer.json", meta)
        if self.lr_scheduler is not None:
            atomic_write_json(tmp / "scheduler.json", self.lr_scheduler.state_dict())
        save_safetensors({"torch_rng": torch.get_rng_state()}, tmp / "rng.safetensors")
        atomic_write_json(tmp / "state.json", {"step": self.step, "seed": self.seed, "losses_tail": self.losses[-100:],
                                               "ema_updates": {k: e.updates for k, e in self.ema.items()}})
        if path.exists():
            shutil.rmtree(path)
        tmp.rename(path)  # a checkpoint folder only ever appears complete
        for old in self.checkpoints()[: -self.checkpoint_limit] if self.checkpoint_limit else []:
            shutil.rmtree(old)
        return path

    def checkpoints(self) -> list[Path]:
        """Complete checkpoint folders, oldest first."""
        if not self.ckpt_dir.is_dir():
            return []
        return sorted(p for p in self.ckpt_dir.glob("step-*") if (p / "state.json").exists())

    def load_checkpoint(self, spec: str | Path) -> int:
        """Restore weights, EMA, optimizer, scheduler and RNG; return the step resumed from (0 if none)."""
        if str(spec) == "latest":
            found = self.checkpoints()
            if not found:
                return 0
            path = found[-1]
        else:
            path = Path(spec)
            if not (path / "state.json").is_file():
                raise InputError("not a checkpoint folder (no state.json)", path)
        state = json.loads((path / "state.json").read_text())
        for name, model in self.models.items():
            self.accelerator.unwrap_model(model).load_state_dict(load_safetensors(path / f"{name}.safetensors"))
        for name, ema in self.ema.items():
            ema.shadow = {k: v.to(self.device) for k, v in load_safetensors(path / f"ema-{name}.safetensors").items()}
            ema.updates = state.get("ema_updates", {}).get(name, 0)
        opt_state = _unflatten_optimizer(load_safetensors(path / "optimizer.safetensors"),
                                         json.loads((path / "optimizer.json").read_text()))
        self.raw_optimizer.load_state_dict(opt_state)
        if self.lr_scheduler is not None and (path / "scheduler.json").exists():
            self.lr_scheduler.load_state_dict(json.loads((path / "scheduler.json").read_text()))
        torch.set_rng_state(load_safetensors(path / "rng.safetensors")["torch_rng"])
        self.step = int(state["step"])
        self.losses = list(state.get("losses_tail", []))
        return self.step


def _flatten_optimizer(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer state_dict into tensors (safetensors) and plain values (JSON)."""
    tensors, scalars = {}, {}
    for idx, per_param in state["state"].items():
        for key, value in per_param.items():
            if torch.is_tensor(value):
                tensors[f"{idx}.{key}"] = value
            else:
                scalars[f"{idx}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    """Inverse of `_flatten_optimizer`."""
    state: dict[int, dict] = {}
    for flat, value in [*tensors.items(), *meta.get("scalars", {}).items()]:
        idx, key = flat.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def cosine_schedule(optimizer: torch.optim.Optimizer, max_steps: int, warmup: int = 100, floor: float = 0.05):
    """Linear warmup then cosine decay to `floor` x the base LR (a LambdaLR, so its state is JSON)."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, max_steps - warmup))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
