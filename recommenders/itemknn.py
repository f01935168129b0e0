"""ItemKNN (Sarwar et al., WWW 2001): cosine item-item similarity, k nearest neighbours per item.

scores = X S, where S keeps, for each item, its k most similar items (cosine on the binary
training columns, with an optional shrink term in the denominator). S is stored sparse.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .cf_base import HistoryModel, csr_from_tensors, csr_to_tensors


class ItemKNN(HistoryModel):
    """Neighbourhood baseline: a user's score for item j sums the similarities of j to their items."""

    name = "itemknn"
    deterministic = True

    @dataclass
    class Config:
        k: int = 100
        shrink: float = 0.0

    def fit(self, data, *, seed: int = 0, progress: bool = True, checkpoint_dir=None) -> dict:
        """Cosine similarities, pruned to the top-k neighbours of each item (rows of S^T)."""
        import scipy.sparse as sp

        self._set_history(data.train)
        x = self.train_rows
        co = (x.T @ x).toarray().astype(np.float32)
        norms = np.sqrt(np.diag(co)).astype(np.float32)
        sim = co / (np.outer(norms, norms) + self.config.shrink + 1e-8)
        np.fill_diagonal(sim, 0.0)
        k = min(self.config.k, sim.shape[0] - 1)
        # Keep each target item's k best neighbours: prune column j of S (= row j of sim, symmetric).
        keep = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        rows = np.repeat(np.arange(sim.shape[0]), k)
        pruned = sp.csr_matrix((sim[rows, keep.ravel()], (rows, keep.ravel())), shape=sim.shape)
        self.similarity = pruned.T.tocsr()  # S[i, j]: how much having item i supports item j
        return {"model": self.name, "epochs_run": 0}

    def score(self, users: np.ndarray, history=None) -> np.ndarray:
        return np.asarray(self._rows(users, history) @ self.similarity, np.float32)

    def state_tensors(self) -> dict:
        return {**csr_to_tensors("similarity", self.similarity), **self.history_tensors()}

    def load_state_tensors(self, tensors: dict) -> None:
        self.similarity = csr_from_tensors("similarity", tensors)
        self.load_history_tensors(tensors)
