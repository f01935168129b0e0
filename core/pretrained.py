"""One save/load for everything Atelier trains (recommenders, the preference adapter, the reward model).

A trained thing is a folder of `config.json` + `model.safetensors`, in diffusers' layout:

    {"_class_name": "DiffRec", <the config's keys...>, "_extra": {...}, "_weights_sha256": "..."}

`_extra` holds small JSON state beyond the config (a recommender's item ids, a reward model's
held-out metrics). The weights are written first and config.json last, atomically, naming the
weights' SHA-256: a save killed between the two files leaves a pair that `read_folder` refuses
("a save was interrupted?"), never new weights read with an old config. Weights are only ever read
as safetensors; a pickle in their place is refused. Every problem is one `InputError` line.

`save_folder` / `read_folder` serve plain objects (EASE, ItemKNN and MostPop keep numpy/scipy
state); `save_module` / `load_module` serve torch modules configured with diffusers' `ConfigMixin`
(`@register_to_config`), so `PreferenceAdapter.from_pretrained(folder)` reads like diffusers'.

Folders of earlier versions still load: recommenders wrote {"model", "config", "extra",
"weights_sha256"}; the adapter wrote `adapter.safetensors`; adapter and reward model had no
checksum and the reward model kept `metrics` beside its config keys.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Collection

from .errors import InputError
from .io import (
    atomic_write_json,
    check_not_pickle,
    load_safetensors,
    save_safetensors,
    sha256_file,
)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


@dataclass
class SavedFolder:
    """What `read_folder` found: the class named in config.json, its config, extra state and tensors."""

    path: Path
    class_name: str
    config: dict
    extra: dict = field(default_factory=dict)
    tensors: dict = field(default_factory=dict)
    legacy_model: str | None = None  # the registry name of a recommender saved before `_class_name`


def save_folder(folder: str | Path, class_name: str, config: dict, tensors: dict, extra: dict | None = None) -> Path:
    """Write `model.safetensors` (torch or numpy tensors), then `config.json` naming its checksum."""
    import numpy as np
    import torch

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    bad = [k for k in config if k.startswith("_")]
    if bad:
        raise ValueError(f"config keys may not start with '_' (reserved): {bad}")
    weights = folder / WEIGHTS_NAME
    save_safetensors({k: torch.from_numpy(np.ascontiguousarray(v)) if isinstance(v, np.ndarray) else v
                      for k, v in tensors.items()}, weights)
    meta: dict[str, Any] = {"_class_name": class_name, **config, "_weights_sha256": sha256_file(weights)}
    if extra:
        meta["_extra"] = extra
    atomic_write_json(folder / CONFIG_NAME, meta)
    return folder


def read_folder(folder: str | Path, *, what: str, class_names: Collection[str] | None = None,
                weights_names: tuple[str, ...] = (WEIGHTS_NAME,)) -> SavedFolder:
    """Read a folder written by `save_folder` (or by an earlier version), checking it on the way.

    `what` names the thing in errors ("preference adapter"); `class_names` are the classes accepted;
    `weights_names` the weight files tried in order (earlier versions used other names).
    """
    folder = Path(folder)
    if not folder.exists():
        raise InputError(f"{what} folder not found (no {CONFIG_NAME} to read)", folder)
    cfg_file = folder / CONFIG_NAME
    if not cfg_file.is_file():
        raise InputError(f"not a {what} folder (no {CONFIG_NAME})", folder)
    meta = _read_json_object(cfg_file)
    saved = _parse(meta, folder)
    if class_names is not None and saved.class_name not in class_names:
        raise InputError(f"{CONFIG_NAME} describes a {saved.class_name or 'thing of unknown class'}, "
                         f"not a {' or '.join(sorted(class_names))}", cfg_file)
    weights = next((folder / n for n in weights_names if (folder / n).is_file()), None)
    if weights is None:
        from .weights import PICKLE_SUFFIXES

        pickles = sorted(p for p in folder.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)
        if pickles:
            check_not_pickle(pickles[0])  # raises: pickles are never loaded
        raise InputError(f"no {weights_names[0]} next to {CONFIG_NAME}", folder)
    expected = meta.get("_weights_sha256", meta.get("weights_sha256"))
    if expected is not None and sha256_file(weights) != expected:
        raise InputError(f"{weights.name} does not match {CONFIG_NAME} (a save was interrupted?); "
                         "train or save the model again", folder)
    saved.tensors = load_safetensors(weights)
    return saved


def _read_json_object(path: Path) -> dict:
    """config.json as a dict, read strictly (`core.jsonio`: no NaN, repeated keys, huge numbers or deep
    nesting), or one InputError line."""
    from .jsonio import read_json

    return read_json(path, what=path.name, expect=dict)


def _parse(meta: dict, folder: Path) -> SavedFolder:
    """Split config.json into class name, config and extra state, for the current and earlier layouts."""
    if "_class_name" not in meta and isinstance(meta.get("config"), dict):  # a recommender before format 2
        extra = meta.get("extra") or {}
        return SavedFolder(folder, "", dict(meta["config"]), dict(extra) if isinstance(extra, dict) else {},
                           legacy_model=str(meta.get("model", "?")))
    config = {k: v for k, v in meta.items() if not k.startswith("_")}
    extra = meta.get("_extra") or {}
    if "_weights_sha256" not in meta and "metrics" in config:  # reward models before format 2
        extra = {**extra, "metrics": config.pop("metrics")}
    return SavedFolder(folder, str(meta.get("_class_name") or ""), config, extra if isinstance(extra, dict) else {})


def save_module(module, folder: str | Path, extra: dict | None = None) -> Path:
    """Save a torch module whose constructor arguments live in a diffusers `ConfigMixin` config."""
    config = {k: v for k, v in dict(module.config).items() if not k.startswith("_")}
    return save_folder(folder, type(module).__name__, config, module.state_dict(), extra)


def load_module(cls, folder: str | Path, *, what: str, weights_names: tuple[str, ...] = (WEIGHTS_NAME,),
                upgrade: Callable[[dict, Any], dict] | None = None):
    """Build `cls` from a folder's config (`cls.from_config`) and load its weights, in eval mode.

    `upgrade(tensors, module)` may complete the tensors of folders saved before a weight existed.
    The module gets `.source` (the folder) and `.extra` (the saved extra state).
    """
    saved = read_folder(folder, what=what, class_names={cls.__name__}, weights_names=weights_names)
    cfg_file = saved.path / CONFIG_NAME
    known = set(_init_keys(cls))
    unknown = sorted(set(saved.config) - known)
    if unknown:
        raise InputError(f"bad {what} config (unknown keys {unknown})", cfg_file)
    from .weights import check_fits_in_memory, module_bytes

    try:  # sizes a config declares are checked against the machine before anything is allocated
        check_fits_in_memory(module_bytes(lambda: cls.from_config(saved.config)), f"the {what}'s {CONFIG_NAME}",
                             cfg_file)
        module = cls.from_config(saved.config)
    except (TypeError, ValueError, KeyError) as e:
        raise InputError(f"bad {what} config ({e})", cfg_file) from None
    tensors = upgrade(saved.tensors, module) if upgrade is not None else saved.tensors
    try:
        module.load_state_dict(tensors)
    except RuntimeError as e:
        raise InputError(f"weights do not match {CONFIG_NAME} ({one_line(e)})", saved.path) from None
    module.source = str(saved.path)  # provenance: Creatives name the model they used
    module.extra = saved.extra
    return module.eval()


def one_line(error: Exception, limit: int = 300) -> str:
    """A (multi-line) exception message as one short line, e.g. torch's state-dict mismatch report."""
    text = " ".join(part.strip() for part in str(error).splitlines() if part.strip())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _init_keys(cls) -> list[str]:
    """The constructor arguments a `ConfigMixin` class records in its config."""
    import inspect

    params = inspect.signature(cls.__init__).parameters
    return [n for n, p in params.items() if n != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
