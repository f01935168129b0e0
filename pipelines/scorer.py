"""The open_clip scorer: image and text embeddings, and CLIP score (prompt fidelity).

    scorer = Scorer.load("demo")                       # assets/models/demo-clip (trained on the shop)
    scorer = Scorer.load("/models/my-open-clip")       # any folder with open_clip_config.json + weights
    scorer = Scorer.load("ViT-B-32:/w/open_clip.safetensors")  # a built-in architecture + local weights
    scorer.clip_score(images, prompts)                 # 100 * max(cos, 0) per pair (Hessel et al. 2021)

A demo folder is a standard open_clip `local-dir:` folder, so plain open_clip loads it too:
`open_clip.create_model_and_transforms("local-dir:assets/models/demo-clip")`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from core.errors import InputError

from .device import pick_device

DEMO_CLIP = Path(__file__).resolve().parents[1] / "assets" / "models" / "demo-clip"


class Scorer:
    """An open_clip model with its preprocessing and tokenizer."""

    def __init__(self, model, preprocess, tokenizer, name: str):
        self.model, self.preprocess, self.tokenizer, self.name = model.eval(), preprocess, tokenizer, name

    @classmethod
    def load(cls, spec: str | Path = "demo", device: str | None = None) -> "Scorer":
        """Load the demo scorer, a local open_clip folder, or `ARCH:weights.safetensors`."""
        import open_clip

        from .loading import resolve_scorer

        dev = pick_device(device)
        spec = str(spec or "demo")
        folder, arch, weights = resolve_scorer(spec)
        if folder is not None:
            name = f"local-dir:{folder.resolve()}"
            model, _, preprocess = open_clip.create_model_and_transforms(name, device=dev)
        else:
            if arch not in open_clip.list_models():
                raise InputError(f"unknown open_clip architecture {arch!r}")
            name = arch
            model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=weights, device=dev)
        return cls(model, preprocess, open_clip.get_tokenizer(name), spec)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def embed_images(self, images, batch_size: int = 64) -> torch.Tensor:
        """L2-normalized embeddings (N, D) of PIL images."""
        out = []
        for i in range(0, len(images), batch_size):
            x = torch.stack([self.preprocess(im.convert("RGB")) for im in images[i : i + batch_size]]).to(self.device)
            out.append(torch.nn.functional.normalize(self.model.encode_image(x).float(), dim=-1))
        return torch.cat(out) if out else torch.empty(0)

    @torch.no_grad()
    def embed_texts(self, texts: list[str], batch_size: int = 256) -> torch.Tensor:
        """L2-normalized embeddings (N, D) of texts."""
        out = []
        for i in range(0, len(texts), batch_size):
            tokens = self.tokenizer(list(texts[i : i + batch_size])).to(self.device)
            out.append(torch.nn.functional.normalize(self.model.encode_text(tokens).float(), dim=-1))
        return torch.cat(out) if out else torch.empty(0)

    def clip_score(self, images, texts: list[str]) -> np.ndarray:
        """CLIPScore per (image, text) pair: 100 * max(cosine, 0) (Hessel et al. 2021, w=100 as torchmetrics)."""
        if len(images) != len(texts):
            raise InputError(f"clip_score needs one text per image, got {len(images)} images and {len(texts)} texts")
        cos = (self.embed_images(images) * self.embed_texts(texts)).sum(-1)
        return (100 * cos.clamp(min=0)).cpu().numpy()

    def similarity(self, images_a, images_b) -> np.ndarray:
        """Cosine similarity matrix between two image sets (personalization: closeness to history)."""
        return (self.embed_images(images_a) @ self.embed_images(images_b).T).cpu().numpy()
