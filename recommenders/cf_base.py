"""`HistoryModel`, the base of every collaborative-filtering model here, and its helpers.

`HistoryModel` keeps the training rows (a csr matrix) so that `score(users)` needs no data set, saves
them as three tensors next to the weights, and gives the neural models what the epoch trainer
(`recommenders.training`) asks of them beyond their loss: the validation figure for early stopping
(Recall@20 on the valid split, train items masked: the protocol of data/README.md), the run's
fingerprint for checkpoints, and shuffled batches of training rows.
"""

from __future__ import annotations

import numpy as np

from core.errors import InputError

from .base import CFRecommender
from .metrics import ranking_metrics


def csr_to_tensors(prefix: str, m) -> dict[str, np.ndarray]:
    """A csr matrix as plain arrays (indptr, indices, data, shape) for safetensors."""
    m = m.tocsr()
    return {f"{prefix}.indptr": m.indptr.astype(np.int64), f"{prefix}.indices": m.indices.astype(np.int64),
            f"{prefix}.data": m.data.astype(np.float32), f"{prefix}.shape": np.asarray(m.shape, np.int64)}


def csr_from_tensors(prefix: str, tensors: dict):
    """Inverse of `csr_to_tensors`."""
    import scipy.sparse as sp

    arr = {k: np.asarray(tensors[f"{prefix}.{k}"]) for k in ("indptr", "indices", "data", "shape")}
    return sp.csr_matrix((arr["data"], arr["indices"], arr["indptr"]), shape=tuple(int(x) for x in arr["shape"]))


class HistoryModel(CFRecommender):
    """A CF model that scores users from their stored (or given) multi-hot interaction rows."""

    deterministic = False  # True where fit ignores the seed (then the bench trains once)

    def __init__(self, config=None, **overrides):
        config = config if config is not None else self.Config()
        for key, value in overrides.items():
            if not hasattr(config, key):
                raise InputError(f"{self.name} has no hyperparameter {key!r}")
            setattr(config, key, value)
        self.config = config
        self.train_rows = None

    def _set_history(self, train) -> None:
        if train.nnz == 0:
            raise InputError("the training split has no interactions")
        self.train_rows = train.tocsr().astype(np.float32)

    def _rows(self, users: np.ndarray, history=None) -> np.ndarray:
        """Dense float32 multi-hot input rows for `users` (or the given history rows)."""
        if history is not None:
            return np.asarray(history.toarray() if hasattr(history, "toarray") else history, np.float32)
        if self.train_rows is None:
            raise RuntimeError(f"{self.name} is not fitted")
        users = np.asarray(users, dtype=np.int64).reshape(-1)
        if len(users) and (users.min() < 0 or users.max() >= self.train_rows.shape[0]):
            raise InputError(f"user index out of range 0..{self.train_rows.shape[0] - 1}")
        return self.train_rows[users].toarray()

    @property
    def n_items(self) -> int:
        return self.train_rows.shape[1]

    # -- what the epoch trainer asks of a CF model (recommenders.training) -----------------------
    valid_metric = "recall@20"

    def validate(self, data) -> float:
        """Validation Recall@20 with the current weights: the figure early stopping maximises."""
        return valid_recall(self, data)

    def fit_fingerprint(self, data, seed: int) -> str:
        """What makes a checkpoint this run's: model, hyperparameters, seed, train/valid rows, item embeddings."""
        import dataclasses

        from .checkpoint import fingerprint

        train, valid = data.train.tocsr(), data.valid.tocsr()
        emb = {} if data.item_emb is None else {"item_emb": np.asarray(data.item_emb)}
        return fingerprint(model=self.name, config=dataclasses.asdict(self.config), seed=seed,
                           train_indptr=train.indptr, train_indices=train.indices, valid_indptr=valid.indptr,
                           valid_indices=valid.indices, shape=list(train.shape), **emb)

    def train_batches(self, data, gen):
        """One epoch of dense multi-hot training rows, `config.batch_size` at a time, shuffled with `gen`."""
        import torch

        from .training import shuffled_batches

        rows = torch.from_numpy(self.train_rows.toarray())
        return (x for (x,) in shuffled_batches((rows,), self.config.batch_size, gen))

    # -- persistence of the neural models (a torch `net` built by `_net()`); EASE & co. override --
    def state_tensors(self) -> dict:
        return {**{f"net.{k}": v.contiguous() for k, v in self.net.state_dict().items()}, **self.history_tensors()}

    def load_state_tensors(self, tensors: dict) -> None:
        self.load_history_tensors(tensors)
        self.net = self._net()
        self.net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
        self.net.eval()

    def history_tensors(self) -> dict[str, np.ndarray]:
        return csr_to_tensors("history", self.train_rows)

    def load_history_tensors(self, tensors: dict) -> None:
        self.train_rows = csr_from_tensors("history", tensors)


def valid_recall(model: HistoryModel, data, k: int = 20, batch: int = 2048) -> float:
    """Validation Recall@k (train items masked): the model-selection figure for every CF model."""
    users = np.arange(data.n_users)
    scores = np.concatenate([model.score(users[i:i + batch]) for i in range(0, len(users), batch)])
    return ranking_metrics(scores, data.valid, exclude=data.train, ks=(k,))[f"recall@{k}"]
