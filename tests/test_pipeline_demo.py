"""The pipelines on the shipped demo models (slow; skipped until `assets/models/` holds them)."""
from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo():
    from pipelines.attribute_classifier import DEMO_PATH, AttributeClassifier
    from pipelines.loading import demo_path, load_sd_pipeline
    from recommenders.shop import DEMO_SHOP_DIR, DemoShop

    if not (demo_path("demo") / "model_index.json").is_file() or not DEMO_PATH.is_dir():
        pytest.skip("the demo models are not installed in assets/models")
    if not (DEMO_SHOP_DIR / "shop.json").is_file():
        pytest.skip("the demo shop is not built")
    return load_sd_pipeline("demo", device="cpu"), AttributeClassifier.load(), DemoShop.load()


def test_keywords_reach_the_image(demo):
    """Asked for a color, the demo model draws it: the classifier reads the asked color most of the time."""
    from pipelines.product import ProductPipeline
    from recommenders.condition import PreferenceCondition

    sd, judge, shop = demo
    pipe = ProductPipeline(sd, catalog=shop.catalog)
    hits = []
    for k, (color, category) in enumerate([("red", "shirt"), ("navy", "trousers"), ("yellow", "bag"),
                                           ("green", "dress"), ("black", "shoes"), ("pink", "hat")]):
        cond = PreferenceCondition(f"t{k}", attributes={"color": {color: 1.0}, "pattern": {"solid": 1.0}})
        out = pipe(cond, category=category, num_candidates=2, seed=k, steps=20, guidance=4.0, batch_size=2,
                   progress=False)
        hits += [p["color"] == color for p in judge.predict(out.images)]
    assert np.mean(hits) >= 0.6, hits


def test_background_on_demo_controlnet_keeps_product(demo):
    from pipelines.background import BackgroundPipeline
    from pipelines.loading import load_controlnet
    from recommenders.condition import PreferenceCondition

    sd, _, shop = demo
    try:
        cn = load_controlnet("demo-controlnet", device="cpu")
    except Exception as e:  # noqa: BLE001 (an InputError when it is not shipped)
        pytest.skip(f"no demo ControlNet: {e}")
    item = shop.catalog.item_ids[0]
    out = BackgroundPipeline(sd, controlnet=cn, catalog=shop.catalog)(
        PreferenceCondition("u", attributes={"style": {"casual": 1.0}}), item_id=item, num_candidates=1, steps=10,
        progress=False)
    rgba = np.asarray(shop.catalog.load_image(item))
    pad = round(rgba.shape[0] * 0.25)
    region = np.asarray(out.images[0])[pad:pad + rgba.shape[0], pad:pad + rgba.shape[1]]
    opaque = rgba[..., 3] == 255
    assert np.abs(region[opaque].astype(int) - rgba[..., :3][opaque]).max() == 0
    assert out.creatives[0].prompt.endswith("on a beach")
