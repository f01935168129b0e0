"""One place that picks the device, dtype and thread count for generation and training."""
from __future__ import annotations

import os

from core.errors import InputError

DTYPES = {"fp32": "float32", "float32": "float32", "fp16": "float16", "float16": "float16",
          "bf16": "bfloat16", "bfloat16": "bfloat16"}


def pick_device(device: str | None = None):
    """The `--device` the user named, else CUDA when present, else CPU."""
    import torch

    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise InputError(f"unknown device {device!r} (use cpu, cuda, cuda:N or auto)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device!r} asked for, but CUDA is not available on this machine")
    return dev


def pick_dtype(device, dtype: str | None = None):
    """fp16 on CUDA (diffusers runs attention through SDPA there), fp32 on CPU, unless named."""
    import torch

    if dtype in (None, "", "auto"):
        return torch.float16 if torch.device(device).type == "cuda" else torch.float32
    if dtype not in DTYPES:
        raise InputError(f"unknown dtype {dtype!r} (use {', '.join(sorted(DTYPES))})")
    return getattr(torch, DTYPES[dtype])


def set_threads(n: int | None = None) -> int:
    """Set torch's CPU threads deliberately (env ATELIER_THREADS, else 1: on a busy CPU 1 beats 2)."""
    import torch

    n = n or int(os.environ.get("ATELIER_THREADS", "1"))
    torch.set_num_threads(n)
    return n


def describe(device) -> str:
    """A short human name for the device, for benchmark tables."""
    import platform

    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU {platform.processor() or platform.machine()} ({torch.get_num_threads()} torch threads)"
