"""Banners: every standard size keeps text on the canvas with WCAG contrast >= 4.5 under it."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from recommenders.condition import PreferenceCondition

SIZES = [(300, 250), (728, 90), (1200, 628), (1080, 1080)]


def luminance(rgb) -> np.ndarray:
    """WCAG relative luminance, written out again here so the test does not trust the module's."""
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    c = np.where(c <= 0.03928, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    return 0.2126 * c[..., 0] + 0.7152 * c[..., 1] + 0.0722 * c[..., 2]


def min_contrast(canvas: Image.Image, box, color) -> float:
    region = np.asarray(canvas.convert("RGB").crop(box)).reshape(-1, 3)
    lum, lc = luminance(region), float(luminance(np.asarray(color)))
    return float((((np.maximum(lum, lc) + 0.05) / (np.minimum(lum, lc) + 0.05))).min())


def backgrounds(w, h):
    rng = np.random.default_rng(w + h)
    stripes = np.zeros((h, w, 3), np.uint8)
    stripes[:, ::2] = 255  # black/white columns: no single text color can read on this
    yield "noise", Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    yield "stripes", Image.fromarray(stripes)
    yield "white", Image.new("RGB", (w, h), "white")
    yield "mid-gray", Image.new("RGB", (w, h), (119, 119, 119))


def product():
    im = Image.new("RGBA", (80, 100), (0, 0, 0, 0))
    ImageDraw.Draw(im).rounded_rectangle((5, 5, 75, 95), radius=12, fill=(24, 38, 110, 255))
    return im


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_layout_inside_and_readable_on_hard_backgrounds(size):
    from pipelines.layout import draw_text, plan_banner, text_ink_box

    w, h = size
    for name, bg in backgrounds(w, h):
        layout, under = plan_banner(bg, product(), "Navy stripes picked for your spring wardrobe", "Shop now",
                                    accent=(24, 38, 110))
        final = draw_text(under, [layout.headline, layout.cta])
        assert final.size == (w, h)
        for block in (layout.headline, layout.cta):
            x0, y0, x1, y1 = text_ink_box(block)
            assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h, (name, block.role)
            assert min_contrast(under, (x0, y0, x1, y1), block.color) >= 4.5, (name, block.role)
            assert block.contrast >= 4.5
            # the glyphs really were drawn there
            assert np.abs(np.asarray(final.crop((x0, y0, x1, y1)), np.int16)
                          - np.asarray(under.crop((x0, y0, x1, y1)), np.int16)).max() > 0
        if name == "stripes":
            assert layout.headline.panel is not None  # nowhere readable: a backing panel
        if name == "white":
            assert layout.headline.panel is None  # dark text reads on white as is


def test_regions_do_not_overlap():
    from pipelines.layout import arrangements

    def overlap(a, b):
        return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]

    for w, h in SIZES + [(160, 600), (320, 50)]:
        for arr in arrangements(w, h):
            boxes = [arr.product, arr.headline, arr.cta]
            assert all(0 <= b[0] < b[2] <= w and 0 <= b[1] < b[3] <= h for b in boxes), (w, h)
            assert not any(overlap(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:]), (w, h)


def test_contrast_formula_known_values():
    from pipelines.layout import button_colors, contrast_ratio

    assert contrast_ratio((0, 0, 0), (255, 255, 255)) == pytest.approx(21.0)
    assert contrast_ratio((119, 119, 119), (255, 255, 255)) == pytest.approx(4.48, abs=0.01)
    for accent in [(246, 204, 30), (255, 255, 255), (24, 38, 110), (128, 128, 132)]:
        button, text = button_colors(accent)
        assert contrast_ratio(button, text) >= 4.5


def test_long_headline_stays_inside():
    from pipelines.layout import plan_banner, text_ink_box

    long = "An extraordinarily long headline " * 6
    layout, _ = plan_banner(Image.new("RGB", (728, 90), "white"), product(), long, "Buy", accent=(0, 0, 0))
    x0, y0, x1, y1 = text_ink_box(layout.headline)
    assert 0 <= x0 and x1 <= 728 and 0 <= y0 and y1 <= 90
    assert layout.headline.lines[0].endswith("…")


def test_banner_pipeline_all_sizes(tmp_path, tiny_sd):
    from diffusers import StableDiffusionPipeline

    from pipelines.banner import BannerPipeline

    sd = StableDiffusionPipeline.from_pretrained(tiny_sd)
    product().save(tmp_path / "p.png")
    cond = PreferenceCondition("u3", attributes={"color": {"yellow": 1.0}, "pattern": {"dotted": 1.0}})
    pipe = BannerPipeline(sd)
    out = pipe(cond, product_path=str(tmp_path / "p.png"), sizes=[f"{w}x{h}" for w, h in SIZES], steps=2, seed=9)
    assert sorted(im.size for im in out.images) == sorted(SIZES)
    for image, c in zip(out.images, out.creatives):
        assert (c.width, c.height) == image.size
        assert c.extra["text_inside"] and c.extra["contrast_ok"] and c.extra["min_contrast"] >= 4.5
        assert "yellow dotted" in c.extra["params"]["headline"]
    first = out.creatives[0]
    assert np.array_equal(np.asarray(pipe.regenerate(first)), np.asarray(out.images[0]))
