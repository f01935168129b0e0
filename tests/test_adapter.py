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
