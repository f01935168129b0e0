"""Background pipeline: the product's pixels come back unchanged (max abs diff 0), both modes."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from core.errors import InputError
from recommenders.condition import PreferenceCondition

STEPS = 3


@pytest.fixture(scope="module")
def pipe(tiny_sd, tiny_controlnet):
    from diffusers import ControlNetModel, StableDiffusionPipeline

    from pipelines.background import BackgroundPipeline

    sd = StableDiffusionPipeline.from_pretrained(tiny_sd)
    cn_dir = tiny_controlnet
    return BackgroundPipeline(sd, controlnet=ControlNetModel.from_pretrained(cn_dir), controlnet_path=str(cn_dir))


@pytest.fixture()
def condition():
    return PreferenceCondition("u1", attributes={"color": {"navy": 1.0}, "style": {"casual": 1.0}})


def product_rgba(size=(52, 44)) -> Image.Image:
    """A textured product with a hard alpha edge and a soft (semi-transparent) rim."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    alpha = Image.new("L", size, 0)
    ImageDraw.Draw(alpha).ellipse((6, 5, size[0] - 6, size[1] - 5), fill=255)
    a = np.asarray(alpha).copy()
    a[(a == 255) & (np.roll(a, 2, axis=1) == 0)] = 128  # a soft rim: blended, not copied
    return Image.fromarray(np.dstack([rgb, a]), "RGBA")


def _product_region(image: Image.Image, product: Image.Image, padding: float) -> np.ndarray:
    w, h = product.size
    py, px = round(h * padding), round(w * padding)
    return np.asarray(image)[py:py + h, px:px + w]


@pytest.mark.parametrize("mode", ["controlnet", "inpaint"])
def test_product_pixels_identical(pipe, condition, tmp_path, mode):
    product = product_rgba()
    product.save(tmp_path / "p.png")
    out = pipe(condition, product_path=str(tmp_path / "p.png"), mode=mode, num_candidates=2, seed=4, steps=STEPS)
    rgba = np.asarray(product)
    opaque = rgba[..., 3] == 255
    for image, creative in zip(out.images, out.creatives):
        assert image.size == (52 + 2 * 13, 44 + 2 * 11)  # 25% padding each side
        region = _product_region(image, product, 0.25).astype(np.int16)
        assert np.abs(region[opaque] - rgba[..., :3][opaque]).max() == 0
        assert creative.extra["params"]["mode"] == mode
        # the scene changed around the product
        assert np.asarray(image)[:5].std() > 0
        # and the record regenerates the same pixels
        assert np.array_equal(np.asarray(pipe.regenerate(creative)), np.asarray(image))


def test_rgb_image_with_mask(pipe, condition, tmp_path):
    product = product_rgba().convert("RGB")
    mask = Image.new("L", product.size, 0)
    ImageDraw.Draw(mask).rectangle((10, 10, 30, 30), fill=255)
    out = pipe(condition, product, mask=mask, num_candidates=1, steps=STEPS, padding=0.0)
    m = np.asarray(mask) >= 128
    diff = np.asarray(out.images[0]).astype(np.int16)[m] - np.asarray(product).astype(np.int16)[m]
    assert np.abs(diff).max() == 0
    assert np.abs(np.asarray(out.images[0]).astype(np.int16)[~m] - np.asarray(product)[~m]).max() > 0


def test_helpers_and_errors(pipe, condition):
    from pipelines.background import canny_edges, flatten, product_layers

    rgb, alpha = product_layers(product_rgba())
    edges = np.asarray(canny_edges(flatten(rgb, alpha)))
    assert edges.shape == (44, 52, 3) and edges.max() == 255  # the silhouette has edges
    with pytest.raises(InputError, match="no alpha"):
        product_layers(Image.new("RGB", (8, 8)))
    with pytest.raises(InputError, match="empty"):
        product_layers(Image.new("RGBA", (8, 8), (0, 0, 0, 0)))
    with pytest.raises(InputError, match="mask is"):
        product_layers(Image.new("RGB", (8, 8)), Image.new("L", (4, 4)))
    with pytest.raises(InputError, match="mode must be"):
        pipe(condition, product_rgba(), mode="paint", steps=STEPS)
