"""Procedural scenes that demo-shop products are composited onto, each named in the caption.

Later pipelines put products on generated backgrounds, so the demo models learn a few scenes
they can be asked for by name. Each scene is drawn with numpy from a seed: cheap and varied.
"""
from __future__ import annotations

import numpy as np

# caption phrase -> drawing function; "studio" is the plain product-photo default
SCENES = ("in a studio", "on a beach", "on a wooden floor", "on green grass", "on a marble table")


def _vgrad(size: int, top, bottom) -> np.ndarray:
    t = np.linspace(0.0, 1.0, size, dtype=np.float32)[:, None, None]
    return np.broadcast_to((1 - t) * np.float32(top) + t * np.float32(bottom), (size, size, 3)).copy()


def _studio(size: int, rng: np.random.Generator) -> np.ndarray:
    base = rng.uniform(200, 225)
    return _vgrad(size, (base + 15,) * 3, (base - 20,) * 3)


def _beach(size: int, rng: np.random.Generator) -> np.ndarray:
    img = _vgrad(size, (120, 180, 235), (180, 215, 245))
    horizon = int(size * rng.uniform(0.45, 0.6))
    img[horizon:] = _vgrad(size, (60, 120, 190), (230, 205, 150))[horizon:]  # water then sand
    sand = int(horizon + size * 0.12)
    img[sand:] = np.float32((228, 206, 160)) + rng.normal(0, 6, (size - sand, size, 1)).astype(np.float32)
    return img


def _wood(size: int, rng: np.random.Generator) -> np.ndarray:
    tone = np.float32((150, 100, 60)) * rng.uniform(0.85, 1.1)
    img = np.broadcast_to(tone, (size, size, 3)).copy()
    plank = max(4, size // 6)
    for x0 in range(0, size, plank):
        img[:, x0 : x0 + plank] *= rng.uniform(0.85, 1.12)
        img[:, x0] *= 0.6  # the gap between planks
    grain = np.sin(np.linspace(0, rng.uniform(20, 40), size))[:, None, None] * 8
    return img + grain.astype(np.float32)


def _grass(size: int, rng: np.random.Generator) -> np.ndarray:
    img = np.broadcast_to(np.float32((70, 150, 60)), (size, size, 3)).copy()
    return img + rng.normal(0, 12, (size, size, 1)).astype(np.float32)


def _marble(size: int, rng: np.random.Generator) -> np.ndarray:
    img = np.full((size, size, 3), 235, dtype=np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    veins = np.sin((xx + yy * rng.uniform(0.5, 1.5)) / size * rng.uniform(6, 12) + rng.uniform(0, 6))
    return img - (np.abs(veins) < 0.12)[..., None] * 50


_DRAW = dict(zip(SCENES, (_studio, _beach, _wood, _grass, _marble)))


def draw_scene(scene: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """An RGB float32 (size, size, 3) image in [0, 255] of the named scene."""
    if scene not in _DRAW:
        raise KeyError(f"unknown scene {scene!r}; known: {', '.join(SCENES)}")
    return np.clip(_DRAW[scene](size, rng), 0, 255)


def composite(product_rgba: np.ndarray, scene: str, rng: np.random.Generator) -> np.ndarray:
    """Alpha-composite an RGBA uint8 product (size, size, 4) onto a scene; returns RGB uint8."""
    size = product_rgba.shape[0]
    bg = draw_scene(scene, size, rng)
    alpha = product_rgba[..., 3:4].astype(np.float32) / 255.0
    out = product_rgba[..., :3].astype(np.float32) * alpha + bg * (1 - alpha)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
