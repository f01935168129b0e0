"""Preference adapter training: leave-one-out examples, frozen base, the saved adapter loads and changes images."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from core.errors import InputError


def test_examples_leave_the_target_item_out(users):
    from finetune.adapter import AdapterTrainConfig, history_examples

    ids = users.user_ids[:6]
    examples = history_examples(users, ids, AdapterTrainConfig(items_per_user=2, keyword_share=0.5, seed=0))
    assert len(examples) == 12
    for e in examples[:4]:
        history = users.history(e.user_id)
        assert e.item_id in history[-5:]  # one of the latest likes
        without = users.condition(e.user_id, [i for i in history if i != e.item_id])
        assert list(e.embedding) == without.embedding
        assert e.item_id not in without.reference_items
        assert users.catalog[e.item_id].category in e.prompt
    assert {e.prompt.count(" ") > 1 for e in examples} == {True, False}  # keyword and category-only prompts
    with pytest.raises(InputError, match="--keyword-share"):
        AdapterTrainConfig(keyword_share=2)


def test_adapter_trains_with_the_base_frozen_and_loads(users, shop, tmp_path, tiny_sd):
    from finetune.adapter import (
        AdapterTrainConfig,
        AdapterTrainer,
        color_match,
        history_examples,
    )
    from finetune.dpo import lora_pipeline
    from finetune.lora import load_sd_components
    from pipelines.conditioning import PreferenceAdapter

    sd = tiny_sd
    parts = load_sd_components(sd)
    before_unet = {k: v.clone() for k, v in parts.unet.state_dict().items()}
    cfg = AdapterTrainConfig(steps=25, batch_size=8, items_per_user=1, learning_rate=1e-2, checkpoint_every=0,
                             embedding_dropout=0.0, snr_gamma=None)
    examples = history_examples(users, users.user_ids[:8], cfg)
    trainer = AdapterTrainer(parts, examples, users.catalog, cfg, tmp_path / "adapter", progress=False)
    fixed = lambda: torch.Generator().manual_seed(7)  # noqa: E731
    with torch.no_grad():
        before = float(trainer.step_fn(0, fixed()))
    trainer.run()
    with torch.no_grad():
        after = float(trainer.step_fn(0, fixed()))
    assert math.isfinite(after) and after < before, (before, after)
    for k, v in parts.unet.state_dict().items():
        assert torch.equal(v, before_unet[k]), f"base UNet weight {k} changed"
    trainer.adapter.save_pretrained(tmp_path / "adapter")

    adapter = PreferenceAdapter.from_pretrained(tmp_path / "adapter")
    assert adapter.config.embedding_dim == users.dim and adapter.config.cross_attention_dim == 32
    pipe = lora_pipeline(sd)
    result = color_match(pipe, adapter, users, users.user_ids[:2], shop,
                         lambda ims: [{"color": "red" if np.asarray(im)[..., 0].mean() > 127 else "navy"} for im in ims],
                         top_n=3, steps=2, progress=False)
    assert result["n"] == 2 and set(result) >= {"keywords", "keywords+adapter", "gain_points"}
    assert np.isclose(result["gain_points"], 100 * (result["keywords+adapter"] - result["keywords"]))


# -- the condition's taste in the scorer's image space (pipelines.taste_embedding) --------------------
def _tiny_space(tiny_catalog):
    from tiny_models import ColorScorer

    from pipelines.taste_embedding import taste_space_from_catalog

    return taste_space_from_catalog(ColorScorer(), tiny_catalog)


def _cos(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_more_weight_on_navy_moves_the_embedding_toward_the_navy_prototype(tiny_catalog):
    space = _tiny_space(tiny_catalog)
    vocab = [tuple(r) for r in space.vocabulary]
    assert ("color", "navy") in vocab and ("category", "shirt") in vocab and space.dim == 4
    navy = space.prototypes[vocab.index(("color", "navy"))]
    red = space.prototypes[vocab.index(("color", "red"))]
    base = {"category": {"shirt": 1.0}, "pattern": {"solid": 0.5, "striped": 0.5}}
    sims = []
    for w in (0.1, 0.5, 0.9):
        emb = space.embed({**base, "color": {"navy": w, "red": 1 - w}})
        assert np.isclose(np.linalg.norm(emb), 1.0)
        sims.append((_cos(emb, navy), _cos(emb, red)))
    assert sims[0][0] < sims[1][0] < sims[2][0]  # closer to navy as navy weighs more
    assert sims[0][1] > sims[1][1] > sims[2][1]  # and further from red
    # a kind's weights count as shares: doubling every color weight changes nothing; unknown values are ignored
    a = space.embed({"color": {"navy": 0.3, "red": 0.1}})
    assert np.allclose(a, space.embed({"color": {"navy": 0.6, "red": 0.2, "teal": 5.0}}))


def test_an_image_space_adapter_round_trips_with_its_prototypes(tiny_catalog, tmp_path):
    from pipelines.conditioning import PreferenceAdapter
    from recommenders.condition import PreferenceCondition

    space = _tiny_space(tiny_catalog)
    torch.manual_seed(0)
    adapter = PreferenceAdapter.for_taste_space(space, cross_attention_dim=32, num_tokens=2, hidden_dim=8)
    cond = PreferenceCondition("u1", embedding=[1.0, 0.0], attributes={"color": {"navy": 0.7, "red": 0.3}})
    assert adapter.reads_taste
    emb = adapter.condition_embedding(cond)
    with torch.no_grad():  # untrained, its tokens are its null tokens: guidance sees no push yet
        assert torch.equal(adapter(torch.tensor(emb)), adapter(None))
        adapter.proj[-1].weight.normal_()
        assert not torch.allclose(adapter(torch.tensor(emb)), adapter(None))
    assert np.allclose(emb, space.embed(cond.attributes), atol=1e-6) and len(emb) == space.dim
    adapter.save_pretrained(tmp_path / "a")
    loaded = PreferenceAdapter.from_pretrained(tmp_path / "a")
    assert loaded.config.taste_vocabulary == space.vocabulary
    assert torch.equal(loaded.taste_prototypes, torch.as_tensor(space.prototypes))
    assert loaded.condition_embedding(cond) == emb  # no catalog or scorer needed at inference
    with torch.no_grad():
        assert torch.equal(loaded(torch.tensor(emb)), adapter(torch.tensor(emb)))


def test_an_old_condition_space_adapter_still_loads_and_changes_images(users, tiny_sd, tmp_path):
    import json

    from finetune.dpo import lora_pipeline
    from pipelines.conditioning import PreferenceAdapter
    from pipelines.product import ProductPipeline

    v1 = PreferenceAdapter.from_pretrained(__import__("pathlib").Path(__file__).parent / "fixtures/saved_v1/adapter")
    cond = users.condition(users.user_ids[0])
    assert not v1.reads_taste and v1.condition_embedding(cond) is cond.embedding

    torch.manual_seed(0)
    old = PreferenceAdapter(embedding_dim=users.dim, cross_attention_dim=32, num_tokens=2, hidden_dim=8)
    old.save_pretrained(tmp_path / "old")
    config = json.loads((tmp_path / "old" / "config.json").read_text())
    config.pop("taste_vocabulary")  # written as earlier versions wrote it
    (tmp_path / "old" / "config.json").write_text(json.dumps(config))
    loaded = PreferenceAdapter.from_pretrained(tmp_path / "old")
    assert not loaded.reads_taste and loaded.condition_embedding(cond) == cond.embedding
    with torch.no_grad():
        loaded.null_tokens.normal_()  # a random adapter: its tokens are not the all-zero start
    pipe = lora_pipeline(tiny_sd)
    plain = ProductPipeline(pipe)(cond, category="shirt", num_candidates=1, seed=3, steps=2, progress=False)
    tuned = ProductPipeline(pipe, adapter=loaded)(cond, category="shirt", num_candidates=1, seed=3, steps=2,
                                                  progress=False)
    assert np.abs(np.asarray(plain.images[0], np.int16) - np.asarray(tuned.images[0], np.int16)).max() > 0


def test_taste_targets_follow_the_condition_and_sharpen_with_the_power(users):
    from finetune.adapter import AdapterTrainConfig, taste_examples, taste_probabilities

    ids = users.user_ids[:30]
    cat = users.catalog

    def top_color_share(power: float) -> float:
        cfg = AdapterTrainConfig(items_per_user=4, taste_power=power, seed=0)
        ex = taste_examples(users, ids, cfg, embed=lambda c: [float(len(c.user_id))])
        assert len(ex) == 4 * len(ids) and all(e.embedding == (5.0,) for e in ex)
        top = {u: users.condition(u).top_keywords(1, kinds=("color",))["color"][0] for u in ids}
        return float(np.mean([cat[e.item_id].attributes["color"] == top[e.user_id] for e in ex]))

    flat, sharp = top_color_share(0.05), top_color_share(4.0)
    # 12 colors: a flat draw rarely hits the top one; a sharp one mostly does
    assert flat < 0.3 and sharp > 0.5 and sharp > 3 * flat, (flat, sharp)
    p = taste_probabilities(users.condition(ids[0]), cat, cat.item_ids)
    assert np.isclose(p.sum(), 1.0) and (p > 0).all()


def test_adapter_trains_in_image_space_and_its_folder_reads_conditions(users, shop, tmp_path, tiny_sd):
    from tiny_models import ColorScorer

    from finetune.adapter import AdapterTrainConfig, train_adapter
    from pipelines.conditioning import PreferenceAdapter
    from pipelines.taste_embedding import taste_space_from_catalog

    space = taste_space_from_catalog(ColorScorer(), shop.catalog)
    cfg = AdapterTrainConfig(steps=3, batch_size=4, items_per_user=1, checkpoint_every=0)
    report = train_adapter(tiny_sd, users, users.user_ids[:6], tmp_path / "a", cfg, progress=False, space=space)
    assert report["targets"] == "taste" and report["examples"] == 6
    adapter = PreferenceAdapter.from_pretrained(tmp_path / "a")
    cond = users.condition(users.user_ids[0])
    assert adapter.reads_taste and adapter.config.embedding_dim == space.dim
    assert np.allclose(adapter.condition_embedding(cond), space.embed(cond.attributes), atol=1e-6)


def test_a_bad_targets_value_is_one_error_line():
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "app.cli", "finetune", "adapter", "--targets", "nearest",
                           "--eval-users", "0"], capture_output=True, text=True, timeout=120)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and proc.stdout == "", proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: --targets") and "Traceback" not in proc.stderr, lines
