"""Product pipeline on a tiny random SD-1.x folder: shapes, seeds, provenance round-trip, ranking."""
from __future__ import annotations

import numpy as np
import pytest
from tiny_models import ColorScorer

from core.creative import Manifest
from core.errors import InputError
from recommenders.condition import PreferenceCondition

STEPS = 3


@pytest.fixture(scope="module")
def parts(tiny_sd, tiny_catalog):
    from diffusers import StableDiffusionPipeline

    sd = StableDiffusionPipeline.from_pretrained(tiny_sd)
    return sd, tiny_catalog


@pytest.fixture()
def condition():
    return PreferenceCondition(
        "u7", item_scores=[("t01", 0.9), ("t11", 0.5)], embedding=[0.2, -0.1, 0.4, 0.0],
        attributes={"color": {"red": 0.7, "navy": 0.3}, "pattern": {"striped": 1.0}, "style": {"formal": 1.0}},
        reference_items=["t21", "t01"], source="test")


def _arr(im):
    return np.asarray(im, dtype=np.int16)


def test_shapes_prompt_and_records(parts, condition):
    from pipelines.product import ProductPipeline

    sd, catalog = parts
    out = ProductPipeline(sd, catalog=catalog)(condition, category="shoes", num_candidates=3, seed=5, steps=STEPS)
    assert len(out.images) == len(out.creatives) == 3
    assert all(im.size == (64, 64) and im.mode == "RGB" for im in out.images)
    c = out.creatives[0]
    assert c.prompt == "formal red striped shoes"  # the user's keywords, the requested category
    assert c.pipeline == "product" and c.steps == STEPS and (c.width, c.height) == (64, 64)
    assert sorted(x.seed for x in out.creatives) == [5, 6, 7]
    assert c.condition["user_id"] == "u7" and c.negative_prompt
    assert len({x.creative_id for x in out.creatives}) == 3


def test_same_seed_same_pixels_other_seed_differs(parts, condition):
    from pipelines.product import ProductPipeline

    sd, catalog = parts
    pipe = ProductPipeline(sd, catalog=catalog)
    a = pipe(condition, category="bag", num_candidates=1, seed=11, steps=STEPS).images[0]
    b = pipe(condition, category="bag", num_candidates=1, seed=11, steps=STEPS).images[0]
    c = pipe(condition, category="bag", num_candidates=1, seed=12, steps=STEPS).images[0]
    assert np.array_equal(_arr(a), _arr(b))
    assert np.abs(_arr(a) - _arr(c)).max() > 0


def test_manifest_round_trip_regenerates_bit_for_bit(parts, condition, tmp_path):
    from pipelines.product import ProductPipeline

    sd, catalog = parts
    pipe = ProductPipeline(sd, catalog=catalog, scorer=ColorScorer())
    out = pipe(condition, category="shirt", num_candidates=2, seed=3, steps=STEPS, reference="history")
    manifest = Manifest(tmp_path / "manifest.jsonl")
    paths = out.save(tmp_path, manifest)
    records = manifest.load()
    assert [r.creative_id for r in records] == [c.creative_id for c in out.creatives]
    assert all(p.is_file() for p in paths)
    assert records[0].extra["params"]["reference_item"] == "t01"  # the history item of the same category
    for record, image in zip(records, out.images):
        again = pipe.regenerate(record)
        assert np.array_equal(_arr(again), _arr(image))


def test_ranking_scores_are_stored_and_ordered(parts, condition):
    from pipelines.product import ProductPipeline

    sd, catalog = parts

    class Reward:  # a CTR model that prefers red images
        def predict(self, image_emb, cond, format="product"):
            return image_emb[:, 0] - image_emb[:, 2]

    out = ProductPipeline(sd, catalog=catalog, scorer=ColorScorer(), reward_model=Reward())(
        condition, category="shirt", num_candidates=4, seed=0, steps=STEPS)
    scores = [c.scores for c in out.creatives]
    assert [s["rank"] for s in scores] == [0, 1, 2, 3]
    assert all({"clip", "personalization", "ctr"} <= set(s) for s in scores)
    ctr = [s["ctr"] for s in scores]
    assert ctr == sorted(ctr, reverse=True)  # a reward model decides the order


