"""The small interface every recommender follows: fit, score, save_pretrained/from_pretrained.

A shopper's condition for generation comes from `recommenders.preference` (one path for every model)."""

from __future__ import annotations

import dataclasses
import importlib
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from core.errors import InputError

# model name -> "module:Class"; imported lazily so `atelier --help` stays fast.
MODEL_CLASSES: dict[str, str] = {
    "mostpop": "recommenders.mostpop:MostPop",
    "itemknn": "recommenders.itemknn:ItemKNN",
    "ease": "recommenders.ease:EASE",
    "multivae": "recommenders.multivae:MultiVAE",
    "diffrec": "recommenders.diffrec:DiffRec",
    "ldiffrec": "recommenders.ldiffrec:LDiffRec",
    "giffcf": "recommenders.giffcf:GiffCF",
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


def model_name_of_class(class_name: str) -> str | None:
    """The registry name ("diffrec") of a class name ("DiffRec") written in config.json, or None."""
    return next((k for k, v in MODEL_CLASSES.items() if v.split(":")[1] == class_name), None)


class _Saveable:
    """Folder persistence through `core.pretrained`: `config.json` (class, config, extra state) + `model.safetensors`.

    `save_pretrained(dir)` / `from_pretrained(dir)`, as diffusers' models; `save` / `load` are the same.
    `from_pretrained` on a base class (CFRecommender, SequentialRecommender) loads whichever model the
    folder holds; on a model class it refuses a folder of another model.
    """

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

    def save_pretrained(self, path: str | Path) -> Path:
        """Write the fitted model to the folder `path` (weights first, then config.json naming their checksum)."""
        from core.pretrained import save_folder

        config = dataclasses.asdict(self.config) if dataclasses.is_dataclass(self.config) else dict(self.config)
        class_name = MODEL_CLASSES[self.name].split(":")[1]  # the registered model, also for subclasses
        return save_folder(path, class_name, config, self.state_tensors(), self.extra_state())

    @classmethod
    def from_pretrained(cls, path: str | Path):
        """Load a saved recommender folder; the class comes from config.json."""
        from core.pretrained import CONFIG_NAME, one_line, read_folder

        saved = read_folder(path, what="saved Atelier model")
        cfg_file = saved.path / CONFIG_NAME
        name = saved.legacy_model or model_name_of_class(saved.class_name)
        if name is None:
            raise InputError(f"{CONFIG_NAME} describes a {saved.class_name or 'model of unknown class'}, "
                             f"not an Atelier recommender", cfg_file)
        klass = model_class(name)
        if cls not in (CFRecommender, SequentialRecommender, _Saveable) and not issubclass(klass, cls):
            raise InputError(f"saved model is a {klass.name}, not a {cls.name}", saved.path)
        config_type = getattr(klass, "Config", None)
        try:
            config = config_type(**saved.config) if config_type else saved.config
        except TypeError as e:
            raise InputError(f"bad {klass.name} config ({e})", cfg_file) from None
        model = klass(config)
        try:
            model.load_extra_state(saved.extra)
            model.load_state_tensors(saved.tensors)
        except (RuntimeError, KeyError, ValueError, IndexError) as e:
            raise InputError(f"weights do not match {CONFIG_NAME} ({one_line(e)})", saved.path) from None
        return model

    save = save_pretrained
    load = from_pretrained


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


class SequentialRecommender(_Saveable, ABC):
    """A next-item model: input a history sequence, output scores over all items."""

    @abstractmethod
    def fit(self, data, *, seed: int = 0, progress: bool = True, checkpoint_dir: str | Path | None = None) -> dict:
        """Train on `data.train` (a SeqSplits), selecting on `data.valid`; returns a training log
        (epoch-trained models: resumable from `checkpoint_dir`, as for CF models)."""

    @abstractmethod
    def score(self, seq: np.ndarray, seq_len: np.ndarray | None = None) -> np.ndarray:
        """Scores (len(seq), n_items) for right-padded histories."""
