"""Outfit completion: the missing categories are generated under the outfit rules and matched to real items."""
from __future__ import annotations

import numpy as np
import pytest
from tiny_models import ColorScorer

from core.errors import InputError
from recommenders.condition import PreferenceCondition


@pytest.fixture(scope="module")
def parts(tiny_sd, tiny_catalog):
    from diffusers import StableDiffusionPipeline

    sd = StableDiffusionPipeline.from_pretrained(tiny_sd)
    return sd, tiny_catalog


def cond():
    return PreferenceCondition("u5", attributes={
        "color": {"red": 0.6, "navy": 0.3, "white": 0.1}, "pattern": {"striped": 0.8, "solid": 0.2},
        "style": {"casual": 1.0}, "category": {"trousers": 0.5, "skirt": 0.2}}, reference_items=["t31"])


def test_missing_categories_rules():
    from pipelines.outfit import missing_categories

    cats = ["bag", "dress", "hat", "shirt", "shoes", "skirt", "trousers"]
    assert missing_categories(["shirt"], cats, {"skirt": 0.9, "trousers": 0.1}) == ["skirt", "shoes", "bag"]
    assert missing_categories(["shirt"], cats, {"trousers": 0.9}) == ["trousers", "shoes", "bag"]
    assert missing_categories(["dress"], cats) == ["shoes", "bag"]
    assert missing_categories(["trousers", "shoes"], cats) == ["shirt", "bag"]


def test_piece_attributes_follow_the_outfit():
    from pipelines.outfit import piece_attributes

    c = cond()
    # nothing bold or patterned yet: the user's own favourites
    assert piece_attributes(c, [{"color": "navy", "pattern": "solid", "style": "formal"}]) == \
        {"style": "formal", "color": "red", "pattern": "striped"}
    # a bold color and a pattern are taken: a neutral color and a solid piece
    assert piece_attributes(c, [{"color": "yellow", "pattern": "dotted", "style": "casual"}]) == \
        {"style": "casual", "color": "navy", "pattern": "solid"}


def test_outfit_pipeline_generates_and_retrieves(parts):
    from pipelines.outfit import OutfitPipeline, outfit_board

    sd, catalog = parts
    pipe = OutfitPipeline(sd, catalog=catalog, scorer=ColorScorer())
    out = pipe(cond(), ["t00"], num_candidates=2, seed=2, steps=2)  # t00: a shirt
    cats = [c.extra["category"] for c in out.creatives]
    assert cats == ["trousers", "trousers", "shoes", "shoes", "bag", "bag"]
    for c in out.creatives:
        item = c.extra["retrieved_item"]
        assert catalog[item].category == c.extra["category"]
        assert item not in ("t00", "t31")  # neither a present item nor one from the history
        assert -1.0 <= c.extra["retrieval_similarity"] <= 1.0
        assert {"clip", "personalization"} <= set(c.scores)
        assert c.extra["category"] in c.prompt
    again = pipe.regenerate(out.creatives[2])
    assert np.array_equal(np.asarray(again), np.asarray(out.images[2]))
    board = outfit_board(catalog, ["t00"], out, tile=32)
    assert board.size == (4 * 32, 64)


def test_keyword_retrieval_without_scorer(parts):
    from pipelines.outfit import OutfitPipeline

    sd, catalog = parts
    out = OutfitPipeline(sd, catalog=catalog)(cond(), ["t00"], categories=["bag"], steps=1, exclude_history=False)
    item = catalog[out.creatives[0].extra["retrieved_item"]]
    assert item.category == "bag" and item.attributes["color"] == "red"  # matches the piece's keywords


def test_outfit_errors(parts):
    from pipelines.outfit import OutfitPipeline

    sd, catalog = parts
    pipe = OutfitPipeline(sd, catalog=catalog)
    with pytest.raises(InputError, match="unknown outfit item"):
        pipe(cond(), ["zzz"], steps=1)
    with pytest.raises(InputError, match="unknown categories"):
        pipe(cond(), ["t00"], categories=["cape"], steps=1)
