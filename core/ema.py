"""The one exponential moving average of model weights, for every trainer (recommenders and fine-tuning).

`EMA(module, decay, warmup)` keeps a shadow copy of the module's floating-point state and blends
the trained weights in after each optimizer step with decay min(decay, (1 + n) / (warmup + n)) at
update n (1-based): TensorFlow's `ExponentialMovingAverage(num_updates=...)` warm-up, which lets the
average forget the random initial weights within the first few dozen steps instead of 1 / (1 - decay).

Why not diffusers' `EMAModel`: its warm-up is fixed at (1 + k) / (10 + k) with k = n - 1 (or a power
law), which matches neither user here (DiffRec's committed runs use warm-up 10 from n, the demo
UNet 100); adopting it would change those trained weights.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


class EMA:
    """Exponential moving average of a module's floating-point weights (kept on its device)."""

    def __init__(self, module: "torch.nn.Module", decay: float = 0.999, warmup: int = 100):
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"EMA decay must be in [0, 1], got {decay}")
        self.decay, self.warmup = decay, warmup
        self.shadow = {k: v.detach().clone() for k, v in module.state_dict().items() if v.is_floating_point()}
        self.updates = 0

    def decay_at(self, n_updates: int) -> float:
        """The decay used at update `n_updates` (1-based)."""
        return min(self.decay, (1.0 + n_updates) / (self.warmup + n_updates))

    def update(self, module: "torch.nn.Module") -> None:
        """Blend the module's current weights in (call after each optimizer step)."""
        import torch

        self.updates += 1
        weight = 1.0 - self.decay_at(self.updates)
        with torch.no_grad():
            for k, v in module.state_dict().items():
                if k in self.shadow:
                    self.shadow[k].lerp_(v.detach(), weight)

    def copy_to(self, module: "torch.nn.Module") -> None:
        """Load the averaged weights into `module` (for validation or export)."""
        module.load_state_dict({**module.state_dict(), **self.shadow})

    def load_shadow(self, shadow: dict, updates: int) -> None:
        """Restore a checkpointed average (tensors by state-dict key) and its update count."""
        missing = set(self.shadow) - set(shadow)
        if missing:
            raise KeyError(f"EMA checkpoint lacks {sorted(missing)[:3]}")
        device = {k: v.device for k, v in self.shadow.items()}
        self.shadow = {k: shadow[k].to(device[k]).clone() for k in self.shadow}
        self.updates = int(updates)
