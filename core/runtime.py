"""Process-wide runtime choices made in one place: torch threads and seeding."""

from __future__ import annotations

import os
import random


def torch_threads(n: int | None = None) -> int:
    """Set torch's intra-op thread count deliberately (ATELIER_THREADS, default: cores, max 4).

    On a small shared CPU, oversubscribed threads run many times slower than one thread.
    """
    import torch

    if n is None:
        n = int(os.environ.get("ATELIER_THREADS", "0")) or min(4, os.cpu_count() or 1)
    torch.set_num_threads(max(1, n))
    return torch.get_num_threads()


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) from one explicit seed."""
    import numpy as np

    random.seed(seed)
    np.random.seed(seed % (2**32))
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:
        pass
