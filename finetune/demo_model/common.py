"""Helpers shared by the demo-model trainers: the cached shop images, tensors, the tokenizer."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from core.io import atomic_write_json, load_safetensors, save_safetensors

from .configs import MAX_TOKENS
from .data import DEFAULT_CATALOG, ShopImages, build_shop_images


def shop_images(out_dir: str | Path, seed: int = 0, catalog: str | Path | None = DEFAULT_CATALOG,
                progress: bool = True, name: str = "shop", **build_kwargs) -> ShopImages:
    """Rendered training images, built once and cached as `OUT/data/<name>.safetensors` + JSON.

    The default set excludes the held-out combinations (generator training); other sets pass
    their own `build_shop_images` arguments (e.g. `held_out=set()` for the judges).
    """
    cache = Path(out_dir) / "data"
    tensors_path, meta_path = cache / f"{name}.safetensors", cache / f"{name}.json"
    if tensors_path.exists() and meta_path.exists():
        t = load_safetensors(tensors_path)
        meta = json.loads(meta_path.read_text())
        if meta.get("seed") == seed:
            labels = {k[len("label_"):]: t[k].numpy() for k in t if k.startswith("label_")}
            return ShopImages(t["images"].numpy(), t["alpha"].numpy(), t["products"].numpy(), meta["captions"], labels)
    kwargs = {"renders_per_combo": 2, "scenes_per_product": 2, **build_kwargs}
    data = build_shop_images(catalog, seed=seed, progress=progress, **kwargs)
    save_safetensors({"images": torch.from_numpy(data.images), "alpha": torch.from_numpy(data.alpha),
                      "products": torch.from_numpy(data.products),
                      **{f"label_{k}": torch.from_numpy(v) for k, v in data.labels.items()}}, tensors_path)
    atomic_write_json(meta_path, {"seed": seed, "captions": data.captions}, indent=None)
    return data


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float (N, 3, H, W) in [-1, 1], the range diffusers' VAE expects."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """Inverse of `to_tensor` (clamped)."""
    return x.clamp(-1, 1).add(1).mul(127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def tokenizer():
    """The real CLIP BPE tokenizer with the demo models' short context."""
    from pipelines.tokenizer import build_clip_tokenizer

    return build_clip_tokenizer(model_max_length=MAX_TOKENS)


def tokenize(tok, texts: list[str]) -> torch.Tensor:
    """Token ids padded to the tokenizer's max length, as the SD pipeline pads them."""
    return tok(texts, padding="max_length", max_length=tok.model_max_length, truncation=True,
               return_tensors="pt").input_ids


def image_grid(images: np.ndarray, cols: int = 8):
    """A PIL grid of uint8 (N, H, W, 3) images, row-major."""
    from PIL import Image

    n, h, w, _ = images.shape
    rows = (n + cols - 1) // cols
    grid = np.full((rows * h, cols * w, 3), 255, dtype=np.uint8)
    for i, im in enumerate(images):
        r, c = divmod(i, cols)
        grid[r * h : (r + 1) * h, c * w : (c + 1) * w] = im
    return Image.fromarray(grid)


def set_seed(seed: int) -> None:
    """Seed torch and numpy for model init (batches are seeded per step by the loop)."""
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))
