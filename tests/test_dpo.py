"""Diffusion-DPO: the loss, training from an A/B export, pairs from a ranking, and the win rate."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core.errors import InputError


def redness(images, prompt):
    """A toy judge: how much redder than blue an image is."""
    return [float(np.asarray(im, np.float32)[..., 0].mean() - np.asarray(im, np.float32)[..., 2].mean())
            for im in images]


def test_dpo_loss_is_log2_at_the_reference_and_prefers_the_chosen():
    from finetune.dpo import diffusion_dpo_loss

    e = torch.tensor([0.3, 0.5])
    loss, stats = diffusion_dpo_loss(e, e, e, e, beta=1000.0)
    assert math.isclose(float(loss), math.log(2), rel_tol=1e-6)
    # lower error on the chosen image than the reference has -> lower loss; the opposite -> higher
    better, _ = diffusion_dpo_loss(e - 1e-3, e, e, e, beta=1000.0)
    worse, _ = diffusion_dpo_loss(e + 1e-3, e, e, e, beta=1000.0)
    assert float(better) < math.log(2) < float(worse)
    model_w = e.clone().requires_grad_(True)
    diffusion_dpo_loss(model_w, e, e, e, beta=1000.0)[0].backward()
    assert (model_w.grad > 0).all()  # descending the loss lowers the chosen image's error


def write_pairs(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(4):
        red = Image.new("RGB", (64, 64), (200 + 10 * i, 30, 30))
        blue = Image.new("RGB", (64, 64), (30, 30, 200 + 10 * i))
        red.save(folder / f"red{i}.png")
        blue.save(folder / f"blue{i}.png")
        rows.append({"prompt": f"a product {i % 2}", "chosen": f"red{i}.png", "rejected": f"blue{i}.png",
                     "chosen_id": f"c{i}", "rejected_id": f"r{i}", "source": "votes", "weight": 1.0})
    path = folder / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_dpo_trains_from_ab_export_and_the_lora_loads(tiny_sd, tmp_path):
    from finetune.data import load_preference_pairs
    from finetune.dpo import (
        DPOTrainConfig,
        DPOTrainer,
        lora_pipeline,
        win_rate,
    )
    from finetune.lora import load_sd_components, save_lora_weights

    pairs = load_preference_pairs(write_pairs(tmp_path / "ab"))
    assert len(pairs) == 4 and pairs[0].chosen.name == "red0.png"
    cfg = DPOTrainConfig(rank=4, steps=12, batch_size=4, learning_rate=5e-3, beta=5000.0, checkpoint_every=0, seed=0)
    parts = load_sd_components(tiny_sd)
    trainer = DPOTrainer(parts, pairs, cfg, tmp_path / "dpo", progress=False)
    fixed = lambda: torch.Generator().manual_seed(123)  # noqa: E731
    with torch.no_grad():
        before = float(trainer.step_fn(0, fixed())[0])
    assert math.isclose(before, math.log(2), rel_tol=1e-5)  # LoRA starts at zero: model == reference
    trainer.run()
    with torch.no_grad():
        after = float(trainer.step_fn(0, fixed())[0])
    assert after < before - 0.01, (before, after)
    save_lora_weights(parts, tmp_path / "dpo")

    base, tuned = lora_pipeline(tiny_sd), lora_pipeline(tiny_sd, tmp_path / "dpo")
    result = win_rate(base, tuned, ["a product 0", "a product 1"], redness, seeds=(0, 1), steps=2, progress=False)
    assert result["n"] == 4 and 0.0 <= result["win_rate"] <= 1.0
    assert result["wins"] + result["ties"] + result["losses"] == 4
    assert result["mean_score_base"] != result["mean_score_tuned"]  # the LoRA loaded and changed images


def test_pairs_by_ranking_and_bad_pairs_file(tiny_sd, tmp_path):
    from finetune.data import load_preference_pairs
    from finetune.dpo import lora_pipeline, pairs_by_ranking

    pipe = lora_pipeline(tiny_sd)
    pairs = pairs_by_ranking(pipe, ["a red thing", "a blue thing"], redness, tmp_path / "rank", candidates=3,
                             steps=2, progress=False)
    assert len(pairs) == 2
    for p in pairs:
        c, r = redness([Image.open(p.chosen), Image.open(p.rejected)], p.prompt)
        assert c >= r and p.weight > 0
    assert len(load_preference_pairs(tmp_path / "rank" / "pairs.jsonl")) == 2

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "x", "chosen": "nope.png", "rejected": "nope2.png"}\n')
    with pytest.raises(InputError, match=r"bad.jsonl:1: chosen image not found"):
        load_preference_pairs(bad)
    bad.write_text('{"chosen": "a.png"}\n')
    with pytest.raises(InputError, match="prompt"):
        load_preference_pairs(bad)


def test_dpo_command_from_an_ab_export(tiny_sd, tmp_path):
    from typer.testing import CliRunner

    from app.commands.finetune import app

    pairs = write_pairs(tmp_path / "ab")
    args = ["dpo", "--pairs", str(pairs), "--base-model", str(tiny_sd), "--out", str(tmp_path / "out"), "--steps", "2",
            "--batch-size", "2", "--rank", "2", "--json-out", str(tmp_path / "dpo.json")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "dpo.json").read_text())
    assert report["pairs"] == 4 and report["steps"] == 2 and "win_rate" not in report
    assert (tmp_path / "out" / "pytorch_lora_weights.safetensors").is_file()
    result = CliRunner().invoke(app, ["dpo", "--pairs", str(pairs), "--base-model", str(tiny_sd), "--beta", "0"])
    assert isinstance(result.exception, InputError) and "--beta" in str(result.exception)
