"""The small interface every recommender follows: fit, score, preference, save/load (safetensors + JSON)."""

from __future__ import annotations

import dataclasses
import importlib
import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np

from core.errors import InputError
from core.io import atomic_write_json, load_safetensors, save_safetensors, sha256_file

from .condition import PreferenceCondition, condition_from_scores

# model name -> "module:Class"; imported lazily so `atelier --help` stays fast.
MODEL_CLASSES: dict[str, str] = {
    "mostpop": "recommenders.mostpop:MostPop",
    "itemknn": "recommenders.itemknn:ItemKNN",
    "ease": "recommenders.ease:EASE",
    "multivae": "recommenders.multivae:MultiVAE",
    "diffrec": "recommenders.diffrec:DiffRec",
    "ldiffrec": "recommenders.ldiffrec:LDiffRec",
    "seq-mostpop": "recommenders.seq_mostpop:SeqMostPop",
    "sasrec": "recommenders.sasrec:SASRec",
    "gru4rec": "recommenders.gru4rec:GRU4Rec",
    "dreamrec": "recommenders.dreamrec:DreamRec",
}


def model_class(name: str) -> type:
    """The class behind a model name, with a clear error for unknown names."""
    key = name.strip().lower()
    if key not in MODEL_CLASSES:
        raise InputError(f"unknown model {name!r} (known: {', '.join(MODEL_CLASSES)})")
    module, cls = MODEL_CLASSES[key].split(":")
    return getattr(importlib.import_module(module), cls)


class _Saveable:
    """Folder persistence: `config.json` (model name + config dataclass) and `model.safetensors`."""

    name: ClassVar[str] = ""
    config: Any

    def state_tensors(self) -> dict:
        """Tensors (torch or numpy) that fully describe the fitted model."""
        raise NotImplementedError

    def load_state_tensors(self, tensors: dict) -> None:
        raise NotImplementedError

    def extra_state(self) -> dict:
        """Small JSON-able state beyond the config (e.g. id lists)."""
        return {}

    def load_extra_state(self, extra: dict) -> None:
        pass

    def save(self, path: str | Path) -> Path:
        import torch

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        tensors = {k: (torch.from_numpy(np.ascontiguousarray(v)) if isinstance(v, np.ndarray) else v)
                   for k, v in self.state_tensors().items()}
        save_safetensors(tensors, path / "model.safetensors")
        config = dataclasses.asdict(self.config) if dataclasses.is_dataclass(self.config) else dict(self.config)
        # config.json is written last and names the weights' checksum: a save killed between the two
        # files leaves a pair that `load` refuses, never new weights read with an old config.
        atomic_write_json(path / "config.json", {"model": self.name, "config": config, "extra": self.extra_state(),
                                                 "weights_sha256": sha256_file(path / "model.safetensors")})
        return path

    @classmethod
    def load(cls, path: str | Path):
        """Load any saved recommender folder; the class comes from config.json's `model`."""
        path = Path(path)
        cfg_file = path / "config.json"
        if not cfg_file.is_file():
            raise InputError("not a saved Atelier model (no config.json)", path)
        try:
            meta = json.loads(cfg_file.read_text())
        except json.JSONDecodeError as e:
            raise InputError(f"config.json is not valid JSON ({e.msg})", cfg_file, e.lineno) from None
        klass = model_class(meta.get("model", "?"))
        if cls not in (CFRecommender, SequentialRecommender, _Saveable) and not issubclass(klass, cls):
            raise InputError(f"saved model is a {meta.get('model')}, not a {cls.name}", path)
        config_type = getattr(klass, "Config", None)
        config = config_type(**meta.get("config", {})) if config_type else meta.get("config", {})
        model = klass(config)
        weights = path / "model.safetensors"
        expected = meta.get("weights_sha256")
        if expected is not None and weights.is_file() and sha256_file(weights) != expected:
            raise InputError("model.safetensors does not match config.json (a save was interrupted?); "
                             "train or save the model again", path)
        model.load_extra_state(meta.get("extra", {}))
        model.load_state_tensors(load_safetensors(weights))
        return model


class CFRecommender(_Saveable, ABC):
    """A collaborative-filtering model: input a user's interaction row, output scores over all items."""

    @abstractmethod
    def fit(self, data, *, seed: int = 0, progress: bool = True, checkpoint_dir: str | Path | None = None) -> dict:
        """Train on `data.train` (a CFSplits), selecting on `data.valid`; returns a training log.

        Models trained in epochs checkpoint each epoch in `checkpoint_dir` and resume from it
        (`recommenders.training`); the others ignore it.
        """

    @abstractmethod
    def score(self, users: np.ndarray, history=None) -> np.ndarray:
        """Scores (len(users), n_items); `history` (csr rows) replaces the stored train rows when given."""

    def preference(self, user: int, *, item_ids: Sequence[str], history_items: Sequence[str] = (),
                   item_emb: np.ndarray | None = None, catalog=None, k: int = 20) -> PreferenceCondition:
        """The user's condition for generation, built from this model's scores."""
        scores = self.score(np.asarray([user]))[0]
        uid = str(user)
        return condition_from_scores(uid, scores, item_ids, source=self.name, item_emb=item_emb,
                                     catalog=catalog, history=history_items, k=k)


class SequentialRecommender(_Saveable, ABC):
    """A next-item model: input a history sequence, output scores over all items."""

    @abstractmethod
    def fit(self, data, *, seed: int = 0, progress: bool = True, checkpoint_dir: str | Path | None = None) -> dict:
        """Train on `data.train` (a SeqSplits), selecting on `data.valid`; returns a training log
        (epoch-trained models: resumable from `checkpoint_dir`, as for CF models)."""

    @abstractmethod
    def score(self, seq: np.ndarray, seq_len: np.ndarray | None = None) -> np.ndarray:
        """Scores (len(seq), n_items) for right-padded histories."""
