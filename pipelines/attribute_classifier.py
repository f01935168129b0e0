"""A small CNN that reads color, category and pattern off a 64 px product image.

It measures prompt fidelity of generated images ("was the navy striped shirt navy, striped and a
shirt?"). It is trained only on catalog renders (never on generated images) and is kept apart
from the open_clip scorer, so the generator is never graded by a model it was tuned against.
Saved as `config.json` + `model.safetensors`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from core.errors import InputError
from core.io import atomic_write_json, load_safetensors, save_safetensors

DEMO_PATH = Path(__file__).resolve().parents[1] / "assets" / "models" / "attribute-classifier"


def _block(c_in: int, c_out: int, convs: int = 1) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(convs):
        layers += [nn.Conv2d(c_in if i == 0 else c_out, c_out, 3, padding=1), nn.GroupNorm(4, c_out), nn.SiLU()]
    return nn.Sequential(*layers, nn.MaxPool2d(2))


class AttributeClassifier(nn.Module):
    """Shared conv trunk (64 -> 4 px) with one linear head per attribute kind."""

    def __init__(self, vocab: dict[str, list[str]], width: int = 16, image_size: int = 64):
        super().__init__()
        self.vocab = {k: list(v) for k, v in vocab.items()}
        self.width, self.image_size = width, image_size
        w = width
        # cheap at full resolution, deeper at 16 px where stripes, dots and silhouettes are resolved
        self.trunk = nn.Sequential(_block(3, w), _block(w, 2 * w), _block(2 * w, 4 * w, convs=2), _block(4 * w, 6 * w))
        feat = 6 * w * 2  # mean- and max-pooled features: color is global, a dot or stripe is local
        self.heads = nn.ModuleDict({k: nn.Linear(feat, len(v)) for k, v in self.vocab.items()})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits per kind for images (N, 3, 64, 64) in [-1, 1]."""
        h = self.trunk(x)
        h = torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)
        return {k: head(h) for k, head in self.heads.items()}

    @torch.no_grad()
    def predict(self, images, batch_size: int = 128) -> list[dict[str, str]]:
        """Labels for PIL images or a uint8 (N, H, W, 3) array."""
        x = self.to_input(images)
        self.eval()
        out: list[dict[str, str]] = []
        dev = next(self.parameters()).device
        for i in range(0, len(x), batch_size):
            logits = self(x[i : i + batch_size].to(dev))
            idx = {k: v.argmax(1).tolist() for k, v in logits.items()}
            out += [{k: self.vocab[k][idx[k][j]] for k in self.vocab} for j in range(len(x[i : i + batch_size]))]
        return out

    def to_input(self, images) -> torch.Tensor:
        """PIL images / uint8 arrays -> float tensor (N, 3, S, S) in [-1, 1]."""
        from PIL import Image

        if isinstance(images, np.ndarray):
            arr = images
        else:
            arr = np.stack([np.asarray(im.convert("RGB").resize((self.image_size, self.image_size), Image.BOX))
                            for im in images])
        if arr.shape[1] != self.image_size:
            arr = np.stack([np.asarray(Image.fromarray(a).resize((self.image_size, self.image_size), Image.BOX))
                            for a in arr])
        return torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)

    def save(self, path: str | Path) -> Path:
        """Write `config.json` and `model.safetensors` into folder `path`."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path / "config.json", {"vocab": self.vocab, "width": self.width, "image_size": self.image_size,
                                                 "model": "AttributeClassifier"})
        save_safetensors(self.state_dict(), path / "model.safetensors")
        return path

    @classmethod
    def load(cls, path: str | Path | None = None, device: str = "cpu") -> "AttributeClassifier":
        """Load a saved classifier (default: the shipped demo one)."""
        path = Path(path) if path else DEMO_PATH
        cfg_file = path / "config.json"
        if not cfg_file.is_file():
            raise InputError("not an attribute-classifier folder (no config.json)", path)
        from core.jsonio import read_json

        cfg = read_json(cfg_file, what="config.json")
        try:
            model = cls(cfg["vocab"], cfg.get("width", 16), cfg.get("image_size", 64))
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(f"config.json does not describe an attribute classifier ({e})", cfg_file) from None
        model.load_state_dict(load_safetensors(path / "model.safetensors"))
        return model.to(device).eval()


def accuracy(predictions: list[dict[str, str]], truths: list[dict[str, str]]) -> dict[str, float]:
    """Share of images whose predicted label equals the prompt's, per attribute kind."""
    kinds = sorted({k for t in truths for k in t})
    return {k: float(np.mean([p.get(k) == t.get(k) for p, t in zip(predictions, truths)])) for k in kinds}
