"""MostPop: rank items by training popularity, the floor every recommender must clear."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .cf_base import HistoryModel


class MostPop(HistoryModel):
    """Rank items by their training interaction count, the same list for everyone."""

    name = "mostpop"
    deterministic = True

    @dataclass
    class Config:
        pass

    def fit(self, data, *, seed: int = 0, progress: bool = True, checkpoint_dir=None) -> dict:
        """Count item interactions in the training split."""
        self._set_history(data.train)
        self.counts = np.asarray(data.train.sum(0), np.float32).ravel()
        return {"model": self.name, "epochs_run": 0}

    def score(self, users: np.ndarray, history=None) -> np.ndarray:
        n = len(np.atleast_1d(users)) if history is None else history.shape[0]
        return np.broadcast_to(self.counts, (n, len(self.counts))).copy()

    def state_tensors(self) -> dict:
        return {"counts": self.counts, **self.history_tensors()}

    def load_state_tensors(self, tensors: dict) -> None:
        self.counts = np.asarray(tensors["counts"], np.float32)
        self.load_history_tensors(tensors)
