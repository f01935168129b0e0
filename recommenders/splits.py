"""The split types every loader returns: CF matrices (`CFSplits`) and next-item rows (`SeqSplits`).

They live apart from the loaders so that `datasets`, `interactions` and `shop` can all build them
without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class CFSplits:
    """Train/valid/test user x item matrices (csr, float32, binary) over one id space."""

    name: str
    train: object
    valid: object
    test: object
    item_emb: np.ndarray | None = None
    user_ids: list[str] | None = None
    item_ids: list[str] | None = None

    @property
    def n_users(self) -> int:
        return self.train.shape[0]

    @property
    def n_items(self) -> int:
        return self.train.shape[1]


@dataclass
class SeqSplit:
    """Next-item rows: `seq` (N, L) right-padded with the pad id (= n_items), `seq_len` (N,), `target` (N,)."""

    seq: np.ndarray
    seq_len: np.ndarray
    target: np.ndarray

    def __len__(self) -> int:
        return len(self.target)


@dataclass
class SeqSplits:
    name: str
    n_items: int
    train: SeqSplit
    valid: SeqSplit
    test: SeqSplit
    item_ids: list[str] | None = None
    item_emb: np.ndarray | None = field(default=None, repr=False)

    @property
    def pad_id(self) -> int:
        return self.n_items
