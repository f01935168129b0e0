"""EASE (Steck, WWW 2019): a closed-form item-item linear autoencoder with a zero diagonal.

B = I - P diagMat(1 / diag(P)), P = (X^T X + lambda I)^-1; scores = X B. One dense n_items^2
inverse, so it suits catalogs up to a few tens of thousands of items.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .cf_base import HistoryModel


class EASE(HistoryModel):
    """Embarrassingly Shallow AutoEncoder; `l2` is the only hyperparameter."""

    name = "ease"
    deterministic = True

    @dataclass
    class Config:
        l2: float = 1000.0

    def fit(self, data, *, seed: int = 0, progress: bool = True, checkpoint_dir=None) -> dict:
        """Solve for the item-item weights in closed form (float64 for a stable inverse)."""
        self._set_history(data.train)
        gram = (self.train_rows.T @ self.train_rows).toarray().astype(np.float64)
        gram[np.diag_indices_from(gram)] += self.config.l2
        p = np.linalg.inv(gram)
        b = -p / np.diag(p)[None, :]
        np.fill_diagonal(b, 0.0)
        self.weights = b.astype(np.float32)
        return {"model": self.name, "epochs_run": 0}

    def score(self, users: np.ndarray, history=None) -> np.ndarray:
        return self._rows(users, history) @ self.weights

    def state_tensors(self) -> dict:
        return {"weights": self.weights, **self.history_tensors()}

    def load_state_tensors(self, tensors: dict) -> None:
        self.weights = np.asarray(tensors["weights"], np.float32)
        self.load_history_tensors(tensors)
