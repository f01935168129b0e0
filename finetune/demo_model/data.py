"""Training and evaluation data for the demo models, drawn from the demo shop.

Every image is a demo-shop product (the catalog's items plus more renders of the shop's own
generator, `recommenders.shop.draw`, so that every combination is seen in several variants)
composited onto a named scene and captioned from its attributes, e.g.
"a casual navy striped shirt on a beach". Some (category, color, pattern) combinations are held
out of all generator training: evaluation asks for exactly those, so fidelity measures whether the
model composes words it learned separately, not whether it remembers an image.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recommenders.shop.vocab import CATEGORIES, COLORS, PATTERNS, STYLES

from .backgrounds import SCENES, composite
from .configs import IMAGE_SIZE

LABEL_KINDS = ("color", "category", "pattern")
VOCAB = {"color": tuple(COLORS), "category": CATEGORIES, "pattern": PATTERNS, "style": STYLES}
DEFAULT_CATALOG = Path(__file__).resolve().parents[2] / "assets" / "demo_shop" / "catalog.jsonl"

Combo = tuple[str, str, str]  # (category, color, pattern)


def held_out_combos(n: int = 42) -> set[Combo]:
    """A fixed set of (category, color, pattern) combinations no generator ever trains on.

    Combination k is (category k mod 7, color k mod 12, pattern k mod 5): 7, 12 and 5 are
    coprime, so the combinations are distinct and every category, color and pattern is held out
    about equally often (each is still seen in many other combinations).
    """
    colors = list(COLORS)
    return {(CATEGORIES[k % len(CATEGORIES)], colors[k % len(colors)], PATTERNS[k % len(PATTERNS)]) for k in range(n)}


def caption(category: str, color: str, pattern: str, scene: str | None, style: str | None = None) -> str:
    """The caption grammar shared by training and prompts: '[a] [style] color pattern category [scene]'."""
    words = ["a"] + ([style] if style else []) + [color, pattern, category]
    return " ".join(words + ([scene] if scene else []))


@dataclass
class ShopImages:
    """Composited 64 px images with captions and labels (numpy, so they cache as safetensors)."""

    images: np.ndarray  # (N, 64, 64, 3) uint8, product on a scene
    alpha: np.ndarray  # (N, 64, 64) uint8, where the product is
    products: np.ndarray  # (N, 64, 64, 3) uint8, the product alone on mid-gray (for edge maps)
    captions: list[str]
    labels: dict[str, np.ndarray]  # kind -> (N,) int64 index into VOCAB[kind]; also "scene"

    def __len__(self) -> int:
        return len(self.captions)


def _product_specs(catalog_path: Path | None, renders_per_combo: int, held_out: set[Combo], seed: int):
    """(item image or None, category, color, pattern, style, seed) for every product to render."""
    specs = []
    if catalog_path is not None and Path(catalog_path).exists():
        from recommenders.catalog import Catalog

        catalog = Catalog.load(catalog_path)
        for item in catalog:
            a = item.attributes
            combo = (item.category, a.get("color"), a.get("pattern"))
            if None in combo or combo in held_out or item.category not in CATEGORIES:
                continue
            if a.get("color") not in COLORS or a.get("pattern") not in PATTERNS:
                continue
            specs.append((catalog.image_file(item.item_id), *combo, a.get("style"), 0))
    k = 0
    for cat in CATEGORIES:
        for color in COLORS:
            for pattern in PATTERNS:
                if (cat, color, pattern) in held_out:
                    continue
                for style in STYLES:
                    for r in range(renders_per_combo):
                        specs.append((None, cat, color, pattern, style, seed * 7919 + k))
                        k += 1
    return specs


def render_product(category: str, color: str, pattern: str, style: str, seed: int):
    """A 128 px RGBA PIL image of one product, drawn by the demo shop's own generator."""
    from recommenders.shop.draw import draw_product

    return draw_product(category, color, pattern, style, np.random.default_rng(seed))


