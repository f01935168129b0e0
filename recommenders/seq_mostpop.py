"""MostPop for next-item data: every row gets the training-target popularity; the floor to clear."""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .seq_base import NextItemModel


@dataclass
class SeqMostPopConfig:
    n_items: int = 0
    max_len: int = 10
    count: str = "targets"  # "targets": next-item counts; "all": targets plus history items


class SeqMostPop(NextItemModel):
    """Ranks items by how often they were the next item in training (ties by id)."""

    name = "seq-mostpop"
    Config = SeqMostPopConfig
    deterministic = True  # fit ignores the seed: the bench trains it once

    def fit(self, data, *, seed: int = 0, progress: bool = True, checkpoint_dir=None) -> dict:
        """Count training next items (and, optionally, history items); one pass, nothing to checkpoint."""
        self._check_data(data)
        start = time.perf_counter()
        self.config.n_items = data.n_items
        self.item_ids = list(data.item_ids) if data.item_ids is not None else None
        counts = np.bincount(data.train.target, minlength=data.n_items).astype(np.float32)
        if self.config.count == "all":
            seq = data.train.seq[data.train.seq < data.n_items]
            counts += np.bincount(seq, minlength=data.n_items).astype(np.float32)
        self.counts = counts
        self.net = True  # fitted marker for the shared inference helpers
        return {"model": self.name, "seconds": time.perf_counter() - start}

    def score(self, seq, seq_len=None, **kwargs) -> np.ndarray:
        n = len(np.atleast_2d(np.asarray(seq)))
        self._require_fitted()
        return np.broadcast_to(self.counts, (n, len(self.counts))).copy()

    def recommend(self, seq, seq_len=None, *, k: int = 20, **kwargs) -> np.ndarray:
        """The k most popular items (ties by id) for every row."""
        n = len(np.atleast_2d(np.asarray(seq)))
        self._require_fitted()
        top = np.argsort(-self.counts, kind="stable")[:k]
        return np.broadcast_to(top, (n, len(top))).copy()

    def state_tensors(self) -> dict:
        return {"counts": np.asarray(self.counts, np.float32)}

    def load_state_tensors(self, tensors: dict) -> None:
        self.counts = np.asarray(tensors["counts"], np.float32)
        self.net = True