def test_adapter_tokens_change_the_image(parts, condition):
    from pipelines.conditioning import PreferenceAdapter
    from pipelines.product import ProductPipeline

    sd, catalog = parts
    import torch

    torch.manual_seed(0)
    adapter = PreferenceAdapter(embedding_dim=4, cross_attention_dim=32, num_tokens=2, hidden_dim=8)
    plain = ProductPipeline(sd, catalog=catalog)(condition, category="bag", num_candidates=1, seed=1, steps=STEPS)
    tuned = ProductPipeline(sd, catalog=catalog, adapter=adapter)(condition, category="bag", num_candidates=1,
                                                                   seed=1, steps=STEPS)
    assert np.abs(_arr(plain.images[0]) - _arr(tuned.images[0])).max() > 0
    assert tuned.creatives[0].extra["adapter"] is not None


def test_plain_prompt_and_given_product(parts, condition):
    from pipelines.product import ProductPipeline

    sd, catalog = parts
    pipe = ProductPipeline(sd, catalog=catalog)
    plain = pipe(condition, category="shirt", num_candidates=1, steps=STEPS, personalize=False)
    assert plain.creatives[0].prompt == "a shirt"
    given = pipe(condition, item_id="t30", num_candidates=1, steps=STEPS)
    assert given.creatives[0].extra["params"]["reference_item"] == "t30"  # img2img from the product itself
    assert given.creatives[0].prompt == "a formal red striped bag"


@pytest.mark.parametrize("kwargs, message", [
    ({"width": 60}, "multiples of 8"),
    ({"item_id": "nope"}, "unknown product"),
    ({"reference": "dream"}, "reference must be"),
    ({"num_candidates": 0}, "num_candidates must be between 1 and 256"),  # the shared bounds of core.limits
    ({"guidance": 51.0}, "guidance must be between 0 and 50"),
])
def test_bad_requests_raise_input_errors(parts, condition, kwargs, message):
    from pipelines.product import ProductPipeline

    sd, catalog = parts
    with pytest.raises(InputError, match=message):
        ProductPipeline(sd, catalog=catalog)(condition, category="shirt", steps=STEPS, **kwargs)


def test_ip_adapter_reference_from_history(tmp_path_factory, tmp_path, parts, condition, tiny_sd):
    from diffusers import StableDiffusionPipeline
    from tiny_models import build_tiny_ip_adapter

    from pipelines.conditioning import load_ip_adapter
    from pipelines.product import ProductPipeline

    sd_dir = tiny_sd
    weights = build_tiny_ip_adapter(tmp_path_factory.getbasetemp() / "tiny_ip", sd_dir)
    sd = StableDiffusionPipeline.from_pretrained(sd_dir)  # its own copy: loading changes the UNet
    _, catalog = parts
    pipe = ProductPipeline(sd, catalog=catalog, ip_adapter=load_ip_adapter(sd, weights.parent))
    ref = pipe(condition, category="shirt", num_candidates=1, steps=STEPS, reference="history")
    blank = pipe(condition, category="shirt", num_candidates=1, steps=STEPS, reference="none")
    assert ref.creatives[0].extra["ip_adapter"] == str(weights)
    assert np.abs(_arr(ref.images[0]) - _arr(blank.images[0])).max() > 0  # the history picture steers it
    assert np.array_equal(_arr(pipe.regenerate(ref.creatives[0])), _arr(ref.images[0]))
    with pytest.raises(InputError, match=".safetensors"):
        load_ip_adapter(sd, catalog.root)  # no weights there
    (tmp_path / "ip.safetensors").write_bytes(weights.read_bytes())
    with pytest.raises(InputError, match="image_encoder"):
        load_ip_adapter(sd, tmp_path / "ip.safetensors")  # weights without their image encoder


def test_batched_candidates_regenerate_exactly(parts, condition):
    from pipelines.product import ProductPipeline

    sd, catalog = parts
    pipe = ProductPipeline(sd, catalog=catalog)
    out = pipe(condition, category="hat", num_candidates=3, seed=20, steps=STEPS, batch_size=2)
    params = sorted((c.seed, c.extra["params"].get("batch_seeds")) for c in out.creatives)
    assert params == [(20, [20, 21]), (21, [20, 21]), (22, None)]  # two batches: [20, 21] and [22]
    for creative, image in zip(out.creatives, out.images):
        assert np.array_equal(_arr(pipe.regenerate(creative)), _arr(image))
    # the single-seed path is the same computation as a batch of one
    alone = pipe(condition, category="hat", num_candidates=1, seed=22, steps=STEPS).images[0]
    assert np.array_equal(_arr(alone), _arr(out.images[[c.seed for c in out.creatives].index(22)]))