def build_shop_images(
    catalog_path: str | Path | None = DEFAULT_CATALOG,
    *,
    renders_per_combo: int = 1,
    scenes_per_product: int = 2,
    seed: int = 0,
    held_out: set[Combo] | None = None,
    progress: bool = True,
) -> ShopImages:
    """Render, composite and caption the training set (held-out combinations excluded)."""
    from PIL import Image
    from tqdm.auto import tqdm

    held_out = held_out_combos() if held_out is None else held_out
    specs = _product_specs(Path(catalog_path) if catalog_path else None, renders_per_combo, held_out, seed)
    rng = np.random.default_rng(seed)
    images, alphas, products, captions = [], [], [], []
    labels: dict[str, list[int]] = {k: [] for k in (*LABEL_KINDS, "style", "scene")}
    for path, cat, color, pattern, style, s in tqdm(specs, desc="render shop", disable=not progress):
        if path is not None:
            with Image.open(path) as im:
                rgba = np.asarray(im.convert("RGBA").resize((128, 128), Image.BOX))
        else:
            rgba = np.asarray(render_product(cat, color, pattern, style, s))
        small = np.asarray(Image.fromarray(rgba).reduce(2)) if rgba.shape[0] != IMAGE_SIZE else rgba
        gray = composite_gray(small)
        # the studio always, plus other scenes, so a bare prompt means a product photo
        scenes = [0] + list(rng.choice(np.arange(1, len(SCENES)), size=scenes_per_product - 1, replace=False))
        for si in scenes:
            scene = SCENES[si]
            img = composite(rgba, scene, rng)
            images.append(np.asarray(Image.fromarray(img).reduce(2)) if img.shape[0] != IMAGE_SIZE else img)
            alphas.append(small[..., 3])
            products.append(gray)
            use_style = style if (style and rng.random() < 0.5) else None
            use_scene = None if (si == 0 and rng.random() < 0.3) else scene
            captions.append(caption(cat, color, pattern, use_scene, use_style))
            for kind, value in (("color", color), ("category", cat), ("pattern", pattern)):
                labels[kind].append(VOCAB[kind].index(value))
            labels["style"].append(STYLES.index(style) if style in STYLES else -1)
            labels["scene"].append(int(si))
    return ShopImages(np.stack(images), np.stack(alphas), np.stack(products), captions,
                      {k: np.asarray(v, dtype=np.int64) for k, v in labels.items()})


def composite_gray(rgba: np.ndarray) -> np.ndarray:
    """The product on a flat mid-gray, the input that edge maps are computed from."""
    a = rgba[..., 3:4].astype(np.float32) / 255.0
    return np.clip(rgba[..., :3] * a + 128.0 * (1 - a) + 0.5, 0, 255).astype(np.uint8)


def edge_map(rgba_or_rgb: np.ndarray, low: int = 60, high: int = 160) -> np.ndarray:
    """Canny edges (OpenCV, as diffusers' ControlNet docs do) as an RGB uint8 white-on-black image.

    Given RGBA, the product is first put on mid-gray so its silhouette yields edges too.
    """
    import cv2

    rgb = composite_gray(rgba_or_rgb) if rgba_or_rgb.shape[-1] == 4 else rgba_or_rgb
    edges = cv2.Canny(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), low, high)
    return np.repeat(edges[..., None], 3, axis=-1)


def eval_prompts(n: int, seed: int = 0, scene: str = "in a studio") -> list[tuple[str, dict[str, str]]]:
    """`n` prompts cycling through the held-out combinations, with their true labels."""
    combos = sorted(held_out_combos())
    rng = np.random.default_rng(seed)
    order = [combos[i % len(combos)] for i in range(n)]
    rng.shuffle(order)
    return [(caption(cat, color, pattern, scene), {"category": cat, "color": color, "pattern": pattern})
            for cat, color, pattern in order]
