"""The demo shop's held-out shoppers: the last ids, never trained on, where personalization is evaluated.

The preference adapter's trainer leaves `heldout_block` out; `atelier eval personalization` draws
its users from it, so a reported figure is never measured on a shopper a model learned from.
"""
from __future__ import annotations

from collections.abc import Iterable

from core.errors import InputError

HELDOUT_USERS = 200  # the highest user ids in sorted order


def heldout_block(user_ids: Iterable[str]) -> list[str]:
    """The held-out block: the last HELDOUT_USERS ids in sorted order."""
    return sorted(user_ids)[-HELDOUT_USERS:]


def heldout_users(user_ids: Iterable[str], n: int, seed: int) -> list[str]:
    """`n` users drawn (seeded) from the held-out block."""
    import numpy as np

    block = heldout_block(user_ids)
    if n > len(block):
        raise InputError(f"at most {len(block)} held-out users can be evaluated, asked for {n}")
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(block, size=n, replace=False).tolist())
