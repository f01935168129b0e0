"""Keyword prompts, the preference adapter (shapes, save/load, guidance) and candidate ranking."""
from __future__ import annotations

import pytest
import torch
from tiny_models import ColorScorer

from core.errors import InputError
from recommenders.condition import PreferenceCondition


def cond(**kw):
    base = dict(attributes={"color": {"navy": 0.6, "red": 0.4}, "pattern": {"striped": 1.0},
                            "category": {"shirt": 0.7, "shoes": 0.3}, "style": {"formal": 1.0}},
                embedding=[0.5, -0.5, 0.25])
    base.update(kw)
    return PreferenceCondition("u1", **base)


def test_keyword_prompts():
    from pipelines.conditioning import keyword_prompt

    assert keyword_prompt(cond()) == "a formal navy striped shirt"  # the demo caption grammar
    assert keyword_prompt(cond(), category="shoes") == "formal navy striped shoes"  # plural: no article
    # backgrounds: the product's words, a scene from the shopper's favourite style
    assert keyword_prompt(cond(), "background", color="red", pattern="solid") == "a formal red solid shirt on a marble table"
    assert keyword_prompt(PreferenceCondition("u"), "background_plain") == "a product in a studio"
    assert keyword_prompt(cond(), "banner", scene="on a beach") == "a navy striped shirt on a beach"
    assert keyword_prompt(None, "plain", category="dress") == "a dress"
    assert keyword_prompt(None, "plain") == ""
    assert keyword_prompt(cond(), "{color} and {pattern} things") == "navy and striped things"
    # the heaviest keyword wins, whatever the dict order
    flipped = cond(attributes={"color": {"red": 0.1, "green": 0.9}})
    assert keyword_prompt(flipped, category="hat") == "a green hat"


def adapter(**kw):
    from pipelines.conditioning import PreferenceAdapter

    torch.manual_seed(0)
    return PreferenceAdapter(embedding_dim=3, cross_attention_dim=32, num_tokens=4, hidden_dim=16, **kw)


def test_adapter_shapes_and_round_trip(tmp_path):
    from pipelines.conditioning import PreferenceAdapter

    a = adapter()
    with torch.no_grad():
        a.null_tokens.normal_()
    emb = torch.randn(5, 3)
    assert a(emb).shape == (5, 4, 32)
    assert a(None, batch_size=2).shape == (2, 4, 32)
    a.save_pretrained(tmp_path / "ad")
    assert sorted(p.name for p in (tmp_path / "ad").iterdir()) == ["config.json", "model.safetensors"]
    b = PreferenceAdapter.from_pretrained(tmp_path / "ad")
    assert torch.equal(a(emb), b(emb)) and torch.equal(a(None), b(None))
    assert b.source == str(tmp_path / "ad")
    with pytest.raises(InputError, match="expects 3"):
        a(torch.zeros(1, 7))
    with pytest.raises(InputError, match="no config.json"):
        PreferenceAdapter.from_pretrained(tmp_path)


def test_encode_prompts_appends_tokens_on_both_branches(tiny_sd):
    from diffusers import StableDiffusionPipeline

    from pipelines.conditioning import encode_prompts

    sd = StableDiffusionPipeline.from_pretrained(tiny_sd)
    a = adapter()
    c0, u0 = encode_prompts(sd, "a red shirt", "blurry", guidance=7.5)
    c1, u1 = encode_prompts(sd, "a red shirt", "blurry", guidance=7.5, adapter=a, embedding=[0.5, -0.5, 0.25])
    assert c1.shape == (1, c0.shape[1] + 4, 32) and u1.shape == c1.shape
    assert torch.equal(c1[:, : c0.shape[1]], c0)  # the prompt's own tokens are untouched
    assert torch.equal(u1[:, u0.shape[1]:], a(None))  # guidance pairs them with the null tokens
    c2, u2 = encode_prompts(sd, "a red shirt", "", guidance=1.0, adapter=a, embedding=[0.5, -0.5, 0.25])
    assert u2 is None and c2.shape == c1.shape  # no guidance: no unconditional branch
    from pipelines.conditioning import PreferenceAdapter

    with pytest.raises(InputError, match="text encoder makes 32"):
        encode_prompts(sd, "x", "", guidance=2.0, adapter=PreferenceAdapter(3, 16),
                       embedding=[0.0, 0.0, 0.0])


def test_reference_item_prefers_same_category(tiny_catalog):
    from pipelines.conditioning import item_picture, reference_item

    catalog = tiny_catalog
    c = cond(reference_items=["t30", "t01", "t02"])
    assert reference_item(c, catalog, "shirt") == "t01"
    assert reference_item(c, catalog, "hat") == "t30"  # none of that category: the latest
    assert reference_item(c, None) is None
    pic = item_picture(catalog, "t01", (32, 32))
    assert pic.size == (32, 32) and pic.mode == "RGB" and pic.getpixel((0, 0)) == (255, 255, 255)


def test_rank_order_and_scores(tiny_catalog):
    from PIL import Image

    from pipelines.candidate_scores import rank_order, score_candidates

    assert rank_order([{"a": 1, "b": 3}, {"a": 2, "b": 2}, {"a": 3, "b": 1}, {"a": 4, "b": 4}]) == [3, 0, 1, 2]
    assert rank_order([{"clip": 9, "ctr": 0.1}, {"clip": 0, "ctr": 0.2}]) == [1, 0]
    catalog = tiny_catalog
    red, navy = Image.new("RGB", (16, 16), (205, 30, 40)), Image.new("RGB", (16, 16), (24, 38, 110))
    c = cond(reference_items=["t01", "t11"])  # red items
    s = score_candidates([red, navy], ["a red shirt", "a red shirt"], c, scorer=ColorScorer(), catalog=catalog)
    assert s[0]["personalization"] > s[1]["personalization"] and s[0]["clip"] > s[1]["clip"]
    assert s[0]["personalization"] > 0.95
