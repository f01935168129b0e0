"""Epoch checkpoints, so a training run killed part-way resumes where it stopped.

After every epoch the epoch trainer (`recommenders.training`) hands its tensors (weights, optimiser moments, best weights so far,
random-generator states) and its small state (epoch, best score, log) to `EpochCheckpoint.save`:
the tensors go to `checkpoint.safetensors`, then `checkpoint.json` (the state plus the tensors'
SHA-256 and a fingerprint of the run) is written last, both atomically. `load` returns them only
when both are present, the checksum matches and the fingerprint (model, hyperparameters, seed,
data) is the one of the run asking, so a run with other settings starts fresh instead of resuming
someone else's training. Restoring every random-generator state makes a resumed run end with the
same bytes as one never interrupted.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import torch

from core.io import atomic_write_json, load_safetensors, save_safetensors, sha256_file

TENSORS = "checkpoint.safetensors"
STATE = "checkpoint.json"


def fingerprint(**parts: Any) -> str:
    """A short digest of JSON-able run settings and of any numpy arrays among them."""
    h = hashlib.sha256()
    for key in sorted(parts):
        value = parts[key]
        h.update(key.encode())
        if hasattr(value, "tobytes"):  # numpy arrays
            h.update(str(value.dtype).encode() + str(value.shape).encode() + value.tobytes())
        else:
            h.update(json.dumps(value, sort_keys=True, default=str).encode())
    return h.hexdigest()[:32]


class EpochCheckpoint:
    """The latest epoch of one training run in `folder` (created on the first save)."""

    def __init__(self, folder: str | Path, run_fingerprint: str):
        self.folder = Path(folder)
        self.fingerprint = run_fingerprint

    def load(self) -> tuple[dict[str, torch.Tensor], dict] | None:
        """(tensors, state) of the last finished epoch, or None to start fresh."""
        state_file, tensor_file = self.folder / STATE, self.folder / TENSORS
        if not (state_file.is_file() and tensor_file.is_file()):
            return None
        try:
            meta = json.loads(state_file.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None
        if meta.get("fingerprint") != self.fingerprint or meta.get("tensors_sha256") != sha256_file(tensor_file):
            return None
        return load_safetensors(tensor_file), meta["state"]

    def save(self, tensors: dict[str, torch.Tensor], state: dict) -> None:
        """Write one epoch: tensors first, then the JSON that vouches for them."""
        self.folder.mkdir(parents=True, exist_ok=True)
        tensor_file = self.folder / TENSORS
        save_safetensors({k: v.detach().contiguous().clone() for k, v in tensors.items()}, tensor_file)
        atomic_write_json(self.folder / STATE, {"fingerprint": self.fingerprint, "state": state,
                                                "tensors_sha256": sha256_file(tensor_file)})

    def remove(self) -> None:
        """Delete the checkpoint once the finished model is saved."""
        shutil.rmtree(self.folder, ignore_errors=True)


def with_prefix(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {f"{prefix}{k}": v for k, v in tensors.items()}


def strip_prefix(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """An optimiser's per-parameter tensors (e.g. Adam's moments and step) and its JSON-able rest."""
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for idx, per_param in sd["state"].items():
        for name, value in per_param.items():
            if isinstance(value, torch.Tensor):
                tensors[f"opt.{idx}.{name}"] = value
            else:
                scalars[f"{idx}.{name}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def load_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Inverse of `optimizer_tensors`."""
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("opt."):
            idx, name = key[4:].split(".", 1)
            state.setdefault(int(idx), {})[name] = value
    for key, value in meta.get("scalars", {}).items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def rng_tensors(gen: torch.Generator) -> dict[str, torch.Tensor]:
    """The global torch generator (dropout, noise) and a loop's own generator (shuffling)."""
    return {"rng.global": torch.get_rng_state(), "rng.loop": gen.get_state()}


def restore_rng(gen: torch.Generator, tensors: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(tensors["rng.global"])
    gen.set_state(tensors["rng.loop"])
