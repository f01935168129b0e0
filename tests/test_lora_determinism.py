"""Same-seed LoRA runs in separate processes write byte-identical weight files.

The cause of the old gap ("four identical runs gave two checksums") was not the training: the
weights were bit-identical every time. safetensors writes the header's `__metadata__` from a Rust
HashMap whose order is random per process (safetensors/safetensors#584), and diffusers stores two
metadata keys in a LoRA file, so the same weights came out as one of two byte strings.
`finetune.lora.canonical_safetensors` sorts them.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _raw_safetensors(tensors: dict[str, torch.Tensor], metadata_items: list[tuple[str, str]]) -> bytes:
    """A safetensors file whose metadata keys come in exactly the given order (what a random HashMap may write)."""
    from safetensors.torch import save

    data = save(tensors, metadata=dict(metadata_items))
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    header["__metadata__"] = dict(metadata_items)
    header = {"__metadata__": header.pop("__metadata__"), **header}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + data[8 + n:]


def test_canonical_safetensors_ignores_metadata_order(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load

    from finetune.lora import canonical_safetensors

    tensors = {"b.weight": torch.arange(6, dtype=torch.float32).reshape(2, 3), "a.bias": torch.ones(3)}
    items = [("format", "pt"), ("lora_adapter_metadata", '{"r": 4}'), ("z", "last")]
    one, two = _raw_safetensors(tensors, items), _raw_safetensors(tensors, items[::-1])
    assert one != two, "the two inputs must differ only in metadata order for this test to mean anything"
    assert canonical_safetensors(one) == canonical_safetensors(two)
    assert canonical_safetensors(canonical_safetensors(one)) == canonical_safetensors(one)
    out = tmp_path / "x.safetensors"
    out.write_bytes(canonical_safetensors(two))
    back = load(out.read_bytes())
    assert back.keys() == tensors.keys() and all(torch.equal(back[k], tensors[k]) for k in tensors)
    with safe_open(str(out), "pt") as f:
        assert f.metadata() == dict(items)
    header_len = int.from_bytes(out.read_bytes()[:8], "little")
    assert header_len % 8 == 0


@pytest.mark.slow
def test_lora_same_seed_same_bytes_across_processes(tmp_path, tiny_sd):
    """Six `atelier finetune lora` processes with different PYTHONHASHSEEDs write the same file bytes.

    A LoRA file has two metadata keys, so with unsorted headers six runs would agree only by a 1-in-32
    chance (`test_canonical_safetensors_ignores_metadata_order` checks the sorting itself every time).
    The text encoder trains too, so its LoRA path is covered as well."""
    from crash_tools import caption_folder

    sd = tiny_sd
    data = caption_folder(tmp_path / "data")
    digests = []
    for run in range(6):
        env = {**os.environ, "ATELIER_THREADS": "1", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
               "PYTHONHASHSEED": str(run), "PYTHONPATH": str(ROOT)}
        out = tmp_path / f"run{run}"
        p = subprocess.run([sys.executable, "-m", "app.cli", "finetune", "lora", str(data), "--base-model", str(sd),
                            "--out", str(out), "--steps", "6", "--batch-size", "2", "--rank", "4",
                            "--learning-rate", "1e-3", "--checkpoint-every", "3", "--seed", "5",
                            "--train-text-encoder"],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert p.returncode == 0, p.stderr[-3000:]
        digests.append(hashlib.sha256((out / "pytorch_lora_weights.safetensors").read_bytes()).hexdigest())
    assert len(set(digests)) == 1, digests
